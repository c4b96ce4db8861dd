"""RegisterTracker: cumulative readings become intervals; faults never become usage."""

from __future__ import annotations

import itertools
import random

from ingest.register import ACCEPTED, CONFLICT, DUPLICATE, LATE, RegisterTracker


def feed(tracker: RegisterTracker, readings: list[tuple[float, float]]) -> list[tuple[float, float, float | None, str]]:
    out = []
    for ts, total in readings:
        _status, intervals = tracker.push(ts, total, 0)
        out += [(i.start, i.end, i.usage_l, i.status) for i in intervals]
    return out


def test_usage_is_difference_of_totals_and_volume_is_conserved() -> None:
    rng = random.Random(3)
    total, readings = 1000.0, []
    for k in range(200):
        total += rng.choice([0, 0, 0, 3, 8, 40])
        readings.append((k * 1800.0, total))
    out = feed(RegisterTracker("m"), readings)
    assert len(out) == 199
    assert sum(u for _, _, u, _ in out) == total - 1000.0
    assert all(end - start == 1800 for start, end, _, _ in out)


def test_duplicates_late_and_conflicts_are_not_counted() -> None:
    t = RegisterTracker("m")
    assert t.push(0, 10)[0] == ACCEPTED
    assert t.push(3600, 20)[0] == ACCEPTED
    assert t.push(3600, 20) == (DUPLICATE, [])
    assert t.push(3600, 25) == (CONFLICT, [])
    assert t.push(1800, 15) == (LATE, [])  # the 0..3600 interval already carries its volume
    _s, out = t.push(5400, 21)
    assert [(i.usage_l, i.status) for i in out] == [(1.0, "ok")]


def test_single_reading_glitch_like_the_real_data_is_unknown_not_usage() -> None:
    # DAIAD: one reading ~248,000 L off that comes straight back.
    out = feed(RegisterTracker("m"), [(0, 5000), (3600, 5010), (7200, 253_530), (10800, 5020), (14400, 5030)])
    assert out == [
        (0, 3600, 10.0, "ok"),
        (3600, 7200, None, "glitch"),
        (7200, 10800, 10.0, "ok"),
        (10800, 14400, 10.0, "ok"),
    ]


def test_negative_glitch_that_comes_back() -> None:
    out = feed(RegisterTracker("m"), [(0, 300_000), (3600, 300_010), (7200, 51_490), (10800, 300_015)])
    assert [(u, s) for _, _, u, s in out] == [(10.0, "ok"), (None, "glitch"), (5.0, "ok")]


def test_register_reset_starts_a_new_baseline() -> None:
    out = feed(RegisterTracker("m"), [(0, 80_000), (1800, 80_004), (3600, 2), (5400, 9), (7200, 9)])
    assert [(u, s) for _, _, u, s in out] == [(4.0, "ok"), (None, "reset"), (7.0, "ok"), (0.0, "ok")]


def test_small_backward_jitter_is_no_use_and_keeps_the_higher_level() -> None:
    out = feed(RegisterTracker("m"), [(0, 100), (1800, 99), (3600, 104)])
    assert [(u, s) for _, _, u, s in out] == [(0.0, "ok"), (4.0, "ok")]


def test_long_gap_keeps_volume_but_marks_timing_unknown() -> None:
    out = feed(RegisterTracker("m"), [(0, 100), (10 * 3600, 700)])
    assert out == [(0, 36000, 600.0, "gap")]


def test_erratic_register_does_not_stall() -> None:
    out = feed(RegisterTracker("m"), [(0, 0), (3600, 900_000), (7200, 10), (10800, 500_000), (14400, 500_003)])
    # Every stretch is covered exactly once and no impossible volume appears.
    assert all(u is None or u <= 60 for _, _, u, _ in out)
    covered = sorted((s, e) for s, e, _, _ in out)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
    assert covered[-1][1] == 14400


def test_checkpoint_restores_exactly() -> None:
    a = RegisterTracker("m")
    feed(a, [(0, 100), (1800, 110), (3600, 900_000)])  # leaves a suspect pending
    b = RegisterTracker("m")
    b.restore(a.state())
    assert feed(a, [(5400, 115)]) == feed(b, [(5400, 115)])


def test_a_step_steeper_than_any_tap_that_comes_back_down_is_a_glitch_not_a_burst() -> None:
    # The simulator's register glitches of 500-5,000 L: one reading off, the next back on the old level. Under
    # the plausible limit (60 L/min) they passed as water and called a cadre about a tap wide open.
    out = feed(RegisterTracker("m"), [(0.0, 5000.0), (1800.0, 5010.0), (3600.0, 6510.0), (5400.0, 5020.0)])
    assert out == [(0.0, 1800.0, 10.0, "ok"), (1800.0, 3600.0, None, "glitch"), (3600.0, 5400.0, 10.0, "ok")]


def test_a_pipe_that_bursts_is_water_released_one_reading_later() -> None:
    tracker = RegisterTracker("m")
    out = feed(tracker, [(0.0, 5000.0), (1800.0, 5010.0), (3600.0, 6210.0)])
    assert out == [(0.0, 1800.0, 10.0, "ok")]  # 40 L/min: held until the next reading says what it was
    out = feed(tracker, [(5400.0, 7410.0)])
    assert out == [(1800.0, 3600.0, 1200.0, "ok"), (3600.0, 5400.0, 1200.0, "ok")]  # it went on: all of it is use
    assert feed(tracker, [(7200.0, 7420.0)]) == [(5400.0, 7200.0, 10.0, "ok")]  # shut off: nothing held


