"""Retention: what is past its time leaves the store; what is still needed, or not yet delivered, stays.

Readings and dead letters come through the real pipeline, alert jobs through
the real manager and outbox sender to a webhook receiver on loopback; the
purge runs on SQLite and on PostgreSQL, once from the CLI and on its own in a
running monitor.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest
from sqlalchemy import Engine, func, insert, select, text, update

from alerts.manager import AlertManager
from alerts.notifiers import WebhookNotifier
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.domain import Finding
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store import audit, open_store
from store.registry import meter_context, replace_meter, retire_elder, set_consent
from store.retention import DAY_S, PURGED_NAME, RetentionPolicy, purge, purge_personal_data
from store.schema import audit_log, away_windows, daily_notes, dead_letters, detector_state, elders, outbox, readings
from store.users import create_user, issue_token, list_tokens
from tests.conftest import wait_until
from tests.helpers import message, register, rows_passed_over

NOW = time.time() // 1800 * 1800
SECRET = b"platform-secret"


def _store_readings(engine: Engine, meter_id: str, days_ago: list[float]) -> None:
    pipeline = Pipeline(engine, AlertManager(), late_window_s=500 * DAY_S)
    points = [(NOW - d * DAY_S, 100.0 + k) for k, d in enumerate(sorted(days_ago, reverse=True))]
    assert pipeline.process([RawMessage("test", message(meter_id, points))]).readings_stored == len(points)


def _dead_letter(engine: Engine, days_ago: float) -> None:
    pipeline = Pipeline(engine, AlertManager(), clock=lambda: NOW - days_ago * DAY_S)
    assert pipeline.process([RawMessage("test", b"{not json")]).dead_letters == 1


def _alert_jobs(engine: Engine, meter_id: str, days_ago: float, platform_status: int, kind: str) -> None:
    """An alert raised ``days_ago``, its events tried then by a platform answering ``platform_status``."""
    at = NOW - days_ago * DAY_S
    with engine.begin() as conn:
        context = meter_context(conn, meter_id)
        assert context is not None
        finding = Finding(meter_id, kind, "high", at, "未用水", "no use")
        assert AlertManager(["webhook"]).apply(conn, context, finding, at)
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _e: (platform_status, {})).start()
    try:
        OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=lambda: at).run_once()
    finally:
        receiver.stop()


def _count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_purge_removes_only_what_is_past_retention(any_engine: Engine) -> None:
    engine = any_engine
    register(engine, "E1", "M1")
    register(engine, "E2", "M2", name="赵兰英")
    _store_readings(engine, "M1", [420, 410, 401, 399, 30, 1])
    _store_readings(engine, "M2", [405, 2])
    _dead_letter(engine, 100)
    _dead_letter(engine, 10)
    _alert_jobs(engine, "M1", 40, 204, "continuous_flow")  # delivered long ago: goes
    _alert_jobs(engine, "M2", 40, 400, "continuous_flow")  # refused long ago, parked: kept for an operator
    _alert_jobs(engine, "M1", 1, 204, "routine_change")  # delivered yesterday: stays
    delivered_long_ago = _count(engine, outbox, outbox.c.status == "sent", outbox.c.sent_at < NOW - 30 * DAY_S)
    delivered_lately = _count(engine, outbox, outbox.c.status == "sent", outbox.c.sent_at >= NOW - 30 * DAY_S)
    parked_before = _count(engine, outbox, outbox.c.status == "parked")
    assert delivered_long_ago >= 1 and delivered_lately >= 1 and parked_before >= 1

    purged = purge(engine, RetentionPolicy(readings_days=400, dead_letter_days=90, delivered_days=30), NOW, 1)
    assert (purged.readings, purged.dead_letters, purged.delivered) == (4, 1, delivered_long_ago)
    with engine.connect() as conn:
        left = sorted(conn.execute(select(readings.c.meter_id, readings.c.ts)).all())
    assert left == [("M1", NOW - d * DAY_S) for d in (399, 30, 1)] + [("M2", NOW - 2 * DAY_S)]
    assert _count(engine, dead_letters) == 1
    assert _count(engine, outbox, outbox.c.status == "parked") == parked_before
    assert _count(engine, outbox, outbox.c.status == "sent") == delivered_lately
    assert purge(engine, RetentionPolicy(), NOW).total == 0  # nothing twice


def test_expired_jobs_leave_as_delivered_ones_do(any_engine: Engine) -> None:
    """A daily note whose day ended unsent expires (no one is to send it): it leaves when delivered jobs of its age
    do, where a parked job stays for a person to pass on."""
    engine = any_engine
    register(engine, "E1", "M1")
    with engine.begin() as conn:
        for k, (status, days_ago) in enumerate([("expired", 40), ("expired", 1), ("parked", 40)]):
            at = NOW - days_ago * DAY_S
            job = {"alert_id": f"n{k}", "event_seq": 0, "elder_id": "E1", "notifier": "sms", "payload": {}}
            conn.execute(
                insert(outbox).values(**job, idempotency_key=f"n{k}", status=status, next_attempt_at=at, created_at=at)
            )

    assert purge(engine, RetentionPolicy(delivered_days=30), NOW).delivered == 1
    with engine.connect() as conn:
        left = sorted(conn.execute(select(outbox.c.status, outbox.c.created_at)).all())
    assert left == [("expired", NOW - 1 * DAY_S), ("parked", NOW - 40 * DAY_S)]


def test_daily_note_markers_leave_with_delivered_jobs_and_with_a_purged_elder(any_engine: Engine) -> None:
    """Each marker says on which day an elder first used water: kept only while it guards its day."""
    engine = any_engine
    register(engine, "E1", "M1")
    register(engine, "E2", "M2")
    notes = [("E1", 40), ("E1", 1), ("E2", 1), ("E2", 0)]
    with engine.begin() as conn:
        for elder_id, days_ago in notes:
            day = time.strftime("%Y-%m-%d", time.gmtime(NOW - days_ago * DAY_S))
            conn.execute(insert(daily_notes).values(elder_id=elder_id, day=day, created_at=NOW - days_ago * DAY_S))
        retire_elder(conn, "E2", NOW - 100 * DAY_S)

    purged = purge(engine, RetentionPolicy(delivered_days=30, personal_days=90), NOW)
    assert (purged.daily_notes, purged.elders) == (1, 1)
    with engine.connect() as conn:
        left = conn.execute(select(daily_notes.c.elder_id, daily_notes.c.created_at)).all()
    assert left == [("E1", NOW - 1 * DAY_S)]  # the old marker went; the purged elder's went with their routine
    # The day's own marker outlives even the shortest retention: the at-most-once promise holds.
    assert purge(engine, RetentionPolicy(delivered_days=0.01), NOW).daily_notes == 0


def test_tapwatch_purge_applies_the_configured_retention(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from store import open_store
    from tapwatch.cli import main

    monkeypatch.setenv("TAPWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAPWATCH_READINGS_RETENTION_DAYS", "30")
    engine = open_store(get_settings().effective_database_url)
    register(engine, "E1", "M1")
    _store_readings(engine, "M1", [45, 31, 29, 1])
    engine.dispose()
    assert main(["purge"]) == 0
    assert "purged 2 readings older than 30 days, 0 dead letters" in capsys.readouterr().out
    with pytest.raises(pydantic.ValidationError):
        get_settings(readings_retention_days=3)  # below the late window and a week of replay: refused


def test_the_running_monitor_purges_on_its_own(mosquitto, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from tapwatch.service import Service

    settings = get_settings(
        data_dir=tmp_path,
        database_url=db_url,
        mqtt_url=mosquitto.url,
        mqtt_client_id="t-retention",
        retention_check_hours=1 / 3600,  # every second, for the test
    )
    service = Service(settings)
    with service.engine.begin() as conn:
        row = {"received_at": NOW - 100 * DAY_S, "source": "t", "meter_id": None, "reason": "r", "payload": "p"}
        conn.execute(insert(dead_letters).values(**row))
    service.start()
    try:
        assert wait_until(lambda: _count(service.engine, dead_letters) == 0, 15)

        def counted() -> float | None:  # the pass counts its rows once every table is done, after this delete
            return service.metrics.registry.get_sample_value("tapwatch_purged_rows_total", {"table": "dead_letters"})

        assert wait_until(lambda: counted() is not None, 15)
        assert counted() == 1.0
    finally:
        service.stop()


def _personal(engine: Engine, elder_id: str) -> tuple[Any, ...]:
    with engine.connect() as conn:
        row = conn.execute(select(elders).where(elders.c.elder_id == elder_id)).one()
        jobs = _count(engine, outbox, outbox.c.elder_id == elder_id)
        windows = _count(engine, away_windows, away_windows.c.elder_id == elder_id)
    return row.name, row.building, row.room, row.contacts, windows, jobs


def _with_personal_data(engine: Engine, elder_id: str, meter_id: str, name: str) -> None:
    register(engine, elder_id, meter_id, name=name)
    contacts = [{"name": "李强", "relation": "儿子", "phone": "13900000000"}]
    with engine.begin() as conn:
        conn.execute(update(elders).where(elders.c.elder_id == elder_id).values(contacts=contacts))
        window = {"kind": "away", "start_ts": NOW, "end_ts": NOW + DAY_S, "reason": "在女儿家", "created_by": "c"}
        conn.execute(insert(away_windows).values(elder_id=elder_id, created_at=NOW, **window))
        conn.execute(insert(detector_state).values(meter_id=meter_id, state=b"routine", updated_at=NOW))
        audit.record(
            conn, actor="c", action="elder.update", target=f"elder:{elder_id}", community="大宁社区",
            old={"name": "旧名", "room": "501"}, new={"name": name, "room": "502"}, at=NOW - 200 * DAY_S,
        )  # fmt: skip
    _alert_jobs(engine, meter_id, 100, 400, "continuous_flow")  # refused by the platform: parked, names the elder


def test_personal_data_of_elders_retired_or_without_consent_is_purged_after_retention(any_engine: Engine) -> None:
    """Issue 20 item 13: names, addresses, contacts and parked payloads of such elders were never purged."""
    engine = any_engine
    for elder_id, meter_id, name in (("E1", "M1", "赵兰英"), ("E2", "M2", "钱秀珍"), ("E3", "M3", "孙桂花")):
        _with_personal_data(engine, elder_id, meter_id, name)
    _with_personal_data(engine, "E4", "M4", "李淑珍")
    with engine.begin() as conn:
        retire_elder(conn, "E1", NOW - 100 * DAY_S)  # retired long ago: purged
        retire_elder(conn, "E3", NOW - 10 * DAY_S)  # retired lately: kept for now
        set_consent(conn, "E2", False)  # consent withdrawn long ago, as the audit log says: purged
        audit.record(
            conn, actor="c", action="elder.update", target="elder:E2", community="大宁社区",
            old={"consent": True}, new={"consent": False}, at=NOW - 95 * DAY_S,
        )  # fmt: skip
    assert _personal(engine, "E1")[4] == 1 and _personal(engine, "E1")[5] >= 1

    purged = purge(engine, RetentionPolicy(personal_days=90), NOW)
    assert purged.elders == 2
    for elder_id in ("E1", "E2"):
        assert _personal(engine, elder_id) == (PURGED_NAME, "", "", [], 0, 0), elder_id
    for elder_id, name in (("E3", "孙桂花"), ("E4", "李淑珍")):
        kept = _personal(engine, elder_id)
        assert kept[0] == name and kept[1:3] == ("3号楼", "502") and kept[4] == 1 and kept[5] >= 1, elder_id
    with engine.connect() as conn:
        states = set(conn.execute(select(detector_state.c.meter_id)).scalars())
        entries = conn.execute(select(audit_log).where(audit_log.c.target == "elder:E1")).all()
        all_audit = str(conn.execute(select(audit_log.c.old, audit_log.c.new)).all())
    assert states == {"M3", "M4"}  # the learned routine of purged elders is gone
    assert "赵兰英" not in all_audit and "钱秀珍" not in all_audit and "孙桂花" in all_audit
    assert {e.action for e in entries} == {"elder.update", "elder.purge"}  # the record of what was done stays
    assert purge(engine, RetentionPolicy(personal_days=90), NOW).elders == 0  # nothing twice


def test_looking_for_elders_due_does_not_read_the_whole_audit_log(any_engine: Engine) -> None:
    """The audit log is kept for good and grows with every change and every list read; each purge (every
    retention_check_hours) asks it when the retired elders were last purged, by their own entries only."""
    from sqlalchemy import event

    engine = any_engine
    _with_personal_data(engine, "E1", "M1", "赵兰英")
    with engine.begin() as conn:
        retire_elder(conn, "E1", NOW - 100 * DAY_S)
    assert purge_personal_data(engine, NOW - 90 * DAY_S, NOW) == 1
    with engine.begin() as conn:  # a year of cadres at work: lists read, alerts handled
        entry = {"actor": "c", "community": "大宁社区", "reason": ""}
        conn.execute(
            insert(audit_log),
            [
                {**entry, "at": NOW - k * 60, "action": ("list.read", "alert.ack")[k % 2], "target": f"/alerts/{k}"}
                for k in range(8000)
            ],
        )
        conn.execute(text("ANALYZE"))
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "FROM audit_log" in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert purge_personal_data(engine, NOW - 90 * DAY_S, NOW) == 0  # purged already: looked at, not again
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements
    assert rows_passed_over(engine, "audit_log", statements) == []


def _withdraw_consent(engine: Engine, elder_id: str, consent: bool, at: float) -> None:
    with engine.begin() as conn:
        set_consent(conn, elder_id, consent)
        audit.record(
            conn, actor="c", action="elder.update", target=f"elder:{elder_id}", community="大宁社区",
            old={"consent": not consent}, new={"consent": consent}, at=at,
        )  # fmt: skip


def test_an_elder_who_withdraws_consent_again_after_a_purge_is_purged_again(any_engine: Engine) -> None:
    engine = any_engine
    _with_personal_data(engine, "E1", "M1", "赵兰英")
    _withdraw_consent(engine, "E1", False, NOW - 300 * DAY_S)
    assert purge(engine, RetentionPolicy(personal_days=90), NOW - 200 * DAY_S).elders == 1
    # She consents again (her name stays purged) and the cadre records her address, family and routine anew.
    _withdraw_consent(engine, "E1", True, NOW - 150 * DAY_S)
    contacts = [{"name": "李强", "relation": "儿子", "phone": "13900000000"}]
    with engine.begin() as conn:
        conn.execute(
            update(elders).where(elders.c.elder_id == "E1").values(building="9号楼", room="808", contacts=contacts)
        )
        window = {"kind": "away", "start_ts": NOW, "end_ts": NOW + DAY_S, "reason": "在女儿家", "created_by": "c"}
        conn.execute(insert(away_windows).values(elder_id="E1", created_at=NOW - 140 * DAY_S, **window))
    _withdraw_consent(engine, "E1", False, NOW - 100 * DAY_S)

    assert purge(engine, RetentionPolicy(personal_days=90), NOW - 20 * DAY_S).elders == 0  # not 90 days yet
    assert purge(engine, RetentionPolicy(personal_days=90), NOW).elders == 1
    assert _personal(engine, "E1") == (PURGED_NAME, "", "", [], 0, 0)
    assert purge(engine, RetentionPolicy(personal_days=90), NOW + DAY_S).elders == 0  # nothing twice


def test_an_elder_purged_once_who_consents_again_and_is_retired_is_purged_again(any_engine: Engine) -> None:
    """A retired elder was due only while her name was not the purged one: one purged after withdrawing consent,
    who consented again (her name left purged) and was retired later, kept the address and family's phone
    numbers recorded since, and the routine learned since, for good."""
    engine = any_engine
    _with_personal_data(engine, "E1", "M1", "赵兰英")
    _withdraw_consent(engine, "E1", False, NOW - 300 * DAY_S)
    assert purge(engine, RetentionPolicy(personal_days=90), NOW - 200 * DAY_S).elders == 1
    _withdraw_consent(engine, "E1", True, NOW - 190 * DAY_S)
    contacts = [{"name": "李强", "relation": "儿子", "phone": "13900000000"}]
    with engine.begin() as conn:
        conn.execute(
            update(elders).where(elders.c.elder_id == "E1").values(building="9号楼", room="808", contacts=contacts)
        )
        retire_elder(conn, "E1", NOW - 100 * DAY_S)  # moved into a care home

    assert purge(engine, RetentionPolicy(personal_days=90), NOW - 20 * DAY_S).elders == 0  # not 90 days yet
    assert purge(engine, RetentionPolicy(personal_days=90), NOW).elders == 1
    assert _personal(engine, "E1")[:4] == (PURGED_NAME, "", "", [])
    assert purge(engine, RetentionPolicy(personal_days=90), NOW + DAY_S).elders == 0  # nothing twice


def test_a_purged_elders_away_windows_leave_the_audit_log_too(any_engine: Engine) -> None:
    """The windows (with their reasons) were deleted, but the audit entries kept when and why the home stood empty."""
    engine = any_engine
    _with_personal_data(engine, "E1", "M1", "赵兰英")
    _with_personal_data(engine, "E2", "M2", "孙桂花")
    window = {"window_id": 7, "kind": "away", "start": "2026-01-02T09:00:00+08:00", "end": "2026-01-20T09:00:00+08:00"}
    with engine.begin() as conn:
        for elder_id in ("E1", "E2"):
            audit.record(
                conn, actor="c", action="away.create", target=f"elder:{elder_id}", community="大宁社区",
                new=window, reason="住院 瑞金医院", at=NOW - 150 * DAY_S,
            )  # fmt: skip
            audit.record(
                conn, actor="c", action="away.delete", target=f"elder:{elder_id}", community="大宁社区",
                old=window, at=NOW - 140 * DAY_S,
            )  # fmt: skip
        retire_elder(conn, "E1", NOW - 100 * DAY_S)  # purged; E2 stays as it is
    assert purge(engine, RetentionPolicy(personal_days=90), NOW).elders == 1
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.action.in_(["away.create", "away.delete"]))).all()
    purged = {r.action: r for r in rows if r.target == "elder:E1"}
    kept = {r.action: r for r in rows if r.target == "elder:E2"}
    assert "瑞金医院" not in str([tuple(r) for r in purged.values()]) and "2026-01-02" not in str(
        [tuple(r) for r in purged.values()]
    )
    assert purged["away.create"].new == {**window, "start": "(purged)", "end": "(purged)"}  # what was done stays
    assert purged["away.delete"].old["kind"] == "away" and purged["away.delete"].reason == ""
    assert kept["away.create"].reason == "住院 瑞金医院" and kept["away.create"].new == window


def test_what_cadres_wrote_on_a_purged_elders_cases_goes_too(any_engine: Engine) -> None:
    """A resolve's note ("fell in the bathroom, taken to Ruijin") stayed on the case, in its history and in the
    audit entry after her name, address and contacts were purged."""
    from alerts.cases import load_case
    from store.schema import alert_events, alerts

    engine = any_engine
    _with_personal_data(engine, "E1", "M1", "赵兰英")
    _with_personal_data(engine, "E2", "M2", "孙桂花")
    with engine.begin() as conn:
        for alert_id, elder_id in conn.execute(select(alerts.c.alert_id, alerts.c.elder_id)).all():
            case = load_case(conn, alert_id)
            assert case is not None
            note = f"{elder_id} 在卫生间摔倒，送瑞金医院"
            AlertManager().resolve(conn, case, "cadre", "hospital", note, NOW - 99 * DAY_S)
            audit.record(
                conn, actor="cadre", action="alert.resolve", target=f"alert:{alert_id}", community="大宁社区",
                old={"state": "open"}, new={"state": "resolved", "outcome": "hospital"}, reason=note,
                at=NOW - 99 * DAY_S,
            )  # fmt: skip
        retire_elder(conn, "E1", NOW - 95 * DAY_S)  # purged; E2 stays as she is
    assert purge(engine, RetentionPolicy(personal_days=90), NOW).elders == 1
    with engine.connect() as conn:
        cases = {r.elder_id: r for r in conn.execute(select(alerts))}
        history = str(conn.execute(select(alert_events.c.data)).all())
        reasons = [r for r in conn.execute(select(audit_log.c.reason)).scalars() if r]
    assert "E1 在卫生间" not in history and "E2 在卫生间" in history
    assert not any("E1 在卫生间" in r for r in reasons) and any("E2 在卫生间" in r for r in reasons)
    assert cases["E1"].note == "(purged)" and cases["E1"].outcome == "hospital"  # what was done stays
    assert cases["E2"].note == "E2 在卫生间摔倒，送瑞金医院"


def _waiting_on_a_lock(engine: Engine) -> int:
    with engine.connect() as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return int(conn.execute(text(query)).scalar_one())


def test_two_purges_at_once_purge_an_elder_once(postgres_server: Any) -> None:
    """``tapwatch purge`` while the monitor purges (its lease does not hold the command off): each found her due
    before the other purged her, and both purged her: two ``elder.purge`` entries in her trail."""
    engine = open_store(postgres_server.new_database())
    try:
        _with_personal_data(engine, "E1", "M1", "赵兰英")
        with engine.begin() as conn:
            retire_elder(conn, "E1", NOW - 100 * DAY_S)
        done: list[int] = []

        def purge_now() -> None:
            done.append(purge_personal_data(engine, NOW - 90 * DAY_S, NOW))

        with engine.connect() as holder:
            holding = holder.begin()  # her row held: both purges have found her due and wait for it
            holder.execute(select(elders.c.elder_id).where(elders.c.elder_id == "E1").with_for_update())
            purges = [threading.Thread(target=purge_now) for _ in range(2)]
            for thread in purges:
                thread.start()
            assert wait_until(lambda: _waiting_on_a_lock(engine) >= 2, 10)
            holding.rollback()
        for thread in purges:
            thread.join(30)
        with engine.connect() as conn:
            entries = conn.execute(
                select(func.count()).where(audit_log.c.action == "elder.purge", audit_log.c.target == "elder:E1")
            ).scalar_one()
        assert (sorted(done), entries) == ([0, 1], 1)
        assert _personal(engine, "E1") == (PURGED_NAME, "", "", [], 0, 0)
    finally:
        engine.dispose()


def test_a_purged_elders_held_findings_go_too(any_engine: Engine) -> None:
    """A silence a long snooze muted ("staying with her son for half a year") is held until the snooze ends, up to
    a year on: it said when her home stood silent long after her away windows, routine and name were purged."""
    from store.schema import held_findings

    engine = any_engine
    for elder_id, meter_id, name in (("E1", "M1", "赵兰英"), ("E2", "M2", "孙桂花")):
        _with_personal_data(engine, elder_id, meter_id, name)
        with engine.begin() as conn:
            snooze = {"kind": "snooze", "start_ts": NOW - DAY_S, "end_ts": NOW + 200 * DAY_S, "created_by": "c"}
            conn.execute(insert(away_windows).values(elder_id=elder_id, created_at=NOW, **snooze))
            context = meter_context(conn, meter_id)
            assert context is not None
            AlertManager().apply(conn, context, Finding(meter_id, "no_activity", "high", NOW, "未用水", "no use"), NOW)
    with engine.begin() as conn:
        retire_elder(conn, "E1", NOW)  # purged 90 days on; E2 stays as she is
    assert _count(engine, held_findings) == 2
    assert purge(engine, RetentionPolicy(personal_days=90), NOW + 91 * DAY_S).elders == 1
    with engine.connect() as conn:
        assert list(conn.execute(select(held_findings.c.elder_id)).scalars()) == ["E2"]


def test_the_reasons_written_about_a_purged_elder_go_too(any_engine: Engine) -> None:
    """Why she was retired ("moved in with her son, 浦东 ... 139..."), why her thresholds changed ("falls at night"),
    why her parked work order was put back ("told her son 李强 on 139..."): free text about her, kept in the audit
    log after her name, contacts and the notes on her cases were purged."""
    from alerts.queries import requeue_parked

    engine = any_engine
    for elder_id, meter_id, name in (("E1", "M1", "赵兰英"), ("E2", "M2", "孙桂花")):
        _with_personal_data(engine, elder_id, meter_id, name)
        with engine.begin() as conn:
            for action in ("thresholds.update", "elder.retire"):
                audit.record(
                    conn, actor="c", action=action, target=f"elder:{elder_id}", community="大宁社区",
                    new={"ceiling_hours": 10.0}, reason=f"{name} 夜里摔倒过，随儿子李强迁居", at=NOW,
                )  # fmt: skip
            job_id = conn.execute(select(outbox.c.id).where(outbox.c.elder_id == elder_id)).scalars().first()
            assert job_id is not None
            assert requeue_parked(conn, job_id, actor="op", reason=f"已电话告知{name}的儿子李强 13900000000", now=NOW)
    with engine.begin() as conn:
        retire_elder(conn, "E1", NOW)  # purged 90 days on; E2 stays as she is
    assert purge(engine, RetentionPolicy(personal_days=90), NOW + 91 * DAY_S).elders == 1
    with engine.connect() as conn:
        reasons = [r for r in conn.execute(select(audit_log.c.reason)).scalars() if r]
    assert not any("赵兰英" in r for r in reasons), reasons
    assert sum("孙桂花" in r for r in reasons) == 3  # hers stay as written


def test_a_purged_elders_points_still_in_the_influx_spool_are_never_written(any_engine: Engine) -> None:
    """Her readings staged for InfluxDB (``influx_spool``, drained by the writer) but not yet sent when she is purged
    (InfluxDB down, a backlog) would reach InfluxDB after the purge: the purge drops them, by her ``elder_id`` tag
    exactly (E1's, not E10's), and keeps other elders' and the status points."""
    from store.schema import influx_spool
    from timeseries.spool import InfluxStager

    engine = any_engine
    for elder_id, meter_id in (("E1", "M1"), ("E10", "M10")):
        register(engine, elder_id, meter_id)
        pipeline = Pipeline(engine, AlertManager(), late_window_s=5 * DAY_S, stagers=[InfluxStager()])
        pipeline.process([RawMessage("test", message(meter_id, [(NOW - 3600, 10.0), (NOW - 1800, 11.0)]))])
    with engine.begin() as conn:
        conn.execute(insert(influx_spool).values(lines="tapwatch_status spool_pending=2.0 1", created_at=NOW))
        retire_elder(conn, "E1", NOW)
    assert _count(engine, influx_spool, influx_spool.c.lines.contains("elder_id=E1,")) > 0
    assert purge(engine, RetentionPolicy(personal_days=90), NOW + 91 * DAY_S).elders == 1
    with engine.connect() as conn:
        kept = list(conn.execute(select(influx_spool.c.lines)).scalars())
    assert not [lines for lines in kept if "elder_id=E1," in lines or "elder_id=E1 " in lines]
    assert any("elder_id=E10," in lines for lines in kept) and "tapwatch_status spool_pending=2.0 1" in kept


