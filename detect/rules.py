"""Fixed rules used by real deployments, as baselines and as safety nets."""

from __future__ import annotations

from collections import deque

from tapwatch.domain import Finding, Interval


def _hm(ts: float, offset: int) -> str:
    seconds = int(ts + offset) % 86400
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


class LowUseWindowRule:
    """Alert ``no_activity`` when under ``litres`` were used in the last ``hours``.

    The Shanghai rule is ``LowUseWindowRule(12, 10)``; Taicang's is ``(24, 10)``.
    Unknown intervals (register faults) reset the window: missing data is not
    silence. The alert fires once per silence and clears when use resumes.

    >>> from tapwatch.domain import Interval
    >>> rule = LowUseWindowRule(hours=12, litres=10)
    >>> out = []
    >>> for k in range(30):  # 15 h without water
    ...     out += rule.update(Interval("m", k * 1800, (k + 1) * 1800, 0.0, "ok", 0))
    >>> [(f.kind, f.ts / 3600) for f in out]
    [('no_activity', 12.0)]
    >>> [f.resolved for f in rule.update(Interval("m", 54000, 55800, 6.0, "ok", 0))]
    [True]
    """

    def __init__(self, hours: float = 12.0, litres: float = 10.0) -> None:
        self.hours = hours
        self.litres = litres
        self._window: deque[tuple[float, float]] = deque()  # (start, usage)
        self._window_l = 0.0
        self._alerting = False

    def update(self, x: Interval) -> list[Finding]:
        if x.usage_l is None:  # unknown stretch: start counting afresh
            self._window.clear()
            self._window_l = 0.0
            return []
        span = self.hours * 3600
        self._window.append((x.start, x.usage_l))
        self._window_l += x.usage_l
        # Keep the shortest tail of intervals that still covers the whole span.
        while len(self._window) > 1 and x.end - self._window[1][0] >= span:
            self._window_l -= self._window.popleft()[1]
        covered = x.end - self._window[0][0] >= span
        if covered and self._window_l < self.litres and not self._alerting:
            self._alerting = True
            return [self._finding(x)]
        if self._alerting and x.usage_l >= 1.0:
            self._alerting = False
            return [self._finding(x, resolved=True)]
        return []

    def _finding(self, x: Interval, resolved: bool = False) -> Finding:
        if resolved:
            zh = f"{_hm(x.end, x.utc_offset_s)} 前恢复用水（{x.usage_l:.0f} 升）。"
            en = f"Water use resumed before {_hm(x.end, x.utc_offset_s)} ({x.usage_l:.0f} L)."
            return Finding(x.meter_id, "no_activity", "high", x.end, zh, en, "rule", resolved=True)
        zh = f"过去 {self.hours:g} 小时用水不足 {self.litres:g} 升（{self._window_l:.0f} 升）。"
        en = f"Under {self.litres:g} L of water used in the last {self.hours:g} h ({self._window_l:.0f} L)."
        return Finding(
            x.meter_id, "no_activity", "high", x.end, zh, en, "rule",
            since=x.end - self.hours * 3600,
            details={"rule": f"under {self.litres:g} L in {self.hours:g} h", "litres": self._window_l},
        )
