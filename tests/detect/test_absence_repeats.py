"""At most one call to a cadre per real absence (issue 17): what made a second one, each class with its fix.

docs/detection-studies.md, "Outcomes that made things worse (session 8)", lists the classes measured on the
tuning sets; each test here fails on the code before its fix.
"""

from __future__ import annotations

import pytest

from core.domain import COMMUNITY, MAINTENANCE, Finding, Interval
from detect import MeterMonitor
from detect import monitor as monitor_module

DAY, SLOT = 86400.0, 1800.0
#: Half-hour slots with use: rising at 06:30, meals, evening; last use at 21:00-21:30.
ROUTINE = (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42)


def _days(m: MeterMonitor, first: int, n: int, used: tuple[int, ...] = ROUTINE, litres: float = 12.0) -> list[Finding]:
    """``n`` days from day ``first`` with use in the ``used`` slots; every finding, resolved ones too."""
    found: list[Finding] = []
    for d in range(first, first + n):
        for k in range(48):
            t = d * DAY + k * SLOT
            found += m.update(Interval(m.meter_id, t, t + SLOT, litres if k in used else 0.0, "ok", 0))
    return found


def _trained() -> MeterMonitor:
    m = MeterMonitor("m1")
    assert [f for f in _days(m, 0, 21) if not f.resolved] == []
    return m


def test_a_home_left_after_a_benign_visit_calls_no_cadre_again_and_goes_to_maintenance_once() -> None:
    m = _trained()
    first = [f for f in _days(m, 21, 1, used=()) if not f.resolved]
    assert [(f.kind, f.route) for f in first] == [("no_activity", COMMUNITY)]
    m.learn_outcome("no_activity", "false_alarm", first[0].since, first[0].ts)  # she was fine, then left
    found = _days(m, 22, 65, used=())  # empty for over two months
    raised = [f for f in found if not f.resolved]
    # Before: the excuse ran out after REALERT_MAX_H and the cadre was called again, each month.
    assert [f for f in raised if f.route == COMMUNITY] == []
    assert [(f.kind, f.route, f.severity) for f in raised] == [("no_activity", MAINTENANCE, "low")]
    month = raised[0]
    assert month.since == first[0].ts
    assert monitor_module.REALERT_MAX_H * 3600 <= month.ts - first[0].ts <= monitor_module.REALERT_MAX_H * 3600 + DAY
    assert "31 days" in month.message_en and "meter" in month.message_en and "31 天" in month.message_zh
    # No day of the empty home was judged either (no low_usage every day of it).
    assert not [f for f in found if f.kind in ("low_usage", "high_usage")]
    back = _days(m, 87, 1)  # she is back: the maintenance finding clears, and the next silence is judged afresh
    assert [(f.kind, f.route) for f in back if f.resolved] == [("no_activity", MAINTENANCE)]
    again = [f for f in _days(m, 88, 1, used=()) if not f.resolved]
    assert [(f.kind, f.route) for f in again] == [("no_activity", COMMUNITY)]


def test_a_persons_outcome_on_the_month_long_finding_teaches_no_routine_silence() -> None:
    m = _trained()
    first = next(f for f in _days(m, 21, 1, used=()) if not f.resolved)
    m.learn_outcome("no_activity", "false_alarm", first.since, first.ts)
    month = next(f for f in _days(m, 22, 32, used=()) if not f.resolved)
    taught = m.quiet_q
    m.learn_outcome(month.kind, "ok", month.since, month.ts)  # the plumber found the flat empty
    assert m.quiet_q == taught  # a month is no silence length to learn for that start hour


def test_a_day_under_the_safety_nets_litres_is_reported_once_by_the_net_not_again_as_low_usage() -> None:
    m = _trained()
    found: list[Finding] = []
    for k in range(42):  # a 1 L tick now and then (no silence long enough for this elder), 5 L in all
        t = 21 * DAY + k * SLOT
        found += m.update(Interval("m1", t, t + SLOT, 1.0 if k in (14, 20, 26, 32, 38) else 0.0, "ok", 0))
    # Readings lost from 21:00 to 00:30: one interval closes the day and fills the net's 24 h window at once.
    found += m.update(Interval("m1", 21 * DAY + 42 * SLOT, 22 * DAY + SLOT, 0.0, "ok", 0))
    raised = [(f.kind, f.basis) for f in found if not f.resolved]
    # Before: low_usage ("5 L yesterday, below the daily minimum") and the net's no_activity on the same reading.
    assert raised == [("no_activity", "rule")]


def test_a_low_day_above_the_safety_nets_litres_is_still_reported() -> None:
    m = _trained()
    low = [f for f in _days(m, 21, 2, litres=2.5) if not f.resolved]  # 30 L in a day that usually takes 144 L
    assert [f.kind for f in low] == ["low_usage"]


def test_no_maintenance_finding_while_a_declared_absence_says_the_home_is_empty() -> None:
    m = _trained()
    first = next(f for f in _days(m, 21, 1, used=()) if not f.resolved)
    m.learn_outcome("no_activity", "false_alarm", first.since, first.ts)
    m.set_away([(40 * DAY, 60 * DAY)])  # the family reports a stay away after the visit
    assert [f for f in _days(m, 22, 37, used=()) if not f.resolved] == []  # to day 59: nothing
    later = [f for f in _days(m, 59, 2, used=()) if not f.resolved]  # the absence is over and the home still silent
    assert [(f.kind, f.route) for f in later] == [("no_activity", MAINTENANCE)]


