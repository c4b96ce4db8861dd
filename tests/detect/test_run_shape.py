"""The shape of a run at a tap's rate (issue 17, session 12).

An open tap adds the same flow (mains pressure) to every interval, whatever else the home draws on top; a
family's heavy hours (a bath, the laundry, guests) come and go, drawing a tap's rate in one interval and much
less in the next. A run at the tap levels whose interval falls under ``SWING_SHARE`` of the one before is
not judged past its limit in that interval: the water was falling off. The next interval that holds its rate
is judged as before, and ``TAP_MAX_H`` holds. (A near-flat run raised sooner whatever the learned runs say,
the other half of the hypothesis, was measured and not built: docs/detection-studies.md "The shape of a run".)
"""

from __future__ import annotations

import pytest

from core.domain import COMMUNITY
from detect import MeterMonitor
from detect import flow as flow_module
from detect.flow import _FLOW_ADDED_SLOTS, _SHAPE_SLOTS, FlowModel
from tests.helpers import flow_alerts

DAY, HOUR = 86400, 3600


def _hourly_family(days: int = 30) -> MeterMonitor:
    """Hourly readings of a home that draws 20-60 L in its daytime hours and never a tap's rate for long."""
    m = MeterMonitor("m1")
    for d in range(days):
        flow_alerts(m, d * DAY, HOUR, [20.0 + 40.0 * ((d + h) % 2) if 7 <= h < 23 else 0.0 for h in range(24)])
    return m


def test_a_heavy_hour_falling_off_is_not_called() -> None:
    # A bath and the laundry (200 L, under the burst limit), then the washing-up and a shower (130 L): two
    # hours at a tap's rate at an hour this home never ran a tap long. Before: a run past the 1 h margin.
    m = _hourly_family()
    assert flow_alerts(m, 30 * DAY + 10 * HOUR, HOUR, [200.0, 130.0, 30.0]) == []


def test_a_familys_heavy_hours_going_down_are_not_called() -> None:
    # Guests: 220 L, 170 L, 125 L in three hours (a tap's rate in each, falling off by a fifth or more each
    # hour), then the home's usual 20 L. Before: a run past the 1 h margin at its second reading.
    m = _hourly_family()
    assert flow_alerts(m, 30 * DAY + 12 * HOUR, HOUR, [220.0, 170.0, 125.0, 20.0]) == []


def test_an_open_tap_after_a_heavy_hour_is_raised_once_it_holds_its_rate() -> None:
    # A bath (200 L), then a tap left open at 130 L/h: the first hour it holds its rate raises it, one interval
    # after the run's limit, where before it was raised at the drop.
    m = _hourly_family()
    start = 30 * DAY + 10 * HOUR
    found = flow_alerts(m, start, HOUR, [200.0, 130.0, 130.0, 130.0])
    assert [(f.route, f.ts) for f in found] == [(COMMUNITY, start + 3 * HOUR)]


def test_an_open_tap_with_the_homes_use_on_top_is_raised_as_before() -> None:
    # 2.5 L/min from 10:20 (under this home's burst limit) with a shower and the laundry on top in its first
    # hour (100 L), then the home's usual use: its second hour draws 0.85 of the first, and is raised as before
    # (a share of 0.9 would have waited for the third).
    m = _hourly_family()
    start = 30 * DAY + 10 * HOUR
    found = flow_alerts(m, start, HOUR, [200.0, 170.0, 160.0, 170.0])
    assert [(f.route, f.ts) for f in found] == [(COMMUNITY, start + 2 * HOUR)]


def test_a_run_that_keeps_falling_off_is_raised_within_the_tap_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # However it falls, a run at a tap's rate is raised by TAP_MAX_H (here 3 h: a fall by the tap relies on it).
    monkeypatch.setattr(flow_module, "TAP_MAX_H", 3.0)
    m = _hourly_family()
    start = 30 * DAY + 10 * HOUR
    found = flow_alerts(m, start, HOUR, [230.0, 180.0, 140.0, 125.0])  # each under 0.8 of the one before
    assert [f.ts for f in found] == [start + 3 * HOUR]


def test_the_rule_switched_off_calls_the_falling_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow_module, "SWING_SHARE", 0.0)
    m = _hourly_family()
    assert len(flow_alerts(m, 30 * DAY + 10 * HOUR, HOUR, [200.0, 130.0, 30.0])) == 1


def test_a_flow_checkpoint_from_before_session_12_still_loads() -> None:
    model = FlowModel()
    model.step(0.0, 3600.0, 200.0, 0)
    added = _FLOW_ADDED_SLOTS[: _FLOW_ADDED_SLOTS.index(_SHAPE_SLOTS) + 1]
    missing = {name for group in added for name in group}
    older = tuple(v for n, v in zip(FlowModel.__slots__, model.__getstate__(), strict=True) if n not in missing)
    loaded = FlowModel.__new__(FlowModel)
    loaded.__setstate__(older)
    assert loaded.tap_prev == 0.0
    assert loaded.run_start == model.run_start
    assert model.tap_prev == 200.0


def test_a_run_excused_past_its_limit_teaches_no_longer_limit() -> None:
    # Guests' heavy hours fall off for three hours (not called): like a run that alerted, they are not learned
    # as this home's normal, so a tap left open at 2.5 L/min at the same hours the next day is raised at its
    # second reading, not after the guests' three hours times 1.5 plus the margin.
    m = _hourly_family()
    assert flow_alerts(m, 30 * DAY + 10 * HOUR, HOUR, [230.0, 180.0, 140.0, 0.0]) == []
    start = 31 * DAY + 10 * HOUR
    found = flow_alerts(m, start, HOUR, [150.0] * 6)
    assert [(f.route, f.ts) for f in found] == [(COMMUNITY, start + 2 * HOUR)]
