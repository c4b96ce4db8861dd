"""A cold backtest reads many elders' readings a query, as the driver's tuples: each elder gets what its own query gave.

The preview reads the readings of about ``READ_METERS`` meters in one query
(:func:`api.routes.backtest._readings_by_elder`). What each elder gets is
compared with one SQLAlchemy query per elder, as the backtest read before: the
same rows in the same order (its meters in the store's order of meter_id, which
on PostgreSQL is a collation, not Python's; each meter's readings in time order;
late readings and readings outside the window left out), whatever the chunk size,
on SQLite and PostgreSQL. Equal rows make equal intervals and so equal alerts.

With two processes each reads its own half of the elders, the forked child on
a connection of its own: the community prepared so equals the one prepared in
one process, on both stores, and the child did its half (it was not redone here).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, insert, select

from alerts.grouping import HOLD_DOWNS
from api.routes import backtest as route
from engine.replay import Home
from simulator import IncidentSpec, SimConfig, simulate
from store import create_store_engine, migrate
from store.schema import readings

START, END = 1_000_000.0, 1_100_000.0
# Ids whose order differs between byte order and a linguistic collation (case, punctuation).
METERS_OF = [["M_a", "ma", "Mb"], [], ["m-b"], ["zz", "A9", "a10", "B"], ["solo"], ["x1", "X2"]]


def _one_query_an_elder(conn: Connection, meter_ids: list[str]) -> list[tuple[str, float, float]]:
    """The read before: one SQLAlchemy query per elder."""
    query = (
        select(readings.c.meter_id, readings.c.ts, readings.c.total_l)
        .where(
            readings.c.meter_id.in_(meter_ids),
            readings.c.ts >= START,
            readings.c.ts <= END,
            readings.c.status != "late",
        )
        .order_by(readings.c.meter_id, readings.c.ts)
    )
    return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def _store(engine: Engine) -> None:
    rows = []
    for k, meter_id in enumerate(m for meter_ids in METERS_OF for m in meter_ids):
        for n, ts in enumerate([START - 900, START, START + 1800 * (k + 1), START + 50_000.5, END, END + 1]):
            status = "late" if n == 3 and k % 2 else "ok"
            rows.append(
                {"meter_id": meter_id, "ts": ts, "total_l": 100.0 * k + n / 3, "status": status, "received_at": ts}
            )
    with engine.begin() as conn:
        conn.execute(insert(readings), rows[::-1])  # stored out of order: the query orders


@pytest.mark.parametrize("chunk", [1, 2, 3, 500])
def test_each_elder_reads_what_its_own_query_read(
    any_engine: Engine, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(any_engine)
    monkeypatch.setattr(route, "READ_METERS", chunk)
    with any_engine.connect() as conn:
        expected = [_one_query_an_elder(conn, meter_ids) if meter_ids else [] for meter_ids in METERS_OF]
        got = route._readings_by_elder(conn, METERS_OF, START, END)
    assert [list(map(tuple, elder_rows)) for elder_rows in got] == expected
    assert sum(map(len, expected)) == 11 * 4 - 5  # 11 meters, 4 in the window each, 5 late: rows to compare
    assert all(isinstance(ts, float) and isinstance(total, float) for rows in got for _, ts, total in rows)


def test_chunks_never_split_an_elder() -> None:
    assert list(route._chunks(METERS_OF, 3)) == [(0, 1), (1, 4), (4, 6)]
    assert list(route._chunks(METERS_OF, 500)) == [(0, 6)]
    assert list(route._chunks([], 5)) == []


def _simulated_community(engine: Engine, days: int) -> list[tuple[Home, list[str]]]:
    first = (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=days)
    incidents = [IncidentSpec(elder=0, kind="fall", start_day=days - 4.6)]
    res = simulate(SimConfig(elders=5, days=days, seed=4, start=first.isoformat(), incidents=incidents))
    now = time.time()
    rows = [
        {"meter_id": res.meter_ids[i], "ts": ts, "total_l": total, "status": "ok", "received_at": ts}
        for i, ts, total in zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True)
        if math.isfinite(total) and ts <= now
    ]
    unique = list({(r["meter_id"], r["ts"]): r for r in rows}.values())
    with engine.begin() as conn:
        conn.execute(insert(readings), unique)
    # The last elder has two meters: its own and a spare one with no readings.
    homes = [(Home(f"E{m}", None), [m]) for m in res.meter_ids]
    homes[-1][1].append("spare")
    return homes


def test_two_processes_each_reading_their_half_prepare_what_one_prepares(
    any_engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    homes = _simulated_community(any_engine, days=route.WARMUP_DAYS + 8)
    monkeypatch.setattr(route, "SPLIT_FROM", 10**9)
    with any_engine.connect() as conn:
        alone = route._build(conn, 7, homes, "Asia/Shanghai", HOLD_DOWNS)
    monkeypatch.setattr(route, "SPLIT_FROM", 1)
    monkeypatch.setattr(route, "PROCESSES", 2)
    with caplog.at_level(logging.WARNING), any_engine.connect() as conn:
        split = route._build(conn, 7, homes, "Asia/Shanghai", HOLD_DOWNS)
    assert not [r for r in caplog.records if "child" in r.getMessage()]  # the child read and prepared its half
    assert split.readings == alone.readings > 5 * 6 * 24  # the two reads saw the same readings of the period
    assert [p.current for p in split.elders] == [p.current for p in alone.elders]
    assert [p.open_at_start for p in split.elders] == [p.open_at_start for p in alone.elders]
    assert [[list(period) for _, period in p.at_start] for p in split.elders] == [
        [list(period) for _, period in p.at_start] for p in alone.elders
    ]
    assert sum(len(p.current) for p in alone.elders) > 0  # something was raised to compare


def test_a_store_in_memory_is_read_and_prepared_in_this_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A forked child could not open this process's in-memory SQLite store: no child is asked to read it."""
    engine = create_store_engine("sqlite://")
    migrate(engine)
    homes = _simulated_community(engine, days=route.WARMUP_DAYS + 8)
    monkeypatch.setattr(route, "SPLIT_FROM", 1)
    monkeypatch.setattr(route, "PROCESSES", 2)
    with caplog.at_level(logging.WARNING), engine.connect() as conn:
        made = route._build(conn, 7, homes, "Asia/Shanghai", HOLD_DOWNS)
    assert not [r for r in caplog.records if "child" in r.getMessage()]
    assert made.readings > 5 * 6 * 24 and sum(len(p.current) for p in made.elders) > 0
