"""Steady leaks on any cadence (issue 17, session 8).

Steadiness is a matter of time at a constant flow, not of the number of readings: on hourly readings a
leak that stepped from a partial first hour to a constant flow is steady after two flat hours, where three
flat intervals took 3.5 h at the least.
"""

from __future__ import annotations

import pickle

from core.domain import MAINTENANCE, Finding, Interval
from detect import MeterMonitor

DAY, HOUR = 86400, 3600


def _feed(m: MeterMonitor, start: float, step: int, litres: list[float]) -> list[Finding]:
    found: list[Finding] = []
    for k, used in enumerate(litres):
        found += m.update(Interval("m1", start + k * step, start + (k + 1) * step, used, "ok", 0))
    return [f for f in found if f.kind == "continuous_flow" and not f.resolved]


def _hourly_home(days: int = 30) -> MeterMonitor:
    """Hourly readings of an elder who uses 10 L in most daytime hours (no daytime hour is usually quiet)."""
    m = MeterMonitor("m1")
    for d in range(days):
        day = [10.0 if 7 <= h < 22 and (d + h) % 5 < 3 else 0.0 for h in range(24)]
        _feed(m, d * DAY, HOUR, day)
    return m


def test_a_leak_on_hourly_readings_is_found_after_two_flat_hours() -> None:
    m = _hourly_home()
    start = 30 * DAY + 9 * HOUR  # 45 L/h from 09:20 while she is out: 30 L in its first hour, then 45 every hour
    found = _feed(m, start, HOUR, [30.0, 45.0, 45.0, 45.0, 45.0])
    assert [f.route for f in found] == [MAINTENANCE]
    assert found[0].ts == start + 3 * HOUR  # two flat hours after the partial one (three flat: 13:00)


def test_two_alike_hours_from_the_first_are_no_step() -> None:
    m = _hourly_home()
    start = 30 * DAY + 9 * HOUR  # 40 L in each of two hours from 09:00 (a use that fills both alike)
    assert _feed(m, start, HOUR, [40.0, 40.0, 0.0]) == []


def test_a_step_survives_a_checkpoint() -> None:
    m = _hourly_home()
    start = 30 * DAY + 9 * HOUR
    assert _feed(m, start, HOUR, [30.0, 45.0]) == []  # the partial hour and one flat one: a step so far
    assert m.flow.run_flat[1] < 0
    loaded = pickle.loads(pickle.dumps(m))  # a worker saves the meter and another picks it up
    found = _feed(loaded, start + 2 * HOUR, HOUR, [45.0, 45.0])
    assert [(f.route, f.ts) for f in found] == [(MAINTENANCE, start + 3 * HOUR)]
