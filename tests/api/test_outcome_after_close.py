"""A person records what they found on a case the data already closed; live and replay learn the same from it.

The cadre often visits after the data closed the case (use resumed, cleared). ``POST /alerts/{id}/resolve``
takes their outcome, once, within ``TAPWATCH_OUTCOME_WINDOW_DAYS`` of the closing, and the meter learns from
it as from any resolve; replay and eval follow the same rule (``engine.outcomes.OutcomeSchedule``).
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from alerts.manager import AlertManager
from core.domain import WITHDRAWN, Finding
from core.settings import Settings
from detect import MeterMonitor, Thresholds
from engine.meterstate import MeterStates
from engine.outcomes import OUTCOME_WINDOW_DAYS, OutcomeSchedule
from engine.replay import Replayer
from store.registry import meter_context
from store.schema import alerts
from tests.api_fixtures import Api, api_env, raise_alert  # noqa: F401
from tests.helpers import ingest, silence_then_misreading

DAY, SLOT = 86400.0, 1800.0
#: Half-hour slots (Shanghai time) with 12 L of use: rising at 06:30, meals, evening; last use 21:00-21:30.
ROUTINE = (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42)
SILENT_DAYS = (21, 24)  # no water all day: each raises no_activity; use resumes the next morning
#: The visit comes a day after the alert: after the data closed it (use resumed at 06:30).
VISIT_DELAY_H = 24.0


def _readings(days: int = 25) -> list[tuple[float, float]]:
    """Half-hourly readings of one elder, days from a local midnight; they end before the second alert's visit."""
    start = (time.time() // DAY - days - 2) * DAY - 8 * 3600  # a Shanghai midnight
    out, total = [], 0.0
    for d in range(days):
        for k in range(48):
            if d not in SILENT_DAYS and k in ROUTINE:
                total += 12.0
            out.append((start + d * DAY + (k + 1) * SLOT, total))
    return out


def _replay(readings: list[tuple[float, float]], schedule: OutcomeSchedule | None) -> tuple[Replayer, list[Finding]]:
    replayer = Replayer(Thresholds(), default_tz="Asia/Shanghai", outcomes=schedule)
    raised = [f for f in replayer.run(("MA1", ts, total) for ts, total in readings) if not f.resolved]
    return replayer, raised


def _live_monitor(api: Api) -> MeterMonitor:
    """The elder's monitor as the store holds it, caught up from the stored readings."""
    with api.engine.begin() as conn:
        states = MeterStates("Asia/Shanghai")
        states.load(conn, ["MA1"], lambda _state, _findings: None)
        state = states.get("MA1")
        assert state is not None
        return state.monitor


def _silence_alerts(api: Api) -> list[dict[str, Any]]:
    with api.engine.begin() as conn:
        rows = conn.execute(
            select(alerts).where(alerts.c.meter_id == "MA1", alerts.c.kind == "no_activity").order_by(alerts.c.data_ts)
        ).all()
    return [dict(r._mapping) for r in rows]


def _live(api: Api, readings: list[tuple[float, float]], back_days: float = 0.0) -> tuple[int, list[dict[str, Any]]]:
    """Ingest through the pipeline; the cadre's visit to the first alert comes VISIT_DELAY_H after it (data time).

    ``back_days`` moves the closing that far into the past first (as if the visit came that much later).
    Returns the visit's status code and the elder's silence alerts at the end.
    """
    first_silence = SILENT_DAYS[0] * 48 + 48  # readings up to the morning after the first silent day
    ingest(api.engine, "MA1", readings[:first_silence])
    [alert] = _silence_alerts(api)
    visit = alert["data_ts"] + VISIT_DELAY_H * 3600
    ingest(api.engine, "MA1", [r for r in readings[first_silence:] if r[0] < visit])
    [alert] = _silence_alerts(api)
    assert (alert["state"], alert["outcome"]) == ("resolved", "use_resumed")  # the data closed it first
    if back_days:
        with api.engine.begin() as conn:
            conn.execute(
                update(alerts)
                .where(alerts.c.alert_id == alert["alert_id"])
                .values(resolved_at=alerts.c.resolved_at - back_days * DAY)
            )
    done = api.post("cadre_a", f"/alerts/{alert['alert_id']}/resolve", json={"outcome": "false_alarm", "note": "fine"})
    ingest(api.engine, "MA1", [r for r in readings[first_silence:] if r[0] >= visit])
    return done.status_code, _silence_alerts(api)


def test_an_outcome_after_the_data_closed_the_case_teaches_live_exactly_what_replay_learns(api: Api) -> None:
    readings = _readings()
    status, live = _live(api, readings)
    assert status == 200
    replayer, raised = _replay(readings, OutcomeSchedule([], VISIT_DELAY_H))
    assert replayer.outcomes is not None and replayer.outcomes.applied == {"false_alarm": 1}
    untaught, plain = _replay(readings, None)
    # The same alerts, the same times: the second silence alerts later than without the outcome.
    assert [round(a["data_ts"]) for a in live] == [round(f.ts) for f in raised if f.kind == "no_activity"]
    plain_ts = [f.ts for f in plain if f.kind == "no_activity"]
    assert len(live) == len(plain_ts) == 2 and live[1]["data_ts"] > plain_ts[1]
    # And the same state: what the monitor learned is byte for byte what replay learned.
    taught = pickle.dumps(replayer.meters["MA1"].monitor, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.dumps(_live_monitor(api), protocol=pickle.HIGHEST_PROTOCOL) == taught
    assert taught != pickle.dumps(untaught.meters["MA1"].monitor, protocol=pickle.HIGHEST_PROTOCOL)


def test_an_outcome_past_the_window_teaches_nothing_live_or_in_replay(api: Api) -> None:
    readings = _readings()
    status, live = _live(api, readings, back_days=OUTCOME_WINDOW_DAYS + 1)
    assert status == 409
    # Replay with a window shorter than the visit's 4.5 h after the closing: the visit is too late too.
    late = OutcomeSchedule([], VISIT_DELAY_H, window_days=1 / 24)
    replayer, raised = _replay(readings, late)
    assert late.applied == {} and late.expired == {"false_alarm": 1}
    untaught, plain = _replay(readings, None)
    assert [round(a["data_ts"]) for a in live] == [round(f.ts) for f in raised if f.kind == "no_activity"]
    assert [f.ts for f in raised] == [f.ts for f in plain]
    same = pickle.dumps(untaught.meters["MA1"].monitor, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.dumps(replayer.meters["MA1"].monitor, protocol=pickle.HIGHEST_PROTOCOL) == same
    assert pickle.dumps(_live_monitor(api), protocol=pickle.HIGHEST_PROTOCOL) == same


def _closed_by_data(api: Api, meter_id: str = "MA1", closed_at: float | None = None) -> str:
    """A silence alert the data closed (use resumed) at ``closed_at`` (wall time; default now)."""
    alert_id = raise_alert(api.engine, meter_id)
    now = time.time() if closed_at is None else closed_at
    with api.engine.begin() as conn:
        context = meter_context(conn, meter_id)
        assert context is not None
        back = Finding(meter_id, "no_activity", "high", now, "恢复用水", "use resumed", resolved=True)
        assert AlertManager().apply(conn, context, back, now) == alert_id
    return alert_id


def test_a_person_records_what_they_found_once_and_the_case_keeps_its_closing_time(api: Api) -> None:
    alert_id = _closed_by_data(api)
    closed = api.get("cadre_a", f"/alerts/{alert_id}").json()
    assert (closed["outcome"], closed["resolved_by"]) == ("use_resumed", "tapwatch")
    done = api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "ok", "note": "she was shopping"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["state"], body["outcome"], body["resolved_by"], body["note"]) == (
        "resolved",
        "ok",
        "cadre_a",
        "she was shopping",
    )
    assert body["resolved_at"] == closed["resolved_at"]  # closed when the data closed it
    events = api.get("cadre_a", f"/alerts/{alert_id}/events").json()["data"]
    assert [(e["type"], e["actor"]) for e in events][-2:] == [("resolved", "tapwatch"), ("outcome", "cadre_a")]
    assert events[-1]["data"]["outcome"] == "ok"
    again = api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "false_alarm"})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert "already resolved (ok, by cadre_a)" in again.json()["detail"]
    audit = api.get("admin", "/audit", params={"target": f"alert:{alert_id}", "sort": "at"}).json()["data"]
    assert [(e["action"], e["old"], e["new"]) for e in audit] == [
        ("alert.outcome", {"state": "resolved", "outcome": "use_resumed"}, {"state": "resolved", "outcome": "ok"})
    ]


