"""Meters whose readings come on another cadence, on a clock of their own, or from a register in m³.

A meter's clock jitters by seconds (the real homes' hourly readings are 3,596 s apart as often as 3,600 s), a
register in cubic metres with three decimals counts whole litres that arrive as floats a hair off them: neither may
change what the detectors find.
"""

from __future__ import annotations

import math

import pytest

from core.domain import COMMUNITY, Finding, Interval
from detect import MeterMonitor
from engine.meter import MeterStep
from ingest.register import RegisterTracker

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
    assert _tap_opened(on_time, at_two, 900.0) == 30.0  # its second reading: one may be a shower
    # ...and a tap wide open was no huge interval either: raised an hour later, by the longest-run rule.
    assert _tap_opened(fast, math.ceil(at_two / 899.0) * 899.0, 899.0) <= 30.0


def _m3(step: MeterStep, ts: float, m3: float) -> list[Finding]:
    """A reading of a register in cubic metres, read as a payload's ``total_m3`` is (litres = m³ x 1000)."""
    return step.push(ts, m3 * 1000.0).findings


def test_litres_counted_by_a_register_in_cubic_metres_are_whole_litres() -> None:
    step = MeterStep(RegisterTracker("m1"), MeterMonitor("m1"), "UTC")
    _m3(step, 0.0, 127.950)
    found = _m3(step, 1800.0, 128.000)  # her morning's 50 L, then nothing for 20 h
    for k in range(2, 42):
        found += _m3(step, k * 1800.0, 128.000)
    assert [(f.kind, f.resolved) for f in found] == [("no_activity", False)]
    # 128.003 m³ less 128.000 m³ reads 2.99999999998 L: "no real use yet", and the case stayed open.
    resumed = _m3(step, 42 * 1800.0, 128.003)
    assert [(f.kind, f.resolved) for f in resumed] == [("no_activity", True)]


def test_a_leak_counted_in_cubic_metres_is_as_steady_as_one_counted_in_litres() -> None:
    """A leak's intervals draw the same flow to the register's litre: 10 L, 11 L, 10 L... is flat."""

    def leak_alert(in_m3: bool) -> float | None:
        step = MeterStep(RegisterTracker("m1"), MeterMonitor("m1"), "UTC")
        total = 128_007.0  # (at most totals, a litre read in m³ is a hair over or under one)
        for k in range(30 * 48):  # a month of a 20 L wash at 07:00 and at 19:00
            total += 20.0 if k % 48 in (14, 38) else 0.0
            step.push(k * 1800.0, total / 1000.0 * 1000.0 if in_m3 else total)
        start = 30 * DAY + 9 * HOUR
        for k in range(12):  # 21 L/h from 09:00: 10 L and 11 L by turns
            total += 10.0 + k % 2
            for f in step.push(start + k * 1800.0, total / 1000.0 * 1000.0 if in_m3 else total).findings:
                if f.kind == "continuous_flow" and not f.resolved:
                    return f.ts - start
        return None

    in_litres = leak_alert(in_m3=False)
    assert in_litres is not None
    assert leak_alert(in_m3=True) == in_litres


def _quarter_hourly_showers(days: int) -> tuple[MeterMonitor, list[Finding]]:
    """A new meter read every quarter hour: an elder who showers at 07:00 (75 L in one reading: 5 L/min for 15 min)
    and uses 10 L at 12:00 and at 19:00, for ``days``."""
    m, found = MeterMonitor("m1"), []
    for k in range(days * 96):
        t = k * 900.0
        u = {28: 75.0, 48: 10.0, 76: 10.0}.get(k % 96, 0.0)
        found += m.update(Interval("m1", t, t + 900.0, u, "ok", 0))
    return m, found


def test_a_shower_in_one_quarter_hour_is_no_tap_wide_open() -> None:
    # 75 L in a quarter hour is 300 L/h, over the 240 L/h a half-hourly reading of a tap wide open draws at least:
    # every shower of a new quarter-hourly meter called a cadre about a tap wide open.
    _, found = _quarter_hourly_showers(days=3)
    assert [f for f in found if f.kind == "continuous_flow"] == []


def test_a_tap_wide_open_on_a_new_quarter_hourly_meter_is_raised_in_its_second_reading() -> None:
    m, _ = _quarter_hourly_showers(days=3)
    start = 3 * DAY + 14 * HOUR  # 5 L/min from 14:00: as a half-hourly meter raises it, at its first half hour
    for k in range(8):
        t = start + k * 900.0
        found = m.update(Interval("m1", t, t + 900.0, 75.0, "ok", 0))
        if found:
            break
    assert [(f.kind, f.route) for f in found] == [("continuous_flow", COMMUNITY)]
    assert found[0].ts - start <= 1800.0


def _washes(period_s: float, days: int = 30) -> MeterMonitor:
    """An elder who washes in two goes, at five past and twenty to the hour (07, 10, 13, 16, 19), read every
    ``period_s``."""
    m = MeterMonitor("m1")
    uses = {d * DAY + h * HOUR + minute * 60.0 for d in range(days) for h in (7, 10, 13, 16, 19) for minute in (5, 40)}
    for k in range(int(days * DAY // period_s)):
        start = k * period_s
        used = any(start <= t < start + period_s for t in uses)
        m.update(Interval("m1", start, start + period_s, 8.0 if used else 0.0, "ok", 0))
    return m


def test_a_quarter_hourly_meter_learns_the_silences_a_half_hourly_one_does() -> None:
    # Read every quarter hour, the pause between a wash's two goes (07:15-07:30) was a silence too: half of what
    # the meter learned, and the share of silences a long one outlasts half what it is on half-hourly readings.
    half_hourly, quarter_hourly = _washes(1800.0), _washes(900.0)
    assert quarter_hourly.silence.n_learned == half_hourly.silence.n_learned


def test_a_tap_wide_open_on_a_meter_read_every_five_minutes_is_raised_half_an_hour_in() -> None:
    # Each five-minute interval was too short to be judged by its rate: the tap waited for the longest-run rule,
    # over an hour, and one closed within the hour was never raised.
    m = MeterMonitor("m1")
    for k in range(10 * 288):  # ten days of a 10-minute shower at 07:00 (30 L a reading) and 10 L at 12:00 and 19:00
        t = k * 300.0
        found = m.update(
            Interval("m1", t, t + 300.0, {84: 30.0, 85: 30.0, 144: 10.0, 228: 10.0}.get(k % 288, 0.0), "ok")
        )
        assert [f for f in found if f.kind == "continuous_flow"] == []
    start = 10 * DAY + 14 * HOUR  # 10 L/min from 14:00
    for k in range(12):
        t = start + k * 300.0
        found = [f for f in m.update(Interval("m1", t, t + 300.0, 50.0, "ok", 0)) if f.kind == "continuous_flow"]
        if found:
            break
    assert [(f.route, f.severity) for f in found] == [(COMMUNITY, "critical")]
    assert found[0].ts - start <= 1800.0
    assert "running without a break since 14:00" in found[0].message_en  # a tap's run, not "50 L in 5 min"
