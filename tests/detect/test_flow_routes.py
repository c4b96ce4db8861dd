"""Flows routed by danger (issue 17, session 7).

A steady flow slower than an open tap is plumbing (a running cistern, a drip): maintenance, not a
cadre. A tap opened on top of such a flow while its case is on the maintenance route must still
reach a cadre, and a tap-rate run a person found harmless stops calling one, within a bound.
"""

from __future__ import annotations

from core.domain import COMMUNITY, MAINTENANCE, Finding, Interval
from detect import MeterMonitor
from tests.helpers import evening_meter

DAY, SLOT = 86400, 1800


def _run(m: MeterMonitor, start: float, litres_per_slot: list[float]) -> list[Finding]:
    found: list[Finding] = []
    for k, litres in enumerate(litres_per_slot):
        found += m.update(Interval("m1", start + k * SLOT, start + (k + 1) * SLOT, litres, "ok", 0))
    return [f for f in found if f.kind == "continuous_flow"]


def test_a_steady_flow_below_a_taps_rate_goes_to_maintenance() -> None:
    m = evening_meter()
    found = _run(m, 20 * DAY + 22 * 3600, [1.8 * 30] * 12)  # 1.8 L/min all night: a running cistern
    raised = [f for f in found if not f.resolved]
    assert [(f.route, f.details["lpm"]) for f in raised] == [(MAINTENANCE, 1.8)]


def test_a_tap_opened_on_top_of_a_slow_flow_on_the_maintenance_route_reaches_a_cadre() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    leak = _run(m, night, [15.0] * 8)  # 0.5 L/min: reported to maintenance within the four hours
    assert [f.route for f in leak if not f.resolved] == [MAINTENANCE]
    tap = _run(m, night + 8 * SLOT, [15.0 + 6.0 * 30] * 6)  # then 6 L/min on top of it for three hours
    assert [(f.resolved, f.route) for f in tap][:2] == [(True, COMMUNITY), (False, COMMUNITY)]
    assert tap[1].ts <= night + 8 * SLOT + 2 * 3600  # as soon as a tap alone would be


def test_a_slow_flow_growing_a_little_stays_on_the_maintenance_route() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    found = _run(m, night, [15.0] * 8 + [20.0] * 8)  # 0.5 then 0.67 L/min: still plumbing
    assert [f.route for f in found if not f.resolved] == [MAINTENANCE]


def _morning_tap(m: MeterMonitor, day: int, slots: int) -> list[Finding]:
    """3 L/min from 08:00 for ``slots`` half hours, then nothing until noon; the raised findings."""
    found = _run(m, day * DAY + 8 * 3600, [90.0] * slots + [0.0] * (8 - slots))
    return [f for f in found if not f.resolved]


def test_a_tap_run_found_harmless_alerts_later_but_still_alerts() -> None:
    m = evening_meter()
    first = _morning_tap(m, 20, 6)  # three hours: far past the alert, never learned as a near miss
    assert [f.route for f in first] == [COMMUNITY]
    f = first[0]
    m.learn_outcome(f.kind, "false_alarm", f.since, f.ts, 0, f.details["lpm"])
    again = _morning_tap(m, 21, 6)  # the same the next morning: raised later, within the bound
    assert [g.route for g in again] == [COMMUNITY]
    assert f.ts - f.since < again[0].ts - again[0].since <= 3.0 * 3600


def _busy_meter(extra: dict[int, float] | None = None, days: int = 20) -> MeterMonitor:
    """An elder who draws 6 L in every half hour from 07:00 to 22:00 (every hour is a busy one), plus ``extra``
    litres in the given half-hour slots each day."""
    m = MeterMonitor("m1")
    for d in range(days):
        _run(m, d * DAY, [(6.0 if 14 <= k < 44 else 0.0) + (extra or {}).get(k, 0.0) for k in range(48)])
    return m


def test_a_steady_leak_in_busy_hours_reaches_maintenance_within_two_hours() -> None:
    m = _busy_meter()
    start = 20 * DAY + 9 * 3600  # 0.5 L/min from 09:00 under the day's use (and a wash); no quiet hour until 22:00
    found = [f for f in _run(m, start, [21.0, 21.0, 29.0, 21.0, 21.0, 21.0]) if not f.resolved]
    assert [f.route for f in found] == [MAINTENANCE]
    assert found[0].ts - start == 2.0 * 3600  # the third flat interval


def test_a_steady_appliance_this_home_runs_as_long_every_day_is_not_a_leak() -> None:
    m = _busy_meter({k: 12.0 for k in (18, 19, 20)})  # 09:00-10:30: a steady 24 L/h on top, every day
    found = _run(m, 20 * DAY + 9 * 3600, [18.0, 18.0, 18.0, 6.0, 6.0, 6.0])
    assert [f for f in found if not f.resolved] == []


def test_use_on_top_of_a_slow_flow_when_it_alerts_does_not_make_it_a_cadres_case() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    found = _run(m, night, [15.0, 15.0, 75.0])  # 0.5 L/min from 22:00; at 23:00 a wash on top (2.5 L/min)
    assert [(f.route, f.details["lpm"]) for f in found if not f.resolved] == [(MAINTENANCE, 2.5)]
    more = _run(m, night + 3 * SLOT, [75.0] * 3)  # but the tap stays open: a cadre's case within the hour
    assert [(f.resolved, f.route) for f in more][:2] == [(True, COMMUNITY), (False, COMMUNITY)]


def test_a_tap_left_open_after_a_trickle_is_a_cadres_case_when_the_trickle_alerts() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    found = _run(m, night, [15.0, 75.0, 75.0, 75.0])  # a trickle, then 2.5 L/min from 22:30 that does not stop
    raised = [f for f in found if not f.resolved]
    assert [(f.route, f.ts - night) for f in raised] == [(COMMUNITY, 3 * SLOT)]  # not first to maintenance


def test_a_flow_checkpoint_from_before_session_7_still_loads() -> None:
    from detect.flow import _FLOW_ADDED_SLOTS, _STEADY_SLOTS, FlowModel

    fresh = FlowModel()
    added = _FLOW_ADDED_SLOTS[: _FLOW_ADDED_SLOTS.index(_STEADY_SLOTS) + 1]  # and every group added since
    missing = {name for group in added for name in group}
    older = tuple(v for n, v in zip(FlowModel.__slots__, fresh.__getstate__(), strict=True) if n not in missing)
    loaded = FlowModel.__new__(FlowModel)
    loaded.__setstate__(older)
    assert (loaded.maint_lph, loaded.run_flat, loaded.tap) == (0.0, (0.0, 0), False)
    assert loaded.step(0.0, 1800.0, 10.0, 0) == 0.0
