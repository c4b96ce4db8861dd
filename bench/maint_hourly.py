"""What are the false maintenance alerts on hourly readings, and why does the hourly cadence make them?

Replays every meter through ``MeterMonitor`` (without outcomes, as the ``tapwatch`` row of ``tapwatch eval``) and
describes each false finding on the maintenance route (outside the labelled incidents, as ``evaluate.score``
counts "false maintenance"): which rule raised it (the base flow's 2 h blocks, a step of two flat intervals, three
flat intervals, or the longest-run rule past a quiet hour), the run's rate and length, the local hour, the home's
age, how alike the run's intervals were (min / max rate) and the simulator's life events at the time.

Tuning sets only (simulator seeds 2 and 3, real homes at injection seed 2; never seed 1)::

    PYTHONPATH=$PWD .venv/bin/python bench/maint_hourly.py --sim 300x120x2 --interval-min 60
    PYTHONPATH=$PWD .venv/bin/python bench/maint_hourly.py --sim 300x120x2 --interval-min 30
    PYTHONPATH=$PWD .venv/bin/python bench/maint_hourly.py --real /work/shared/data/real-water/dev.csv.gz
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from dataclasses import dataclass

from core.domain import COMMUNITY, DEVICE_KINDS, Finding, Interval
from detect import MeterMonitor, Thresholds
from detect.flow import flat_count
from tapwatch import evaluate as ev
from tapwatch.replay import thresholds_from

HOUR = 3600.0
DAY = 86400.0
LONGEST_RUN = "longest run past a quiet hour"


@dataclass
class Case:
    """One false maintenance finding and what the readings showed around it."""

    rule: str
    lpm: float
    run_h: float
    hour: int  # local hour of the alert
    start_hour: int  # local hour the run began
    age_d: float  # days since the meter's first reading
    intervals: int  # intervals in the run up to the alert
    alike: float  # lowest / highest rate among the run's intervals (1: a leak's flat flow)
    low_lph: float  # the run's lowest interval rate (L/h): the highest level it reaches throughout
    after_h: float  # hours the flow ran on after the alert (to the next dry interval)
    events: str  # the simulator's life events at the time ("" on real homes)


def rule_of(f: Finding, monitor: MeterMonitor) -> str:
    """Which rule raised a maintenance flow finding, read from the flow model's state after it."""
    if f.details and "rule" in f.details:
        return "base flow (every 2 h block wet)"
    flat = monitor.flow.run_flat
    count = flat_count(flat[1])
    if flat[1] < 0 and count >= 2:
        return "step (partial first, then flat)"
    if count >= 3:
        return "steady (3+ flat intervals)"
    return LONGEST_RUN


