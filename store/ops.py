"""Portable bulk writes: insert-if-new, upsert and lean executemany for SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, CursorResult, Insert, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement

from store.versions import in_chunks

_COMPILED: dict[tuple[int, str], tuple[ClauseElement, _Lean]] = {}
_INSERTS: dict[tuple[Table, tuple[str, ...], str], Insert] = {}
_KEY_QUERIES: dict[tuple[Any, Any], InQuery] = {}
#: Series per existence query: an IN list small enough for any database.
KEY_CHUNK = 500


class ConcurrentWrite(Exception):
    """Another transaction wrote some of the same rows between our check and our write: retry the batch."""


def _insert(conn: Connection, table: Table) -> Any:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"unsupported database dialect {dialect!r}")


def execute_many(conn: Connection, statement: ClauseElement, rows: Sequence[dict[str, Any]]) -> CursorResult[Any]:
    """Run ``statement`` once per row with the driver's own executemany.

    The statement is compiled once per dialect and the rows go to the driver as
    they are: SQLAlchemy's general per-row parameter handling cost more than the
    database's own work in the ingest hot path. Rows must hold values the
    driver takes directly (str, float, int, bytes, None), under every bound name.
    """
    lean = _lean(conn, statement)
    return conn.exec_driver_sql(lean.sql, [lean.params(row) for row in rows])


def execute_lean(conn: Connection, statement: ClauseElement, row: dict[str, Any]) -> CursorResult[Any]:
    """:func:`execute_many`'s one-row form, for a query run often with many parameters."""
    lean = _lean(conn, statement)
    return conn.exec_driver_sql(lean.sql, lean.params(row))


class InQuery:
    """A query on ``key IN (...)`` for lists of any length, compiled once, run a chunk at a time.

    ``build`` gets the IN list as KEY_CHUNK bound parameters and returns the
    statement; a short chunk is padded with its last value. SQLAlchemy's
    expanding IN re-renders the statement on every execution, which cost more
    than the query in the ingest hot path.
    """

    def __init__(self, build: Callable[[list[Any]], ClauseElement]) -> None:
        self._names = [f"in_{k}" for k in range(KEY_CHUNK)]
        self.statement = build([bindparam(name) for name in self._names])

    def rows(self, conn: Connection, values: Sequence[Any], **params: Any) -> list[Any]:
        found: list[Any] = []
        for chunk in in_chunks(list(values), KEY_CHUNK):
            chunk += [chunk[-1]] * (KEY_CHUNK - len(chunk))
            row = dict(zip(self._names, chunk, strict=True)) | params
            found.extend(execute_lean(conn, self.statement, row).all())
        return found


@dataclass(frozen=True, slots=True)
class _Lean:
    sql: str
    params: Callable[[dict[str, Any]], Any]  # a row as the driver takes it: a tuple (qmark) or the dict


_SAFE_CONVERSIONS = {"to_float"}  # SQLite's Float conversion: a no-op on the floats the hot path passes


def _lean(conn: Connection, statement: ClauseElement) -> _Lean:
    key = (id(statement), conn.dialect.name)
    cached = _COMPILED.get(key)
    if cached is None or cached[0] is not statement:
        compiled: Any = statement.compile(dialect=conn.dialect)
        conversions = {getattr(p, "__name__", repr(p)) for p in compiled._bind_processors.values()}
        if conversions - _SAFE_CONVERSIONS:
            raise TypeError(f"statement needs parameter conversions {sorted(conversions)}: use conn.execute")
        lean = _Lean(compiled.string, _row_reader(compiled.positiontup))
        cached = _COMPILED[key] = (statement, lean)  # the statement keeps its id unique while cached
    return cached[1]


def insert_new(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Insert rows, skipping those whose primary key already exists; returns the keys really inserted."""
    if not rows:
        return set()
    # RETURNING says what was really inserted; rowcount of a bulk insert is
    # not reliable across drivers (psycopg reports -1).
    stmt = _insert(conn, table).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return {tuple(row) for row in conn.execute(stmt, list(rows))}


def insert_batch_new(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Insert the rows whose key is not stored yet (the first of repeated keys); returns their keys.

    The hot-path twin of :func:`insert_new`, for a table keyed by (series, time)
    such as ``readings``: one range query per chunk of series for the keys
    already stored, then a lean executemany of the rest. If another transaction
    inserts one of the same keys in between, :class:`ConcurrentWrite` is raised
    and the caller's transaction must be rolled back and run again.
    """
    if not rows:
        return set()
    series, when = table.primary_key.columns
    keys = [(row[series.name], row[when.name]) for row in rows]
    stored = _stored_keys(conn, series, when, keys)
    fresh: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, row in zip(keys, rows, strict=True):
        if key not in stored:
            fresh.setdefault(key, row)
    if fresh:
        statement = _insert_statement(conn, table, tuple(rows[0]))
        if execute_many(conn, statement, list(fresh.values())).rowcount != len(fresh):
            raise ConcurrentWrite(f"rows of {table.name} inserted meanwhile by another transaction")
    return set(fresh)


#: The width of the time buckets by which :func:`_stored_keys` groups series for one range query.
_SPAN_HOURS_S = 3600.0


def _stored_keys(conn: Connection, series: Any, when: Any, keys: list[tuple[Any, Any]]) -> set[tuple[Any, Any]]:
    # A time range per list of series, not a list of key pairs: both databases answer it from the key's index.
    query = _KEY_QUERIES.get((series, when))
    if query is None:
        query = _KEY_QUERIES[(series, when)] = InQuery(
            lambda in_list: select(series, when).where(
                series.in_(in_list), when.between(bindparam("low"), bindparam("high"))
            )
        )
    # Each series' own span, and one range per group of series whose spans lie in the same hours: one meter
    # sending a late reading (or catching up days it batched) must not make every other meter of the batch
    # be read over its days too.
    spans: dict[Any, tuple[Any, Any]] = {}
    for name, at in keys:
        span = spans.get(name)
        if span is None:
            spans[name] = (at, at)
        elif not span[0] <= at <= span[1]:
            spans[name] = (min(span[0], at), max(span[1], at))
    groups: dict[tuple[int, int], list[Any]] = {}
    for name, (low, high) in spans.items():
        groups.setdefault((int(low // _SPAN_HOURS_S), int(high // _SPAN_HOURS_S)), []).append(name)
    stored: set[tuple[Any, Any]] = set()
    for names in groups.values():
        low, high = min(spans[n][0] for n in names), max(spans[n][1] for n in names)
        stored.update((a, b) for a, b in query.rows(conn, sorted(names), low=low, high=high))
    return stored


def _row_reader(names: list[str] | None) -> Callable[[dict[str, Any]], Any]:
    """How a row goes to the driver: the dict itself (named styles), or a tuple in the SQL's order (qmark)."""
    if names is None:
        return dict
    getter = itemgetter(*names)
    if len(names) == 1:
        return lambda row: (getter(row),)
    return getter


def _insert_statement(conn: Connection, table: Table, columns: tuple[str, ...]) -> Insert:
    key = (table, columns, conn.dialect.name)
    if key not in _INSERTS:
        values: dict[str, Any] = {name: bindparam(name) for name in columns}
        _INSERTS[key] = _insert(conn, table).values(values).on_conflict_do_nothing()
    return _INSERTS[key]


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """Insert rows or overwrite the non-key columns of existing ones."""
    if not rows:
        return
    stmt = _insert(conn, table)
    columns = [name for name in rows[0] if name not in keys]
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns})
    conn.execute(stmt, list(rows))
