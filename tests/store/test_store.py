"""Migrations: a fresh database upgrades to exactly the schema the code declares; a populated one of the oldest
revision upgrades keeping every row, each step goes back down and up again; workers starting together."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from store import alembic_config, create_store_engine, migrate
from store.schema import influx_deletions, metadata


def test_migrations_match_the_declared_schema(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], f"schema.py and the migrations disagree; add a migration: {diff}"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database with no schema yet, on either store."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    engine = create_store_engine(url)
    yield engine
    engine.dispose()


def _to(engine: Engine, revision: str, up: bool = True) -> None:
    """Alembic upgrade (or downgrade) to ``revision``, in one transaction as :func:`store.migrate` runs it."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, revision)


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


#: What a district's store holds after some months at revision 0001: every table, rows as that release wrote them.
ELDERS, DAYS, T0 = 30, 7, 1_780_000_000.0
OPEN = {  # the open cases: (alert, elder, meter, kind, details) -> the case key 0008 gives them
    ("open-a", "E00", "M00", "no_activity", "{}"): "community",
    ("open-b", "E00", "M00", "continuous_flow", "{}"): "legacy:open-b",  # a second community kind: its own case
    ("open-c", "E01", "M01", "meter_offline", "{}"): "maintenance:M01",
    ("open-d", "E02", "M02", "high_usage", '{"route": "maintenance"}'): "maintenance:M02",
}


def _populate_at_0001(engine: Engine) -> None:
    """Rows through plain SQL, as the release of revision 0001 wrote them."""
    elders = [
        {"e": f"E{k:02d}", "c": f"社区{k % 3}", "at": T0, "retired": T0 + 86400 if k == ELDERS - 1 else None}
        for k in range(ELDERS)
    ]
    meters = [{"m": f"M{k:02d}", "e": f"E{k:02d}"} for k in range(ELDERS)] + [{"m": "M05-old", "e": "E05"}]
    readings = [
        {"m": f"M{k:02d}", "ts": T0 + i * 1800, "total": 10.0 * i + k, "use": 10.0}
        for k in range(ELDERS)
        for i in range(DAYS * 48)
    ]
    resolved = [
        {"a": f"r{k}-{j}", "e": f"E{k:02d}", "m": f"M{k:02d}", "c": f"社区{k % 3}", "kind": kind, "state": "resolved"}
        for k in range(ELDERS)
        for j, kind in enumerate(("no_activity", "high_usage", "meter_offline"))
    ]
    opened = [
        {"a": a, "e": e, "m": m, "c": f"社区{int(e[1:]) % 3}", "kind": kind, "state": "open", "details": details}
        for a, e, m, kind, details in OPEN
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO elders (elder_id, name, community, contacts, created_at, retired_at) "
                'VALUES (:e, \'王秀兰\', :c, \'[{"name": "李", "phone": "13800000000"}]\', :at, :retired)'
            ),
            elders,
        )
        conn.execute(text("INSERT INTO meters (meter_id, elder_id, installed_at) VALUES (:m, :e, 0)"), meters)
        conn.execute(
            text(
                "INSERT INTO readings (meter_id, ts, total_l, usage_l, status, received_at) "
                "VALUES (:m, :ts, :total, :use, 'ok', :ts)"
            ),
            readings,
        )
        conn.execute(
            text("INSERT INTO detector_state (meter_id, version, state, updated_at) VALUES (:m, :v, :s, 0)"),
            [{"m": f"M{k:02d}", "v": k + 1, "s": bytes([k]) * 100} for k in range(ELDERS)],
        )
        conn.execute(
            text(
                "INSERT INTO alerts (alert_id, elder_id, meter_id, community, kind, severity, state, basis, data_ts, "
                "raised_at, message_zh, message_en, details) "
                "VALUES (:a, :e, :m, :c, :kind, 'high', :state, 'rule', :at, :at, '', '', :details)"
            ),
            [{"details": "{}", **row, "at": T0 + n} for n, row in enumerate(resolved + opened)],
        )
        ids = [row["a"] for row in resolved + opened]
        conn.execute(
            text(
                "INSERT INTO alert_events (alert_id, seq, type, at, actor, data) "
                "VALUES (:a, :seq, 'raised', 0, 'tapwatch', '{}')"
            ),
            [{"a": a, "seq": seq} for a in ids for seq in (1, 2)],
        )
        conn.execute(
            text(
                "INSERT INTO outbox (alert_id, event_seq, elder_id, notifier, idempotency_key, payload, status, "
                "next_attempt_at, created_at) VALUES (:a, 1, 'E00', 'webhook', :a, '{}', 'sent', 0, 0)"
            ),
            [{"a": a} for a in ids],
        )
        audit = [{"target": f"elder:E{k % ELDERS:02d}", "action": "elder.update"} for k in range(60)]
        audit.append({"target": f"elder:E{ELDERS - 1:02d}", "action": "elder.purge"})
        conn.execute(
            text("INSERT INTO audit_log (at, actor, action, target) VALUES (0, 'wang.op', :action, :target)"), audit
        )
        conn.execute(
            text(
                "INSERT INTO thresholds (scope, scope_id, name, value, updated_at, updated_by) "
                "VALUES (:scope, :id, :name, :value, 0, 'wang.op')"
            ),
            [
                {"scope": "global", "id": "", "name": "ceiling_litres", "value": 5.0},
                {"scope": "community", "id": "社区1", "name": "ceiling_litres", "value": 0.0},
                {"scope": "elder", "id": "E04", "name": "ceiling_litres", "value": 0.5},
                {"scope": "elder", "id": "E04", "name": "sensitivity", "value": 0.01},
            ],
        )
        conn.execute(
            text(
                "INSERT INTO users (username, password_hash, role, communities, created_at) "
                "VALUES (:u, 'x', :role, '[]', 0)"
            ),
            [{"u": u, "role": role} for u, role in (("admin", "admin"), ("wang.op", "operator"), ("li", "cadre"))],
        )
        conn.execute(
            text(
                "INSERT INTO api_tokens (user_id, name, token_hash, created_at) "
                "SELECT user_id, 'platform', username, 0 FROM users"
            )
        )
        conn.execute(
            text(
                "INSERT INTO away_windows (elder_id, kind, start_ts, end_ts, created_by, created_at) "
                "VALUES (:e, 'away', 0, 1, 'li', 0)"
            ),
            [{"e": f"E{k:02d}"} for k in range(5)],
        )
        conn.execute(
            text(
                "INSERT INTO dead_letters (received_at, source, meter_id, reason, payload) "
                "VALUES (:k, 'tapwatch/meters/X/readings', 'X', 'unknown meter', '{}')"
            ),
            [{"k": k} for k in range(200)],
        )