def describe(f: Finding, xs: list[Interval], i: int, monitor: MeterMonitor, events: list[ev.Truth]) -> Case:
    since = f.since if f.since is not None else xs[i].start
    run = [x for x in xs[: i + 1][-200:] if x.start >= since - 1 and x.usage_l is not None]
    rates = [x.usage_l / max(x.hours, 1e-9) for x in run if x.usage_l is not None] or [0.0]
    off = xs[i].utc_offset_s
    after = xs[i].end
    for x in xs[i + 1 :]:
        if x.usage_l is None or x.usage_l < 1.0:
            break
        after = x.end
    details = f.details or {}
    lpm = float(details.get("lpm", 0.0))
    return Case(
        rule_of(f, monitor),
        lpm,
        (xs[i].end - since) / HOUR,
        int((xs[i].end + off) // HOUR % 24),
        int((since + off) // HOUR % 24),
        (xs[i].end - xs[0].start) / DAY,
        len(run),
        min(rates) / max(max(rates), 1e-9),
        min(rates),
        (after - xs[i].end) / HOUR,
        ",".join(sorted({t.kind for t in events if t.start <= f.ts <= (t.end or f.ts)})),
    )


def false_maintenance(data: ev.Dataset, thresholds: Thresholds) -> tuple[list[Case], float]:
    """Every false maintenance finding (as ``evaluate.score`` counts them) and the elder-months replayed."""
    truth: dict[str, list[ev.Truth]] = {}
    for t in data.truth:
        truth.setdefault(t.meter_id, []).append(t)
    cases: list[Case] = []
    months = 0.0
    for meter_id, xs in data.intervals.items():
        if not xs:
            continue
        months += (xs[-1].end - xs[0].start) / (30 * DAY)
        labels = truth.get(meter_id, [])
        incidents = [t for t in labels if t.category == "incident"]
        events = [t for t in labels if t.category == "event"]
        monitor = MeterMonitor(meter_id, thresholds)
        held = data.released.get(meter_id, {})  # a held interval's findings are known when it is released
        for i, x in enumerate(xs):
            for f in monitor.update(x):
                if i in held:
                    f.ts = max(f.ts, held[i])
                if f.resolved or f.kind in DEVICE_KINDS or f.route == COMMUNITY:
                    continue
                if ev.explained(f, incidents, labels):
                    continue
                cases.append(describe(f, xs, i, monitor, events))
    return cases, months


def quantiles(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    q = statistics.quantiles(values, n=10, method="inclusive")
    return f"{q[0]:.2f} / {statistics.median(values):.2f} / {q[-1]:.2f}"


def report(name: str, cases: list[Case], months: float) -> None:
    print(f"# {name}: {len(cases)} false maintenance findings, {len(cases) / months:.3f} per elder-month")
    by_rule = Counter(c.rule for c in cases)
    print(
        "| rule | n | /month | L/min p10/50/90 | run h p10/50/90 | intervals p10/50/90 | alike p10/50/90 | "
        "ran on after, h p10/50/90 | age < 21 d |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for rule, n in by_rule.most_common():
        cs = [c for c in cases if c.rule == rule]
        print(
            f"| {rule} | {n} | {n / months:.3f} | {quantiles([c.lpm for c in cs])} | {quantiles([c.run_h for c in cs])}"
            f" | {quantiles([float(c.intervals) for c in cs])} | {quantiles([c.alike for c in cs])}"
            f" | {quantiles([c.after_h for c in cs])} | {sum(c.age_d < 21 for c in cs)} |"
        )
    longest = [c for c in cases if c.rule == LONGEST_RUN]
    table = Counter((min(c.intervals, 4), "30 L/h" if c.low_lph >= 30.0 else "6 L/h") for c in longest)
    print("longest-run rule by intervals in the run (4: 4 or more) and level:", dict(sorted(table.items())))
    print("alert hour:", dict(sorted(Counter(c.hour for c in cases).items())))
    print("run start hour:", dict(sorted(Counter(c.start_hour for c in cases).items())))
    print("run length (whole h, rounded):", dict(sorted(Counter(round(c.run_h) for c in cases).items())))
    print("events at the time:", dict(Counter(c.events or "none" for c in cases).most_common(8)))
    print("age (days, by 30):", dict(sorted(Counter(int(c.age_d // 30) * 30 for c in cases).items())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sim", metavar="ELDERSxDAYSxSEED", help="a simulated data set, e.g. 300x120x2")
    p.add_argument("--interval-min", type=int, default=30, help="the simulated meters' cadence (default 30)")
    p.add_argument("--real", metavar="CSV", help="real readings (incidents injected as tapwatch eval)")
    p.add_argument("--seed", type=int, default=2, help="injection seed for --real")
    p.add_argument("--tz", default="Europe/Madrid", help="zone of the real readings")
    args = p.parse_args(argv)
    if bool(args.sim) == bool(args.real):
        p.error("give one of --sim or --real")
    if args.sim:
        elders, days, seed = (int(v) for v in args.sim.split("x"))
        if seed == 1:
            p.error("seed 1 is the evaluation's: tune on seeds 2 and 3")
        data = ev.simulated(elders, days, seed, interval_min=args.interval_min)
    else:
        if args.seed == 1:
            p.error("seed 1 is the evaluation's: tune on seed 2")
        data = ev.real(args.real, args.seed, args.tz)
    cases, months = false_maintenance(data, thresholds_from([]))
    report(data.name, cases, months)
    return 0


if __name__ == "__main__":
    sys.exit(main())
