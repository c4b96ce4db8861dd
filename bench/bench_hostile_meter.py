"""What one registered meter can cost the others and the operators: CPU per hostile message, and API pages.

Ingest: a meter sends 1,000-reading messages of a hostile shape (register glitches, resets and steep steps so the
register holds and releases, totals near the float limits, a tap flapping on and off, late readings spread over
the 72 h window) through ``Pipeline.process`` on a SQLite store; after each, a batch of one reading from each of
200 other meters. It prints the CPU milliseconds of each hostile message and of each of the others' batches.

Pages: a meter read every minute for ``--days`` days (1,440 readings a day, all the register's spacing allows),
then the API routes on it, timed through the app (wall and CPU seconds).

Run: ``.venv/bin/python bench/bench_hostile_meter.py`` (``--days 400``; ``--only pages`` or ``--only ingest``).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=400, help="days of one-a-minute readings for the pages")
    parser.add_argument("--messages", type=int, default=5, help="hostile messages per shape")
    parser.add_argument("--only", choices=["ingest", "pages"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "pages":
            ingest(tmp, args.messages)
        if args.only != "ingest":
            pages(tmp, args.days)


if __name__ == "__main__":
    main()