#: Every table of revision 0001, with what identifies its rows.
KEYS = {
    "elders": "elder_id",
    "meters": "meter_id",
    "readings": "meter_id, ts, total_l, usage_l",
    "detector_state": "meter_id, state",
    "alerts": "alert_id, state, kind",
    "alert_events": "alert_id, seq",
    "outbox": "idempotency_key",
    "audit_log": "id, action, target",
    "thresholds": "scope, scope_id, name",
    "users": "username",
    "api_tokens": "token_hash",
    "away_windows": "id",
    "dead_letters": "id",
}


def _contents(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.execute(text(f"SELECT {keys} FROM {table} ORDER BY {keys}"))]
            for table, keys in KEYS.items()
        }


def _what_the_data_steps_did(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        return {
            "state_version": dict(conn.execute(text("SELECT meter_id, state_version FROM meters")).all()),  # 0006
            "case_key": dict(conn.execute(text("SELECT alert_id, case_key FROM alerts WHERE state = 'open'")).all()),
            "escalation_level": set(conn.execute(text("SELECT escalation_level FROM alerts")).scalars()),  # 0002
            "influx_deletions": [  # 0016; through the schema's table, which decodes SQLite's JSON text
                tuple(r) for r in conn.execute(select(influx_deletions.c.elder_id, influx_deletions.c.meter_ids))
            ],
            "ceiling_litres": dict(
                conn.execute(text("SELECT scope_id, value FROM thresholds WHERE name = 'ceiling_litres'")).all()
            ),
            "audited": [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT target, community, actor FROM audit_log WHERE action = 'thresholds.update' ORDER BY id"
                    )
                )
            ],
        }


