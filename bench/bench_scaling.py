"""The scaling curve: ``Pipeline.process`` throughput and RAM per meter at 1k, 10k, 100k (and 1M) meters.

For each size N, in a fresh subprocess (so RSS, caches and the SQLite file of
one size do not leak into the next): register N meters in a new SQLite store,
then feed one half-hour tick of N messages (one reading each, the worst case,
batches of ``--batch`` as the MQTT consumer hands them over, as
``bench_pipeline`` does). Tick 0 is cold (every meter's state is created and
checkpointed for the first time); ticks 1..``--warm-ticks`` are warm. Reports
readings/s for both and the growth of the whole process's RSS from before
tick 0 to after the last tick, divided by N (detector state, caches, the
SQLite page cache: everything the monitor keeps per meter).

Writes ``docs/scaling-curve.svg`` (``--svg``) and prints the table as markdown
for ``docs/scaling-curve.md``.

    .venv/bin/python bench/bench_scaling.py                                   # 1k, 10k, 100k: a few minutes
    .venv/bin/python bench/bench_scaling.py --sizes 1000 10000 100000 1000000 # the full curve: ~5 GB RAM
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import SLOT, _payload, _stamp, _topic, _usage, meter_id
from bench_memory import rss_bytes
from bench_pipeline import pipeline_service
from svgplot import line_chart, side_by_side

ROOT = Path(__file__).resolve().parent.parent


def release_freed_heap() -> None:
    """Give freed malloc memory back to the OS, so the RSS baseline is not inflated by registration's rows."""
    gc.collect()
    # Not glibc: no trim, the baseline is a little high and the figure a little low.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def tick_batches(meters: int, tick: int, start: float, totals: list[float], size: int) -> Iterator[list[Any]]:
    """One tick's messages, ``size`` at a time: a million meters' payloads are never all held at once."""
    from ingest.payload import RawMessage

    stamp = _stamp(start + tick * SLOT)
    for lo in range(0, meters, size):
        batch = []
        for k in range(lo, min(lo + size, meters)):
            totals[k] += _usage(k, tick)
            m = meter_id(k)
            batch.append(RawMessage(_topic(m), _payload(m, stamp, totals[k]), m, 0.0))
        yield batch


