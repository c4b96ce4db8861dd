"""What a broken or odd meter sends must never make a monitor's state grow without bound (issue 20, detect side).

A worker holds a monitor for each of up to a million meters and writes each one's checkpoint after every batch:
the state of one meter must stay a few kilobytes whatever its readings' cadence.
"""

from __future__ import annotations

import pickle

import pytest

from core.domain import Finding, Interval
from detect import MeterMonitor
from detect.monitor import _SHORT_SLOTS
from detect.rules import MERGE_S, LowUseWindowRule
from engine.meter import MeterStep
from ingest.register import RegisterTracker
from tests.helpers import checkpoint_from_before, longest_runs

DAY, HOUR, HALF = 86400, 3600, 1800
USED = (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42)  # half hours with use: rising, meals, evening


def _routine(days: int = 30) -> MeterMonitor:
    m = MeterMonitor("m1")
    for d in range(days):
        for k in range(48):
            t = d * DAY + k * HALF
            m.update(Interval("m1", t, t + HALF, 12.0 if k in USED else 0.0, "ok", 0))
    return m


def test_a_meter_read_every_second_keeps_a_small_checkpoint_through_a_flow_alert() -> None:
    m = _routine()
    before = len(pickle.dumps(m))
    start = 30 * DAY + 3 * HOUR + HALF  # a tap left open at 03:30 at 6 L/min, read every second, closed 1 h later
    found, largest = [], 0
    for s in range(HOUR):
        found += m.update(Interval("m1", start + s, start + s + 1, 0.1, "ok", 0))
        if s % 60 == 0:
            largest = max(largest, len(pickle.dumps(m)))
    assert [f.kind for f in found if not f.resolved] == ["continuous_flow"]
    alerted = next(f for f in found if not f.resolved).ts
    assert alerted < start + 1.5 * HOUR  # the run stopped within the hour after its alert: a near miss
    # One entry per reading held back for the near miss grew it by 4 a second: 190 kB after the alert's hour.
    assert largest <= before + 2048, f"{largest} B at most during the alert, {before} B before it"
    found = m.update(Interval("m1", start + HOUR, start + HOUR + HALF, 0.0, "ok", 0))
    assert [(f.kind, f.resolved) for f in found] == [("continuous_flow", True)]
    # ... and what the near miss teaches is learned as before: the run's length at each level, at 04:00.
    runs = longest_runs(m)
    assert runs[:, 4] == pytest.approx([1.0] * len(runs), abs=1e-3)


def test_a_meter_read_every_second_under_a_drip_keeps_a_small_checkpoint() -> None:
    m = _routine()
    before = len(pickle.dumps(m))
    start = 30 * DAY  # from midnight a drip of 3.6 L/h, read every second to the millilitre
    found, largest = [], 0
    for s in range(6 * HOUR):
        found += m.update(Interval("m1", start + s, start + s + 1, 0.001, "ok", 0))
        if s % 600 == 0:
            largest = max(largest, len(pickle.dumps(m)))
    assert [f for f in found if not f.resolved] == []
    # The safety net held one entry per reading until the newer ones alone reached its 10 L: 160 kB.
    assert largest <= before + 1024, f"{largest} B at most under the drip, {before} B before it"


def test_the_safety_net_counts_a_fast_meters_litres_as_before_within_five_minutes() -> None:
    rule = LowUseWindowRule(hours=2, litres=10)
    found = []
    for s in range(0, 3 * HOUR, 10):  # read every 10 s: 12 L in the first minute, then 0.01 L a reading
        found += rule.update(Interval("m", s, s + 10, 2.0 if s < 60 else 0.01, "ok", 0))
    # 0.01 L every 10 s is 3.6 L an hour: under 10 L in the 2 h once 10 L of the first minute's 12 L left the window
    # (their fifth reading's 2 h after it, counted reading by reading), now within five minutes of that.
    assert [(f.kind, f.resolved) for f in found] == [("no_activity", False)]
    assert 2 * HOUR + 50 <= found[0].ts <= 2 * HOUR + 50 + MERGE_S