def test_a_populated_store_from_revision_0001_upgrades_to_head_and_every_step_goes_back_down_and_up(
    empty_store: Engine,
) -> None:
    """A district's store of months at the oldest revision, upgraded on both stores: no row lost, each migration's
    data step right; then each migration's downgrade to the revision before it and back up, keeping every row."""
    revisions = _revisions()
    _to(empty_store, revisions[0])
    _populate_at_0001(empty_store)
    before = _contents(empty_store)
    for revision in revisions[1:]:  # one at a time, as releases came, and each must keep every row
        _to(empty_store, revision)
        assert _contents(empty_store) == before | {"audit_log": _contents(empty_store)["audit_log"]}, revision
    at_head = _contents(empty_store)
    assert at_head["audit_log"][: len(before["audit_log"])] == before["audit_log"]  # only 0017's rows added
    steps = _what_the_data_steps_did(empty_store)
    assert steps == {
        "state_version": {f"M{k:02d}": k + 1 for k in range(ELDERS)} | {"M05-old": 0},
        "case_key": {alert: key for (alert, *_), key in OPEN.items()},
        "escalation_level": {0},
        "influx_deletions": [(f"E{ELDERS - 1:02d}", [f"M{ELDERS - 1:02d}"])],
        "ceiling_litres": {"": 5.0, "社区1": 1.0, "E04": 1.0},
        "audited": [("community:社区1", "社区1", "tapwatch"), ("elder:E04", "社区1", "tapwatch")],
    }
    for newer, older in reversed(list(pairwise(revisions))):  # each migration's downgrade, then up and down again
        _to(empty_store, older, up=False)
        assert _contents(empty_store) == at_head, f"{newer} -> {older}"
        _to(empty_store, newer)
        assert _contents(empty_store) == at_head, f"{older} -> {newer}"
        _to(empty_store, older, up=False)
    _to(empty_store, "head")
    assert _contents(empty_store) == at_head
    # Down past 0004 the audit log has no community column: what it held is gone (docs/deploy.md, Upgrade).
    lost = {"audited": [(target, None, actor) for target, _community, actor in steps["audited"]]}  # type: ignore[attr-defined]
    assert _what_the_data_steps_did(empty_store) == steps | lost
    with empty_store.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    _to(empty_store, "base", up=False)
    assert set(inspect(empty_store).get_table_names()) <= {"alembic_version"}
    migrate(empty_store)
    assert "alerts" in inspect(empty_store).get_table_names()


def test_a_migration_that_fails_leaves_the_store_as_it_was(empty_store: Engine) -> None:
    """On SQLite each DDL statement before a migration's first data statement committed on its own: a downgrade
    that failed (here 0008's, which cannot put two open cases of one kind back) left the store at its revision with
    the indexes of the steps before it dropped, and the retry failed on "no such index". Now the store is as it was,
    and once the cases allow it the same downgrade runs. 0008's refusal names the cases and what to do (it was the
    unique index's IntegrityError)."""
    migrate(empty_store)
    with empty_store.begin() as conn:  # one elder's two meters each offline: two open maintenance cases, one kind
        conn.execute(
            text(
                "INSERT INTO elders (elder_id, name, community, contacts, created_at) VALUES ('E1', '王', 'c', '[]', 0)"
            )
        )
        for meter in ("M1", "M2"):
            conn.execute(
                text("INSERT INTO meters (meter_id, elder_id, installed_at) VALUES (:m, 'E1', 0)"), {"m": meter}
            )
            conn.execute(
                text(
                    "INSERT INTO alerts (alert_id, elder_id, meter_id, community, kind, severity, state, basis, "
                    "data_ts, raised_at, message_zh, message_en, details, case_key) VALUES (:m, 'E1', :m, 'c', "
                    "'meter_offline', 'low', 'open', 'rule', 0, 0, '', '', '{}', :key)"
                ),
                {"m": meter, "key": f"maintenance:{meter}"},
            )
            conn.execute(
                text(
                    "INSERT INTO alert_events (alert_id, seq, type, at, actor, data) "
                    "VALUES (:m, 1, 'raised', 0, 't', '{}')"
                ),
                {"m": meter},
            )
    with pytest.raises(ValueError, match=r"before revision 0008.*elder E1 has 2 open meter_offline cases"):
        _to(empty_store, "0007", up=False)
    with empty_store.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == _revisions()[-1]
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    assert [name for name in inspect(empty_store).get_table_names() if name.startswith("_alembic")] == []
    with empty_store.begin() as conn:
        conn.execute(text("UPDATE alerts SET state = 'resolved' WHERE alert_id = 'M2'"))
    _to(empty_store, "0007", up=False)
    _to(empty_store, "head")
    if empty_store.dialect.name == "sqlite":  # off while it migrated: on again for whoever takes the connection next
        with empty_store.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_two_workers_starting_together_on_a_new_postgresql_store_both_start(postgres_server) -> None:  # type: ignore[no-untyped-def]
    """Every worker migrates its store at start. Two started together on a new (or not yet upgraded) PostgreSQL
    store each found the tables missing and created them: the later one died at start on DuplicateTable.
    Here both are held at their first CREATE by a table the test creates and rolls back once both wait there."""
    import subprocess
    import sys

    from sqlalchemy import text

    from tests.conftest import REPO, wait_until
    from tests.helpers import this_tree

    url = postgres_server.new_database()
    blocker = create_engine(url)
    code = "import sys; from store import open_store; open_store(sys.argv[1]).dispose()"
    with blocker.connect() as conn:
        hold = conn.begin()
        conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)"))
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", code, url], cwd=REPO, env=this_tree(), stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = :db")

        def both_wait() -> bool:
            with blocker.connect() as watch:  # a new transaction each time: it sees the activity of now
                return watch.execute(waiting, {"db": make_url(url).database}).scalar_one() == 2

        assert wait_until(both_wait, timeout=60)
        hold.rollback()
    errors = [worker.communicate(timeout=60)[1] for worker in workers]
    blocker.dispose()
    assert [worker.returncode for worker in workers] == [0, 0], errors
    engine = create_engine(url)
    assert "alerts" in inspect(engine).get_table_names()
    engine.dispose()


