"""A meter is offline when silent longer than ``offline_hours`` and than a few of its own usual intervals.

An NB-IoT meter that saves its battery reports every 6 h: against ``offline_hours`` (6 h) alone it was offline
before every reading and back at it, a maintenance case every 6 hours. Live (the worker's tick while the meter is
silent) and replay (the interval that comes back) must draw the same line.
"""

from __future__ import annotations

import pytest

from core.domain import Finding
from detect import MeterMonitor
from engine.meter import MeterStep
from ingest.register import RegisterTracker

HOUR, DAY = 3600, 86400


def _offline(found: list[Finding]) -> list[tuple[float, bool]]:
    return [(f.ts, f.resolved) for f in found if f.kind == "meter_offline"]


def _run(step: MeterStep, times: list[float], live: bool) -> list[Finding]:
    """Readings at ``times`` (10 L each); ``live``: ticked every hour between them, as the worker does."""
    found: list[Finding] = []
    total = max(step.tracker.last_total, 1000.0)  # on from where the register stands
    last: float | None = None
    assert step.monitor is not None
    for ts in times:
        if live and last is not None:
            found += [f for now in range(int(last) + HOUR, int(ts), HOUR) for f in step.monitor.tick(float(now))]
        total += 10.0
        found += step.push(ts, total).findings
        last = ts
    return found


def _six_hourly_after_its_first_week() -> MeterStep:
    """A 6-hourly meter a week after it was installed: its register has learned its cadence."""
    step = MeterStep(RegisterTracker("m1"), MeterMonitor("m1"), "UTC")
    _run(step, [k * 6.0 * HOUR for k in range(7 * 4)], live=False)
    return step


def test_a_new_six_hourly_meter_is_neither_offline_nor_in_gaps_from_its_third_reading() -> None:
    """Its usual interval started at 1.2 h and grew 3% a reading: every interval of its first six days was a gap and
    it was offline before every reading (and back at it), a maintenance case every 6 h for its first week."""
    import random

    rng = random.Random(3)
    times = [k * 6.0 * HOUR + rng.uniform(-600.0, 600.0) for k in range(14 * 4)]
    for live in (False, True):
        step = MeterStep(RegisterTracker("m1"), MeterMonitor("m1"), "UTC")
        found: list[Finding] = []
        statuses: list[tuple[float, str]] = []
        last: float | None = None
        for k, ts in enumerate(times):
            if live and last is not None:
                assert step.monitor is not None
                found += [f for now in range(int(last) + HOUR, int(ts), HOUR) for f in step.monitor.tick(float(now))]
            pushed = step.push(ts, 1000.0 + 10.0 * k)
            found += pushed.findings
            statuses += [(i.end, i.status) for i in pushed.intervals]
            last = ts
        assert [ts for ts, _ in _offline(found) if ts > times[1]] == [], live  # the first interval taught it
        assert {status for end, status in statuses if end >= times[2]} == {"ok"}, live


def test_a_six_hourly_meter_on_cadence_is_never_offline() -> None:
    for live in (False, True):
        step = _six_hourly_after_its_first_week()
        ten_days = [7 * DAY + k * 6.0 * HOUR for k in range(10 * 4)]
        assert _offline(_run(step, ten_days, live)) == []


def test_a_six_hourly_meter_that_misses_three_readings_is_offline_once() -> None:
    seen = []
    for live in (False, True):  # the worker's tick and a replay of the same readings: one line
        step = _six_hourly_after_its_first_week()
        times = [7 * DAY + k * 6.0 * HOUR for k in range(10 * 4) if k not in (20, 21, 22)]
        found = _offline(_run(step, times, live))
        assert [resolved for _, resolved in found] == [False, True]
        back = 7 * DAY + 23 * 6.0 * HOUR
        assert found[1][0] == back
        assert 7 * DAY + 19 * 6.0 * HOUR + 6 * HOUR < found[0][0] < back  # after two readings missed, at least
        seen.append(found)
    assert seen[0] == seen[1]


def test_an_hourly_meter_keeps_the_six_hour_line() -> None:
    for live in (False, True):
        step = MeterStep(RegisterTracker("m1"), MeterMonitor("m1"), "UTC")
        hours = [k * float(HOUR) for k in range(30 * 24) if k % 24 not in (3, 4)]  # two readings lost every night
        last = hours[-1]
        found = _offline(_run(step, [*hours, last + 7 * HOUR], live))
        assert found == [(last + 6 * HOUR, False), (last + 7 * HOUR, True)]


def test_the_monitor_and_the_register_learn_the_same_usual_interval() -> None:
    """The monitor inlines ``core.cadence.next_usual`` (once per interval); the register uses it: the same rule.

    (Intervals of 5 minutes or more: the monitor joins shorter ones, the register refuses under a minute.)
    """
    import random

    from core.cadence import FIRST_USUAL_S, YOUNG_INTERVALS, next_usual

    rng = random.Random(7)
    gaps = [rng.choice((900.0, 1800.0, 3600.0, 6 * 3600.0)) + rng.uniform(-60, 60) for _ in range(400)]
    tracker, monitor = RegisterTracker("m"), MeterMonitor("m")
    ts, total, expected = 0.0, 0.0, FIRST_USUAL_S
    tracker.push(ts, total)
    for k, seconds in enumerate(gaps):
        ts, total = ts + seconds, total + 5.0
        for interval in tracker.push(ts, total)[1]:
            monitor.update(interval)
        expected = next_usual(expected, seconds, max(YOUNG_INTERVALS - k, 0))
    assert monitor.usual_s == tracker.usual_s == pytest.approx(expected, rel=1e-9)


def test_checkpoints_from_before_new_meters_learned_fast_keep_what_they_learned() -> None:
    """One with a usual interval learned it: it keeps growing 3% a reading. One from before meters had a usual
    interval (or a register restarted from its newest reading) learns it as a new meter does, register and monitor
    alike."""
    from core.cadence import YOUNG_INTERVALS
    from detect import monitor as monitor_module
    from tests.helpers import checkpoint_from_before

    step = _six_hourly_after_its_first_week()
    monitor, tracker = step.monitor, step.tracker
    assert monitor is not None and monitor.young_intervals == tracker.young_intervals == 0
    for group, tracker_state, new in (
        (monitor_module._NEW_METER_SLOTS, tracker.state()[:5], 0),
        (monitor_module._CADENCE_SLOTS, tracker.state()[:4], YOUNG_INTERVALS),
    ):
        loaded = MeterMonitor.__new__(MeterMonitor)
        loaded.__setstate__(checkpoint_from_before(monitor, group))
        restored = RegisterTracker("m1")
        restored.restore(tracker_state)
        assert loaded.young_intervals == restored.young_intervals == new


def test_a_burst_of_alarm_readings_leaves_a_six_hourly_meter_on_its_cadence() -> None:
    """An NB-IoT meter sends a reading of its own on each alarm (a leak, a tamper): five of them minutes apart each
    halved its usual interval (6 h to 11 min), and it grew back 3% a reading: the meter was offline before every
    reading for about a month. Minutes of readings now take minutes off it."""
    for live in (False, True):
        step = _six_hourly_after_its_first_week()
        start = 7 * DAY
        alarms = [start + k * 6 * 60.0 for k in range(1, 6)]
        after = [start + k * 6.0 * HOUR for k in range(1, 10 * 4)]
        assert _offline(_run(step, [start, *alarms, *after], live)) == [], live
