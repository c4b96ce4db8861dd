"""Throughput with 1, 2 and 4 workers sharing one stream (MQTT 5 shared subscription, one PostgreSQL).

Each run: a fresh database with N registered meters, K ``tapwatch run``
worker processes in one shared group on a real Mosquitto, and a separate
publisher process sending a burst (every meter, every half hour, one reading
per message: the worst case) as fast as the broker takes it. Measured: the
time from the first publish until every reading is committed (ingest ->
store -> detect -> alert), the readings/s that makes, how many batches were
rerun after losing a race for a meter to another worker, and the CPU seconds
each worker and PostgreSQL used. Publisher, broker, database and workers all
share this machine's cores: on 2 cores the figures show what contention costs,
not what a cluster of machines would do (see docs/scaling.md).

    .venv/bin/python bench/bench_workers.py                  # 5,000 meters, 100,000 readings, 1/2/4 workers
    .venv/bin/python bench/bench_workers.py --quick          # 1,000 meters, 20,000 readings
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import SLOT, cpu_s, publish_burst, register_meters
from sqlalchemy import func, select

from store import open_store
from store.schema import readings
from tests.pg_fixtures import PostgresServer
from tests.processes import Mosquitto, free_port, wait_until


def _processes() -> dict[int, tuple[str, int]]:
    """pid -> (name, parent pid) of every process now running."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended while we looked
        name = text[text.index("(") + 1 : text.rindex(")")]
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        found[int(stat.parent.name)] = (name, parent)
    return found


def postgres_cpu() -> float:
    return sum(cpu_s(pid, children=True) for pid, (name, _) in _processes().items() if name == "postgres")


def worker_cpu(pid: int) -> float:
    """CPU of a worker and of the processes it runs (its MQTT client process), alive or waited for."""
    processes = _processes()
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, (_, parent) in processes.items() if parent in frontier]
        tree += frontier
    return sum(cpu_s(member, children=True) for member in tree)


def run(workers: int, meters: int, burst: int, pg: PostgresServer, broker: Mosquitto, tmp: Path) -> dict[str, Any]:
    url = pg.new_database()
    engine = open_store(url)
    register_meters(engine, meters)
    group = f"bench{workers}"
    procs = []
    logs = []
    for i in range(workers):
        log = tmp / f"{group}-w{i}.log"
        env = {
            **os.environ,
            "TAPWATCH_DATA_DIR": str(tmp),
            "TAPWATCH_DATABASE_URL": url,
            "TAPWATCH_MQTT_URL": broker.url,
            "TAPWATCH_MQTT_PROTOCOL": "5",
            "TAPWATCH_MQTT_SHARED_GROUP": group,
            "TAPWATCH_MQTT_CLIENT_ID": f"{group}-w{i}",
            "TAPWATCH_API_PORT": str(free_port()),
            "TAPWATCH_LATE_WINDOW_HOURS": str(24 * 365),
            "TAPWATCH_OFFLINE_CHECK_S": "100000",
        }
        handle = log.open("wb")
        command = [sys.executable, "-m", "tapwatch.cli", "run"]
        procs.append(subprocess.Popen(command, env=env, stdout=handle, stderr=handle))
        logs.append(log)
    try:
        # A shared subscription's group exists only once a member subscribed: the broker drops what
        # is published before (a new deployment subscribes before its meters are pointed at it).
        assert wait_until(lambda: all("subscribed to" in p.read_text(errors="replace") for p in logs), 60)
        pg_before = postgres_cpu()
        ticks = max(1, burst // meters)
        start = (time.time() - ticks * SLOT - 3600) // SLOT * SLOT
        out: Any = mp.Queue()
        publisher = mp.Process(target=publish_burst, args=(broker.url, meters, ticks, start, out))
        began = time.monotonic()
        publisher.start()

        def stored() -> int:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(readings)).scalar_one())

        expected = ticks * meters
        assert wait_until(lambda: stored() >= expected, 1800, interval=0.5), f"stored {stored()} of {expected}"
        elapsed = time.monotonic() - began
        publisher.join(60)
        cpu_by_worker = [worker_cpu(p.pid) for p in procs]
        pg_cpu = postgres_cpu() - pg_before
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
        engine.dispose()
    races = sum(int(m) for log in logs for m in re.findall(r"races=(\d+)", log.read_text(errors="replace")))
    return {
        "workers": workers,
        "readings": expected,
        "seconds": elapsed,
        "rate": expected / elapsed,
        "worker_cpu": cpu_by_worker,
        "pg_cpu": pg_cpu,
        "races": races,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=5_000)
    parser.add_argument("--burst", type=int, default=100_000, help="readings in each run's burst")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--quick", action="store_true", help="1,000 meters, 20,000 readings")
    args = parser.parse_args()
    if args.quick:
        args.meters, args.burst = 1_000, 20_000
    counts = [int(k) for k in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="tapwatch-bench-workers-") as tmp_dir:
        tmp = Path(tmp_dir)
        pg = PostgresServer().start()
        (tmp / "mosquitto").mkdir()
        broker = Mosquitto(tmp / "mosquitto")
        broker.start()
        try:
            results = [run(k, args.meters, args.burst, pg, broker, tmp) for k in counts]
        finally:
            broker.stop()
            pg.stop()
    print(f"\n{args.meters:,} meters; a burst of {results[0]['readings']:,} readings (one per message) per run")
    print(f"machine: {os.cpu_count()} cores; publisher, Mosquitto, PostgreSQL and the workers share them\n")
    print("| workers | readings/s | drain (s) | vs 1 worker | CPU s per worker | PostgreSQL CPU s | races rerun |")
    print("|---|---|---|---|---|---|---|")
    base = results[0]["rate"]
    for r in results:
        cpu = ", ".join(f"{c:.0f}" for c in r["worker_cpu"])
        print(
            f"| {r['workers']} | {r['rate']:,.0f} | {r['seconds']:.1f} | {r['rate'] / base:.2f}x | {cpu} "
            f"| {r['pg_cpu']:.0f} | {r['races']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
