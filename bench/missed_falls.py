"""Falls (and deaths) no community alert found: each with the meter's findings and labels around it.

A fall nobody finds is the worst thing tapwatch can do, and the rare ones hide in averages: a leak running
under the fall, a meter that stopped reporting during it. This lists them for one tuning set, with what the
meter raised from five days before the fall to a day after its window, and the labels there (the labels
only list them: the detector never sees them). Session 11 found both causes above with it.

    .venv/bin/python bench/missed_falls.py --sim 300x120x3
    .venv/bin/python bench/missed_falls.py --sim 300x180x2
    .venv/bin/python bench/missed_falls.py --real ../shared/data/real-water/dev.csv.gz --seed 2
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from silence_calibration import add_dataset_args, load  # the cached tuning sets (bench/ is this script's folder)

from core.domain import COMMUNITY, Finding
from core.thresholds import Thresholds
from detect import MeterMonitor
from tapwatch import evaluate as ev

DAY = 86400.0


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def missed(data: ev.Dataset) -> list[tuple[ev.Truth, list[Finding], list[ev.Truth]]]:
    """Every observable fall or death with no community alert in its window: (it, findings near it, labels near it)."""
    by_meter: dict[str, list[ev.Truth]] = {}
    for t in data.truth:
        by_meter.setdefault(t.meter_id, []).append(t)
    out = []
    for meter_id, xs in data.intervals.items():
        falls = [t for t in by_meter.get(meter_id, []) if t.kind in ("fall", "death") and t.category == "incident"]
        if not falls:
            continue
        monitor = MeterMonitor(meter_id, Thresholds())
        found = [f for x in xs for f in monitor.update(x)]
        ends = [x.end for x in xs if x.usage_l is not None]
        for fall in falls:
            if not ev.observed(ends, fall):
                continue  # no data during it: counted apart by the evaluation
            if any(f.route == COMMUNITY and fall.start <= f.ts <= fall.window_end for f in found):
                continue
            near = [f for f in found if fall.start - 5 * DAY <= f.ts <= fall.window_end + DAY]
            labels = [
                t
                for t in by_meter.get(meter_id, [])
                if t is not fall and t.start < fall.window_end + DAY and (t.end or t.start) > fall.start - 10 * DAY
            ]
            out.append((fall, near, labels))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_args(p, cache="/tmp/calib-cache")
    args = p.parse_args(argv)
    if not (args.sim or args.real):
        p.error("--sim or --real")
    data = load(args)
    falls = sum(t.kind in ("fall", "death") and t.category == "incident" for t in data.truth)
    rows = missed(data)
    print(f"{len(rows)} of {falls} falls and deaths found by no community alert (without outcomes)")
    for fall, near, labels in rows:
        print(f"\n{fall.meter_id} {fall.kind} {_when(fall.start)} .. {_when(fall.window_end)}")
        for f in near:
            state = " (cleared)" if f.resolved else ""
            print(f"  {_when(f.ts)} {f.kind} {f.route}{state}: {f.message_en[:110]}")
        for t in labels:
            end = _when(t.end) if t.end is not None else "-"
            print(f"  label {t.kind} {t.category} {_when(t.start)} .. {end} {t.details or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