def run_size(meters: int, warm_ticks: int, batch_size: int) -> dict[str, Any]:
    """One size, in this process: figures as a dict (printed as JSON for the parent)."""
    workdir = Path(tempfile.mkdtemp(prefix="tapwatch-scaling-"))
    service, start = pipeline_service(workdir, meters)
    totals = [1000.0] * meters
    release_freed_heap()
    before = rss_bytes()
    ticks: list[dict[str, float]] = []
    for tick in range(1 + warm_ticks):
        wall = cpu = 0.0
        for batch in tick_batches(meters, tick, start, totals, batch_size):
            # Only the pipeline is timed: building the payloads is the publisher's work, not the monitor's.
            t0, c0 = time.perf_counter(), time.process_time()
            for m in batch:
                m.received_at = time.time()
            service.pipeline.process(batch)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
        # Every meter got a reading, so a state still dirty was not checkpointed in this tick.
        rewritten = meters - len(service.pipeline.states.dirty())
        ticks.append({"wall": wall, "cpu": cpu, "checkpoints": rewritten})
    gc.collect()
    grown = rss_bytes() - before
    stored = service.pipeline.totals.readings_stored
    expected = meters * (1 + warm_ticks)
    if stored != expected:
        raise SystemExit(f"{meters:,} meters: {stored:,} readings stored, expected {expected:,}")
    warm = ticks[1:]
    warm_wall = sum(t["wall"] for t in warm)
    result = {
        "meters": meters,
        "cold_rate": meters / ticks[0]["wall"],
        "warm_rate": meters * len(warm) / warm_wall if warm else float("nan"),
        "cold_cpu_us": ticks[0]["cpu"] / meters * 1e6,
        "warm_cpu_us": sum(t["cpu"] for t in warm) / (meters * len(warm)) * 1e6 if warm else float("nan"),
        "warm_tick_rates": [meters / t["wall"] for t in warm],
        # Tick 1 closes each meter's first interval, which runs the silence model's refresh (twice):
        # ticks 2+ are the steady per-reading cost, shown apart so the mix does not hide it.
        "steady_rate": meters * len(warm[1:]) / sum(t["wall"] for t in warm[1:]) if warm[1:] else float("nan"),
        "warm_checkpoints": [int(t["checkpoints"]) for t in warm],
        "bytes_per_meter": grown / meters,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "db_bytes": sum(p.stat().st_size for p in workdir.glob("bench.db*")),
    }
    service.engine.dispose()
    shutil.rmtree(workdir, ignore_errors=True)  # a million meters leave 4.4 GB behind otherwise
    return result


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| meters | cold readings/s (tick 0) | warm readings/s (ticks 1+) | tick 1 | ticks 2+ "
        "| RSS bytes/meter | seconds | load avg (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['meters']:,} | {r['cold_rate']:,.0f} | {r['warm_rate']:,.0f} "
            f"| {r['warm_tick_rates'][0]:,.0f} | {r['steady_rate']:,.0f} | {r['bytes_per_meter']:,.0f} "
            f"| {r['seconds']:,.0f} | {r['load'][0]:.1f}-{r['load'][1]:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    rate = line_chart(
        {
            "cold (tick 0)": [(r["meters"], r["cold_rate"]) for r in rows],
            "warm (ticks 1+)": [(r["meters"], r["warm_rate"]) for r in rows],
            **(
                {"steady (ticks 2+)": [(r["meters"], r["steady_rate"]) for r in rows]}
                if len(rows[0]["warm_tick_rates"]) > 1
                else {}
            ),
        },
        title="Pipeline.process throughput",
        x_label="meters (log scale)",
        y_label="readings/s",
    )
    ram = line_chart(
        {"RSS growth / meters": [(r["meters"], r["bytes_per_meter"]) for r in rows]},
        title="Memory per meter",
        x_label="meters (log scale)",
        y_label="bytes per meter (whole process)",
    )
    title = f"tapwatch scaling, SQLite, one process - {os.cpu_count()} cores, {date.today().isoformat()}"
    path.write_text(side_by_side([rate, ram], title=title))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="meter counts")
    parser.add_argument("--warm-ticks", type=int, default=2, help="half-hour ticks after the cold one")
    parser.add_argument("--batch", type=int, default=2_000, help="messages per batch (TAPWATCH_BATCH_MAX)")
    parser.add_argument("--svg", type=Path, default=ROOT / "docs" / "scaling-curve.svg")
    parser.add_argument("--rows", type=Path, help="also save the measured rows here as JSON")
    parser.add_argument("--replot", type=Path, help="measure nothing: table and plot from rows saved by --rows")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child: one size, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_size(args.one, args.warm_ticks, args.batch)))
        return 0

    rows = json.loads(args.replot.read_text()) if args.replot else []
    for meters in [] if args.replot else sorted(args.sizes):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        child = [sys.executable, __file__, "--one", str(meters), "--warm-ticks", str(args.warm_ticks)]
        out = subprocess.run([*child, "--batch", str(args.batch)], check=True, capture_output=True, text=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["seconds"] = time.perf_counter() - started
        row["load"] = sorted([load, os.getloadavg()[0]])
        rows.append(row)
        print(
            f"{meters:>9,} meters: cold {row['cold_rate']:,.0f}/s ({row['cold_cpu_us']:.0f} us CPU each), "
            f"warm {row['warm_rate']:,.0f}/s ({row['warm_cpu_us']:.0f} us; per tick "
            f"{', '.join(f'{r:,.0f}' for r in row['warm_tick_rates'])}; checkpoints rewritten "
            f"{', '.join(f'{c:,}' for c in row['warm_checkpoints'])}), {row['bytes_per_meter']:,.0f} B/meter RSS, "
            f"peak RSS {row['peak_rss'] / 2**30:.2f} GiB, SQLite {row['db_bytes'] / 2**20:,.0f} MiB, "
            f"{row['seconds']:.0f} s",
            flush=True,
        )
    if args.rows:
        args.rows.write_text(json.dumps(rows, indent=1))
    print()
    print(markdown(rows))
    plot(rows, args.svg)
    print(f"\nwrote {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