def test_outside_the_window_the_outcome_is_refused_with_the_reason(api: Api) -> None:
    assert Settings().outcome_window_days == OUTCOME_WINDOW_DAYS  # live and replay take the same default
    window_s = Settings().outcome_window_days * DAY
    alert_id = _closed_by_data(api, closed_at=time.time() - window_s - 60)
    late = api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "ok"})
    assert late.status_code == 409 and late.headers["content-type"] == "application/problem+json"
    assert "too late to record an outcome" in late.json()["detail"]
    assert api.get("cadre_a", f"/alerts/{alert_id}").json()["outcome"] == "use_resumed"  # nothing changed
    assert api.get("admin", "/audit", params={"target": f"alert:{alert_id}"}).json()["count"] == 0
    just_in = _closed_by_data(api, closed_at=time.time() - window_s + 60)
    assert api.post("cadre_a", f"/alerts/{just_in}/resolve", json={"outcome": "ok"}).status_code == 200


def test_only_the_case_s_community_may_record_it(api: Api) -> None:
    alert_id = _closed_by_data(api)
    assert api.post("cadre_b", f"/alerts/{alert_id}/resolve", json={"outcome": "ok"}).status_code == 404
    assert api.post("op_a", f"/alerts/{alert_id}/resolve", json={"outcome": "ok"}).status_code == 403
    assert api.get("cadre_a", f"/alerts/{alert_id}").json()["outcome"] == "use_resumed"


