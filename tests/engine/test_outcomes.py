"""The closed loop: people's outcomes teach the elder's detectors, through one code path for API, replay and eval."""

from __future__ import annotations

import codecs
import json
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import insert, select

import detect.monitor as monitor_module
from alerts.manager import AlertManager
from alerts.policy import for_maintenance
from core.domain import Finding, Interval
from detect import MeterMonitor
from engine.alerting import OpenAlerts
from engine.outcomes import Label, OutcomeSchedule, apply_outcome, load_labels, outcome_for
from engine.replay import Replayer
from ingest.register import RegisterTracker
from store.registry import meter_context
from store.schema import detector_state, meters
from tapwatch import evaluate as ev
from tapwatch.cli import main
from tests.api_fixtures import Api, api_env  # noqa: F401
from tests.helpers import checkpoint_from_before, evening_meter, longest_runs, silence_then_misreading

DAY, SLOT = 86400.0, 1800.0
#: Half-hour slots with use: rising at 06:30, meals, evening; last use at 21:00-21:30.
ROUTINE = (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42)


def _day(m: MeterMonitor, d: int, quiet_from: int = 48, litres: float = 12.0) -> list[Finding]:
    """One day of the routine; no water from slot ``quiet_from`` on. Returns the alerts raised."""
    found: list[Finding] = []
    for k in range(48):
        t = d * DAY + k * SLOT
        u = litres if k in ROUTINE and k < quiet_from else 0.0
        found += m.update(Interval(m.meter_id, t, t + SLOT, u, "ok", 0))
    return [f for f in found if not f.resolved]


def _trained(days: int = 21) -> MeterMonitor:
    m = MeterMonitor("m1")
    for d in range(days):
        assert _day(m, d) == []
    return m


def _silence_alert(m: MeterMonitor, d: int) -> Finding:
    found = [f for f in _day(m, d, quiet_from=0) if f.kind == "no_activity"]
    assert len(found) == 1  # one alert per silence
    return found[0]


def test_a_benign_silence_alerts_later_next_time_but_a_long_one_still_alerts() -> None:
    m = _trained()
    first = _silence_alert(m, 21)
    first_h = (first.ts - first.since) / 3600  # type: ignore[operator]
    m.learn_outcome("no_activity", "false_alarm", first.since, first.ts)
    assert not m.na_open
    assert _day(m, 22) == []  # back to the routine (the rest of the silence raised nothing)
    again = _silence_alert(m, 23)  # the same pattern: quieter now, yet a day-long silence is still caught
    again_h = (again.ts - again.since) / 3600  # type: ignore[operator]
    assert first_h < again_h <= first_h * monitor_module.QUIET_MAX_FACTOR + 0.5


def test_a_pattern_that_keeps_being_benign_is_bounded() -> None:
    m = _trained()
    model_h = m.silence.alert_hours(21)
    for d in range(21, 41, 2):
        alert = _silence_alert(m, d)
        m.learn_outcome("no_activity", "ok", alert.since, alert.ts)
        _day(m, d + 1)
    # Never past the bound on the model's own length (which the silences themselves also moved).
    m.silence.refresh(m.thresholds.sensitivity)
    assert m._quiet_hours(21) <= m.silence.alert_hours(21) * monitor_module.QUIET_MAX_FACTOR + 1e-9
    assert m._quiet_hours(21) > model_h


def test_a_confirmed_incident_is_never_learned_and_its_silence_raises_nothing_more() -> None:
    m = _trained()
    alert = _silence_alert(m, 21)
    learned = m.silence.n_learned
    m.learn_outcome("no_activity", "needed_help", alert.since, alert.ts)
    assert m.quiet_q == b""  # nothing learned as routine
    assert [f.kind for f in _day(m, 22, quiet_from=0)] == []  # taken to hospital: the empty home is no new case
    assert m.silence.n_learned == learned
    assert _day(m, 23) == []  # she is back: the next silence is judged afresh
    assert [f.kind for f in _day(m, 24, quiet_from=0)] == ["no_activity"]


def _slots(m: MeterMonitor, d: int, slots: range, used: tuple[int, ...] = ROUTINE) -> list[Finding]:
    found: list[Finding] = []
    for k in slots:
        t = d * DAY + k * SLOT
        found += m.update(Interval(m.meter_id, t, t + SLOT, 12.0 if k in used else 0.0, "ok", 0))
    return [f for f in found if not f.resolved]


def test_away_after_the_fact_is_an_absence_not_a_routine_silence() -> None:
    taught, plain = _trained(), _trained()
    for m in (taught, plain):
        alerts = _slots(m, 21, range(0, 30), used=())  # silent from 21:30 until 15:00 the next day
        assert [f.kind for f in alerts] == ["no_activity"]
    taught.learn_outcome("no_activity", "away", alerts[0].since, alerts[0].ts)
    before = taught.silence.n_learned, plain.silence.n_learned
    for m in (taught, plain):
        assert _slots(m, 21, range(30, 31), used=(30,)) == []  # back home at 15:00
    assert plain.silence.n_learned == before[1] + 1  # without the outcome, the 17.5 h silence is learned
    assert taught.silence.n_learned == before[0]  # an absence is not the routine
    assert taught.sil_away is None


