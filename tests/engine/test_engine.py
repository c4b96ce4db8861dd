"""The engine's own rules: a meter's local time, and which findings raise or clear an alert."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.muting import muted_by
from core.domain import Finding
from detect import MeterMonitor
from engine.alerting import OpenAlerts
from engine.localtime import meter_zone, offsets
from engine.meter import MeterStep
from engine.outcomes import OutcomeSchedule
from engine.replay import Home, Replayer, make_visit, note_case
from ingest.register import RegisterTracker

#: Europe/Madrid leaves winter time at 2026-03-29 01:00 UTC.
SPRING = datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()


def test_local_time_follows_the_zone_across_a_dst_change_reading_by_reading() -> None:
    offset_at = offsets("Europe/Madrid")
    times = [SPRING - 1800, SPRING - 1, SPRING, SPRING + 1800]
    assert [offset_at(ts) for ts in times] == [3600, 3600, 7200, 7200]
    assert [offset_at(ts) for ts in reversed(times)] == [7200, 7200, 3600, 3600]  # the memo answers the same


def test_the_elder_zone_wins_then_the_setting_then_shanghai() -> None:
    assert meter_zone("Europe/Madrid", "UTC") == "Europe/Madrid"
    assert meter_zone("", "UTC") == meter_zone("Not/AZone", "UTC") == "UTC"
    assert meter_zone(None, "also wrong") == "Asia/Shanghai"


def test_a_meter_step_makes_intervals_in_its_zone() -> None:
    step = MeterStep(RegisterTracker("m1"), None, "Europe/Madrid")
    assert step.push(SPRING - 3600, 100.0).intervals == []
    before = step.push(SPRING - 1800, 110.0).intervals
    after = step.push(SPRING + 1800, 120.0).intervals
    assert [i.utc_offset_s for i in before + after] == [3600, 7200]  # an interval is placed by its closing reading
    assert step.push(SPRING, 110.0).status == "late"


def _finding(meter_id: str, kind: str, ts: float, resolved: bool = False) -> Finding:
    return Finding(meter_id, kind, "high", ts, "未用水", "no use", resolved=resolved)


def test_one_open_alert_per_elder_and_kind_whichever_meter_found_it() -> None:
    book = OpenAlerts()
    assert book.admit("E1", _finding("old", "no_activity", 10.0))
    assert not book.admit("E1", _finding("new", "no_activity", 20.0))  # the replacement meter: same elder
    assert book.admit("E2", _finding("other", "no_activity", 20.0))
    assert not book.admit("E1", _finding("old", "continuous_flow", 30.0, resolved=True))  # nothing open
    assert book.admit("E1", _finding("new", "no_activity", 40.0, resolved=True))  # closes the old meter's
    assert book.admit("E1", _finding("new", "no_activity", 50.0))


def test_snooze_mutes_all_but_device_kinds_and_away_mutes_absences() -> None:
    snooze, away = [(0.0, 100.0, "snooze")], [(0.0, 100.0, "away")]
    assert muted_by(_finding("m", "continuous_flow", 50.0), snooze) == "snooze"
    assert muted_by(_finding("m", "meter_fault", 50.0), snooze) is None
    assert muted_by(_finding("m", "no_activity", 50.0), away) == "away"
    assert muted_by(_finding("m", "continuous_flow", 50.0), away) is None
    assert muted_by(_finding("m", "no_activity", 100.0), snooze) is None  # the window ends before 100
    book = OpenAlerts()
    assert not book.admit("E1", _finding("m", "no_activity", 50.0), snooze)
    assert book.admit("E1", _finding("m", "no_activity", 150.0), snooze)


def test_replay_groups_alerts_per_elder_when_it_knows_the_homes() -> None:
    homes = {"old": Home("E1"), "new": Home("E1")}
    replayer = Replayer(homes=homes)
    raised = list(replayer._admitted([_finding("old", "no_activity", 1.0), _finding("new", "no_activity", 2.0)]))
    assert [f.meter_id for f in raised] == ["old"]
    alone = Replayer()  # no homes: each meter is its own elder
    assert len(list(alone._admitted([_finding("old", "no_activity", 1.0), _finding("new", "no_activity", 2.0)]))) == 2


def test_replay_cases_group_as_live_and_a_person_ends_the_grouping() -> None:
    day = 86400.0
    book = OpenAlerts()

    def admit(kind: str, ts: float, severity: str = "high", resolved: bool = False, **kw: object) -> str | None:
        return book.admit("E1", Finding("m", kind, severity, ts, "", "", resolved=resolved, **kw))  # type: ignore[arg-type]

    assert admit("routine_change", 0.0, "low") == "raised"
    assert admit("no_activity", 10.0) == "joined" and book.rose  # low -> high: re-notified live
    assert admit("no_activity", 20.0, resolved=True) == "cleared" and book.last["severity"] == "low"
    assert admit("no_activity", 30.0) == "joined" and book.rose  # a second fall rises again
    snooze = [(35.0, 45.0, "snooze")]
    assert book.admit("E1", Finding("m", "continuous_flow", "high", 40.0, "", ""), snooze) is None  # muted
    offline = Finding("m", "meter_offline", "low", day, "", "")
    assert book.admit("E1", offline) == "raised"  # its own case: never the community one
    assert admit("meter_offline", day + 3600, "low", resolved=True) == "resolved"
    assert admit("meter_offline", 2 * day, "low") == "reopened" and book.last["details"]["occurrences"] == 2
    assert book.resolve_by_person("E1", book.last["finding"])  # a person closes it: the grouping ends
    assert admit("meter_offline", 3 * day, "low") == "raised"
    assert admit("meter_offline", 3 * day + 3600, "low", resolved=True) == "resolved"
    assert admit("meter_offline", 11 * day, "low") == "raised"  # past the 7-day hold-down

    def leak(ts: float, resolved: bool = False) -> str | None:  # a slow leak on another meter: its maintenance case
        return book.admit(
            "E1", Finding("w", "continuous_flow", "low", ts, "", "", resolved=resolved, route="maintenance")
        )

    assert [leak(12 * day), leak(12 * day + 3600, True), leak(14 * day)] == ["raised", "resolved", "reopened"]
    assert book.cases_raised == 5 and book.open == {
        ("E1", "routine_change"),
        ("E1", "no_activity"),
        ("E1", "meter_offline"),
        ("E1", "continuous_flow"),
    }


def test_a_case_flapping_before_its_visit_keeps_its_one_visit() -> None:
    """Replay's visits follow the live rule: the reopened case is the same case, with the same one visit."""
    hour = 3600.0
    book, schedule = OpenAlerts(), OutcomeSchedule([], delay_h=1.0)

    def admit(ts: float, resolved: bool = False) -> str | None:
        finding = _finding("m", "continuous_flow", ts, resolved)
        action = book.admit("E1", finding)
        if action is not None:
            note_case(schedule, action, finding, book.last)
        return action

    assert [admit(0.0), admit(0.2 * hour, True), admit(0.5 * hour)] == ["raised", "resolved", "reopened"]
    (visit,) = schedule.due("m", 2 * hour)  # one visit, to an open case: the reopen has none of its own
    assert visit.closed_at is None and visit.case is book.last and book.last["details"]["occurrences"] == 2
    monitor = MeterMonitor("m")
    assert make_visit(book, "E1", visit, {"m": monitor}.get, lambda _ts: 0)
    assert not book.open  # the cadre closed it
    assert admit(2.5 * hour) == "raised"  # back 2.3 h after the data closed it, but a person judged it
    assert admit(3 * hour, True) == "resolved"
    (visit,) = schedule.due("m", 4 * hour)
    # A visit after the data closed it: the outcome is taken.
    make_visit(book, "E1", visit, {"m": monitor}.get, lambda _ts: 0)
    assert admit(5 * hour) == "raised"  # within the hold-down, but a person's outcome ended the grouping


