"""Which away and snooze windows mute a finding: one pure rule for the live alert manager and replays.

:func:`alerts.cases.muting_window` reads the elder's windows from the
store; :class:`engine.alerting.OpenAlerts` holds them in memory for a replay or
a backtest. Both ask :func:`muted_by`, so a backtest mutes what the live monitor
would.

>>> from core.domain import Finding
>>> fall = Finding("M1", "no_activity", "high", 50.0, "", "")
>>> muted_by(fall, [(0.0, 100.0, "away")]), muted_by(fall, [(0.0, 50.0, "snooze")])
('away', None)

A silence or a running tap a snooze mutes is held until the snooze ends (:data:`HELD_KINDS`, :func:`held_until`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from core.domain import DEVICE_KINDS, Finding

#: Kinds an absence from home explains: muted by ``away`` windows.
ABSENCE_KINDS: Final = frozenset({"no_activity", "low_usage", "routine_change"})

#: An away or snooze window: (start, end, kind), kind "away" or "snooze"; it covers start <= ts < end.
Window = tuple[float, float, str]

#: Conditions that go on until the detector clears them (a silence, a running tap), raised once per episode: one a
#: snooze muted is held and offered again when the window ends (:meth:`alerts.lifecycle.Lifecycle.release`), else a
#: fall whose silence outlasts the window calls nobody. An away window needs no such hold: the detectors apply it to
#: a silence themselves (raised once she is back), and it mutes no running tap.
HELD_KINDS: Final = frozenset({"no_activity", "continuous_flow"})


def muted_by(finding: Finding, windows: Iterable[Window]) -> str | None:
    """``snooze`` or ``away`` if a window covering the finding's data time mutes its kind, else ``None``.

    Device findings are never muted: the meter still needs fixing while the elder is away or snoozed.
    """
    if finding.kind in DEVICE_KINDS:
        return None
    found = {kind for start, end, kind in windows if start <= finding.ts < end}
    if "snooze" in found:
        return "snooze"
    if "away" in found and finding.kind in ABSENCE_KINDS:
        return "away"
    return None


def held_until(finding: Finding, windows: Iterable[Window]) -> float | None:
    """When ``finding``, muted by a snooze, is offered again: the latest end of the snoozes covering it; ``None`` if
    no snooze mutes it or its kind is not held (:data:`HELD_KINDS`).

    >>> tap = Finding("M1", "continuous_flow", "high", 50.0, "", "")
    >>> held_until(tap, [(0.0, 60.0, "snooze"), (40.0, 90.0, "snooze"), (0.0, 200.0, "away")])
    90.0
    >>> held_until(tap, [(0.0, 200.0, "away")]), held_until(Finding("M1", "high_usage", "low", 50.0, "", ""),
    ...     [(0.0, 60.0, "snooze")])
    (None, None)
    """
    windows = list(windows)  # read twice
    if finding.kind not in HELD_KINDS or muted_by(finding, windows) != "snooze":
        return None
    return max(end for start, end, kind in windows if kind == "snooze" and start <= finding.ts < end)
