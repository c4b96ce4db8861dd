"""Which findings open or close an alert: the live alert manager's rule, kept in memory for replays.

The live rule (:meth:`alerts.manager.AlertManager.apply`): one open alert per
elder and kind, whichever of the elder's meters found it; a resolution closes
the open one; a finding inside a snooze window, or an absence finding inside an
away window, raises nothing (device findings are never muted). A condition that
comes back after its alert was closed raises again (live, within the hold-down
the same alert reopens; either way the alert is raised anew).
"""

from __future__ import annotations

from collections.abc import Iterable

from alerts.manager import ABSENCE_KINDS
from core.domain import DEVICE_KINDS, Finding

#: An away or snooze window: (start, end, kind), kind "away" or "snooze"; it covers start <= ts < end.
Window = tuple[float, float, str]


def muted_by(finding: Finding, windows: Iterable[Window]) -> str | None:
    """``snooze`` or ``away`` if a window covering the finding's data time mutes its kind (as live)."""
    if finding.kind in DEVICE_KINDS:
        return None  # the meter still needs fixing while the elder is away or snoozed
    found = {kind for start, end, kind in windows if start <= finding.ts < end}
    if "snooze" in found:
        return "snooze"
    if "away" in found and finding.kind in ABSENCE_KINDS:
        return "away"
    return None


class OpenAlerts:
    """The alerts open in a replay, per elder and kind."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open: set[tuple[str, str]] = set()

    def admit(self, elder_id: str, finding: Finding, windows: Iterable[Window] = ()) -> bool:
        """True if ``finding`` raises an alert or closes an open one for ``elder_id`` (and note it)."""
        key = (elder_id, finding.kind)
        if finding.resolved:
            if key in self.open:
                self.open.discard(key)
                return True
            return False
        if key in self.open or muted_by(finding, windows) is not None:
            return False
        self.open.add(key)
        return True
