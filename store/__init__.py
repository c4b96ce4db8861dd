"""The relational store: one SQLAlchemy Core code path for SQLite (embedded) and PostgreSQL.

:func:`open_store` builds the engine and brings the schema to the newest
Alembic revision, so every start runs on a migrated database.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from core.settings import shown_url
from store import schema

__all__ = [
    "NewerSchemaError",
    "alembic_config",
    "clock_offset_s",
    "end_idle_transactions",
    "may_idle",
    "migrate",
    "migrate_to",
    "open_store",
    "require_known_schema",
    "schema",
    "shown_store_url",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def shown_store_url(url: str | URL) -> str:
    """A store URL (a string or SQLAlchemy's) as messages may show it: :func:`core.settings.shown_url`.

    >>> shown_store_url("postgresql+psycopg://tapwatch:pw@db/tapwatch?password=pw&sslmode=require")
    'postgresql+psycopg://tapwatch:***@db/tapwatch?password=***&sslmode=require'
    """
    return shown_url(make_url(url).render_as_string(hide_password=True))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while ingest writes; NORMAL sync is durable across
    # process crashes (the guarantee we need: the broker redelivers unacked data).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """An engine whose errors never quote their statement's values: an error's text reaches the logs (the API's
    500 handler, a worker's traceback), and the values are elders' names, addresses, contacts and notes."""
    if url.startswith("sqlite"):
        path = make_url(url).database  # percent-decoded, as SQLAlchemy opens it
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def end_idle_transactions(engine: Engine, idle_s: float) -> None:
    """Have PostgreSQL end a transaction of ``engine`` left idle ``idle_s`` seconds (0: never), freeing its locks.

    A worker paused inside a batch (SIGSTOP, a frozen VM, a host cut off from the network) otherwise holds the rows
    it wrote for as long as it is paused: every other worker's batch with one of those meters waits behind it, and
    with it the rest of their meters. Its own transaction then fails when it resumes (the connection is gone) and
    its batch comes back from the broker. Set on each new connection, after the migration (a data migration may
    think longer between two statements). SQLite: nothing to do (one host; a waiting writer gives up after its
    busy_timeout).
    """
    if engine.dialect.name != "postgresql" or idle_s <= 0:
        return
    statement = f"SET idle_in_transaction_session_timeout = {max(1, round(idle_s * 1000))}"

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # a session setting, outside any transaction
        with dbapi_connection.cursor() as cursor:
            cursor.execute(statement)
        dbapi_connection.autocommit = autocommit

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # the connections opened before (the migration's) are opened again with it


def may_idle(conn: Connection) -> None:
    """Exempt ``conn``'s transaction from :func:`end_idle_transactions` (PostgreSQL; nothing on SQLite).

    For a transaction that waits between statements on purpose and holds nothing ingest writes: the InfluxDB writer
    keeps the spool's lock while InfluxDB answers (a slow InfluxDB would otherwise see each chunk's transaction ended
    before it could settle it, and send it again for ever), and a backtest preview reads its readings and then thinks
    for as long as the community is large.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))


def clock_offset_s(engine: Engine) -> float | None:
    """How far this host's wall clock runs ahead of the PostgreSQL server's (negative: behind); None on SQLite.

    Read halfway through one round trip. The workers of one store time leases, timers and jobs by their own
    clocks, so they must agree; the server is the one clock they all see.
    """
    if engine.dialect.name != "postgresql":
        return None  # an embedded store: this host's clock is the only one
    with engine.connect() as conn:
        before = time.time()
        server = float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
        after = time.time()
    return (before + after) / 2 - server


#: The PostgreSQL advisory lock a worker holds while it migrates (any number, the same in every worker).
MIGRATION_LOCK = 0x7461_7077  # "tapw"


def alembic_config() -> Config:
    """Alembic's configuration for tapwatch's migrations; a caller hands it a connection in ``attributes``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to the newest revision."""
    migrate_to(engine, "head")


#: PostgreSQL: how long a migration's statement waits for a table lock (s). A long transaction holding a table it
#: changes (a backtest preview reads readings for minutes) kept ``tapwatch migrate`` waiting for ever, and every
#: statement of ingest on that table queued behind its lock request meanwhile.
MIGRATION_LOCK_TIMEOUT_S = 30.0
#: PostgreSQL's lock_not_available.
_LOCK_NOT_AVAILABLE = "55P03"