def test_a_tap_wide_open_is_never_held() -> None:
    # 20 L/min, more than the simulator's taps (2-12 L/min) and real homes' injected ones: at once, every reading.
    readings = [(k * 1800.0, 5000.0 + 600.0 * k) for k in range(6)]
    out = feed(RegisterTracker("m"), readings)
    assert [u for _, _, u, _ in out] == [600.0] * 5


def test_a_glitch_after_lost_readings_leaves_the_next_interval_its_share_of_the_volume() -> None:
    # A meter back from a 5 h outage whose first reading is garbage: 159 L were drawn in the 6 h from 06:30 to 12:30.
    # (A half-hourly meter past its first intervals: a new meter's first ones teach it its cadence.)
    half_hourly = [(-k * 1800, 5000) for k in range(4, 0, -1)]
    out = feed(RegisterTracker("m"), [*half_hourly, (0, 5000), (23400, 5000), (43200, 123), (45000, 5159)])
    assert out[-2:] == [(23400, 43200, None, "glitch"), (43200, 45000, 159.0 * 0.5 / 6, "ok")]


def _every(hours: float, jitter_min: float, days: int) -> list[tuple[float, float]]:
    """A meter that reports every ``hours`` (+- ``jitter_min``), 3 L more each time."""
    rng = random.Random(4)
    return [
        (k * hours * 3600.0 + rng.uniform(-jitter_min, jitter_min) * 60.0, 3.0 * k)
        for k in range(int(days * 24 / hours))
    ]


def test_a_meter_that_reports_every_three_or_six_hours_learns_that_it_has_no_gaps() -> None:
    # NB-IoT meters that save battery report every 3 or 6 h: against the absolute 3 h line every interval was a
    # gap (no silence learned, no day judged), and with a few minutes' jitter a 3-hourly one flipped.
    for hours in (3.0, 6.0):
        tracker = RegisterTracker("m")
        readings = _every(hours, 10.0, 30)
        out = feed(tracker, readings)
        later = [status for start, _, _, status in out if start >= 20 * 86400]
        assert later and set(later) == {"ok"}, hours
        last_ts, last_total = readings[-1]
        lost = feed(tracker, [(last_ts + 4 * hours * 3600.0, last_total + 12.0)])  # three readings lost
        assert [status for _, _, _, status in lost] == ["gap"], hours


def test_a_new_six_hourly_meter_learns_its_cadence_from_its_first_intervals() -> None:
    # Its usual interval started at 1.2 h and grew 3% a reading: its intervals were gaps for six days. Its first
    # intervals teach it now, also when the installer had it send a test reading minutes after its first.
    for installer in (False, True):
        readings = _every(6.0, 10.0, 10)
        if installer:
            readings.insert(1, (readings[0][0] + 300.0, readings[0][1]))
        out = feed(RegisterTracker("m"), readings)
        assert {status for _, end, _, status in out if end >= readings[3 if installer else 2][0]} == {"ok"}, installer


def test_one_extra_reading_minutes_after_another_does_not_make_a_six_hourly_meters_intervals_gaps() -> None:
    # NB-IoT meters also send a reading of their own on an alarm (a leak, a tamper): one interval of minutes. Taken
    # as the meter's usual interval, it made every 6 h interval after it a gap again for some six weeks.
    tracker = RegisterTracker("m")
    readings = _every(6.0, 10.0, 30)
    feed(tracker, readings)
    last_ts, last_total = readings[-1]
    extra = [(last_ts + 300.0, last_total + 1.0)]
    regular = [(last_ts + k * 6 * 3600.0, last_total + 1.0 + 3.0 * k) for k in range(1, 9)]
    out = feed(tracker, extra + regular)
    assert [status for _, _, _, status in out] == ["ok"] * 9


def test_a_burst_of_alarm_readings_does_not_make_a_six_hourly_meters_intervals_gaps() -> None:
    # Five alarm readings minutes apart each halved the usual interval (6 h to 11 min), which grew back 3% a
    # reading: every 6 h interval was a gap for about a month, no silence learned, no day judged.
    tracker = RegisterTracker("m")
    readings = _every(6.0, 10.0, 30)
    feed(tracker, readings)
    last_ts, last_total = readings[-1]
    alarms = [(last_ts + k * 120.0, last_total + k) for k in range(1, 6)]
    regular = [(last_ts + k * 6 * 3600.0, last_total + 5.0 + 3.0 * k) for k in range(1, 9)]
    out = feed(tracker, alarms + regular)
    assert [status for _, _, _, status in out] == ["ok"] * 13


def test_half_hourly_and_hourly_meters_keep_the_three_hour_line() -> None:
    for hours in (0.5, 1.0):
        tracker = RegisterTracker("m")
        readings = _every(hours, 5.0, 30)
        feed(tracker, readings)
        last_ts, last_total = readings[-1]
        out = feed(tracker, [(last_ts + 3.1 * 3600.0, last_total + 3.0)])
        assert [status for _, _, _, status in out] == ["gap"], hours


def test_a_checkpoint_keeps_the_meters_usual_interval_and_an_older_one_loads() -> None:
    a = RegisterTracker("m")
    readings = _every(6.0, 10.0, 30)
    feed(a, readings)
    b = RegisterTracker("m")
    b.restore(a.state())
    last_ts, last_total = readings[-1]
    nxt = [(last_ts + 6 * 3600.0, last_total + 3.0)]
    assert feed(a, nxt) == feed(b, nxt) == [(last_ts, nxt[0][0], 3.0, "ok")]
    old = RegisterTracker("m")
    old.restore((0.0, 10.0, None, 0.0))  # a checkpoint from before meters had a usual interval
    assert feed(old, [(3.5 * 3600.0, 12.0)]) == [(0.0, 3.5 * 3600.0, 2.0, "gap")]  # today's line until it learns
