"""The store's behaviour on SQLite and PostgreSQL alike (one code path)."""

from __future__ import annotations

import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from alerts.manager import AlertManager
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender, WebhookNotifier
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.schema import alerts, dead_letters, metadata, meters, readings
from tests.helpers import message, register, rows_passed_over

NOW = time.time() // 1800 * 1800


def test_migrations_match_schema(any_engine) -> None:  # type: ignore[no-untyped-def]
    with any_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []


def test_pipeline_stores_detects_and_is_idempotent(any_engine) -> None:  # type: ignore[no-untyped-def]
    register(any_engine, "E1", "M1")
    # 14 hours without water after some use from 08:00 (Shanghai; 00:00 UTC), which a new elder's model calls
    # once. A fixed hour: from some evening hours a 14 h silence is a night, and the test failed at those times.
    start = (NOW - 36 * 3600) // 86400 * 86400
    totals = [100.0, 110.0, 120.0] + [120.0] * 28
    batch = [RawMessage("t", message("M1", [(start + k * 1800, v)]), "M1") for k, v in enumerate(totals)]
    batch.append(RawMessage("t", b"{broken", "M1"))
    first = Pipeline(any_engine, AlertManager(["webhook"])).process(batch)
    again = Pipeline(any_engine, AlertManager(["webhook"])).process(batch)  # a redelivery after a restart
    assert (first.readings_stored, again.readings_stored) == (len(totals), 0)
    assert [f.kind for f in first.findings if not f.resolved] == ["no_activity"]
    assert [f.kind for f in again.findings] == []
    with any_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readings)).scalar_one() == len(totals)
        assert conn.execute(select(func.count()).select_from(alerts)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 2
        assert conn.execute(select(meters.c.state_version)).scalar_one() == 1  # duplicates change nothing


def test_one_open_case_per_elder_and_case_key_is_enforced_by_the_store(any_engine) -> None:  # type: ignore[no-untyped-def]
    register(any_engine, "E1", "M1")
    row = {
        "elder_id": "E1",
        "meter_id": "M1",
        "community": "c",
        "kind": "no_activity",
        "severity": "high",
        "state": "open",
        "basis": "rule",
        "data_ts": NOW,
        "raised_at": NOW,
        "message_zh": "",
        "message_en": "",
        "details": {},
        "case_key": "community",
    }
    with any_engine.begin() as conn:
        conn.execute(alerts.insert().values(alert_id="a1", **row))
    # Another community kind is not another case: two workers racing to raise one lose at the index.
    with pytest.raises(IntegrityError), any_engine.begin() as conn:
        conn.execute(alerts.insert().values(alert_id="a2", **{**row, "kind": "continuous_flow"}))
    with any_engine.begin() as conn:
        conn.execute(alerts.insert().values(alert_id="a3", **{**row, "state": "resolved"}))
        for k, meter in enumerate(("M1", "M2")):  # one maintenance case per meter, beside the community case
            offline = {**row, "kind": "meter_offline", "meter_id": meter, "case_key": f"maintenance:{meter}"}
            conn.execute(alerts.insert().values(alert_id=f"m{k}", **offline))
    with pytest.raises(IntegrityError), any_engine.begin() as conn:
        fault = {**row, "kind": "meter_fault", "case_key": "maintenance:M1"}
        conn.execute(alerts.insert().values(alert_id="m3", **fault))


def test_the_case_key_migration_keeps_open_alerts_and_groups_from_then_on(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Alerts open before the upgrade get their case key; two open community kinds stay two cases."""
    from alembic import command
    from alembic.config import Config

    from alerts.manager import AlertManager
    from core.domain import Finding
    from store import MIGRATIONS
    from store.registry import meter_context

    register(any_engine, "E1", "M1")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with any_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    old = {
        "elder_id": "E1",
        "meter_id": "M1",
        "community": "c",
        "severity": "high",
        "state": "open",
        "basis": "rule",
        "data_ts": NOW,
        "message_zh": "",
        "message_en": "",
        "details": {},
    }
    with any_engine.begin() as conn:
        for alert_id, kind, raised in (("a1", "no_activity", NOW), ("a2", "continuous_flow", NOW + 1)):
            conn.execute(alerts.insert().values(alert_id=alert_id, kind=kind, raised_at=raised, **old))
        conn.execute(alerts.insert().values(alert_id="a3", kind="meter_offline", raised_at=NOW + 2, **old))
    with any_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with any_engine.connect() as conn:
        keys = dict(conn.execute(select(alerts.c.alert_id, alerts.c.case_key)).all())
    assert keys == {"a1": "community", "a2": "legacy:a2", "a3": "maintenance:M1"}
    manager = AlertManager()
    with any_engine.begin() as conn:
        ctx = meter_context(conn, "M1")
        assert ctx is not None
        joined = manager.apply(conn, ctx, Finding("M1", "high_usage", "medium", NOW + 10, "", ""), NOW + 10)
        flow_stopped = Finding("M1", "continuous_flow", "high", NOW + 20, "", "", resolved=True)
        cleared = manager.apply(conn, ctx, flow_stopped, NOW + 20)
    assert (joined, cleared) == ("a1", "a2")  # new kinds join the oldest; the legacy case still clears by the data
    with any_engine.connect() as conn:
        states = dict(conn.execute(select(alerts.c.alert_id, alerts.c.state)).all())
    assert states == {"a1": "open", "a2": "resolved", "a3": "open"}


def test_outbox_delivery(any_engine) -> None:  # type: ignore[no-untyped-def]
    register(any_engine, "E1", "M1")
    # No water for 14.5 h from 08:00 Shanghai (00:00 UTC) on a day 36-60 h back: a fixed hour, as in
    # test_pipeline_stores_detects_and_is_idempotent (from NOW - 24 h it failed at some times of day).
    start = (NOW - 36 * 3600) // 86400 * 86400
    batch = [RawMessage("t", message("M1", [(start + k * 1800, 50.0)]), "M1") for k in range(30)]
    Pipeline(any_engine, AlertManager(["webhook"])).process(batch)
    receiver = WebhookReceiver(secret=b"s").start()
    try:
        delivered = OutboxSender(any_engine, {"webhook": WebhookNotifier(receiver.url, b"s")}).run_once()
        assert delivered == len(receiver.events) >= 1
        assert receiver.events[0]["type"].endswith(".raised")
        assert receiver.events[0]["data"]["kind"] == "no_activity"
    finally:
        receiver.stop()


def test_a_store_error_never_quotes_the_values_of_its_statement(any_engine) -> None:  # type: ignore[no-untyped-def]
    """An error's text reaches the logs (the API's 500 handler, a worker's traceback): with SQLAlchemy's default,
    it quoted the statement's values, which are elders' names, addresses, contacts and cadres' notes."""
    import sqlalchemy

    from store.schema import elders

    with any_engine.begin() as conn:
        row = {"elder_id": "E1", "name": "王秀兰", "community": "大宁社区", "building": "3号楼", "room": "502"}
        conn.execute(sqlalchemy.insert(elders).values(**row, contacts=[], created_at=0.0))
    with pytest.raises(sqlalchemy.exc.IntegrityError) as caught, any_engine.begin() as conn:
        conn.execute(sqlalchemy.insert(elders).values(**{**row, "name": "赵兰英"}, contacts=[], created_at=0.0))
    assert "赵兰英" not in str(caught.value) and "502" not in str(caught.value)


def test_a_store_a_newer_tapwatch_migrated_is_refused_with_the_way_back(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Rolled back to an older image (docs/deploy.md, Upgrade) over a store the newer one had migrated, tapwatch
    died at every start in alembic's "Can't locate revision" traceback. It now says what happened and how to go
    back (restore the backup taken before the upgrade), and leaves the store as it is."""
    from sqlalchemy import text

    from store import migrate

    with any_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    with pytest.raises(ValueError, match=r"revision 0099_future, newer than this tapwatch .*restoring the backup"):
        migrate(any_engine)
    with any_engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0099_future"


def test_raising_and_clearing_a_case_does_not_read_every_alert_ever_kept(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Alerts are kept for good (the record of what was done): a finding looks up its elder's open and last cases,
    by elder and case key, on every raise and clear. Read from the store's plans, not from a clock."""
    from sqlalchemy import event, insert, text

    from alerts.manager import AlertManager
    from core.domain import Finding
    from store.registry import meter_context
    from store.schema import elders

    register(any_engine, "E1", "M1")
    old: dict[str, object] = {
        "meter_id": "M0",
        "community": "c",
        "kind": "no_activity",
        "severity": "high",
        "state": "resolved",
    }
    old |= {"basis": "rule", "message_zh": "", "message_en": "", "details": {}, "case_key": "community"}
    with any_engine.begin() as conn:  # a few years of other elders' closed cases
        conn.execute(
            insert(elders),
            [{"elder_id": f"X{k}", "name": "李", "community": "c", "created_at": NOW} for k in range(1000)],
        )
        conn.execute(
            insert(alerts),
            [
                {**old, "alert_id": f"x{k}", "elder_id": f"X{k % 1000}", "data_ts": NOW - k, "raised_at": NOW - k}
                for k in range(8000)
            ],
        )
        conn.execute(text("ANALYZE"))
    statements: list[tuple[str, object]] = []

    def seen(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if "FROM alerts" in statement:
            statements.append((statement, parameters))

    manager = AlertManager()
    event.listen(any_engine, "before_cursor_execute", seen)
    try:
        with any_engine.begin() as conn:
            ctx = meter_context(conn, "M1")
            assert ctx is not None
            raised = manager.apply(conn, ctx, Finding("M1", "no_activity", "high", NOW, "", ""), NOW)
            cleared = manager.apply(
                conn, ctx, Finding("M1", "no_activity", "high", NOW + 60, "", "", resolved=True), NOW + 60
            )
    finally:
        event.remove(any_engine, "before_cursor_execute", seen)
    assert raised is not None and cleared == raised
    assert statements
    assert rows_passed_over(any_engine, "alerts", statements) == []


def test_the_escalation_runners_poll_does_not_read_every_timer_ever_fired(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Fired and cancelled escalation timers stay (retention keeps no count of them); the runner asks for the due
    pending ones at every poll, which must not walk through all of those whose time has passed."""
    from sqlalchemy import event, insert, text

    from alerts.escalation import EscalationRunner
    from alerts.manager import AlertManager
    from store.schema import escalations

    register(any_engine, "E1", "M1")
    case: dict[str, object] = {"elder_id": "E1", "meter_id": "M1", "community": "c", "kind": "no_activity"}
    case |= {"severity": "high", "state": "resolved", "basis": "rule", "message_zh": "", "message_en": ""}
    with any_engine.begin() as conn:  # a few years of cases, each with its timers fired or cancelled
        conn.execute(
            insert(alerts),
            [
                {**case, "alert_id": f"x{k}", "data_ts": NOW - k * 600, "raised_at": NOW - k * 600, "details": {}}
                for k in range(2000)
            ],
        )
        conn.execute(
            insert(escalations),
            [
                {
                    "alert_id": f"x{k // 4}",
                    "level": k % 4,
                    "due_at": NOW - k * 150,
                    "status": ("fired", "cancelled")[k % 2],
                    "created_at": NOW - k * 150,
                }
                for k in range(8000)
            ],
        )
        conn.execute(text("ANALYZE"))
    statements: list[tuple[str, object]] = []

    def seen(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if "FROM escalations" in statement and statement.lstrip().startswith("SELECT"):
            statements.append((statement, parameters))

    runner = EscalationRunner(any_engine, AlertManager())
    event.listen(any_engine, "before_cursor_execute", seen)
    try:
        assert runner.run_once(NOW + 60) == 0
    finally:
        event.remove(any_engine, "before_cursor_execute", seen)
    assert statements
    assert rows_passed_over(any_engine, "escalations", statements) == []


def test_elders_purged_before_the_upgrade_are_queued_for_deletion_from_influxdb(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Elders purged by an older tapwatch left their series in InfluxDB: the upgrade queues them as a purge now does,
    and only them."""
    from alembic import command
    from alembic.config import Config

    from store import MIGRATIONS, audit
    from store.schema import influx_deletions

    for elder_id, meter_id in (("E1", "M1"), ("E2", "M2")):
        register(any_engine, elder_id, meter_id)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with any_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0015")
        audit.record(conn, actor="retention", action="elder.purge", target="elder:E1", community="c", at=NOW)
    with any_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with any_engine.connect() as conn:
        queued = conn.execute(select(influx_deletions.c.elder_id, influx_deletions.c.meter_ids)).all()
    assert [tuple(row) for row in queued] == [("E1", ["M1"])]


def test_a_safety_net_of_0_litres_stored_before_is_raised_to_1_litre_on_upgrade_and_audited(any_engine) -> None:  # type: ignore[no-untyped-def]
    """An older tapwatch took ``ceiling_litres`` 0, which never fires the net (nothing is under 0 L); the bound is 1 L
    now, and a monitor refuses thresholds out of bounds (every reading of the elder dead-lettered): the upgrade sets
    such values to 1 L, each in the audit trail with the old value, where an operator of her community reads it."""
    from alembic import command
    from alembic.config import Config

    from store import MIGRATIONS
    from store.registry import effective_thresholds
    from store.schema import audit_log, thresholds

    community = "大宁社区"
    register(any_engine, "E1", "M1", community)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with any_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0016")
        stored = [
            ("global", "", "ceiling_litres", 5.0),  # a value the net fires with: kept
            ("community", community, "ceiling_litres", 0.0),
            ("elder", "E1", "ceiling_litres", 0.5),
            ("elder", "E1", "ceiling_hours", 20.0),
        ]
        conn.execute(
            thresholds.insert(),
            [
                {"scope": s, "scope_id": i, "name": n, "value": v, "updated_at": NOW, "updated_by": "wang.op"}
                for s, i, n, v in stored
            ],
        )
    with any_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with any_engine.connect() as conn:
        values = {(r.scope, r.name): r.value for r in conn.execute(select(thresholds))}
        effective = effective_thresholds(conn, "E1", community)[0]
        trail = conn.execute(
            select(audit_log.c.actor, audit_log.c.target, audit_log.c.community, audit_log.c.old, audit_log.c.new)
            .where(audit_log.c.action == "thresholds.update")
            .order_by(audit_log.c.id)
        ).all()
    assert values == {
        ("global", "ceiling_litres"): 5.0,
        ("community", "ceiling_litres"): 1.0,
        ("elder", "ceiling_litres"): 1.0,
        ("elder", "ceiling_hours"): 20.0,
    }
    effective.validate()  # her monitor takes them
    assert [tuple(r) for r in trail] == [
        ("tapwatch", f"community:{community}", community, {"ceiling_litres": 0.0}, {"ceiling_litres": 1.0}),
        ("tapwatch", "elder:E1", community, {"ceiling_litres": 0.5}, {"ceiling_litres": 1.0}),
    ]
