"""Flows on other households (issue 17, session 9).

A run at a tap's rate is water still flowing across a reading: one interval shows a volume (the burst
rule judges it), not how long the water ran. On hourly readings one interval a few seconds over an hour
used to be a "run" past the 1 h margin at any hour this home never ran a tap long, so whether a family's
bath hour called a cadre turned on the seconds of the meter's clock. Run lengths are compared with their
limit to within a few minutes of clock drift, so a tap that has run its limit alerts whichever way the
readings' clock drifts.
"""

from __future__ import annotations

from core.domain import COMMUNITY, MAINTENANCE, Finding
from detect import MeterMonitor
from tests.helpers import evening_meter, flow_alerts

DAY, HOUR, SLOT = 86400, 3600, 1800


def _hourly_family(days: int = 30) -> MeterMonitor:
    """Hourly readings of a home that draws 20-60 L in its daytime hours and never a tap's rate for long."""
    m = MeterMonitor("m1")
    for d in range(days):
        flow_alerts(m, d * DAY, HOUR, [20.0 + 40.0 * ((d + h) % 2) if 7 <= h < 23 else 0.0 for h in range(24)])
    return m


def test_one_hourly_reading_at_a_taps_rate_is_a_volume_not_a_run() -> None:
    m = _hourly_family()
    start = 30 * DAY + 10 * HOUR  # a bath and the laundry in one hour, read 2 s late: 150 L in 3602 s
    assert flow_alerts(m, start, HOUR + 2, [150.0, 10.0]) == []


def test_a_tap_still_running_at_the_next_reading_is_raised_to_a_cadre() -> None:
    m = _hourly_family()
    start = 30 * DAY + 10 * HOUR
    found = flow_alerts(m, start, HOUR, [150.0, 150.0, 150.0])
    assert [(f.route, f.ts) for f in found] == [(COMMUNITY, start + 2 * HOUR)]  # 2 h at a tap's rate: past 1 h


def test_a_tap_is_raised_after_its_limit_whichever_way_the_clock_drifts() -> None:
    # 3 L/min from 03:15, hours this elder never runs water: raised once it has run the 1 h margin, at its
    # second half-hourly reading whether the readings come a few seconds early or late.
    for seconds in (1797, 1800, 1803):
        m = evening_meter()
        start = 20 * DAY + 3.25 * HOUR
        found = flow_alerts(m, start, seconds, [90.0] * 4)
        assert [(f.route, f.ts) for f in found] == [(COMMUNITY, start + 2 * seconds)], seconds


def test_one_hourly_reading_at_a_taps_rate_on_a_leak_in_hand_stays_with_maintenance() -> None:
    m = _hourly_family()
    start = 30 * DAY + 1 * HOUR  # a 45 L/h leak from 01:00: steady, reported to maintenance
    leak = flow_alerts(m, start, HOUR, [45.0] * 6)
    assert [f.route for f in leak] == [MAINTENANCE]
    # at 07:00 a shower and the laundry on top of it, read 2 s late: one reading, not a tap left running
    assert flow_alerts(m, start + 6 * HOUR, HOUR + 2, [45.0 + 150.0, 45.0]) == []


def _bath(m: MeterMonitor, day: int, litres: list[float]) -> list[Finding]:
    return flow_alerts(m, day * DAY + 20 * HOUR, SLOT, litres)


def test_a_burst_still_running_at_the_next_reading_is_not_learned() -> None:
    m = evening_meter()
    first = _bath(m, 20, [150.0, 150.0, 0.0])  # a tap wide open for an hour: a tap's rate at the next reading
    assert [f.route for f in first] == [COMMUNITY]
    assert [f.route for f in _bath(m, 21, [150.0, 0.0, 0.0])] == [COMMUNITY]