@pytest.mark.parametrize("outcome", ["use_resumed", "cleared"])
def test_a_system_outcome_is_not_a_person_s(api: Api, outcome: str) -> None:
    alert_id = _closed_by_data(api)
    assert api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": outcome}).status_code == 422


def test_a_case_the_data_closes_while_the_cadre_submits_still_takes_her_outcome(api: Api) -> None:
    from alerts.cases import load_case
    from api.models import AlertResolve
    from api.routes.alerts import _resolve_or_record

    alert_id = raise_alert(api.engine, "MA1")
    with api.engine.begin() as conn:
        read = load_case(conn, alert_id)  # what the request read: still open
    assert read is not None and read["state"] == "open"
    now = time.time()
    with api.engine.begin() as conn:
        context = meter_context(conn, "MA1")
        assert context is not None
        back = Finding("MA1", "no_activity", "high", now, "恢复用水", "use resumed", resolved=True)
        assert AlertManager().apply(conn, context, back, now) == alert_id  # the data closes it meanwhile
    with api.engine.begin() as conn:
        body = AlertResolve(outcome="away", note="at her daughter's")
        action, before = _resolve_or_record(conn, AlertManager(), read, "cadre_a", body, 14 * DAY)
    assert (action, before["outcome"]) == ("alert.outcome", "use_resumed")
    stored = api.get("cadre_a", f"/alerts/{alert_id}").json()
    assert (stored["outcome"], stored["resolved_by"], stored["note"]) == ("away", "cadre_a", "at her daughter's")


