"""PostgreSQL ends a worker's transaction left idle (a paused worker stalls no other), except where idling is meant.

The InfluxDB writer keeps the spool's lock while InfluxDB answers, and a backtest preview prepares what it read
inside its transaction: both may idle longer than the limit, hold nothing ingest writes, and must not be ended
(a slow InfluxDB would otherwise have each chunk's transaction ended before it is settled, and sent again for ever).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text

from core.settings import Settings
from store import end_idle_transactions, may_idle, open_store
from tests.conftest import wait_until
from timeseries.spool import _took_spool_lock

LIMIT_S = 0.3


@pytest.fixture
def pg(postgres_server) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = open_store(postgres_server.new_database())
    end_idle_transactions(engine, LIMIT_S)
    yield engine
    engine.dispose()


def _idle_limit(conn) -> str:  # type: ignore[no-untyped-def]
    return str(conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one())


def test_a_transaction_may_idle_only_where_it_says_so(pg: Engine) -> None:
    with pg.begin() as conn:
        assert _idle_limit(conn) == "300ms"
        may_idle(conn)
        assert _idle_limit(conn) == "0"
    with pg.begin() as conn:  # for that transaction only
        assert _idle_limit(conn) == "300ms"


def test_the_spool_lock_may_idle_while_influxdb_answers(pg: Engine) -> None:
    with pg.begin() as conn:
        _took_spool_lock(conn)
        assert _idle_limit(conn) == "0"


def test_an_idle_transaction_is_ended_and_an_exempt_one_is_not(pg: Engine) -> None:
    watcher = pg.connect()
    idle, exempt = pg.connect(), pg.connect()
    try:
        pids = {}
        for name, conn in (("idle", idle), ("exempt", exempt)):
            conn.begin()
            if name == "exempt":
                may_idle(conn)
            pids[name] = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()

        def idle_a_second(pid: int) -> bool | None:
            """Whether the session has been in its state over a second; None once it is gone."""
            watcher.rollback()  # a fresh snapshot of pg_stat_activity, and of now(), each look
            row = watcher.execute(
                text("SELECT state_change < now() - interval '1 second' FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            ).first()
            return None if row is None else bool(row[0])

        assert wait_until(lambda: idle_a_second(pids["idle"]) is None, 30)
        # The exempt one has been idle in its transaction over three times the limit, and is still there.
        assert wait_until(lambda: idle_a_second(pids["exempt"]) is True, 30)
        assert exempt.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        for conn in (idle, exempt, watcher):
            conn.invalidate() if conn is idle else conn.close()


@pytest.mark.parametrize("limit_s", [30 * 86400.0, 2_147_484.0, 2_147_483.0])
def test_every_limit_the_settings_take_is_one_postgresql_takes(postgres_server, limit_s: float) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL takes a limit up to 2,147,483,647 ms (24.8 days), and the settings any number of seconds: a
    limit of 30 days was set on every new connection, which the server refused, so the monitor could open none
    (every batch, every request failed). A limit PostgreSQL cannot hold is refused at start, naming the setting."""
    try:
        limit_s = Settings(database_idle_in_transaction_s=limit_s).database_idle_in_transaction_s
    except ValidationError as exc:
        assert "database_idle_in_transaction_s" in str(exc)
        return
    engine = open_store(postgres_server.new_database())
    try:
        end_idle_transactions(engine, limit_s)
        with engine.begin() as conn:
            assert _idle_limit(conn) != "0"
    finally:
        engine.dispose()
