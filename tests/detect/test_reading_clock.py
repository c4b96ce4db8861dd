"""Meters whose readings come on another cadence, on a clock of their own, or from a register in m³.

A meter's clock jitters by seconds (the real homes' hourly readings are 3,596 s apart as often as 3,600 s), a
register in cubic metres with three decimals counts whole litres that arrive as floats a hair off them: neither may
change what the detectors find.
"""

from __future__ import annotations

import math

import pytest

from core.domain import Interval
from detect import MeterMonitor

DAY, HOUR = 86400.0, 3600.0


def _quarter_hourly_home(period_s: float, days: int = 30) -> MeterMonitor:
    """An elder read every ``period_s`` (about a quarter hour) for ``days``: 40 L washes at 07:00, 12:00, 19:00."""
    m = MeterMonitor("m1")
    t = 0.0
    while t + period_s <= days * DAY:
        quarter = int((t % DAY) // 900)
        m.update(Interval("m1", t, t + period_s, 40.0 if quarter in (28, 48, 76) else 0.0, "ok", 0))
        t += period_s
    return m


def _tap_opened(m: MeterMonitor, t: float, period_s: float, lpm: float = 20.0) -> float:
    """Minutes from a tap opened wide at ``t`` until a continuous_flow alert (inf: none within three hours)."""
    for k in range(int(3 * HOUR // period_s)):
        start = t + k * period_s
        found = m.update(Interval("m1", start, start + period_s, lpm * period_s / 60.0, "ok", 0))
        if any(f.kind == "continuous_flow" and not f.resolved for f in found):
            return (start + period_s - t) / 60.0
    return float("inf")


def test_a_tap_wide_open_is_one_huge_interval_on_a_quarter_hourly_meter_a_second_fast() -> None:
    at_two = 30 * DAY + 14 * HOUR
    on_time = _quarter_hourly_home(900.0)
    fast = _quarter_hourly_home(899.0)
    # Her 40 L washes are her highest rate: a second short of a quarter hour, they were never learned.
    assert fast.flow.max_rate == pytest.approx(on_time.flow.max_rate, rel=0.01)
    assert _tap_opened(on_time, at_two, 900.0) == 15.0
    # ...and a tap wide open was no huge interval either: raised an hour later, by the longest-run rule.
    assert _tap_opened(fast, math.ceil(at_two / 899.0) * 899.0, 899.0) <= 15.0
