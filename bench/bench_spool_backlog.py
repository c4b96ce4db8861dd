"""What one ``/readyz`` or ``/metrics`` call pays for the InfluxDB spool's backlog figure, on PostgreSQL.

Every call asks the writer for ``backlog()`` (rows waiting, age of the oldest).
While InfluxDB is down the spool grows by one row per meter message: a week of
10 000 meters sending every half hour is 3.4 million rows. This fills a
throwaway PostgreSQL cluster's spool with rows of one reading each (about the
size the stager writes) and times ``backlog()`` at several sizes.

Session 16, 2 shared cores, median of 5: counting the rows took 20 / 141 / 398 ms
at 0.1 / 1 / 3 million rows; from the id index (exact up to 100 000 ids) 12 / 3 / 1 ms.

    .venv/bin/python bench/bench_spool_backlog.py [--rows 100000,1000000,3000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from store import open_store  # noqa: E402
from tests.pg_fixtures import PostgresServer  # noqa: E402
from timeseries.influx import InfluxConfig  # noqa: E402
from timeseries.spool import InfluxWriter  # noqa: E402

LINE = (
    "readings,community=\\u5927\\u5b81\\u793e\\u533a,elder_id=E{n:05d},meter_id=M{n:05d} "
    'total_l=12345.6,usage_l=1.5,status="ok",battery_pct=80.0,rssi=-90.0 1790784000000'
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000,3000000", help="spool sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.rows.split(",")]
    pg = PostgresServer().start()
    try:
        engine = open_store(pg.new_database())
        # nothing is sent: the writer only reads the spool here
        writer = InfluxWriter(engine, InfluxConfig(url="http://127.0.0.1:9"), mirror=False, status_every_s=0)
        have = 0
        print(f"{'spool rows':>12} {'backlog() median ms':>20} {'max ms':>8}")
        for size in sizes:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO influx_spool (lines, created_at) "
                        "SELECT replace(:line, '{n:05d}', lpad((g % 10000)::text, 5, '0')), 1790784000 + g "
                        "FROM generate_series(:first, :last) AS g"
                    ),
                    {"line": LINE, "first": have + 1, "last": size},
                )
                conn.execute(text("ANALYZE influx_spool"))
            have = size
            writer.backlog()  # warm: the table in shared buffers / the page cache, as on a busy server
            took = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                pending, _lag = writer.backlog()
                took.append((time.perf_counter() - started) * 1000)
            assert pending == size, pending
            print(f"{size:>12} {statistics.median(took):>20.1f} {max(took):>8.1f}")
        writer.close()
        engine.dispose()
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
