"""One meter's monitor: the only object the pipeline talks to.

It composes the detectors for one meter, applies away windows and device
logic (a silent or faulty meter is a maintenance matter, never ``no_activity``),
and returns :class:`~tapwatch.domain.Finding` records.
"""

from __future__ import annotations

from detect.rules import LowUseWindowRule
from detect.thresholds import Thresholds
from tapwatch.domain import Finding, Interval


class MeterMonitor:
    """Findings for one meter, from its intervals of use and the clock.

    >>> from tapwatch.domain import Interval
    >>> m = MeterMonitor("m1")
    >>> found = []
    >>> for k in range(26):
    ...     found += m.update(Interval("m1", k * 1800, (k + 1) * 1800, 0.0, "ok", 0))
    >>> [f.kind for f in found]
    ['no_activity']
    >>> [f.kind for f in m.tick(now=26 * 1800 + 7 * 3600)]
    ['meter_offline']
    """

    def __init__(self, meter_id: str, thresholds: Thresholds | None = None) -> None:
        self.meter_id = meter_id
        self.thresholds = thresholds or Thresholds()
        self.last_end: float | None = None
        self.offline = False
        self.away: list[tuple[float, float]] = []
        self._ceiling = LowUseWindowRule(self.thresholds.ceiling_hours, self.thresholds.ceiling_litres)

    def set_thresholds(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._ceiling.hours = thresholds.ceiling_hours
        self._ceiling.litres = thresholds.ceiling_litres

    def set_away(self, windows: list[tuple[float, float]]) -> None:
        """Known absences (start, end) that mute ``no_activity``."""
        self.away = sorted(windows)

    def update(self, x: Interval) -> list[Finding]:
        findings = self._offline_gap(x)
        for f in self._ceiling.update(x):
            if f.resolved or not self._is_away(f.ts):
                findings.append(f)
        self.last_end = x.end
        return findings

    def tick(self, now: float) -> list[Finding]:
        """Clock-driven checks: a meter that stopped reporting."""
        if self.last_end is None or self.offline:
            return []
        if now - self.last_end < self.thresholds.offline_hours * 3600:
            return []
        self.offline = True
        return [self._offline_finding(self.last_end + self.thresholds.offline_hours * 3600)]

    def _offline_gap(self, x: Interval) -> list[Finding]:
        limit = self.thresholds.offline_hours * 3600
        out: list[Finding] = []
        if not self.offline and x.end - x.start >= limit:
            out.append(self._offline_finding(x.start + limit))
            self.offline = True
        if self.offline:
            self.offline = False
            zh, en = "水表恢复上报。", "The meter is reporting again."
            out.append(Finding(self.meter_id, "meter_offline", "low", x.end, zh, en, resolved=True))
        return out

    def _offline_finding(self, ts: float) -> Finding:
        hours = self.thresholds.offline_hours
        zh = f"水表已超过 {hours:g} 小时未上报数据（设备问题，不代表无人用水）。"
        en = f"The meter has sent no data for over {hours:g} h (a device issue, not a sign of no water use)."
        return Finding(self.meter_id, "meter_offline", "low", ts, zh, en, since=self.last_end)

    def _is_away(self, ts: float) -> bool:
        return any(start <= ts < end for start, end in self.away)
