"""Does ``routine_change`` find frailty, and what does it cost? (issue 17: false calls)

``routine_change`` is the detector of a slow change in routine (rising later, using less: frailty).
``tapwatch eval`` counts its alerts outside the simulator's frailty and illness labels as false; it
does not say whether it finds frailty at all. This tool replays each meter through ``MeterMonitor``
(without outcomes) and prints, per data set:

* frailty found: a ``routine_change`` from the frailty's start to 14 days after its end (or the end
  of the run), with the delay from its start; the same for illness;
* false ``routine_change`` alerts per elder-month (outside frailty and illness, + 14 days), and how
  many of those came within 14 days of an absence or a family visit; with ``--halves``, also for each
  half of the homes split by meter_id (``flow_generalise.half_of``: decide on half 0, report half 1);
* what the alerts said had moved (``details["feature"]``: rising later, using less, both, or neither
  alone enough to name).

The simulator's default frailty rate is low (about 0.01 per elder-month), so ``--frailty RATE``
raises it (events per 30 days) to measure recall; false alerts are read at the default rate.
Tuning sets only (simulator seeds 2 and 3, real homes at injection seed 2)::

    .venv/bin/python bench/routine_drift.py --sim 200x120x2 --frailty 0.1
    .venv/bin/python bench/routine_drift.py --sim 300x120x3
    .venv/bin/python bench/routine_drift.py --real /work/shared/data/real-water/dev.csv.gz --seed 2 --halves
    .venv/bin/python bench/routine_drift.py --sim 300x120x3 --frailty 0.3 --threshold 16   # the operator's knob
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter, defaultdict

from detect import MeterMonitor, Thresholds
from tapwatch import evaluate as ev

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from flow_generalise import half_of

DAY = 86400.0
#: A routine_change this long after a drift event ends still counts for it (as ``tapwatch eval``).
AFTER_S = 14 * DAY
#: Life events a false alert near which is worth telling apart (the elder away, or guests).
NEARBY = ("away", "family_visit", "hospital")
#: Only drift events that begin after the learning weeks and leave this long to see them are scored.
LEARN_S = 28 * DAY
WATCH_S = {"frailty": 42 * DAY, "illness": 10 * DAY}


FEATURES: Counter[str] = Counter()


def drift_alerts(data: ev.Dataset, thresholds: Thresholds | None = None) -> dict[str, list[float]]:
    """The times of every meter's ``routine_change`` alerts."""
    out: dict[str, list[float]] = {}
    for meter_id, xs in data.intervals.items():
        monitor = MeterMonitor(meter_id, thresholds)
        times = []
        for x in xs:
            for f in monitor.update(x):
                if f.kind == "routine_change" and not f.resolved:
                    times.append(f.ts)
                    FEATURES[f.details["feature"]] += 1
        out[meter_id] = times
    return out


def report(data: ev.Dataset, alerts: dict[str, list[float]], half: int | None = None) -> None:
    """Found and false, for every meter or (``half``) for one half of them by meter_id."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    if half is not None:
        alerts = {m: ts for m, ts in alerts.items() if half_of(m) == half}
    months = sum((xs[-1].end - xs[0].start) / (30 * DAY) for m, xs in data.intervals.items() if xs and m in alerts)
    first = min((xs[0].start for xs in data.intervals.values() if xs), default=0.0)
    run_end = max((xs[-1].end for xs in data.intervals.values() if xs), default=0.0)
    for kind in ev.DRIFT_EVENTS:
        delays: list[float | None] = []
        for meter_id, ts in truth.items():
            if meter_id not in alerts:
                continue
            for t in ts:
                if t.kind != kind or not first + LEARN_S <= t.start <= run_end - WATCH_S[kind]:
                    continue
                until = min(t.end if t.end is not None else run_end, run_end) + AFTER_S
                hit = next((a for a in alerts.get(meter_id, []) if t.start <= a <= until), None)
                delays.append(None if hit is None else (hit - t.start) / DAY)
        found = [d for d in delays if d is not None]
        median = f"{statistics.median(found):.0f} d" if found else "-"
        print(f"  {kind}: found {len(found)} of {len(delays)}, median {median} after its start")
    false = 0
    near: Counter[str] = Counter()
    for meter_id, ts in alerts.items():
        for a in ts:
            events = [t for t in truth.get(meter_id, []) if t.start <= a <= (t.end or run_end) + AFTER_S]
            if any(t.kind in ev.DRIFT_EVENTS for t in events):
                continue
            false += 1
            kinds = sorted({t.kind for t in events if t.kind in NEARBY})
            near[", ".join(kinds) or "none"] += 1
    print(f"  false routine_change: {false} ({false / max(months, 1e-9):.3f} per elder-month), near: {dict(near)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim", metavar="ELDERSxDAYSxSEED", help="a simulated data set, e.g. 200x120x2")
    p.add_argument("--frailty", type=float, help="frailty events per elder per 30 days (simulator only)")
    p.add_argument("--real", metavar="CSV", help="real readings (incidents injected as tapwatch eval)")
    p.add_argument("--seed", type=int, default=2, help="injection seed for --real")
    p.add_argument("--tz", default="Europe/Madrid", help="zone of the real readings")
    p.add_argument("--halves", action="store_true", help="also each half of the homes by meter_id")
    p.add_argument("--set", action="append", default=[], help="NAME=VALUE of a detect.daily constant (a variant)")
    p.add_argument(
        "--threshold", type=float, help="the operator's routine_threshold (default: Thresholds().routine_threshold)"
    )
    args = p.parse_args(argv)
    import detect.daily as daily_module

    for pair in args.set:
        name, _, value = pair.partition("=")
        setattr(daily_module, name, float(value))
    if bool(args.sim) == bool(args.real):
        p.error("give one of --sim or --real")
    if args.sim:
        elders, days, seed = (int(v) for v in args.sim.split("x"))
        data = ev.simulated(elders, days, seed, None if args.frailty is None else {"frailty": args.frailty})
    else:
        data = ev.real(args.real, args.seed, args.tz)
    print(data.name)
    thresholds = Thresholds() if args.threshold is None else Thresholds(routine_threshold=args.threshold)
    thresholds.validate()
    alerts = drift_alerts(data, thresholds)
    report(data, alerts)
    print("  what moved:", {k or "neither alone": v for k, v in FEATURES.items()})
    if args.halves:
        for half in (0, 1):
            print(f" half {half}:")
            report(data, alerts, half)
    return 0


if __name__ == "__main__":
    sys.exit(main())