class MigrationBlocked(ValueError):
    """A migration gave up waiting for a table lock another transaction held: nothing was changed."""


#: ``alembic_config().attributes`` key: a downgrade before 0015 drops the findings held through a snooze.
DROP_HELD_FINDINGS = "drop_held_findings"


def migrate_to(engine: Engine, revision: str, drop_held_findings: bool = False) -> tuple[str | None, str]:
    """Bring the database behind ``engine`` to ``revision``; returns its revision before (None: no schema) and after.

    An older revision than the store's runs the downgrades of every migration since, which drop what they added
    (a refusal raises before anything changed: each migration is one transaction). Going back before 0015 refuses
    while findings are held through a snooze, unless ``drop_held_findings``. ValueError for a revision this
    tapwatch does not know, or a store a newer tapwatch migrated.
    """
    cfg = alembic_config()
    cfg.attributes[DROP_HELD_FINDINGS] = drop_held_findings
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Workers started together would each find the tables missing and create them (the later one then
            # died at start): one migrates at a time, the next finds the store at the newest revision.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            # After the advisory lock: a worker waits for another's migration however long it takes.
            connection.execute(text(f"SET LOCAL lock_timeout = '{round(MIGRATION_LOCK_TIMEOUT_S * 1000)}ms'"))
        cfg.attributes["connection"] = connection
        scripts = ScriptDirectory.from_config(cfg)
        _require_known_revision(connection, scripts)
        order = [script.revision for script in reversed(list(scripts.walk_revisions()))]
        target = _known_revision(scripts, revision, order)
        was = MigrationContext.configure(connection).get_current_revision()
        try:
            if was is not None and order.index(target) < order.index(was):
                command.downgrade(cfg, target)
            else:
                command.upgrade(cfg, target)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise MigrationBlocked(
                    f"the migration waited {MIGRATION_LOCK_TIMEOUT_S:g} s for a lock on a table another transaction "
                    "holds (a backtest preview, a report, a psql session: pg_stat_activity shows it), and nothing "
                    "was changed: run it again once that is done"
                ) from exc
            raise
    return was, target


def _known_revision(scripts: ScriptDirectory, revision: str, order: list[str]) -> str:
    try:
        script = scripts.get_revision(revision)
    except CommandError:
        script = None
    if script is None:
        raise ValueError(
            f"no schema revision {revision!r} in this tapwatch: its revisions run from {order[0]} to {order[-1]}"
        )
    return script.revision


class NewerSchemaError(ValueError):
    """The store's schema is at a revision this tapwatch does not know: a newer release migrated it."""


def require_known_schema(engine: Engine) -> None:
    """:class:`NewerSchemaError` when a newer tapwatch has migrated the store behind ``engine`` since this one began.

    For a running worker whose statements the store refused: rows written after a newer release's migration may be
    wrong or refused, and nothing this worker holds is at fault.
    """
    with engine.connect() as connection:
        _require_known_revision(connection, _scripts())


@functools.cache
def _scripts() -> ScriptDirectory:
    """The migrations, read once: a worker asks after each failed batch."""
    return ScriptDirectory.from_config(alembic_config())


def _require_known_revision(connection: Connection, scripts: ScriptDirectory) -> None:
    """NewerSchemaError when a newer tapwatch has migrated the store: the image rolled back without the store died
    at every start in alembic's "Can't locate revision" traceback, restarted for ever."""
    for revision in MigrationContext.configure(connection).get_current_heads():
        try:
            scripts.get_revision(revision)
        except CommandError:
            head = scripts.get_current_head()
            raise NewerSchemaError(
                f"the store's schema is at revision {revision}, newer than this tapwatch knows (its newest is "
                f"{head}): run the version that migrated it, or go back to this one with that version's "
                f"`tapwatch migrate --to {head}` or by restoring the backup taken before the upgrade "
                "(docs/deploy.md, Upgrade)"
            ) from None


def open_store(url: str) -> Engine:
    """An engine on a migrated database."""
    engine = create_store_engine(url)
    migrate(engine)
    return engine