def test_a_held_step_is_called_when_the_next_reading_releases_it() -> None:
    # A step steeper than any tap (40 L/min here) waits for the next reading: live, its call is raised then,
    # so replay and the backtest must not stamp it half an hour sooner than anyone could have been told.
    step = MeterStep(RegisterTracker("m"), MeterMonitor("m"), "Asia/Shanghai")
    t0, total = 1_780_000_000.0, 1000.0
    for k in range(480):  # ten days of a quiet routine: 5 L every hour and a half
        total += 5.0 if k % 3 == 0 else 0.0
        step.push(t0 + k * 1800, total)
    held = step.push(t0 + 480 * 1800, total + 1200.0)
    assert held.intervals == [] and held.findings == []
    released = step.push(t0 + 481 * 1800, total + 2400.0)
    assert [i.end - t0 for i in released.intervals] == [480 * 1800, 481 * 1800]
    flows = [f for f in released.findings if f.kind == "continuous_flow" and not f.resolved]
    assert flows, "a burst at 40 L/min is a call"
    assert {f.ts for f in released.findings} == {t0 + 481 * 1800}
    assert flows[0].since == t0 + 479 * 1800  # the condition still began where the held interval did


def test_a_step_read_for_its_findings_alone_finds_what_push_finds() -> None:
    # Replay's loop reads only what a reading found (``MeterStep.findings``, no Step record built): the same
    # findings as ``push``, stamps included, through a held step and a meter that reports late and glitches.
    pushed = MeterStep(RegisterTracker("m"), MeterMonitor("m"), "Asia/Shanghai")
    read = MeterStep(RegisterTracker("m"), MeterMonitor("m"), "Asia/Shanghai")
    t0, total = 1_780_000_000.0, 1000.0
    readings = []
    for k in range(480):  # ten days of a quiet routine, then a 40 L/min step held and released, a glitch, a gap
        total += 5.0 if k % 3 == 0 else 0.0
        readings.append((t0 + k * 1800, total))
    readings += [(t0 + 480 * 1800, total + 1200.0), (t0 + 481 * 1800, total + 2400.0)]
    readings += [(t0 + 482 * 1800, total + 250_000.0), (t0 + 483 * 1800, total + 2405.0), (t0 + 470 * 1800, total)]
    readings += [(t0 + 560 * 1800, total + 2410.0), (t0 + 561 * 1800, total + 2410.0)]
    expected = [pushed.push(ts, litres).findings for ts, litres in readings]
    assert any(len(found) > 1 for found in expected) and sum(map(len, expected)) > 3
    assert [read.findings(ts, litres) for ts, litres in readings] == expected
    bare = MeterStep(RegisterTracker("m"), None, "UTC")  # eval's steps: no monitor, nothing found
    assert [bare.findings(ts, litres) for ts, litres in readings] == [[] for _ in readings]


