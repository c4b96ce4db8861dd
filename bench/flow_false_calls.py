"""Why are false ``continuous_flow`` calls raised to cadres, and which flow knob moves them?

Replays every meter through ``MeterMonitor`` (without outcomes) with the given flow knobs and counts the
community-route ``continuous_flow`` alerts outside the labelled incidents, by what raised them:

* a burst (one interval above 1.5 x the highest rate ever drawn, or this home's habitual draw at that hour, and
  240 L/h): no knob moves it;
* a run at an hour with no learned run at a tap's rate: its limit is ``flow_margin_h`` alone;
* a run past a learned one: ``flow_run_factor`` x that run + ``flow_margin_h``.

Tuning sets only (real homes at injection seed 2, simulator seeds 2 and 3)::

    .venv/bin/python bench/flow_false_calls.py --real /work/shared/data/real-water/dev.csv.gz
    .venv/bin/python bench/flow_false_calls.py --real /work/shared/data/real-water/dev.csv.gz --set flow_margin_h=2
    .venv/bin/python bench/flow_false_calls.py --sim 200x90x2 --set flow_run_factor=3
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from core.domain import COMMUNITY
from detect import MeterMonitor, Thresholds
from detect.flow import TAP_LPH
from tapwatch import evaluate as ev
from tapwatch.replay import thresholds_from


def causes(data: ev.Dataset, thresholds: Thresholds) -> Counter[str]:
    """False community flow alerts by what raised them."""
    incidents: dict[str, list[tuple[float, float]]] = {}
    for t in data.truth:
        if t.category == "incident":
            incidents.setdefault(t.meter_id, []).append((t.start, t.window_end))
    found: Counter[str] = Counter()
    for meter_id, xs in data.intervals.items():
        monitor = MeterMonitor(meter_id, thresholds)
        for x in xs:
            for f in monitor.update(x):
                if f.kind != "continuous_flow" or f.resolved or f.route != COMMUNITY:
                    continue
                if any(start <= f.ts <= end for start, end in incidents.get(meter_id, [])):
                    continue
                flow = monitor.flow
                tap = flow.levels.index(TAP_LPH)
                hour = flow._hour(x.end, x.utc_offset_s)
                if flow.burst:
                    found["burst"] += 1
                elif max(flow._state[tap * 24 + hour], flow.floor_h[tap]) == 0.0:
                    found["run at an hour without a learned tap run"] += 1
                else:
                    found["run past a learned tap run"] += 1
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim", metavar="ELDERSxDAYSxSEED", help="a simulated data set, e.g. 200x90x2")
    p.add_argument("--real", metavar="CSV", help="real readings (incidents injected as tapwatch eval)")
    p.add_argument("--seed", type=int, default=2, help="injection seed for --real")
    p.add_argument("--tz", default="Europe/Madrid", help="zone of the real readings")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a threshold (repeatable)")
    args = p.parse_args(argv)
    if bool(args.sim) == bool(args.real):
        p.error("give one of --sim or --real")
    thresholds = thresholds_from(args.set)
    if args.sim:
        elders, days, seed = (int(v) for v in args.sim.split("x"))
        data = ev.simulated(elders, days, seed)
    else:
        data = ev.real(args.real, args.seed, args.tz)
    found = causes(data, thresholds)
    print(f"{data.name}: {sum(found.values())} false community flow alerts: {dict(found)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
