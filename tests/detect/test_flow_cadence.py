"""Steady leaks on any cadence (issue 17, session 8).

Steadiness is a matter of time at a constant flow, not of the number of readings: on hourly readings a
leak that stepped from a partial first hour to a constant flow is steady after two flat hours, where three
flat intervals took 3.5 h at the least.
"""

from __future__ import annotations

import pickle

from core.domain import MAINTENANCE
from detect import MeterMonitor
from tests.helpers import flow_alerts

DAY, HOUR, HALF = 86400, 3600, 1800


def _hourly_home(days: int = 30) -> MeterMonitor:
    """Hourly readings of an elder who uses 10 L in most daytime hours (no daytime hour is usually quiet)."""
    m = MeterMonitor("m1")
    for d in range(days):
        day = [10.0 if 7 <= h < 22 and (d + h) % 5 < 3 else 0.0 for h in range(24)]
        flow_alerts(m, d * DAY, HOUR, day)
    return m


def test_a_leak_on_hourly_readings_is_found_after_two_flat_hours() -> None:
    m = _hourly_home()
    start = 30 * DAY + 9 * HOUR  # 45 L/h from 09:20 while she is out: 30 L in its first hour, then 45 every hour
    found = flow_alerts(m, start, HOUR, [30.0, 45.0, 45.0, 45.0, 45.0])
    assert [f.route for f in found] == [MAINTENANCE]
    assert found[0].ts == start + 3 * HOUR  # two flat hours after the partial one (three flat: 13:00)


def test_two_alike_hours_from_the_first_are_no_step() -> None:
    m = _hourly_home()
    start = 30 * DAY + 9 * HOUR  # 40 L in each of two hours from 09:00 (a use that fills both alike)
    assert flow_alerts(m, start, HOUR, [40.0, 40.0, 0.0]) == []


def test_a_step_survives_a_checkpoint() -> None:
    m = _hourly_home()
    start = 30 * DAY + 9 * HOUR
    assert flow_alerts(m, start, HOUR, [30.0, 45.0]) == []  # the partial hour and one flat one: a step so far
    assert m.flow.run_flat[1] < 0
    loaded = pickle.loads(pickle.dumps(m))  # a worker saves the meter and another picks it up
    found = flow_alerts(loaded, start + 2 * HOUR, HOUR, [45.0, 45.0])
    assert [(f.route, f.ts) for f in found] == [(MAINTENANCE, start + 3 * HOUR)]


def test_a_leak_that_begins_during_use_is_judged_by_its_own_floor() -> None:
    """Session 9: the run's lowest rate was set by use before the leak began; the leak draws its own floor."""
    m = _hourly_home()
    start = 30 * DAY + 9 * HOUR  # two hours of washing (27 L each), then 45 L/h from 11:30 under 27 L of use
    found = flow_alerts(m, start, HOUR, [27.0, 27.0, 50.0, 45.0])
    assert found == []
    assert len(m.flow.run_flat) == 4  # the run's floor (27 L/h) and the flow since it (45 L/h), both followed
    loaded = pickle.loads(pickle.dumps(m))  # a checkpoint keeps both
    found = flow_alerts(loaded, start + 4 * HOUR, HOUR, [46.0, 45.0, 45.0])
    # Three flat hours at the leak's own rate; judged against the washing's 27 L/h they were use on top, and
    # the run (busy daytime hours, never quiet) would have waited for the evening's quiet hour.
    assert [(f.route, f.ts) for f in found] == [(MAINTENANCE, start + 6 * HOUR)]


def test_a_flow_back_below_the_later_floor_was_no_leak_that_began_later() -> None:
    m = _hourly_home()
    start = 30 * DAY + 9 * HOUR  # 27 L/h of use, 45 L/h for two hours, then 20: a leak never draws less
    assert flow_alerts(m, start, HOUR, [27.0, 27.0, 45.0, 45.0]) == []
    assert m.flow.run_flat == (27.0, 2, 45.0, 2)
    assert flow_alerts(m, start + 4 * HOUR, HOUR, [20.0]) == []
    assert m.flow.run_flat == (20.0, 1)  # the run's new floor; what came before says nothing of it


def _new_meter() -> MeterMonitor:
    """Two days of half-hourly readings: a few uses a day, nothing learned of long runs yet (cold start)."""
    m = MeterMonitor("m1")
    for d in range(2):
        flow_alerts(m, d * DAY, HALF, [12.0 if k in (15, 16, 24, 38) else 0.0 for k in range(48)])
    return m


def test_a_new_meters_steady_runs_are_judged_against_the_population_prior() -> None:
    """Session 9: in the first week this home's longest runs are unknown; against none, three alike half hours
    (a cistern refilling every half hour: 10 L each) were a leak. The population's prior stands in, as for the
    longest-run rule."""
    m = _new_meter()
    assert flow_alerts(m, 2 * DAY + 10 * HOUR, HALF, [10.0, 10.0, 10.0, 0.0]) == []


def test_a_leak_in_a_new_meters_first_week_is_still_found_within_two_hours() -> None:
    m = _new_meter()
    start = 2 * DAY + 2 * HOUR  # 40 L/h from 02:12: 12 L in its first half hour, then 20 L every half hour
    found = flow_alerts(m, start, HALF, [12.0] + [20.0] * 6)
    assert [(f.route, f.ts) for f in found] == [(MAINTENANCE, start + 2 * HOUR)]  # three flat after the step