def test_a_use_read_in_minutes_before_the_meter_went_silent_is_judged_as_live_judged_it() -> None:
    # A meter read every minute sends two minutes of water at 20:00 and nothing more until 05:00 (its battery).
    # Live, the worker's tick judges those minutes an hour later, as they are: she used water, her silence
    # case closes at 20:03. Replay, a backtest, and a worker catching up on stored readings have no tick: they
    # joined those minutes to the nine hours after them and closed the case at 05:00, as if she had not.
    def steps() -> tuple[MeterStep, list[tuple[float, float]]]:
        step = MeterStep(RegisterTracker("m"), MeterMonitor("m"), "UTC")
        total, readings = 0.0, []
        for k in range(21 * 1440 + 20 * 60 + 3):  # 21 days of her routine, then a day silent from 06:35 to 20:00
            day, minute = divmod(k, 1440)
            used = minute // 30 in (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42) and minute % 30 < 5
            total += 2.0 if (used and (day < 21 or minute < 400)) or (day == 21 and minute > 1200) else 0.0
            readings.append((k * 60.0, total))
        return step, readings

    live, readings = steps()
    replay, _ = steps()
    found_live = [f for ts, litres in readings for f in live.push(ts, litres).findings]
    found_replay = [f for ts, litres in readings for f in replay.push(ts, litres).findings]
    last, total = readings[-1]
    assert live.monitor is not None
    found_live += live.monitor.tick(last + 3660.0)  # the worker's tick: the meter has sent nothing for an hour
    back = last + 9 * 3600.0
    found_live += live.push(back, total).findings
    found_replay += replay.push(back, total).findings

    def seen(found: list[Finding]) -> list[tuple[str, bool, float]]:
        return [(f.kind, f.resolved, round(f.ts / 3600.0 - 21 * 24, 2)) for f in found if f.ts >= 21 * 86400.0]

    assert ("no_activity", True, 20.03) in seen(found_live)  # she used water at 20:01-20:03
    assert seen(found_replay) == seen(found_live)
