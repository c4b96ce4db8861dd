"""A burst a cadre keeps finding harmless teaches its hour, bounded (session 12, "Benign bursts teach their hour").

A home that waters its garden at the same hour every few days draws far above its highest rate then (a burst) on
too few days for the hour's habit to excuse it: without outcomes every watering calls a cadre. A benign answer
earns that hour (and the two beside it) a burst limit above the rate the visit excused; a confirmed incident
earns nothing, the lesson fades, and an open tap is still found: at another hour as a burst, at that hour by the
longest-run rule from its second interval. docs/detection-studies.md, "Benign bursts teach their hour (session 12)".
"""

from __future__ import annotations

import pickle

from detect import MeterMonitor
from detect.flow import _EARNED_SLOTS, _FLOW_ADDED_SLOTS, FlowModel
from tests.helpers import hours_with_visits

DAY, HOUR = 86400.0, 3600.0
EVENING = [40.0 if k == 19 else 0.0 for k in range(24)]


def _evening_hourly(days: int = 20) -> MeterMonitor:
    """An elder read hourly who uses 40 L at 19:00 only."""
    m = MeterMonitor("m1")
    for d in range(days):
        hours_with_visits(m, d, EVENING, None)
    return m


def _watering(litres: float, hour: int = 6) -> list[float]:
    """A day of ``EVENING`` with ``litres`` drawn in the hour from ``hour``:00 (a garden's hose)."""
    return [litres if k == hour else used for k, used in enumerate(EVENING)]


def _garden_days(m: MeterMonitor, first: int, last: int, outcome: str | None) -> list[int]:
    """Water 570-630 L at 06:00 every fourth day from ``first`` to ``last``; the days a cadre was called."""
    called = []
    for d in range(first, last):
        if (d - first) % 4:
            hours_with_visits(m, d, EVENING, None)
        elif hours_with_visits(m, d, _watering(570.0 + 30.0 * (d % 3)), outcome):
            called.append(d)
    return called


def test_a_garden_answered_harmless_at_its_hour_stops_calling() -> None:
    # Every fourth day is too seldom for the hour's habit (HABIT_DAYS): without outcomes each watering is a burst.
    alone = _garden_days(_evening_hourly(), 20, 60, None)
    assert len(alone) == 10
    m = _evening_hourly()
    answered = _garden_days(m, 20, 60, "false_alarm")
    # The first answer is an event, the second (soon after, at about the rate) a pattern: the next four waterings
    # call no one. The lesson fades (a 30-day half-life): from day 44 two more answers teach it again.
    assert answered == [20, 24, 44, 48]
    assert m.flow.burst_q[5] == m.flow.burst_q[6] == m.flow.burst_q[7] > 0  # the hour and its neighbours
    assert not any(m.flow.burst_q[8:24])


def test_two_benign_bursts_a_month_apart_are_no_pattern() -> None:
    # A heavy hour answered harmless, and another at about that hour a month later: events, not a habit (a family's
    # odd heavy hours); the hour earns nothing, so a tap opened there the next day is still a burst at once.
    m = _evening_hourly()
    assert hours_with_visits(m, 20, _watering(630.0), "false_alarm")
    for d in range(21, 52):
        hours_with_visits(m, d, EVENING, None)
    assert hours_with_visits(m, 52, _watering(630.0), "false_alarm")
    assert not any(m.flow.burst_q[:24])
    found = hours_with_visits(m, 53, _watering(600.0), None)
    assert [(f.ts - 53 * DAY) / HOUR for f in found] == [7.0]


def test_a_confirmed_burst_teaches_nothing() -> None:
    m = _evening_hourly()
    assert _garden_days(m, 20, 32, "needed_help") == [20, 24, 28]
    assert m.flow.burst_q == b""


def test_an_open_tap_at_another_hour_is_still_a_burst() -> None:
    m = _evening_hourly()
    _garden_days(m, 20, 40, "false_alarm")
    day = [600.0 if k in (6, 14) else used for k, used in enumerate(EVENING)]  # the garden, then a tap at 14:00
    found = hours_with_visits(m, 40, day, None)
    assert [(f.ts - 40 * DAY) / HOUR for f in found] == [15.0]  # the tap's first interval, as without outcomes
    assert found[0].route == "community"


def test_an_open_tap_at_the_gardens_hour_is_found_at_its_second_reading() -> None:
    # 8 L/min from 06:00 for four hours: without outcomes a burst at 07:00; under the earned limit at 06:00 it is
    # no burst, and the longest-run rule raises it at its second reading (08:00), one hour later.
    tap = [480.0 if 6 <= k < 10 else used for k, used in enumerate(EVENING)]
    found_at = []
    for outcome in (None, "false_alarm"):
        m = _evening_hourly()
        _garden_days(m, 20, 40, outcome)
        found = hours_with_visits(m, 40, tap, None)
        found_at.append([(f.ts - 40 * DAY) / HOUR for f in found])
    assert found_at == [[7.0], [8.0]]


def test_the_lesson_fades() -> None:
    m = _evening_hourly()
    assert _garden_days(m, 20, 28, "false_alarm") == [20, 24]
    earned = m.flow.burst_q[6]
    for d in range(28, 58):  # a month without watering: about half of what it earned is left
        hours_with_visits(m, d, EVENING, None)
    assert 0 < m.flow.burst_q[6] < earned * 0.6
    for d in range(58, 148):  # the summer is long gone: forgotten: an open tap at that hour is a burst again
        hours_with_visits(m, d, EVENING, None)
    assert m.flow.burst_q == b""
    found = hours_with_visits(m, 148, _watering(600.0), None)
    assert [(f.ts - 148 * DAY) / HOUR for f in found] == [7.0]


def test_a_flow_checkpoint_from_before_the_earned_limit_still_loads() -> None:
    m = _evening_hourly()
    _garden_days(m, 20, 24, "false_alarm")
    model = m.flow
    assert model.burst_q
    added = _FLOW_ADDED_SLOTS[: _FLOW_ADDED_SLOTS.index(_EARNED_SLOTS) + 1]
    missing = {name for group in added for name in group}
    older = tuple(v for n, v in zip(FlowModel.__slots__, model.__getstate__(), strict=True) if n not in missing)
    loaded = FlowModel.__new__(FlowModel)
    loaded.__setstate__(older)
    assert loaded.burst_q == b""
    assert loaded.max_rate == model.max_rate
    assert loaded.run_flat == model.run_flat


def test_the_earned_limit_keeps_a_monitor_small() -> None:
    m = _evening_hourly()
    before = len(pickle.dumps(m))
    _garden_days(m, 20, 24, "false_alarm")
    assert m.flow.burst_q
    assert len(pickle.dumps(m)) - before <= 64  # 48 bytes and their slot