def _slots(m: MeterMonitor, first: int, n: int, litres: dict[int, float]) -> list[Finding]:
    """``n`` half-hour slots from slot ``first`` (counted from day 0), ``litres`` by slot; every finding."""
    found: list[Finding] = []
    for k in range(first, first + n):
        t = k * SLOT
        found += m.update(Interval(m.meter_id, t, t + SLOT, litres.get(k, 0.0), "ok", 0))
    return found


def _flow_then_silence(outcome: str) -> tuple[MeterMonitor, Finding]:
    """A trained elder runs a tap hard from 17:00 to 18:00 (a flow alert), then the home is silent; a visit at
    18:30 records ``outcome`` about the flow. Returns the monitor and the flow alert."""
    m = _trained()
    day = 21 * 48
    used = {day + k: 12.0 for k in ROUTINE if k < 34} | {day + 34: 300.0, day + 35: 300.0}
    found = [f for f in _slots(m, day, 37, used) if not f.resolved]
    assert [(f.kind, f.route) for f in found] == [("continuous_flow", COMMUNITY)]
    m.learn_outcome(found[0].kind, outcome, found[0].since, found[0].ts, 0, found[0].details["lpm"])
    return m, found[0]


@pytest.mark.parametrize("outcome", ["ok", "false_alarm"])
def test_a_benign_visit_about_water_leaves_the_silence_to_be_judged_so_a_fall_after_it_is_found(outcome: str) -> None:
    # The water stopped at 18:00; at 18:30 the visitor found no one in danger (she had just used water). She
    # falls after the visit; no water is used again. Excusing that silence, as false_alarm after a silence alert
    # does, would call no one (measured: the simulator lost a fall that way; "One call per absence (session 9)").
    m, _ = _flow_then_silence(outcome)
    assert not m._excused()
    raised = [f for f in _slots(m, 21 * 48 + 37, 2 * 48, {}) if not f.resolved]
    assert [(f.kind, f.route) for f in raised] == [("no_activity", COMMUNITY)]
    assert raised[0].since == 21 * DAY + 36 * SLOT  # judged from her last use, as any silence


def test_away_after_a_visit_about_water_makes_the_silence_an_absence() -> None:
    m, _ = _flow_then_silence("away")
    assert m.sil_away == 21 * DAY + 36 * SLOT  # since the water stopped
    assert [f for f in _slots(m, 21 * 48 + 37, 2 * 48, {}) if not f.resolved] == []  # before: no_activity
    _days(m, 23, 1)  # back home
    assert m.sil_away is None


def test_a_person_who_saw_the_elder_well_restarts_the_silence_so_a_fall_after_the_visit_is_found() -> None:
    m = _trained()
    first = [f for f in _days(m, 21, 1, used=()) if not f.resolved]
    assert [(f.kind, f.route) for f in first] == [("no_activity", COMMUNITY)]
    visit = first[0].ts + 3600.0
    _slots(m, int(first[0].ts // SLOT), 2, {})  # up to the visit
    m.learn_outcome("no_activity", "ok", first[0].since, first[0].ts)  # she was seen, well, at home
    assert m.sil_start == visit and not m._excused()
    # She falls right after the visit and no water is used again.
    raised = [f for f in _slots(m, int(visit // SLOT), 2 * 48, {}) if not f.resolved]
    # Before: "ok" excused the rest of the silence like "false_alarm": the cadre was never called again.
    assert [(f.kind, f.route) for f in raised] == [("no_activity", COMMUNITY)]
    assert raised[0].since == visit and raised[0].ts - visit <= 36 * 3600


def test_a_second_ok_in_the_same_silence_excuses_it_a_home_left_calls_no_cadre_again() -> None:
    m = _trained()
    first = next(f for f in _days(m, 21, 1, used=()) if not f.resolved)
    m.learn_outcome("no_activity", "ok", first.since, first.ts)  # "she is fine" (phoned at her son's, say)
    second = next(f for f in _days(m, 22, 2, used=()) if not f.resolved)  # the home stays silent: one more call
    assert (second.kind, second.route) == ("no_activity", COMMUNITY)
    m.learn_outcome("no_activity", "ok", second.since, second.ts)
    raised = [f for f in _days(m, 24, 40, used=()) if not f.resolved]
    # Not a call every half day of her stay: the second benign visit excuses the silence, a month of it is
    # maintenance's, as after false_alarm.
    assert [(f.kind, f.route) for f in raised] == [("no_activity", MAINTENANCE)]


def test_away_recorded_days_later_for_a_water_alert_does_not_excuse_the_silence_of_today() -> None:
    """A cadre records on a water case the data closed days ago (within the outcome window) that the elder was away
    then; she has been back and using water since. Her silence today, a fall, must still call someone."""
    m = _trained()
    day = 21 * 48
    used = {day + k: 12.0 for k in ROUTINE} | {day + 34: 300.0, day + 35: 300.0}  # a tap run hard at 17:00-18:00
    flow = [f for f in _slots(m, day, 48, used) if not f.resolved]
    assert [(f.kind, f.route) for f in flow] == [("continuous_flow", COMMUNITY)]
    assert [f for f in _days(m, 22, 3) if not f.resolved] == []  # back to her routine for three days
    today = 25 * 48
    assert [f for f in _slots(m, today, 15, {today + 13: 12.0, today + 14: 12.0}) if not f.resolved] == []
    # 07:30 on day 25: the first day's visit recorded now, "away" (she was at her daughter's that evening).
    m.learn_outcome(flow[0].kind, "away", flow[0].since, flow[0].ts, 0, flow[0].details["lpm"])
    raised = [f for f in _slots(m, today + 15, 2 * 48, {}) if not f.resolved]  # she fell after her 07:00 wash
    assert [(f.kind, f.route) for f in raised] == [("no_activity", COMMUNITY)]
    assert raised[0].since == 25 * DAY + 15 * SLOT
