"""Portable bulk writes: insert-if-new and upsert for SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def _insert(conn: Connection, table: Table) -> Any:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"unsupported database dialect {dialect!r}")


def insert_new(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Insert rows, skipping those whose primary key already exists; returns the keys really inserted."""
    if not rows:
        return set()
    # RETURNING says what was really inserted; rowcount of a bulk insert is
    # not reliable across drivers (psycopg reports -1).
    stmt = _insert(conn, table).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return {tuple(row) for row in conn.execute(stmt, list(rows))}


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert rows or overwrite the non-key columns of existing ones."""
    if not rows:
        return
    stmt = _insert(conn, table)
    columns = [name for name in rows[0] if name not in keys]
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns})
    conn.execute(stmt, list(rows))