def _fast_meter_morning(m: MeterMonitor, day: int, every_s: int) -> list[Finding]:
    """A day of the elder's routine read every ``every_s`` seconds: each use 12 L over two minutes (6 L/min)."""
    found: list[Finding] = []
    for s in range(0, DAY, every_s):
        k = s // HALF
        used = 0.1 * every_s if k in USED and s % HALF < 120 else 0.0
        t = day * DAY + s
        found += m.update(Interval("m1", t, t + every_s, used, "ok", 0))
    return found


def test_an_elder_whose_meter_reads_every_second_is_not_reported_silent() -> None:
    m = _routine()  # read every half hour for a month; then the meter sends a reading a second, the routine the same
    found = _fast_meter_morning(m, 30, 1) + _fast_meter_morning(m, 31, 1)
    # Every reading drew a tenth of a litre, under a use's litre: "no water used since 21:30 (11.5 h)" at 09:07 on a
    # morning of washes at 06:30, 07:00 and 08:00, never closed.
    assert [(f.kind, f.resolved) for f in found] == []


def test_a_short_interval_then_a_fault_or_a_gap_loses_no_litres_and_holds_nothing() -> None:
    m = _routine()
    start = 30 * DAY + 1 * HOUR
    m.update(Interval("m1", start, start + 60, 5.0, "ok", 0))
    assert m.short == (start, start + 60, 5.0, 0) and m.last_end == 30 * DAY  # held until it spans five minutes
    m.update(Interval("m1", start + 60, start + 5 * HOUR, 20.0, "gap", 0))  # readings lost, then the register again
    assert m.short is None and m.last_end == start + 5 * HOUR and m.day_total == pytest.approx(25.0)
    m.update(Interval("m1", start + 5 * HOUR, start + 5 * HOUR + 60, 1.0, "ok", 0))
    m.update(Interval("m1", start + 5 * HOUR + 60, start + 5 * HOUR + 120, None, "reset", 0))  # the meter replaced
    assert m.short is None and m.fault_since == start + 5 * HOUR + 120


def test_a_checkpoint_from_before_short_intervals_were_joined_loads() -> None:
    m = _routine(2)
    restored = MeterMonitor.__new__(MeterMonitor)
    restored.__setstate__(checkpoint_from_before(m, _SHORT_SLOTS))
    assert restored.short is None and restored.day_total == m.day_total


