"""Bigger households (issue 17, session 10): a home's own big draws come back at their hour.

A garden watered most mornings draws a tap's rate or more for half an hour. The highest rate never learns an
interval that alerted (a tap left open must not teach it), so before session 10 every watering was a burst
again, for as long as the season lasted. The model now learns, per hour of the day, on what share of days the
home draws a tap's rate and how much: a burst no more than 1.5 times its usual draw at an hour where it does
so on most days is a habit. A tap left open at another hour is still a burst; one at the habit's hour is
raised by the longest-run rule once it runs on.
"""

from __future__ import annotations

import pickle
from array import array

from core.domain import COMMUNITY
from detect import MeterMonitor
from detect.flow import FlowModel
from tests.helpers import flow_alerts

DAY, HOUR = 86400, 3600


def _family_day(m: MeterMonitor, day: int, garden_hour: int | None) -> int:
    """One day of hourly readings: 20-60 L in daytime hours, 600 L more in ``garden_hour``; community flow calls."""
    litres = [20.0 + 40.0 * ((day + h) % 2) if 7 <= h < 23 else 0.0 for h in range(24)]
    if garden_hour is not None:
        litres[garden_hour] += 600.0
    found = flow_alerts(m, day * DAY, HOUR, litres)
    return sum(f.route == COMMUNITY for f in found)


def _gardener(garden_days: int = 40) -> tuple[MeterMonitor, list[int]]:
    m = MeterMonitor("m1")
    for d in range(30):
        _family_day(m, d, None)
    calls = [_family_day(m, d, 6 if d % 3 == 2 else 5) for d in range(30, 30 + garden_days)]  # drifts by an hour
    return m, calls


def test_a_garden_watered_most_mornings_stops_calling_a_cadre() -> None:
    _, calls = _gardener()
    assert sum(calls[:10]) >= 3  # the first waterings are new to this home
    assert sum(calls[-20:]) == 0  # before session 10: one burst every morning (40 calls)


def test_a_tap_left_open_at_another_hour_is_still_a_burst() -> None:
    m, _ = _gardener()
    start = 70 * DAY + 14 * HOUR  # 400 L/h from 14:00, an hour without big draws
    found = flow_alerts(m, start, HOUR, [400.0, 400.0, 400.0])
    assert [(f.route, f.ts) for f in found] == [(COMMUNITY, start + HOUR)]


def test_a_tap_left_open_at_the_gardens_hour_is_raised_once_it_runs_on() -> None:
    m, _ = _gardener()
    start = 70 * DAY + 5 * HOUR  # 400 L/h from 05:00, the garden's hour, and no watering that day
    found = flow_alerts(m, start, HOUR, [400.0] * 4)
    assert [f.route for f in found] == [COMMUNITY]
    assert found[0].ts <= start + 3 * HOUR


def test_a_checkpoint_from_before_session_10_loads_with_no_habit() -> None:
    old = FlowModel()
    old._state = old._state[: 24 * len(old.levels) + 24]  # longest runs and hours of use only
    new = pickle.loads(pickle.dumps(old))
    assert len(new._state) == len(FlowModel()._state) and new.habitual_lph(7) == 0.0
    assert new._state[: 24 * len(new.levels) + 24] == array("f", old._state)


def _big_home(days: int = 40) -> MeterMonitor:
    """Hourly readings of a family that draws 150 L in three daytime hours a day (2.5 L/min: a tap's rate), at hours
    that move through the day (so no hour's longest run is learned), and 20-60 L in the others."""
    m = MeterMonitor("m1")
    for d in range(days):
        heavy = {7 + (d % 5), 12 + (d % 4), 18 + (d % 3)}
        litres = [150.0 if h in heavy else 20.0 + 40.0 * ((d + h) % 2) if 7 <= h < 23 else 0.0 for h in range(24)]
        flow_alerts(m, d * DAY, HOUR, litres)
    return m


def test_a_big_home_is_judged_at_a_taps_rate_by_its_own_measure() -> None:
    m = _big_home()
    assert m.flow.tap_lph() > 150.0  # three hours a day at 2.5 L/min: not a tap's rate in this home
    start = 40 * DAY + 15 * HOUR  # two hours of 2.5 L/min at an hour with no learned run, then it stops
    assert flow_alerts(m, start, HOUR, [150.0, 150.0, 20.0]) == []  # before session 10: a cadre called at 2 h


def test_a_tap_left_open_in_a_big_home_is_still_raised() -> None:
    start = 40 * DAY + 15 * HOUR
    wide = flow_alerts(_big_home(), start, HOUR, [400.0] * 3)  # 6.7 L/min: a burst, as in any home
    assert [(f.route, f.ts) for f in wide] == [(COMMUNITY, start + HOUR)]
    m = _big_home()
    m.flow.max_rate = 300.0  # a home that drew 5 L/min before: 6.7 L/min is no burst, the run rule raises it
    wide = flow_alerts(m, start, HOUR, [400.0] * 3)
    assert [(f.route, f.ts) for f in wide] == [(COMMUNITY, start + 2 * HOUR)]
    slow = flow_alerts(_big_home(), start, HOUR, [150.0] * 5)  # 2.5 L/min: two margins later
    assert [(f.route, f.ts) for f in slow] == [(COMMUNITY, start + 3 * HOUR)]


def test_a_summers_garden_is_no_habit_in_the_winter() -> None:
    m, _ = _gardener()
    for d in range(70, 160):  # three months without a big draw
        _family_day(m, d, None)
    start = 160 * DAY + 5 * HOUR  # 400 L/h from 05:00, the garden's hour: a tap wide open again
    found = flow_alerts(m, start, HOUR, [400.0, 400.0, 400.0])
    assert [(f.route, f.ts) for f in found] == [(COMMUNITY, start + HOUR)]