def test_a_cadres_outcome_on_a_case_a_withdrawn_misreading_joined_teaches_no_burst_live(api: Api) -> None:
    """Live, as in replay: the silence raised the case, a reading 300 L off joined it and was withdrawn; the cadre's
    false_alarm teaches the silence, not a benign burst of water nobody drew."""
    base = (time.time() // DAY - 40) * DAY - 8 * 3600  # a Shanghai midnight 40 days ago
    readings = silence_then_misreading(ROUTINE, start=base)
    ingest(api.engine, "MA1", readings)
    [case] = _silence_alerts(api)  # the silence went on after the withdrawal: the case reopened, and holds both
    assert case["details"]["kinds"] == ["no_activity", "continuous_flow"]
    assert case["details"]["episodes"]["continuous_flow"]["withdrawn"]
    done = api.post("cadre_a", f"/alerts/{case['alert_id']}/resolve", json={"outcome": "false_alarm", "note": "ok"})
    assert done.status_code == 200
    untaught, _raised = _replay(readings, None)
    plain = untaught.meters["MA1"].monitor
    assert plain is not None
    live = _live_monitor(api)
    assert live.flow.burst_q == plain.flow.burst_q  # was a lesson at 11:00 for the misread 300 L
    assert pickle.dumps(live.silence) != pickle.dumps(plain.silence) or live.sil_excused != plain.sil_excused


def _withdrawn_burst(api: Api, at: float) -> str:
    """A case a burst raised at ``at`` (wall time) and the detector withdrew half an hour later: the register came
    back down, one reading had been misread (no water ran); the case closed as cleared."""
    burst = Finding("MA1", "continuous_flow", "high", at, "持续用水 300 升", "300 L running", since=at - 1800)
    details = {WITHDRAWN: "misread"}
    back = Finding("MA1", "continuous_flow", "high", at + 1800, "读数误读", "misread", details=details, resolved=True)
    with api.engine.begin() as conn:
        context = meter_context(conn, "MA1")
        assert context is not None
        alert_id = AlertManager().apply(conn, context, burst, at)
        assert alert_id is not None and AlertManager().apply(conn, context, back, at + 1800) == alert_id
    return alert_id


def test_a_visit_to_a_withdrawn_case_is_recorded_shown_as_withdrawn_and_eases_no_threshold(api: Api) -> None:
    """A burst called a cadre out and was withdrawn (a misread reading) before she came: what she found is kept
    (a visit is a fact, and she may have found the elder in need), the case says it was withdrawn, and her
    false_alarm, which teaches the detector nothing, did not count either towards easing the elder's leak
    threshold (GET /thresholds/false-alarms suggested doubling it: the meter misread, the threshold did not)."""
    now = time.time()
    withdrawn = [_withdrawn_burst(api, now - days * DAY) for days in (3, 2)]  # apart: no flapping case
    for alert_id in withdrawn:
        done = api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "false_alarm", "note": "没漏水"})
        assert done.status_code == 200, done.text
        body = done.json()
        assert (body["outcome"], body["resolved_by"], body["kinds_withdrawn"]) == (
            "false_alarm",
            "cadre_a",
            ["continuous_flow"],
        )
    assert api.get("admin", "/thresholds/false-alarms").json()["data"] == []
    # Two leak alerts that were not withdrawn, resolved false_alarm, still point at the threshold to ease.
    for days in (1.5, 1.0):
        alert_id = raise_alert(api.engine, "MA1", kind="continuous_flow", ts=now - days * DAY)
        assert api.get("cadre_a", f"/alerts/{alert_id}").json()["kinds_withdrawn"] == []
        assert api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "false_alarm"}).status_code == 200
    [entry] = api.get("admin", "/thresholds/false-alarms").json()["data"]
    assert (entry["elder_id"], entry["kind"], entry["count"]) == ("EA1", "continuous_flow", 2)
