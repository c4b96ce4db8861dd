"""Which away and snooze windows mute a finding: one pure rule for the live alert manager and replays.

:func:`alerts.cases.muting_window` reads the elder's windows from the
store; :class:`engine.alerting.OpenAlerts` holds them in memory for a replay or
a backtest. Both ask :func:`muted_by`, so a backtest mutes what the live monitor
would.

>>> from core.domain import Finding
>>> fall = Finding("M1", "no_activity", "high", 50.0, "", "")
>>> muted_by(fall, [(0.0, 100.0, "away")]), muted_by(fall, [(0.0, 50.0, "snooze")])
('away', None)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from core.domain import DEVICE_KINDS, Finding

#: Kinds an absence from home explains: muted by ``away`` windows.
ABSENCE_KINDS: Final = frozenset({"no_activity", "low_usage", "routine_change"})

#: An away or snooze window: (start, end, kind), kind "away" or "snooze"; it covers start <= ts < end.
Window = tuple[float, float, str]


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
