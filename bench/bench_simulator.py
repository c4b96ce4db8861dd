"""Benchmark: 1,000 elders x 365 days to CSV (target under 30 s on one core).

Run: .venv/bin/python bench/bench_simulator.py [--elders N] [--days D] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from simulator import SimConfig, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--elders", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--out", help="directory to write to (default: a temporary one, removed after)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        t0, c0 = time.perf_counter(), time.process_time()
        res = simulate(SimConfig(elders=args.elders, days=args.days, seed=1))
        t1 = time.perf_counter()
        res.write(out)
        t2, c2 = time.perf_counter(), time.process_time()
        size = (out / "readings.csv").stat().st_size / 1e6
        print(f"{args.elders} elders x {args.days} days: {len(res.ts):,} readings, {len(res.labels):,} labels")
        print(
            f"simulate {t1 - t0:.1f} s, write {t2 - t1:.1f} s ({size:.0f} MB CSV), total {t2 - t0:.1f} s "
            f"wall, {c2 - c0:.1f} s CPU"
        )


if __name__ == "__main__":
    main()
