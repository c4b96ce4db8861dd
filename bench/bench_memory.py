"""Memory per meter: detector state in RAM (RSS delta) and pickled, at 100k and 1M meters.

Each meter's state is a real MeterMonitor + RegisterTracker warmed on ``--days``
(60) days of a simulated elder's readings. Simulating a million elders would
take hours, so ``--distinct`` (50) elders are warmed and the population is made
by unpickling copies of their checkpoints, round robin, into a RegisterTracker
and a MeterMonitor per meter id (as a worker does when it loads checkpoints).
The figure is the growth of the process's RSS while holding them, divided by
the number of meters: bytes per meter, including the dict entry and the id.

Run: ``.venv/bin/python bench/bench_memory.py`` (``--meters 100000 1000000``);
``--meters 20000 --no-disk`` for a quick look. Also prints on-disk bytes per
meter-day of the relational store.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def warmed_states(count: int, days: int) -> list[bytes]:
    from detect import MeterMonitor
    from ingest.register import RegisterTracker
    from simulator import SimConfig, simulate

    sim = simulate(SimConfig(elders=count, days=days, seed=5, random_incidents=False, faults=False))
    blobs = []
    for k, meter in enumerate(sim.meter_ids):
        tracker, monitor = RegisterTracker(meter), MeterMonitor(meter)
        rows = sim.meter_idx == k
        for ts, total in zip(sim.ts[rows], sim.total_l[rows], strict=True):
            for interval in tracker.push(float(ts), float(total), 8 * 3600)[1]:
                monitor.update(interval)
        # As ``engine.meterstate`` writes a checkpoint: the zone it was made in last.
        blobs.append(pickle.dumps((tracker.state(), monitor, "Asia/Shanghai"), protocol=pickle.HIGHEST_PROTOCOL))
    return blobs


def load(meter_id: str, blob: bytes) -> tuple[object, object]:
    """A meter's tracker and monitor from a checkpoint, as ``engine.meterstate`` loads them."""
    from engine.meterstate import load_checkpoint
    from ingest.register import RegisterTracker

    tracker_state, monitor, _zone = load_checkpoint(blob)  # restricted to a checkpoint's classes, and checked
    tracker = RegisterTracker(meter_id)
    tracker.restore(tracker_state)
    monitor.meter_id = meter_id
    return tracker, monitor


def hold(blobs: list[bytes], meters: int) -> tuple[float, float]:
    """RSS bytes per meter when holding ``meters`` states, and seconds to load them."""
    import engine.meterstate  # noqa: F401  (imported before the RSS is read: its modules are no meter's)

    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    held = {}
    for k in range(meters):
        meter_id = f"M{k:08d}"
        held[meter_id] = load(meter_id, blobs[k % len(blobs)])
    seconds = time.perf_counter() - started
    gc.collect()
    per_meter = (rss_bytes() - before) / meters
    del held
    gc.collect()
    return per_meter, seconds


def disk_per_meter_day(days: int = 30, meters: int = 100) -> float:
    from alerts.manager import AlertManager
    from engine.pipeline import Pipeline
    from ingest.payload import RawMessage
    from simulator import SimConfig, simulate
    from store import open_store
    from store.registry import register_elder

    sim = simulate(SimConfig(elders=meters, days=days, seed=6, random_incidents=False, faults=False))
    workdir = Path(tempfile.mkdtemp(prefix="tapwatch-mem-"))
    engine = open_store(f"sqlite:///{workdir / 'disk.db'}")
    with engine.begin() as conn:
        for elder in sim.elders:
            register_elder(conn, elder, elder["meter_id"], 0.0)
    from simulator.publisher import payload, plan_messages

    history, _ = plan_messages(sim, history_days=float(days))
    pipeline = Pipeline(engine, AlertManager(), late_window_s=1e10)
    batch: list[RawMessage] = []
    for m in history:
        batch.append(RawMessage("bench", payload(sim, m), None))
        if len(batch) == 1000:
            pipeline.process(batch)
            batch = []
    if batch:
        pipeline.process(batch)
    pipeline.flush_checkpoints()
    engine.dispose()
    size = sum(p.stat().st_size for p in workdir.glob("disk.db*"))
    return size / (meters * days)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--distinct", type=int, default=50, help="distinct warmed elders to copy states from")
    parser.add_argument("--days", type=int, default=60, help="days of history each state has learned")
    parser.add_argument("--no-disk", action="store_true", help="skip the relational store measurement")
    args = parser.parse_args()
    blobs = warmed_states(args.distinct, args.days)
    sizes = sorted(len(b) for b in blobs)
    print(
        f"pickled state per meter after {args.days} days: median {sizes[len(sizes) // 2]:,} bytes, "
        f"max {sizes[-1]:,} bytes (target <= 4,096)"
    )
    for meters in args.meters:
        per_meter, seconds = hold(blobs, meters)
        print(
            f"{meters:>9,} meters in memory: {per_meter:,.0f} bytes/meter RSS "
            f"({per_meter * meters / 2**30:.2f} GiB; target <= 4,096 bytes/meter), loaded in {seconds:.1f} s"
        )
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if not args.no_disk:
        print(f"relational store on disk (SQLite): {disk_per_meter_day():,.0f} bytes per meter-day")
    return 0


if __name__ == "__main__":
    sys.exit(main())
