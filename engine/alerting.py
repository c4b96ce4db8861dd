"""Which findings open or close an alert: the live alert manager's rule, kept in memory for replays.

The live rule (:meth:`alerts.lifecycle.Lifecycle.apply`, behind `AlertManager.apply`): one open alert per
elder and kind, whichever of the elder's meters found it; a resolution closes
the open one; a finding inside a snooze window, or an absence finding inside an
away window, raises nothing (device findings are never muted): the one rule
:func:`alerts.muting.muted_by`, which the live manager asks too. A condition that
comes back after its alert was closed raises again (live, within the hold-down
the same alert reopens; either way the alert is raised anew).
"""

from __future__ import annotations

from collections.abc import Iterable

from alerts.muting import Window, muted_by
from core.domain import Finding

__all__ = ["OpenAlerts", "Window"]


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
