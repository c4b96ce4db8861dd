"""A fingerprint of every finding the replay path raises, to show an optimisation changed no detection.

Replays readings CSVs through RegisterTracker and MeterMonitor exactly as
``bench/bench_replay.py``'s ``end_to_end`` does, and prints, per data set, the
number of readings and findings, the findings by kind and a sha256 over
``repr`` of every finding's fields, sorted by meter then time. Equal digests
before and after a change mean the same findings (kind, time, message, details).

    .venv/bin/python bench/findings_digest.py            # simulated sets and the real homes
    .venv/bin/python bench/findings_digest.py --no-real  # simulated only

The data sets: 100 simulated elders x 120 days (seed 3, incidents and faults
on), 2,000 x 3 days (seed 4: cold start of many meters) and, when the file is
there, the real homes of ``../shared/data/real-water/dev.csv.gz``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_replay
from bench.bench_replay import simulated_csv
from core.domain import Finding

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real-water/dev.csv.gz"
#: (elders, days, seed) of the simulated sets.
SIMULATED = ((100, 120, 3), (2000, 3, 4))


def replay(path: Path) -> tuple[int, list[Finding]]:
    """Readings and findings of the replay path, as ``bench_replay.end_to_end`` runs it."""
    found: list[Finding] = []
    return bench_replay.replay(path, found), found


def digest(findings: list[Finding]) -> str:
    """sha256 over every finding's fields, in a stable order (meter, time, then the fields)."""
    keyed = sorted((f.meter_id, f.ts, repr(dataclasses.astuple(f))) for f in findings)
    h = hashlib.sha256()
    for _, _, line in keyed:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def report(name: str, path: Path) -> str:
    n, findings = replay(path)
    kinds = Counter(f.kind + (" resolved" if f.resolved else "") for f in findings)
    line = f"{name}: {n:,} readings, {len(findings):,} findings, sha256 {digest(findings)}"
    return line + "\n    " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-real", action="store_true", help="skip the real homes")
    p.add_argument("--real", type=Path, default=REAL)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for elders, days, seed in SIMULATED:
            path = Path(tmp) / f"sim-{elders}-{days}-{seed}.csv.gz"
            simulated_csv(elders, days, seed, path)
            print(report(f"simulated {elders} x {days} days, seed {seed}", path), flush=True)
    if not args.no_real and args.real.exists():
        print(report(f"real {args.real.name}", args.real), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
