"""Readings per second written through the InfluxDB backend: stager (in the readings transaction) and writer.

Starts its own influxd + nginx on loopback (Debian's influxdb and nginx, as the
tests do), stages a simulated month of half-hourly readings into the spool the
way the pipeline does, then times the writer draining the spool into InfluxDB.

    .venv/bin/python bench/bench_influx.py [--meters 100] [--days 30] [--batch-size 5000]

``--writers N --postgresql`` drains one spool with N writers on a throwaway
PostgreSQL cluster, as N workers do, and counts the points InfluxDB acknowledged
(each reading should be sent once, however many workers share the spool).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.payload import ParsedMessage, ParsedReading  # noqa: E402
from store import open_store  # noqa: E402
from store.schema import influx_spool  # noqa: E402
from tests.influx_fixtures import MISSING, InfluxServer  # noqa: E402
from tests.pg_fixtures import PostgresServer  # noqa: E402
from timeseries.influx import InfluxConfig  # noqa: E402
from timeseries.influxql import InfluxQL  # noqa: E402
from timeseries.spool import InfluxStager, InfluxWriter  # noqa: E402

T0 = 1_790_784_000.0  # 2026-10-01 00:00 +08:00


def messages(meters: int, days: int) -> list[tuple[dict[str, str], list[dict[str, object]], ParsedMessage]]:
    """Daily messages of 48 half-hourly readings per meter, as NB-IoT meters send them."""
    rng = np.random.default_rng(1)
    out = []
    for day in range(days):
        for i in range(meters):
            ts = T0 + day * 86400 + 1800 * np.arange(1, 49)
            use = rng.gamma(0.5, 6.0, size=48).round(1)
            total = 1000.0 * i + day * 300 + np.cumsum(use)
            meter = f"M{i:04d}"
            rows: list[dict[str, object]] = [
                {"meter_id": meter, "ts": float(t), "total_l": float(v), "usage_l": float(u), "status": "ok"}
                for t, v, u in zip(ts, total, use, strict=True)
            ]
            readings = [ParsedReading(float(t), float(v), 28800) for t, v in zip(ts, total, strict=True)]
            out.append(
                (
                    {"elder_id": f"E{i:04d}", "community": f"社区{i % 20}"},
                    rows,
                    ParsedMessage(meter, readings, 80.0, -90.0),
                )
            )
    return out


def stage(
    engine: Engine, batch: list[tuple[dict[str, str], list[dict[str, object]], ParsedMessage]]
) -> tuple[int, float]:
    """Stage the messages, 100 per transaction as the pipeline batches them; (readings, seconds)."""
    stager = InfluxStager()
    started = time.perf_counter()
    for k in range(0, len(batch), 100):
        with engine.begin() as conn:
            for context, rows, parsed in batch[k : k + 100]:
                stager.stage(conn, context, rows, parsed, [])
    return sum(len(rows) for _, rows, _ in batch), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--writers", type=int, default=1, help="writers draining the one spool (workers)")
    parser.add_argument("--postgresql", action="store_true", help="the spool on PostgreSQL instead of SQLite")
    args = parser.parse_args()
    if MISSING:
        print(f"skipped: {MISSING}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxServer(Path(tmp) / "influx")
        server.start()
        pg = PostgresServer().start() if args.postgresql else None
        engine = open_store(pg.new_database() if pg is not None else f"sqlite:///{tmp}/bench.db")
        try:
            n, stage_s = stage(engine, messages(args.meters, args.days))
            config = InfluxConfig(url=server.url, bucket=server.database)
            writers = [
                InfluxWriter(engine, config, batch_size=args.batch_size, mirror=False, status_every_s=0)
                for _ in range(args.writers)
            ]
            threads = [threading.Thread(target=writer.serve) for writer in writers]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            deadline = started + 600
            while writers[0].pending and time.perf_counter() < deadline:
                time.sleep(0.01)
            write_s = time.perf_counter() - started
            for writer in writers:
                writer.stop()
            for thread in threads:
                thread.join()
            sent = sum(writer.points_written for writer in writers)
            for writer in writers:
                writer.close()
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(influx_spool)).scalar_one() == 0
            ql = InfluxQL(config)
            stored = ql.select('SELECT count("total_l") FROM "readings"')[0][0]["count"]
            ql.close()
            assert stored == n, f"InfluxDB holds {stored} readings, staged {n}"
        finally:
            engine.dispose()
            server.stop()
            if pg is not None:
                pg.stop()
    what = f"{n} readings ({args.meters} meters x {args.days} days)"
    print(f"staged {what} in the readings transaction in {stage_s:.2f} s: {n / stage_s:,.0f} readings/s")
    store = "PostgreSQL" if args.postgresql else "SQLite"
    print(
        f"wrote them to InfluxDB (batch {args.batch_size}, {args.writers} writer(s) on {store}) in {write_s:.2f} s:"
        f" {n / write_s:,.0f} readings/s; InfluxDB acknowledged {sent / n:.2f} points per reading"
    )
    print(f"end to end (stage + write): {n / (stage_s + write_s):,.0f} readings/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