def test_expired_login_tokens_leave_the_store(any_engine: Engine) -> None:
    """Each sign-in stores a token that expires within hours (``token_ttl_hours``): refused from then on, it was
    kept for good, a row per login, per cadre and shift, per platform session, for as long as the district runs.
    The purge removes them once expired; a live login and an API key without an end stay."""
    engine = any_engine
    with engine.begin() as conn:
        user_id = create_user(conn, username="li.cadre", password=None, role="cadre", communities=[], now=NOW)
        for days_ago in (400, 30, 2):  # logins of long ago, each 12 h
            issue_token(conn, user_id, "login", NOW - days_ago * DAY_S, 12 * 3600)
        issue_token(conn, user_id, "login", NOW - 3600, 12 * 3600)  # this morning's: still valid
        issue_token(conn, user_id, "grid platform", NOW - 400 * DAY_S, None)  # an API key: valid until revoked

    purged = purge(engine, RetentionPolicy(), NOW)
    with engine.connect() as conn:
        assert len(list_tokens(conn)) == len(list_tokens(conn, now=NOW)) == 2
    assert purged.tokens == 3


def test_purging_an_elder_does_not_read_the_whole_audit_log(any_engine: Engine) -> None:
    """The audit log is kept for good and grows with every list read (each dashboard load lists the elders). Each
    elder purged looks in it for what was written about her, in the purge's transaction (on SQLite the store's
    write lock, ingest waiting): by her own entries and the few operators' moves of parked jobs, never every entry
    ever written."""
    from sqlalchemy import event

    from alerts.queries import requeue_parked

    engine = any_engine
    _with_personal_data(engine, "E1", "M1", "赵兰英")
    with engine.begin() as conn:
        job_id = conn.execute(select(outbox.c.id).where(outbox.c.elder_id == "E1")).scalars().first()
        assert job_id is not None and requeue_parked(conn, job_id, actor="op", reason="已电话告知家属", now=NOW)
        retire_elder(conn, "E1", NOW - 100 * DAY_S)
        entry = {"actor": "c", "community": "大宁社区", "reason": ""}  # a year of cadres at work
        conn.execute(
            insert(audit_log),
            [
                {**entry, "at": NOW - k * 60, "action": ("list.read", "alert.ack")[k % 2], "target": f"/alerts/{k}"}
                for k in range(8000)
            ],
        )
        conn.execute(text("ANALYZE"))
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "FROM audit_log" in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert purge_personal_data(engine, NOW - 90 * DAY_S, NOW) == 1
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    with engine.connect() as conn:
        assert conn.execute(select(audit_log.c.reason).where(audit_log.c.target == f"outbox:{job_id}")).scalar() == (
            "(purged)"
        )
    assert statements
    assert rows_passed_over(engine, "audit_log", statements) == []