def test_an_elder_whose_meter_reads_every_minute_has_no_leak() -> None:
    m = _routine()  # read every half hour for a month; then a reading a minute, each use 5 L over three minutes
    found: list[Finding] = []
    for day in (30, 31):
        for s in range(0, DAY, 60):
            used = (1.6, 1.7, 1.5)[s % HALF // 60] if s // HALF in USED and s % HALF < 180 else 0.0
            t = day * DAY + s
            found += m.update(Interval("m1", t, t + 60, used, "ok", 0))
    # A wash's three minutes were three flat intervals of a slow run: "water running without a break since 06:30
    # (0.1 h, about 1.5 L a minute)", a leak for maintenance, at nearly every use.
    assert [(f.kind, f.resolved) for f in found] == []


def test_a_use_held_when_the_meter_falls_silent_is_judged_by_the_clock() -> None:
    m = _routine()
    found: list[Finding] = []
    for k in range(20):  # no water from 21:30 the day before: the silence alerts
        t = 30 * DAY + k * HALF
        found += m.update(Interval("m1", t, t + HALF, 0.0, "ok", 0))
    assert [(f.kind, f.resolved) for f in found] == [("no_activity", False)]
    at = 30 * DAY + 20 * HALF  # 10:00: she uses water, read a minute later; then the meter sends nothing more
    assert m.update(Interval("m1", at, at + 60, 5.0, "ok", 0)) == []
    assert m.tick(at + 120) == []  # (held while it may still be joined)
    assert [(f.kind, f.resolved) for f in m.tick(at + 360)] == [("no_activity", True)]
    assert m.short is None and m.last_end == at + 60


def test_a_meter_back_from_an_outage_with_a_garbage_reading_calls_no_cadre_about_a_tap() -> None:
    step = MeterStep(RegisterTracker("m1"), MeterMonitor("m1"), "UTC")
    total, found = 5000.0, []
    for k in range(36 * 48):
        day, slot = divmod(k, 48)
        total += 12.0 if slot in USED else 0.0
        if day == 35 and slot in (15, 18):
            total += 60.0  # a shower and the laundry that morning
        if day == 35 and 14 <= slot < 24:
            continue  # the meter is out from 07:00 to 12:00 (no reading)
        found += step.push(k * HALF, 123.0 if (day, slot) == (35, 24) else total).findings  # 12:00: garbage
    raised = [(f.kind, f.route) for f in found if not f.resolved and f.kind not in ("meter_fault", "meter_offline")]
    # The morning's 159 L were all put in 12:00-12:30: "159 L used in 30 min, 6 times this elder's most": a cadre.
    assert raised == []


def _tap_with_a_garbage_reading(closed_at_slot: int) -> list[tuple[float, str, bool]]:
    """A month of the routine, then a tap left open at 10:00 (2 L/min) that is closed at ``closed_at_slot``, and
    one garbage reading at 16:00; (hour, kind, resolved) of every flow finding that day."""
    step = MeterStep(RegisterTracker("m1"), MeterMonitor("m1"), "UTC")
    total, found = 5000.0, []
    for k in range(36 * 48):
        day, slot = divmod(k, 48)
        total += 60.0 if day == 35 and 20 <= slot < closed_at_slot else (12.0 if slot in USED else 0.0)
        reading = 123.0 if (day, slot) == (35, 32) else total
        found += [(k % 48 / 2, f.kind, f.resolved) for f in step.push(k * HALF, reading).findings]
    return [f for f in found if f[1] == "continuous_flow"]


def test_a_garbage_reading_does_not_close_the_case_of_a_tap_still_running() -> None:
    # Before: "the continuous flow stopped before 16:30", and at 17:30 the same tap raised anew.
    assert _tap_with_a_garbage_reading(closed_at_slot=44) == [
        (10.5, "continuous_flow", False),
        (22.0, "continuous_flow", True),  # it closes when a reading shows the water stopped
    ]


def test_a_tap_closed_across_a_garbage_reading_closes_its_case_at_the_next_reading() -> None:
    assert _tap_with_a_garbage_reading(closed_at_slot=32) == [
        (10.5, "continuous_flow", False),
        (16.5, "continuous_flow", True),
    ]


def _one_reading_off(extra_l: float, back: bool) -> list[Finding]:
    """A month of the routine, then the 10:00 reading ``extra_l`` too high (a tap's rate, not held as doubtful);
    the register goes back down after it (``back``) or keeps that level; every finding from 10:00 that day."""
    step = MeterStep(RegisterTracker("m1"), MeterMonitor("m1"), "UTC")
    total, found = 5000.0, []
    for k in range(36 * 48):
        total += 12.0 if k % 48 in USED else 0.0
        if k == 35 * 48 + 20 and not back:
            total += extra_l
        reading = total + extra_l if k == 35 * 48 + 20 and back else total
        found += [f for f in step.push(k * HALF, reading).findings if f.ts >= 35 * DAY + 10 * HOUR]
    return found


def test_a_burst_raised_by_one_reading_off_is_withdrawn_once_the_register_goes_back_down() -> None:
    found = _one_reading_off(300.0, back=True)
    flow = [(f.ts % DAY / HOUR, f.resolved) for f in found if f.kind == "continuous_flow"]
    assert flow == [(10.0, False), (11.0, True)]
    raised, closed = (f for f in found if f.kind == "continuous_flow")
    assert raised.message_en.startswith("312 L used in 30 min")  # a cadre called about a tap
    # Before: "The continuous flow stopped before 11:00", as if water had run.
    assert closed.message_en.startswith("The reading at 10:00 was a meter misreading")
    assert "this alert is withdrawn" in closed.message_en and "此提醒撤回" in closed.message_zh
    assert [f.kind for f in found if not f.resolved] == ["continuous_flow", "meter_fault"]


def test_a_burst_the_register_keeps_is_not_withdrawn() -> None:
    found = _one_reading_off(300.0, back=False)
    assert [(f.kind, f.resolved) for f in found] == [("continuous_flow", False), ("continuous_flow", True)]
    assert "stopped" in found[1].message_en