def test_going_back_before_0015_refuses_to_drop_held_findings_unless_told(empty_store: Engine) -> None:
    """Going back before 0015 dropped its table of findings held through a snooze, quietly: a silence found inside a
    window, still held for when it ends, would call nobody. It refuses now, naming them (nothing changed), and goes
    back when the operator says to drop them (``tapwatch migrate --to 0014 --drop-held-findings``)."""
    from store import migrate_to

    migrate(empty_store)
    with empty_store.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO held_findings (elder_id, meter_id, kind, finding, release_at, created_at) "
                "VALUES ('E1', 'M1', 'no_activity', '{}', 100, 0)"
            )
        )
    with pytest.raises(ValueError, match=r"before revision 0015.*elder E1's no_activity.*--drop-held-findings"):
        migrate_to(empty_store, "0014")
    with empty_store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM held_findings")).scalar_one() == 1
    assert migrate_to(empty_store, "0014", drop_held_findings=True)[1] == "0014"
    assert "held_findings" not in inspect(empty_store).get_table_names()


def test_a_migration_waiting_behind_a_long_query_gives_up_with_a_clear_error(
    tmp_path, postgres_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: ``tapwatch migrate`` waited for ever behind a long transaction holding a table it changes (a
    backtest preview), and ingest queued behind its lock request meanwhile. It gives up after the lock timeout,
    saying what held it, nothing changed; run again once the query is done, it migrates."""
    import threading

    import store
    from store import migrate_to
    from tests.conftest import wait_until

    monkeypatch.setattr(store, "MIGRATION_LOCK_TIMEOUT_S", 1.0, raising=False)
    url = postgres_server.new_database()
    engine = create_store_engine(url)
    migrate_to(engine, "0019")
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(migrate_to(engine, "head"))
        except Exception as exc:
            outcome.append(exc)

    with engine.connect() as preview:  # reads the meters 0020 changes, in a transaction left open
        preview.execute(text("SELECT count(*) FROM meters"))
        migrating = threading.Thread(target=run, daemon=True)
        migrating.start()
        gave_up = wait_until(lambda: outcome, timeout=30)
        preview.rollback()
    migrating.join(timeout=60)
    engine.dispose()
    assert gave_up, "the migration still waited behind the open transaction"
    assert isinstance(outcome[0], ValueError) and "lock" in str(outcome[0]) and "nothing was changed" in str(outcome[0])
    engine = create_store_engine(url)
    assert migrate_to(engine, "head")[0] == "0019"
    engine.dispose()