def test_a_replaced_meters_checkpoint_leaves_after_retention(any_engine: Engine) -> None:
    """A meter swapped for a new one hands its routine to it (engine.meterstate.carry_routine) and is never loaded
    again, yet its checkpoint (3-4 KB of when she rises, washes and sleeps) was kept for good, one per swap: a
    district's battery campaign left one per home. It leaves once the meter has been retired for the personal data
    retention; the new meter's stays."""
    engine = any_engine
    register(engine, "E1", "M1")
    register(engine, "E2", "M2", name="赵兰英")
    with engine.begin() as conn:
        for meter_id in ("M1", "M2"):
            conn.execute(insert(detector_state).values(meter_id=meter_id, state=b"routine", updated_at=NOW))
        replace_meter(conn, "E1", "M1b", NOW - 100 * DAY_S)
        conn.execute(insert(detector_state).values(meter_id="M1b", state=b"carried", updated_at=NOW - 100 * DAY_S))
        replace_meter(conn, "E2", "M2b", NOW - 10 * DAY_S)  # lately: kept for now

    purge(engine, RetentionPolicy(personal_days=90), NOW)
    with engine.connect() as conn:
        assert sorted(conn.execute(select(detector_state.c.meter_id)).scalars()) == ["M1b", "M2"]


def test_the_purge_deletes_in_transactions_of_bounded_size(any_engine: Engine) -> None:
    """A monitor back after months down, or a retention shortened (the 10-million-meter plan keeps two weeks), has
    months of readings and dead letters to delete at its first pass: deleted in one transaction per chunk of meters
    (all dead letters in one), it held SQLite's write lock, ingest waiting on it, for as long as that took, and
    made PostgreSQL one transaction of millions of rows. No transaction deletes more than
    ``store.retention.ROWS_PER_TRANSACTION`` rows; everything past retention goes all the same."""
    from sqlalchemy import event

    from store.retention import ROWS_PER_TRANSACTION

    engine = any_engine
    register(engine, "E1", "M1")
    old_readings = [
        {"meter_id": "M1", "ts": NOW - 400 * DAY_S + k * 1800, "total_l": k, "status": "ok", "received_at": NOW}
        for k in range(int(1.5 * ROWS_PER_TRANSACTION))
    ]
    letter = {"source": "tapwatch/meters/X/readings", "meter_id": None, "reason": "invalid JSON", "payload": "{"}
    with engine.begin() as conn:
        conn.execute(insert(readings), old_readings)
        conn.execute(insert(readings).values(meter_id="M1", ts=NOW, total_l=1e6, status="ok", received_at=NOW))
        conn.execute(insert(dead_letters), [{**letter, "received_at": NOW - 200 * DAY_S}] * (ROWS_PER_TRANSACTION + 5))
    deleted: list[int] = []

    def count(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deleted.append(cursor.rowcount)

    event.listen(engine, "after_cursor_execute", count)
    try:
        purged = purge(engine, RetentionPolicy(readings_days=30, dead_letter_days=30), NOW)
    finally:
        event.remove(engine, "after_cursor_execute", count)
    assert max(deleted) <= ROWS_PER_TRANSACTION
    assert (purged.readings, purged.dead_letters) == (len(old_readings), ROWS_PER_TRANSACTION + 5)
    assert _count(engine, readings) == 1 and _count(engine, dead_letters) == 0


def test_the_searches_are_read_before_an_elders_row_is_taken(any_engine: Engine) -> None:
    """Every list call is audited with its filters, for good (each dashboard load lists the elders), and a purge
    looks through the searches among them for each elder's name. It read them all in each elder's transaction,
    after taking her row (on SQLite the store's write lock: ingest waited, a second per elder for each million list
    calls). They are read once per pass before that; her transaction reads her own entries and those since."""
    from sqlalchemy import event

    engine = any_engine
    _with_personal_data(engine, "E1", "M1", "赵兰英")
    with engine.begin() as conn:
        retire_elder(conn, "E1", NOW - 100 * DAY_S)
        entry = {"actor": "c", "community": None, "reason": "", "action": "list.read", "target": "/elders"}
        filters = ({"q": "李"}, {"status": "all", "limit": "500", "offset": "0"})  # a year of cadres at work
        conn.execute(insert(audit_log), [{**entry, "at": NOW - k * 60, "new": filters[k % 2]} for k in range(8000)])
        audit.record(
            conn, actor="c", action="list.read", target="/elders", community=None, new={"q": "兰英"}, at=NOW + 1
        )
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    locked: list[tuple[str, Any]] = []
    taken = {"now": False}

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        taken["now"] = taken["now"] or statement.startswith("UPDATE elders SET elder_id")
        if taken["now"] and "FROM audit_log" in statement and statement.lstrip().startswith("SELECT"):
            locked.append((statement, parameters))

    def committed(_conn: Any) -> None:
        taken["now"] = False

    event.listen(engine, "before_cursor_execute", seen)
    event.listen(engine, "commit", committed)
    try:
        assert purge_personal_data(engine, NOW - 90 * DAY_S, NOW) == 1
    finally:
        event.remove(engine, "before_cursor_execute", seen)
        event.remove(engine, "commit", committed)
    with engine.connect() as conn:
        searched = conn.execute(
            select(audit_log.c.new).where(audit_log.c.at == NOW + 1, audit_log.c.target == "/elders")
        )
        assert searched.scalar_one() == {"q": "(purged)"}
        read = sum(conn.exec_driver_sql(f"SELECT count(*) FROM ({sql}) AS s", p).scalar_one() for sql, p in locked)
    assert locked and read <= 10  # her own entries, not the year's searches
    assert rows_passed_over(engine, "audit_log", locked) == []


def test_a_search_audited_while_she_is_purged_is_scrubbed(postgres_server: Any) -> None:
    """The searches are read before any elder's row is taken, and again as her transaction begins: a search for her
    name audited after that, while her data was being purged (PostgreSQL: her row's lock holds no list call off),
    kept her name. Those audited since are read again after her purge; the search is audited, by another
    connection, just as her name is emptied. (On SQLite her transaction holds the write lock: no entry is
    written meanwhile.)"""
    from sqlalchemy import event

    engine = open_store(postgres_server.new_database())
    try:
        _with_personal_data(engine, "E1", "M1", "赵兰英")
        with engine.begin() as conn:
            retire_elder(conn, "E1", NOW - 100 * DAY_S)
        searched = {"done": False}

        def search_meanwhile(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if statement.startswith("UPDATE elders SET name") and not searched["done"]:
                searched["done"] = True
                with engine.begin() as other:
                    audit.record(
                        other, actor="c", action="list.read", target="/elders", community=None,
                        new={"q": "兰英"}, at=NOW + 1,
                    )  # fmt: skip

        event.listen(engine, "before_cursor_execute", search_meanwhile)
        try:
            assert purge_personal_data(engine, NOW - 90 * DAY_S, NOW) == 1
        finally:
            event.remove(engine, "before_cursor_execute", search_meanwhile)
        assert searched["done"]
        with engine.connect() as conn:
            search = select(audit_log.c.new).where(audit_log.c.at == NOW + 1, audit_log.c.target == "/elders")
            assert conn.execute(search).scalar_one() == {"q": "(purged)"}
    finally:
        engine.dispose()


def test_the_spool_keeps_the_points_of_an_elder_whose_id_differs_in_case_only(any_engine: Engine) -> None:
    """Elder ids are case-sensitive ('E1' and 'e1' are two elders, as the API takes them), but SQLite's LIKE is not
    (PostgreSQL's is): purging E1 also dropped e1's points waiting for InfluxDB, on SQLite only, and they never
    reached it."""
    from store.schema import influx_spool
    from timeseries.spool import InfluxStager

    engine = any_engine
    for elder_id, meter_id in (("E1", "M1"), ("e1", "m1")):
        register(engine, elder_id, meter_id)
        pipeline = Pipeline(engine, AlertManager(), late_window_s=5 * DAY_S, stagers=[InfluxStager()])
        pipeline.process([RawMessage("test", message(meter_id, [(NOW - 3600, 10.0), (NOW - 1800, 11.0)]))])
    with engine.begin() as conn:
        retire_elder(conn, "E1", NOW)
    assert purge(engine, RetentionPolicy(personal_days=90), NOW + 91 * DAY_S).elders == 1
    with engine.connect() as conn:
        kept = list(conn.execute(select(influx_spool.c.lines)).scalars())
    assert not [lines for lines in kept if "elder_id=E1," in lines or "elder_id=E1 " in lines]
    assert any("elder_id=e1," in lines for lines in kept), kept
