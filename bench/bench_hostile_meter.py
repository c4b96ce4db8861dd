"""What one registered meter can cost the others and the operators: CPU per hostile message, and API pages.

Ingest: a meter sends 1,000-reading messages of a hostile shape (register glitches, resets and steep steps so the
register holds and releases, totals near the float limits, a tap flapping on and off, late readings spread over
the 72 h window) through ``Pipeline.process`` on a SQLite store; after each, a batch of one reading from each of
200 other meters. It prints the CPU milliseconds of each hostile message and of each of the others' batches.

Pages: a meter read every minute for ``--days`` days (1,440 readings a day, all the register's spacing allows),
then the API routes on it, timed through the app (wall and CPU seconds).

Workers: two pipelines (threads) on one PostgreSQL store, as two workers of a shared subscription, each
processing 40 batches of its half of 300 meters' readings plus one message of the hostile meter with a new reading
time (or late ones); it prints the races lost and the batches that failed (each sent back to the broker, with
every other meter's readings in it).

Run: ``.venv/bin/python bench/bench_hostile_meter.py`` (``--days 400``; ``--only pages``, ``ingest`` or
``workers``; workers need PostgreSQL's binaries, as the tests do).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, func, insert, select

from alerts.manager import AlertManager
from core.settings import get_settings
from engine.pipeline import Pipeline, RawMessage
from store import open_store
from store.registry import register_elder
from store.schema import alert_events, readings
from tests.api_fixtures import ELDER_A, Api, add_elder
from tests.helpers import message

NOW = time.time() // 60 * 60
START = NOW - 70 * 3600
OTHERS = 200
Shape = Callable[[int], list[tuple[float, float]]]


def _minutes(i: int) -> range:
    return range(i * 1000, (i + 1) * 1000)


SHAPES: dict[str, Shape] = {
    "plain": lambda i: [(START + 60 * k, 100.0 + 0.1 * k) for k in _minutes(i)],
    "glitch every other": lambda i: [(START + 60 * k, 1e9 if k % 2 else 100.0 + 0.01 * k) for k in _minutes(i)],
    "steep step every other": lambda i: [(START + 60 * k, 100.0 + 0.01 * k + 200 * (k % 2)) for k in _minutes(i)],
    "reset every other": lambda i: [(START + 60 * k, (k % 4) * 1e6) for k in _minutes(i)],
    "totals near 1.7e308": lambda i: [(START + 60 * k, 1.7e308 - 1e292 * k) for k in _minutes(i)],
    # 15 L a minute for 40 minutes, then 40 minutes without: a flow case raised and cleared over and over
    "tap flapping": lambda i: [(START + 60 * k, 100.0 + 15.0 * (k // 80 * 40 + min(k % 80, 40))) for k in _minutes(i)],
    "late over 72 h": lambda i: (
        [(NOW - 60 * (999 - j), 5000.0) for j in range(1000)]
        if i == 0
        else sorted((NOW - 17 * 3600 - random.Random(i).uniform(0, 54 * 3600), 100.0) for _ in range(1000))
    ),
}


def _raw(meter_id: str, rows: list[tuple[float, float]]) -> RawMessage:
    return RawMessage(f"tapwatch/meters/{meter_id}/readings", message(meter_id, rows), meter_id, received_at=NOW)


def _store(tmp: str, name: str) -> Engine:
    engine = open_store(f"sqlite:///{tmp}/{name}.db")
    with engine.begin() as conn:
        for k in range(OTHERS + 1):
            elder = {"elder_id": f"E{k}", "name": "王秀兰", "community": "大宁社区", "building": "3", "room": "5"}
            register_elder(conn, elder, f"M{k}", NOW - 80 * 3600)
    return engine


def ingest(tmp: str, messages: int) -> None:
    print(f"CPU ms per hostile message of 1,000 readings | per batch of {OTHERS} other meters' readings after it")
    for name, shape in SHAPES.items():
        engine = _store(tmp, name.replace(" ", "_"))
        pipeline = Pipeline(engine, AlertManager(), clock=lambda: NOW)
        hostile, others = [], []
        pipeline.process([_raw(f"M{k}", [(NOW - 72 * 3600 + 60, 100.0)]) for k in range(OTHERS + 1)])  # warm
        for i in range(messages):
            hostile_message = _raw("M0", shape(i))
            cpu = time.process_time()
            pipeline.process([hostile_message])
            hostile.append(time.process_time() - cpu)
            batch = [_raw(f"M{k}", [(NOW - 71 * 3600 + 1800 * i, 100.0 + i)]) for k in range(1, OTHERS + 1)]
            cpu = time.process_time()
            pipeline.process(batch)
            others.append(time.process_time() - cpu)
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(readings).where(readings.c.meter_id == "M0"))
            events = conn.execute(select(func.count()).select_from(alert_events)).scalar_one()
            kept = stored.scalar_one()
        shown = " ".join(f"{1000 * s:.0f}" for s in hostile)
        print(
            f"  {name:24s} {shown:>24s} | {' '.join(f'{1000 * s:.0f}' for s in others)}"
            f"   ({kept} readings kept, {events} alert events)"
        )
        engine.dispose()


def pages(tmp: str, days: float) -> None:
    engine = open_store(f"sqlite:///{tmp}/pages.db")
    api = Api(engine, get_settings())
    add_elder(engine, ELDER_A)
    count = int(days * 1440)
    with engine.begin() as conn:
        for lo in range(0, count, 50_000):
            conn.execute(
                insert(readings),
                [
                    {
                        "meter_id": "MA1",
                        "ts": NOW - (count - k) * 60,
                        "total_l": 100 + 0.1 * k,
                        "usage_l": 0.1,
                        "status": "ok",
                        "received_at": NOW,
                    }
                    for k in range(lo, min(count, lo + 50_000))
                ],
            )
    print(f"API on a meter read every minute for {days:g} days ({count:,} readings), admin, SQLite:")

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat()

    asks = [
        ("/meters/MA1/readings", {}),
        ("/meters/MA1/readings", {"start": iso(NOW - 93 * 86400), "end": iso(NOW), "limit": 10}),
        ("/meters/MA1/readings", {"start": iso(NOW - 93 * 86400), "end": iso(NOW), "limit": 10_000}),
        ("/meters/MA1/usage", {"start": iso(NOW - 7 * 86400), "end": iso(NOW), "every": "hour"}),
        ("/meters/MA1/usage", {"start": iso(NOW - 400 * 86400), "end": iso(NOW), "every": "day"}),
        ("/meters/MA1/usage", {"start": iso(NOW - 400 * 86400), "end": iso(NOW), "every": "hour"}),
        ("/elders/EA1", {}),
        ("/elders/EA1/routine", {}),
        ("/devices", {}),
        ("/alerts", {}),
    ]
    with api.client:
        for path, params in asks:
            wall, cpu = time.perf_counter(), time.process_time()
            answer = api.get("admin", path, params=params)
            shown = ", ".join(f"{k}={v[:10] if isinstance(v, str) else v}" for k, v in params.items())
            print(
                f"  {answer.status_code} {path} {shown}: {time.perf_counter() - wall:.2f} s wall, "
                f"{time.process_time() - cpu:.2f} s CPU, {len(answer.content):,} B"
            )
    engine.dispose()


def _worker(pipeline: Pipeline, w: int, hostile: str, rounds: int, others: int, failed: list[str]) -> None:
    """Worker ``w`` of two: its half of the other meters, and a message of the hostile meter in every batch."""
    mine = [f"M{k}" for k in range(1, others + 1) if k % 2 == w]
    for r in range(rounds):
        batch = [_raw(m, [(NOW - 70 * 3600 + 1800 * r, 100.0 + r)]) for m in mine]
        n = 2 * r + w  # this hostile message's number
        if hostile == "new":
            batch.append(_raw("M0", [(NOW - 60 * 3600 + 60 * n, 100.0 + n)]))
        elif hostile == "late":
            batch.append(_raw("M0", [(NOW - 71 * 3600 + 420 * n + 33_600 * j, 50.0) for j in range(5)]))
        try:
            pipeline.process(batch)
        except Exception as exc:  # the consumer would leave the batch with the broker and pause
            failed.append(type(exc).__name__)


def workers(rounds: int = 40, others: int = 300) -> None:
    import threading

    from tests.pg_fixtures import PostgresServer

    server = PostgresServer().start()
    print(f"2 workers on PostgreSQL, {rounds} batches each of {others // 2} meters' readings + 1 hostile message:")
    try:
        for hostile in ("none", "new", "late"):
            engine = open_store(server.new_database())
            with engine.begin() as conn:
                for k in range(others + 1):
                    elder = {
                        "elder_id": f"E{k}",
                        "name": "王秀兰",
                        "community": "大宁社区",
                        "building": "3",
                        "room": "5",
                    }
                    register_elder(conn, elder, f"M{k}", NOW - 80 * 3600)
            pipes = [Pipeline(engine, AlertManager(), clock=lambda: NOW) for _ in range(2)]
            pipes[0].process([_raw("M0", [(NOW - 60 * 3600 - 600, 99.0)])])
            failed: list[str] = []

            threads = [
                threading.Thread(target=_worker, args=(pipes[w], w, hostile, rounds, others, failed)) for w in range(2)
            ]
            wall = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            races = sum(p.races for p in pipes)
            print(f"  hostile {hostile:4s}: {time.perf_counter() - wall:.2f} s, races lost {races}, ", end="")
            print(f"batches failed {len(failed)} {sorted(set(failed))}")
            engine.dispose()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=400, help="days of one-a-minute readings for the pages")
    parser.add_argument("--messages", type=int, default=5, help="hostile messages per shape")
    parser.add_argument("--only", choices=["ingest", "pages", "workers"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "ingest"):
            ingest(tmp, args.messages)
        if args.only in (None, "pages"):
            pages(tmp, args.days)
        if args.only in (None, "workers"):
            workers()


if __name__ == "__main__":
    main()
