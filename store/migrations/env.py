"""Alembic environment: runs on the connection tapwatch hands over, or on TAPWATCH_DATABASE_URL."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine, event

from core.settings import get_settings
from store.schema import metadata

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(get_settings().effective_database_url)
    with engine.begin() as conn:
        _run(conn)


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _sqlite_transaction(connection)
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=sqlite, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        _check_foreign_keys(connection)


def _sqlite_transaction(connection: Connection) -> None:
    """Run a SQLite migration in one transaction, with foreign keys checked once it has run.

    Python's sqlite3 opens a transaction only before a data statement, so each DDL before one committed on its own:
    a migration failing after it left the store half migrated at its old revision (indexes dropped, batch mode's
    temporary table behind) and every retry refused. Batch mode rebuilds a table to drop or change a column: the
    old table is dropped, and with foreign keys on (every tapwatch connection) that failed on the rows referring to
    it (alert_events to alerts). The pragma takes effect outside a transaction only; the connection gets its foreign
    keys back when it returns to the pool (:func:`_foreign_keys_back_on`).
    """
    if not getattr(connection.connection.dbapi_connection, "in_transaction", True):
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        connection.connection.info[_FOREIGN_KEYS_OFF] = True
        if not event.contains(connection.engine, "checkin", _foreign_keys_back_on):
            event.listen(connection.engine, "checkin", _foreign_keys_back_on)
        connection.exec_driver_sql("BEGIN")


def _check_foreign_keys(connection: Connection) -> None:
    """Refuse to commit a SQLite migration that left a row referring to one that is gone."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        tables = sorted({row[0] for row in broken})
        raise RuntimeError(f"the migration left rows of {', '.join(tables)} referring to rows that are gone")


_FOREIGN_KEYS_OFF = "tapwatch_foreign_keys_off"


def _foreign_keys_back_on(dbapi_connection: Any, record: Any) -> None:
    """Back in the pool, after its commit or rollback: foreign keys on again for whoever uses it next."""
    if record.info.pop(_FOREIGN_KEYS_OFF, False):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


run_migrations()