def test_after_a_resolution_the_next_silence_is_judged_afresh() -> None:
    m = _trained()
    alert = _silence_alert(m, 21)
    m.learn_outcome("no_activity", "false_alarm", alert.since, alert.ts)
    found = _day(m, 22, quiet_from=16)  # she rose and used water, then stayed silent from 08:00
    late = [f for f in found if f.kind == "no_activity"]
    assert len(late) == 1 and late[0].since == pytest.approx(22 * DAY + 15 * SLOT)


def _run(m: MeterMonitor, start: float, hours: float, lpm: float) -> list[Finding]:
    found: list[Finding] = []
    for k in range(int(hours * 2)):
        t = start + k * SLOT
        found += m.update(Interval("m1", t, t + SLOT, lpm * 30.0, "ok", 0))
    return [f for f in found if not f.resolved and f.kind == "continuous_flow"]


def test_a_slow_leak_goes_to_maintenance_and_once_reported_is_not_raised_again_until_it_stops() -> None:
    m = evening_meter()
    first = _run(m, 20 * DAY, 6, 0.5)
    assert [f.route for f in first] == ["maintenance"]
    apply_outcome(m, first[0], "device_fault")
    assert _run(m, 20 * DAY + 6 * 3600, 72, 0.5) == []  # three more nights of the same leak: nothing new
    _run(m, 23 * DAY + 6 * 3600, 2, 0.0)  # fixed: the flow stopped
    assert [f.kind for f in _run(m, 24 * DAY, 8, 0.5)] == ["continuous_flow"]  # a new leak is a new case


def test_a_benign_run_alerts_again_only_well_past_it_but_a_tap_on_top_at_once() -> None:
    m = evening_meter()
    first = _run(m, 20 * DAY + 2 * 3600, 4, 3.0)  # a tap at 3 L/min in the night: the cadre's route
    assert [f.route for f in first] == ["community"]
    run_h = (first[0].ts - first[0].since) / 3600  # type: ignore[operator]
    apply_outcome(m, first[0], "false_alarm")
    excused = max(2 * run_h, run_h + monitor_module.REFLOW_MIN_H)
    assert _run(m, 20 * DAY + 6 * 3600, excused - 4.5, 3.0) == []  # the same run goes on: quiet
    more = _run(m, 20 * DAY + (1.5 + excused) * 3600, 2, 3.0)  # and on, well past what the visit saw
    assert len(more) == 1 and (more[0].ts - more[0].since) / 3600 > excused  # type: ignore[operator]


def test_a_tap_opened_on_top_of_a_run_a_person_resolved_is_raised_at_once() -> None:
    m = evening_meter()
    first = _run(m, 20 * DAY + 2 * 3600, 4, 3.0)
    apply_outcome(m, first[0], "false_alarm")
    assert _run(m, 20 * DAY + 6 * 3600, 2, 3.0) == []
    tap = _run(m, 20 * DAY + 8 * 3600, 2, 8.0)  # a tap opened on top: new, the cadre's at once
    assert [f.route for f in tap] == ["community"]


def test_outcomes_keep_the_state_compact() -> None:
    m = _trained()
    alert = _silence_alert(m, 21)
    apply_outcome(m, alert, "false_alarm")
    assert len(pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)) <= 4096
    assert pickle.loads(pickle.dumps(m)).quiet_q == m.quiet_q


def test_unknown_outcomes_are_refused_and_system_outcomes_teach_nothing() -> None:
    m = MeterMonitor("m1")
    with pytest.raises(ValueError, match="unknown outcome"):
        m.learn_outcome("no_activity", "fine", 0.0, 1.0)
    alert = {"kind": "no_activity", "since_ts": 0.0, "data_ts": 3600.0}
    assert apply_outcome(m, alert, "use_resumed") is False
    assert apply_outcome(m, alert, "ok") is True


def test_the_contract_outcome_is_needed_help_only_within_an_incident_plus_two_hours() -> None:
    fall = [Label("m1", "fall", 1000.0, 5000.0)]
    assert outcome_for(fall, 1000.0) == "needed_help"
    assert outcome_for(fall, 5000.0 + 7200.0) == "needed_help"
    assert outcome_for(fall, 5000.0 + 7201.0) == "false_alarm"
    assert outcome_for(fall, 999.0) == "false_alarm"
    assert outcome_for([Label("m1", "death", 1000.0, None)], 1000.0 + 70 * 3600) == "needed_help"


def test_labels_missing_category_are_incidents_and_events_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    rows = [
        {"meter_id": "m1", "kind": "fall", "start": "2026-01-05T08:00:00+08:00", "end": "2026-01-07T08:00:00+08:00"},
        {"meter_id": "m1", "kind": "away", "category": "event", "start": 0, "end": 10},
        {"meter_id": "m2", "kind": "death", "category": "incident", "start": 5, "end": None},
    ]
    path.write_text(json.dumps(rows))
    labels = load_labels(path)
    assert [(x.meter_id, x.kind, x.end) for x in labels][1:] == [("m2", "death", None)]
    assert labels[0].end is not None and labels[0].end - labels[0].start == 48 * 3600
    path.write_text(json.dumps([{"meter_id": "m1"}]))
    with pytest.raises(ValueError, match="needs meter_id, kind and start"):
        load_labels(path)


