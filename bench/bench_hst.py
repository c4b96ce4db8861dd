"""Throughput and state size: tapwatch's MeterMonitor against river's HalfSpaceTrees per meter, in the same run.

Both detectors see the same intervals (``tapwatch eval``'s data: RegisterTracker over the
delivered readings). The runs alternate between the two detectors and the median is
reported, so load from other jobs hits both alike. "readings/s" adds the register stage
(timed once, shared) to the detector's time: rows -> RegisterTracker -> detector, CSV
parsing excluded.

    .venv/bin/python bench/bench_hst.py                         # simulated: 200 elders x 60 days
    .venv/bin/python bench/bench_hst.py --csv ../shared/data/real-water/dev.csv.gz
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.domain import Interval
from detect import MeterMonitor
from detect.hst import HalfSpaceTreesDetector
from tapwatch import evaluate as ev

DETECTORS: dict[str, Callable[[str], Any]] = {
    "tapwatch MeterMonitor": MeterMonitor,
    "river HST": lambda meter_id: HalfSpaceTreesDetector(meter_id, seed=1),
}


def prepare(args: argparse.Namespace) -> tuple[str, dict[str, list[Interval]], int, float]:
    """The dataset and the seconds its register stage took (RegisterTracker over the readings)."""
    if args.csv:
        series, _ = ev.inject(ev.read_csv_series(args.csv), args.seed)
        ids = sorted(series)
        rows = [(k, t, v) for k, m in enumerate(ids) for t, v in zip(series[m][0], series[m][1], strict=True)]
        name = f"real {Path(args.csv).name} (incidents injected)"
        tz = args.tz
    else:
        from simulator import SimConfig, simulate

        res = simulate(SimConfig(elders=args.elders, days=args.days, seed=args.seed))  # incidents, events, faults
        ids = list(res.meter_ids)
        rows = list(zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True))
        tz = ev.simulated_zone(res.config.tz_offset_h)
        name = f"simulated {args.elders} elders x {args.days} days"
    tic = time.perf_counter()
    intervals, n = ev.intervals_from_readings(ids, rows, tz)
    return name, intervals, n, time.perf_counter() - tic


def run_once(make: Callable[[str], Any], intervals: dict[str, list[Interval]]) -> tuple[float, dict[str, Any]]:
    """Seconds to feed every meter's intervals to a fresh detector, and the detectors."""
    detectors: dict[str, Any] = {}
    tic = time.perf_counter()
    for meter_id, xs in intervals.items():
        det = detectors[meter_id] = make(meter_id)
        update = det.update
        for x in xs:
            update(x)
    return time.perf_counter() - tic, detectors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", help="real readings CSV (default: simulate --elders x --days)")
    p.add_argument("--tz", default="Europe/Madrid", help="time zone of the --csv homes (default: the DAIAD homes')")
    p.add_argument("--elders", type=int, default=200)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="runs per detector, alternating; the median is reported")
    args = p.parse_args(argv)
    name, intervals, readings, t_register = prepare(args)
    n = sum(len(xs) for xs in intervals.values())
    times: dict[str, list[float]] = {k: [] for k in DETECTORS}
    last: dict[str, dict[str, Any]] = {}
    for r in range(args.repeat):
        order = list(DETECTORS) if r % 2 == 0 else list(reversed(DETECTORS))
        for key in order:
            seconds, last[key] = run_once(DETECTORS[key], intervals)
            times[key].append(seconds)
    print(f"# {name}: {readings:,} readings, {n:,} intervals, {len(intervals)} meters")
    print(f"# register stage (shared): {readings / t_register:,.0f} readings/s; median of {args.repeat} runs each\n")
    print(
        "| detector | intervals/s (detector alone) | us per interval | readings/s (register + detector) "
        "| pickled bytes per meter (median / max) |"
    )
    print("|---|---|---|---|---|")
    for key in DETECTORS:
        t = statistics.median(times[key])
        sizes = sorted(len(pickle.dumps(d)) for d in last[key].values())
        print(
            f"| {key} | {n / t:,.0f} | {1e6 * t / n:.1f} | {readings / (t + t_register):,.0f} "
            f"| {sizes[len(sizes) // 2]:,} / {sizes[-1]:,} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
