"""The reference line: an oracle that knows a home's whole normal history in advance.

It alerts ``no_activity`` when a silence outlasts that home's ``quantile`` of
silences starting at the same local hour, computed from all of its normal
data (incident windows removed) before the replay starts. No online method can
know that much, so it marks the frontier the learned model is read against.

>>> from core.domain import Interval
>>> day = [6.0 if k in (14, 20, 30, 40) else 0.0 for k in range(48)]  # use at 07:00, 10:00, 15:00, 20:00
>>> xs = [Interval("m", (d * 48 + k) * 1800, (d * 48 + k + 1) * 1800, day[k], "ok", 0)
...       for d in range(30) for k in range(48)]
>>> oracle = SilenceOracle.fit(xs)
>>> oracle.limits[20], oracle.limits[10]
(10.5, 4.5)
>>> out = []
>>> for x in xs[:48 * 2 + 21]:
...     out += oracle.update(x)
>>> silent = [Interval("m", (117 + k) * 1800, (118 + k) * 1800, 0.0, "ok", 0) for k in range(12)]
>>> for x in silent:
...     out += oracle.update(x)
>>> [(f.kind, f.ts / 3600 - 48) for f in out]
[('no_activity', 15.5)]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from core.domain import Finding, Interval
from detect.silence import hour_of

USE_MIN_L = 1.0


def silences(intervals: Iterable[Interval]) -> list[tuple[float, float, int]]:
    """Completed silences as (start, hours, utc_offset_s); unknown data breaks them."""
    out: list[tuple[float, float, int]] = []
    start: float | None = None
    for x in intervals:
        if x.usage_l is None:
            start = None
        elif x.usage_l >= USE_MIN_L:
            if start is not None and x.start > start:
                out.append((start, (x.start - start) / 3600.0, x.utc_offset_s))
            start = x.end
        elif start is None:
            start = x.start
    return out


class SilenceOracle:
    """Alert when a silence outlasts this home's known quantile for its start hour."""

    def __init__(self, limits: list[float]) -> None:
        self.limits = limits
        self._start: float | None = None
        self._alerting = False

    @classmethod
    def fit(
        cls,
        intervals: Iterable[Interval],
        exclude: Iterable[tuple[float, float]] = (),
        quantile: float = 99.9,
        absence_h: float = 24.0,
    ) -> SilenceOracle:
        """Limits from the home's whole history.

        Silences touching ``exclude`` windows (incidents) and absences of
        ``absence_h`` or more are left out; each start hour pools its two
        neighbours, as a home's habits do not stop at the full hour.
        """
        windows = list(exclude)
        by_hour: list[list[float]] = [[] for _ in range(24)]
        for start, hours, off in silences(intervals):
            end = start + hours * 3600
            if any(a < end and start < b for a, b in windows):
                continue
            if hours < absence_h:
                by_hour[hour_of(start, off)].append(hours)
        pooled = [by_hour[h - 1] + by_hour[h] + by_hour[(h + 1) % 24] for h in range(24)]
        limits = [float(np.percentile(h, quantile)) if h else 12.0 for h in pooled]
        return cls(limits)

    def update(self, x: Interval) -> list[Finding]:
        if x.usage_l is None:
            self._start, self._alerting = None, False
            return []
        if x.usage_l >= USE_MIN_L:
            self._start = x.end
            if self._alerting:
                self._alerting = False
                return [
                    Finding(
                        x.meter_id, "no_activity", "high", x.end, "恢复用水。", "Use resumed.", "rule", resolved=True
                    )
                ]
            return []
        if self._start is None:
            self._start = x.start
        hours = (x.end - self._start) / 3600.0
        if not self._alerting and hours > self.limits[hour_of(self._start, x.utc_offset_s)]:
            self._alerting = True
            limit = self.limits[hour_of(self._start, x.utc_offset_s)]
            en = f"Silence of {hours:.1f} h outlasts this home's known {limit:.1f} h limit."
            return [
                Finding(
                    x.meter_id,
                    "no_activity",
                    "high",
                    x.end,
                    "无用水时长超过该户历史上限。",
                    en,
                    "rule",
                    since=self._start,
                )
            ]
        return []