def test_a_label_time_without_a_utc_offset_is_refused_naming_the_label(tmp_path: Path) -> None:
    """Read in the machine's own zone, one file gave other outcomes on a server in UTC than in Shanghai."""
    path = tmp_path / "labels.json"
    fall = {"meter_id": "m1", "kind": "fall", "start": "2026-01-05T08:00:00+08:00", "end": "2026-01-05T20:00:00"}
    path.write_text(json.dumps([fall]))
    with pytest.raises(ValueError, match=r"label 0: '2026-01-05T20:00:00' has no UTC offset"):
        load_labels(path)
    path.write_text(json.dumps([{**fall, "end": "tomorrow"}]))
    with pytest.raises(ValueError, match="label 0: Invalid isoformat string"):
        load_labels(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[{bad", "labels.json: not JSON: "),  # which file: the readings CSV or the labels?
        (
            '[{"meter_id": "m1", "kind": "fall", "start": 1' + "0" * 400 + "}]",
            "label 0: a number of 401 digits is not a time",
        ),
        (
            '[{"meter_id": "m1", "kind": "fall", "start": 0}, {"meter_id": "m1", "kind": "fall", "start": NaN}]',
            "label 1: nan is not a time",
        ),
        ('[{"meter_id": "m1", "kind": "fall", "start": 0, "end": Infinity}]', "labels.json: label 0: inf is not"),
        (  # start and end swapped: no alert falls in it, so the fall's alerts were taught as false alarms
            '[{"meter_id": "m1", "kind": "fall", "start": "2026-01-07T08:00:00+08:00", '
            '"end": "2026-01-05T08:00:00+08:00"}]',
            "labels.json: label 0: it ends (2026-01-05T08:00:00+08:00) before it starts",
        ),
    ],
    ids=["not-json", "huge-number", "nan", "infinity", "end-before-start"],
)
def test_a_bad_labels_file_is_a_clear_error_naming_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """Never a traceback, never a label no alert can fall in (NaN) that quietly makes every visit false_alarm."""
    (tmp_path / "readings.csv").write_text("meter_id,ts,total_l\nm1,2026-01-05T08:00:00+08:00,10\n")
    (tmp_path / "labels.json").write_text(text)
    args = ["replay", str(tmp_path / "readings.csv"), "--outcomes", str(tmp_path / "labels.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("tapwatch: error: ") and expected in err, err


#: A labels file as Windows saves it: PowerShell's `> file` and Notepad's "Unicode" write UTF-16 behind a byte
#: order mark; Notepad's "UTF-8 with BOM" and UTF-32 are JSON's encodings too.
WINDOWS_ENCODINGS = {
    "utf-16-le-bom": lambda text: text.encode("utf-16"),  # Python's utf-16: the mark, then little-endian
    "utf-16-be-bom": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
    "utf-8-bom": lambda text: text.encode("utf-8-sig"),
    "utf-32": lambda text: text.encode("utf-32"),
}


@pytest.mark.parametrize("encoding", sorted(WINDOWS_ENCODINGS))
def test_a_labels_file_windows_saved_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str) -> None:
    """`replay --outcomes` read the labels as UTF-8 only: a file saved as UTF-16 (PowerShell's `>`) was refused
    with Python's codec error. It is read as `tapwatch register` reads elders.json."""
    rows = [{"meter_id": "m1", "kind": "fall", "start": 0, "end": 10, "details": {"note": "卫生间跌倒"}}]
    (tmp_path / "labels.json").write_bytes(WINDOWS_ENCODINGS[encoding](json.dumps(rows, ensure_ascii=False)))
    (tmp_path / "readings.csv").write_text("meter_id,ts,total_l\nm1,2026-01-05T08:00:00+08:00,10\n")
    assert [(x.meter_id, x.kind, x.end) for x in load_labels(tmp_path / "labels.json")] == [("m1", "fall", 10.0)]
    args = ["replay", str(tmp_path / "readings.csv"), "--outcomes", str(tmp_path / "labels.json")]
    assert main(args) == 0, capsys.readouterr().err


def test_a_labels_file_in_another_encoding_is_one_line_saying_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A labels file in GBK ("ANSI" on a Chinese Windows) gets the line `tapwatch register` gives such a file."""
    rows = [{"meter_id": "m1", "kind": "fall", "start": 0, "end": 10, "details": {"note": "卫生间跌倒"}}]
    (tmp_path / "labels.json").write_bytes(json.dumps(rows, ensure_ascii=False).encode("gbk"))
    (tmp_path / "readings.csv").write_text("meter_id,ts,total_l\nm1,2026-01-05T08:00:00+08:00,10\n")
    args = ["replay", str(tmp_path / "readings.csv"), "--outcomes", str(tmp_path / "labels.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tapwatch: error: {tmp_path / 'labels.json'}: not UTF-8 text (byte 0x"), err
    assert "save it as UTF-8" in err and "codec" not in err and err.count("\n") == 1, err


def _simulated(tmp_path: Path) -> Path:
    # Ten elders: since the learning week's safety net waits 16 h (session 9), six of them gave no false call
    # after which what a visit taught could change a later alert.
    assert main(["simulate", "--elders", "10", "--days", "40", "--seed", "3", "--out", str(tmp_path)]) == 0
    return tmp_path


def test_replay_with_outcomes_resolves_alerts_as_cadres_and_prints_routes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = _simulated(tmp_path)
    capsys.readouterr()
    assert main(["replay", str(sim / "readings.csv")]) == 0
    plain = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    args = ["replay", str(sim / "readings.csv"), "--outcomes", str(sim / "labels.json"), "--visit-delay-h", "1"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    taught = [json.loads(line) for line in out.splitlines()]
    assert all(a["route"] in ("community", "maintenance") for a in plain + taught)
    assert {a["route"] for a in taught if a["kind"] in ("meter_offline", "meter_fault")} == {"maintenance"}
    assert "outcomes applied (visit after 1 h): false_alarm" in err
    assert taught != plain  # the outcomes changed what was raised afterwards


def test_the_replayer_closes_an_alert_a_cadre_resolved() -> None:
    schedule = OutcomeSchedule([], delay_h=1.0)
    replayer = Replayer(outcomes=schedule)
    rows = []
    total = 0.0
    for d in range(25):
        for k in range(48):
            t = 1_763_913_600.0 + d * DAY + k * SLOT
            if d < 21 and k in ROUTINE:
                total += 12.0
            rows.append(("m1", t + SLOT, total))
    raised = [f for f in replayer.run(rows) if not f.resolved]
    assert [f.kind for f in raised] == ["no_activity"]  # the absence after the visit raised nothing more
    assert schedule.applied == {"false_alarm": 1}
    assert replayer.alerts.open == set()  # resolved by the cadre


def test_eval_scores_tapwatch_with_and_without_outcomes() -> None:
    data = ev.simulated(6, 40, 3)
    plain = ev.score("tapwatch", ev.tapwatch_factory(ev.Thresholds()), data)
    taught = ev.score(ev.OUTCOMES_NAME, ev.tapwatch_factory(ev.Thresholds()), data, 1.0)
    assert plain.outcomes == {} and sum(taught.outcomes.values()) > 0
    text = ev.table([plain, taught], ev.INCIDENT_ORDER)
    assert ev.OUTCOMES_NAME in text and "false maintenance /elder-month" in text


def test_a_visit_past_the_window_after_the_data_closed_the_alert_teaches_nothing_in_eval_or_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ev.simulated(6, 40, 3)
    factory = ev.tapwatch_factory(ev.Thresholds())
    # Visits three days after each alert: the data closed every one by then.
    within = ev.score(ev.OUTCOMES_NAME, factory, data, 72.0, window_days=14.0)
    refused = ev.score(ev.OUTCOMES_NAME, factory, data, 72.0, window_days=0.0)
    assert sum(within.outcomes.values()) > 0 and refused.outcomes == {}
    sim = _simulated(tmp_path)
    monkeypatch.setenv("TAPWATCH_OUTCOME_WINDOW_DAYS", "0")
    capsys.readouterr()
    args = ["replay", str(sim / "readings.csv"), "--outcomes", str(sim / "labels.json"), "--visit-delay-h", "72"]
    assert main(args) == 0
    assert "outcomes too late to teach (closed by the data over 0 days before): false_alarm" in capsys.readouterr().err


# ---------------------------------------------------------------------------- live: the resolve route
def _checkpoint(engine: Any, monitor: MeterMonitor) -> None:
    blob = pickle.dumps((RegisterTracker(monitor.meter_id).state(), monitor), protocol=pickle.HIGHEST_PROTOCOL)
    with engine.begin() as conn:
        conn.execute(insert(detector_state).values(meter_id=monitor.meter_id, state=blob, updated_at=0.0))


def _stored(engine: Any, meter_id: str) -> tuple[MeterMonitor, int]:
    with engine.begin() as conn:
        blob = conn.execute(select(detector_state.c.state).where(detector_state.c.meter_id == meter_id)).scalar_one()
        version = conn.execute(select(meters.c.state_version).where(meters.c.meter_id == meter_id)).scalar_one()
    return pickle.loads(blob)[1], int(version)


@pytest.mark.parametrize("outcome", ["false_alarm", "needed_help"])
def test_resolving_through_the_api_teaches_the_meter_in_the_same_transaction(api: Api, outcome: str) -> None:
    monitor = MeterMonitor("MA1")
    for d in range(21):
        _day(monitor, d)
    finding = _silence_alert(monitor, 21)
    _checkpoint(api.engine, monitor)
    before = _stored(api.engine, "MA1")[1]
    with api.engine.begin() as conn:
        context = meter_context(conn, "MA1")
        assert context is not None
        alert_id = AlertManager().apply(conn, context, finding, finding.ts)
    done = api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": outcome, "note": "visited"})
    assert done.status_code == 200, done.text
    taught, version = _stored(api.engine, "MA1")
    assert version == before + 1  # a worker holding the meter reloads it before its next batch
    assert not taught.na_open  # the episode ended with the case
    if outcome == "false_alarm":
        assert taught.quiet_q != b"" and taught.sil_excused > finding.ts
    else:
        assert taught.quiet_q == b"" and taught.sil_away == finding.since  # a confirmed incident is never learned


def test_a_tap_opened_on_top_of_a_reported_leak_is_still_raised() -> None:
    m = evening_meter()
    first = _run(m, 20 * DAY, 6, 0.5)
    apply_outcome(m, first[0], "device_fault")
    assert _run(m, 20 * DAY + 6 * 3600, 10, 0.5) == []
    tap = _run(m, 20 * DAY + 16 * 3600, 3, 8.0)  # someone left a tap open while the leak runs
    assert [(f.kind, f.route) for f in tap] == [("continuous_flow", "community")]


def test_a_checkpoint_from_before_the_closed_loop_still_loads() -> None:
    m = _trained()
    old = checkpoint_from_before(m, monitor_module._OUTCOME_SLOTS)
    loaded = MeterMonitor.__new__(MeterMonitor)
    loaded.__setstate__(old)
    assert loaded.quiet_q == b"" and loaded.sil_away is None and loaded.first_ts == m.first_ts
    assert [f.kind for f in _day(loaded, 21, quiet_from=0)] == ["no_activity"]  # judged by the learned routine


def test_the_day_of_a_resolved_run_that_still_runs_is_not_judged_high() -> None:
    m = evening_meter()
    first = _run(m, 20 * DAY + 2 * 3600, 4, 3.0)
    apply_outcome(m, first[0], "false_alarm")
    found: list[Finding] = []
    for k in range(12, 2 * 48 + 2):  # the same tap runs on through the next day and past midnight
        t = 20 * DAY + k * SLOT
        found += m.update(Interval("m1", t, t + SLOT, 90.0, "ok", 0))
    # Before session 8 the open episode kept the days it touched out of judging, the resolution did not: the
    # next day's 4,300 L raised high_usage, a second call about the water the visit had seen.
    assert "high_usage" not in [f.kind for f in found if not f.resolved]


def test_what_a_benign_outcome_taught_fades_as_the_silences_do() -> None:
    m = _trained()
    alert = _silence_alert(m, 21)
    m.learn_outcome("no_activity", "false_alarm", alert.since, alert.ts)
    taught = m.quiet_q
    hour = max(range(24), key=lambda h: taught[h])
    assert taught[hour] > 0
    for d in range(22, 22 + 90):  # a silence half-life of the usual routine
        _day(m, d)
    # Before session 8 it never faded: one benign afternoon lengthened that hour's alert for good.
    assert 0 < max(m.quiet_q or b"\0") <= taught[hour] // 2
    for d in range(112, 112 + 270):
        _day(m, d)
    assert m.quiet_q == b""  # gone: the hour alerts as the silence model alone says
    assert m.silence._alert[hour] == m.silence.alert_hours(hour)


def test_the_month_long_silence_after_a_benign_visit_is_a_maintenance_case_that_use_closes() -> None:
    m = _trained()
    first = _silence_alert(m, 21)
    m.learn_outcome("no_activity", "false_alarm", first.since, first.ts)
    book = OpenAlerts()
    found: list[Finding] = []
    for d in range(22, 54):  # a month empty (every finding: _day drops the resolved ones)
        for k in range(48):
            t = d * DAY + k * SLOT
            found += m.update(Interval("m1", t, t + SLOT, 0.0, "ok", 0))
    t = 54 * DAY + 14 * SLOT
    found += m.update(Interval("m1", t, t + SLOT, 12.0, "ok", 0))  # back: water used
    done = [(f.route, book.admit("E1", f)) for f in found if f.kind == "no_activity"]
    assert done == [("maintenance", "raised"), ("maintenance", "resolved")]  # never the cadres' case
    case = book.closed[("E1", "maintenance:m1")]
    assert for_maintenance({"kind": case["kind"], "details": {"route": case["finding"].route}})


@pytest.mark.parametrize("outcome", ["ok", "false_alarm", "away", "needed_help"])
def test_a_late_outcome_on_a_closed_silence_leaves_the_next_silences_alert_to_be_closed_by_the_data(
    outcome: str,
) -> None:
    """A cadre records, days later, what they found on a silence the data closed, while a new silence's case is
    open: that case must still close when water is used again (else it stays open, chasing a cadre for nothing)."""

    def clears(d: int, quiet_until: int) -> list[Finding]:
        found: list[Finding] = []
        for k in range(48):
            t = d * DAY + k * SLOT
            found += m.update(Interval("m1", t, t + SLOT, 12.0 if k in ROUTINE and k >= quiet_until else 0.0, "ok", 0))
        return [f for f in found if f.kind == "no_activity" and f.resolved]

    m = _trained()
    old = _silence_alert(m, 21)
    assert clears(22, 0)  # water again: the data closed the old case
    _silence_alert(m, 23)  # a new silence, a new case, open
    assert apply_outcome(m, old, outcome, at=23 * DAY + 23 * 3600)  # the old visit recorded late
    assert clears(24, 20), "the open case of the new silence is never closed by the data"


@pytest.mark.parametrize("outcome", ["ok", "false_alarm", "needed_help"])
def test_a_late_outcome_on_a_closed_run_leaves_the_next_runs_alert_to_be_closed_by_the_data(outcome: str) -> None:
    """As for a silence: the outcome of a tap run the data closed, recorded while a later run's case is open."""

    def stops(start: float) -> list[Finding]:
        found: list[Finding] = []
        for k in range(4):
            t = start + k * SLOT
            found += m.update(Interval("m1", t, t + SLOT, 0.0, "ok", 0))
        return [f for f in found if f.kind == "continuous_flow" and f.resolved]

    m = evening_meter()
    old = _run(m, 20 * DAY + 2 * 3600, 4, 3.0)  # a tap at 3 L/min in the night: a case
    assert len(old) == 1 and stops(20 * DAY + 6 * 3600)  # it stopped: the data closed it
    assert len(_run(m, 21 * DAY + 2 * 3600, 4, 3.0)) == 1  # the next night again: a new case, open
    assert apply_outcome(m, old[0], outcome, at=21 * DAY + 5 * 3600)  # the first night's visit recorded late
    _run(m, 21 * DAY + 6 * 3600, 1, 3.0)
    assert stops(21 * DAY + 7 * 3600), "the open case of the later run is never closed by the data"


@pytest.mark.parametrize("outcome", ["needed_help", "hospital", "device_fault"])
def test_a_late_confirmed_outcome_on_a_closed_run_leaves_what_the_next_run_learns_to_it(outcome: str) -> None:
    """A tap run the data closed is confirmed (an incident, a fault) late, while a new run is under way, not yet
    raised: the confirmation is about the old run, and must not drop what the new one will learn when it stops."""
    evening = (20.0, 35.0, 25.0, 40.0, 30.0, 22.0)  # 18:00-21:00 every day, in bursts: runs of 3 h

    def learned_by_the_next_run(answered: str | None) -> np.ndarray:
        m = MeterMonitor("m1")
        for d in range(20):
            for k in range(48):
                t = d * DAY + k * SLOT
                m.update(Interval("m1", t, t + SLOT, evening[k - 36] if 36 <= k < 42 else 0.0, "ok", 0))
        old = _run(m, 20 * DAY + 2 * 3600, 4, 3.0)  # a tap at 3 L/min in the night: a case
        _run(m, 20 * DAY + 6 * 3600, 2, 0.0)  # it stopped: the data closed it
        before = longest_runs(m)
        assert _run(m, 20 * DAY + 18 * 3600, 2.5, 0.5) == []  # a steady trickle in the evening: not raised yet
        if answered is not None:
            assert apply_outcome(m, old[0], answered, at=20 * DAY + 20.5 * 3600)  # the night's visit, recorded late
        assert _run(m, 20 * DAY + 20.5 * 3600, 2, 0.0) == []  # the trickle stopped before its limit
        return longest_runs(m) - before

    unanswered = learned_by_the_next_run(None)
    assert unanswered.max() > 0.0  # the evening's run, stopped without an alert, is learned
    np.testing.assert_array_equal(learned_by_the_next_run(outcome), unanswered)


def _madrid_readings() -> list[tuple[float, float]]:
    """Half-hourly readings in Madrid of the routine from 1 October 2026; silent from 14:00 on Saturday 24th
    (the night the clocks go back) to Sunday's noon."""
    madrid = ZoneInfo("Europe/Madrid")
    t = datetime(2026, 10, 1, tzinfo=madrid).timestamp()
    quiet_from, quiet_to = (datetime(2026, 10, d, h, tzinfo=madrid).timestamp() for d, h in ((24, 14), (25, 12)))
    readings, total = [], 1000.0
    while t < datetime(2026, 10, 26, tzinfo=madrid).timestamp():
        local = datetime.fromtimestamp(t, UTC).astimezone(madrid)
        if local.hour * 2 + local.minute // 30 in ROUTINE and not quiet_from <= t < quiet_to:
            total += 12.0
        t += SLOT
        readings.append((t, total))
    return readings


def test_eval_teaches_a_visit_at_the_alerts_utc_offset_as_replay_does() -> None:
    readings = _madrid_readings()
    silent = list(Replayer(default_tz="Europe/Madrid").run(("m1", ts, v) for ts, v in readings))
    alert = next(f for f in silent if f.kind == "no_activity" and not f.resolved)
    back = datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp()  # 03:00 summer time is 02:00 winter time
    assert alert.ts < back
    delay_h = (back - alert.ts) / 3600.0 + 0.5  # the cadre comes after the clocks went back: one hour less
    replayer = Replayer(default_tz="Europe/Madrid", outcomes=OutcomeSchedule([], delay_h, 14.0))
    list(replayer.run(("m1", ts, v) for ts, v in readings))
    intervals, n = ev.intervals_from_readings(["m1"], ((0, ts, v) for ts, v in readings), "Europe/Madrid")
    monitors: list[MeterMonitor] = []

    def factory(meter_id: str, _xs: list[Interval], _truth: list[ev.Truth]) -> MeterMonitor:
        monitors.append(MeterMonitor(meter_id))
        return monitors[-1]

    taught = ev.score(ev.OUTCOMES_NAME, factory, ev.Dataset("dst", intervals, [], n), delay_h, 14.0)
    assert taught.outcomes == {"false_alarm": 1}
    replayed = replayer.meters["m1"].monitor
    assert replayed is not None and replayed.quiet_q
    assert monitors[0].quiet_q == replayed.quiet_q  # learned at the start hour an hour early before


def _one_reading_off() -> list[tuple[float, float]]:
    """(ts, total) of 36 days of the routine in UTC, the 10:00 reading of day 35 300 L too high (a misreading:
    the register goes back down after it, a burst case raised and withdrawn)."""
    total, readings = 5000.0, []
    for k in range(36 * 48):
        total += 12.0 if k % 48 in ROUTINE else 0.0
        readings.append((k * SLOT, total + 300.0 if k == 35 * 48 + 20 else total))
    return readings


def test_a_case_withdrawn_before_the_visit_gets_no_outcome_in_replay_or_eval() -> None:
    readings = _one_reading_off()
    rows = [("m1", ts, v) for ts, v in readings]
    plain = Replayer(default_tz="UTC")
    flow = [(f.ts % DAY / 3600, f.resolved) for f in plain.run(rows) if f.kind == "continuous_flow"]
    assert flow == [(10.0, False), (11.0, True)]  # raised, then withdrawn as a misreading
    schedule = OutcomeSchedule([], delay_h=1.5)  # the cadre would come at 11:30: the case was withdrawn at 11:00
    visited = Replayer(default_tz="UTC", outcomes=schedule)
    list(visited.run(rows))
    assert dict(schedule.applied) == {}  # was false_alarm: a benign burst learned for a reading nobody drew
    assert pickle.dumps(visited.meters["m1"].monitor) == pickle.dumps(plain.meters["m1"].monitor)
    intervals, n = ev.intervals_from_readings(["m1"], ((0, ts, v) for ts, v in readings), "UTC")
    scored = ev.score(ev.OUTCOMES_NAME, lambda m, _xs, _t: MeterMonitor(m), ev.Dataset("off", intervals, [], n), 1.5)
    assert scored.outcomes == {}


def test_a_misreading_withdrawn_from_a_silence_case_keeps_the_silences_visit_in_replay_and_eval() -> None:
    """The silence raised the case at 08:30 (a cadre is sent); the misreading joined it at 11:00 and cleared the
    silence, and was withdrawn at 12:00, closing the case. The cadre still goes, for the silence: only a case the
    misreading raised itself is one nobody visits."""
    readings = silence_then_misreading(ROUTINE)
    rows = [("m1", ts, v) for ts, v in readings]
    schedule = OutcomeSchedule([], delay_h=6.0)  # the cadre comes at 14:30
    list(Replayer(default_tz="UTC", outcomes=schedule).run(rows))
    assert dict(schedule.withdrawn) == {}  # was {'false_alarm': 1}: the silence's visit dropped with the misreading
    # The silence's visit, and the next silence's (the visit closed the case: the silence goes on, a new case).
    assert dict(schedule.applied) == {"false_alarm": 2}
    intervals, n = ev.intervals_from_readings(["m1"], ((0, ts, v) for ts, v in readings), "UTC")
    scored = ev.score(ev.OUTCOMES_NAME, lambda m, _xs, _t: MeterMonitor(m), ev.Dataset("off", intervals, [], n), 6.0)
    assert scored.outcomes == {"false_alarm": 2}


def test_a_visit_to_a_case_a_withdrawn_misreading_joined_teaches_the_silence_not_the_misreading() -> None:
    """The cadre's false_alarm for the silence's case taught both kinds the case held, the misreading's burst
    too: 300 L nobody drew became a benign burst at 11:00, which raises that hour's limit for a real tap left
    open. A withdrawn kind teaches nothing (its episode is marked withdrawn); the silence is still taught."""
    readings = silence_then_misreading(ROUTINE)
    rows = [("m1", ts, v) for ts, v in readings]
    without = Replayer(default_tz="UTC")
    list(without.run(rows))
    schedule = OutcomeSchedule([], delay_h=6.0)  # the cadre comes at 14:30
    visited = Replayer(default_tz="UTC", outcomes=schedule)
    list(visited.run(rows))
    assert dict(schedule.applied) == {"false_alarm": 2}
    taught, untaught = visited.meters["m1"].monitor, without.meters["m1"].monitor
    assert taught is not None and untaught is not None
    assert taught.flow.burst_q == untaught.flow.burst_q  # was b'...' : a lesson at 11:00 from the misreading
    assert pickle.dumps(taught) != pickle.dumps(untaught)  # the silence's lesson is still taught (excused, learned)


def test_label_times_in_epoch_milliseconds_are_read_as_milliseconds(tmp_path: Path) -> None:
    """A generator that writes times as JavaScript does (epoch milliseconds) had its labels read as seconds, in
    the year 48,000: no alert fell in any, every visit was taught false_alarm without a word."""
    path = tmp_path / "labels.json"
    start, end = 1_767_571_200, 1_767_744_000  # 2026-01-05 and 2026-01-07, 00:00 UTC
    rows = [
        {"meter_id": "m1", "kind": "fall", "start": start * 1000, "end": end * 1000},
        {"meter_id": "m2", "kind": "fall", "start": start, "end": end},
    ]
    path.write_text(json.dumps(rows))
    assert [(x.start, x.end) for x in load_labels(path)] == [(start, end), (start, end)]
    path.write_text(json.dumps([{"meter_id": "m1", "kind": "fall", "start": start * 10}]))
    with pytest.raises(ValueError, match=r"label 0: 17675712000 is not a time of the years 2000-2099"):
        load_labels(path)


@pytest.mark.parametrize("start", [True, False, [1_767_571_200], {"t": 1_767_571_200}])
def test_a_label_time_neither_number_nor_text_is_refused_naming_the_label(tmp_path: Path, start: Any) -> None:
    """``"start": true`` was read as 1 s after the epoch (a bool is an int in Python): a label no alert falls in,
    every visit taught false_alarm without a word. Only numbers and ISO 8601 text are times."""
    path = tmp_path / "labels.json"
    fine = {"meter_id": "m1", "kind": "fall", "start": 1_767_571_200}
    path.write_text(json.dumps([fine, {**fine, "start": start}]))
    with pytest.raises(ValueError, match=r"label 1: .* is not a time"):
        load_labels(path)
    path.write_text(json.dumps([{**fine, "end": start}]))
    with pytest.raises(ValueError, match=r"label 0: .* is not a time"):
        load_labels(path)


def test_labels_of_meters_the_readings_do_not_have_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels whose meter ids the readings write otherwise ('WM-1' against 'wm1') match no alert: every visit was
    taught false_alarm and the summary said nothing of it. The meters labelled but never read are named."""
    (tmp_path / "readings.csv").write_text("meter_id,ts,total_l\nwm1,2026-01-05T08:00:00+08:00,10\n")
    fall = {"kind": "fall", "start": "2026-01-05T08:00:00+08:00", "end": "2026-01-07T08:00:00+08:00"}
    labels = [{**fall, "meter_id": "WM-1"}, {**fall, "meter_id": "wm1"}, {**fall, "meter_id": "WM-2"}]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    args = ["replay", str(tmp_path / "readings.csv"), "--outcomes", str(tmp_path / "labels.json")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "labels of 2 meters with no reading in the file" in err and "WM-1, WM-2" in err, err
    (tmp_path / "labels.json").write_text(json.dumps(labels[1:2]))
    assert main(args) == 0
    assert "no reading in the file" not in capsys.readouterr().err


def test_a_label_category_in_another_case_is_still_an_incident(tmp_path: Path) -> None:
    """Another generator's 'Incident' (or ' incident ') was not 'incident': the label was skipped as a life event
    and every alert it explains was taught false_alarm, unsaid."""
    path = tmp_path / "labels.json"
    fall = {"meter_id": "m1", "kind": "fall", "start": 1_767_571_200, "end": 1_767_744_000}
    path.write_text(json.dumps([{**fall, "category": "Incident"}, {**fall, "category": " INCIDENT "}, {**fall}]))
    assert len(load_labels(path)) == 3
    path.write_text(json.dumps([{**fall, "category": "Event"}]))
    assert load_labels(path) == []


def test_labels_of_meters_never_read_are_named_each_in_a_few_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A label's meter id is any text the file gives (no reading can match one that is no meter id), and the list of
    meters labelled but never read printed it whole: a damaged file's 1 MB id was a 1 MB line, a terminal's control
    sequence (ESC) was sent to the terminal."""
    (tmp_path / "readings.csv").write_text("meter_id,ts,total_l\nwm1,2026-01-05T08:00:00+08:00,10\n")
    fall = {"kind": "fall", "start": "2026-01-05T08:00:00+08:00"}
    labels = [{**fall, "meter_id": "M" * 1_000_000}, {**fall, "meter_id": "\x1b[2J"}, {**fall, "meter_id": "WM-2"}]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    args = ["replay", str(tmp_path / "readings.csv"), "--outcomes", str(tmp_path / "labels.json")]
    assert main(args) == 0
    err = capsys.readouterr().err
    (named,) = [line for line in err.splitlines() if "with no reading in the file" in line]
    assert "labels of 3 meters" in named and "WM-2" in named and "MMMM" in named
    assert len(named) < 300 and "\x1b" not in err
