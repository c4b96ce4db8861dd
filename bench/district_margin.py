"""A silence margin the district learns from its cadres' outcomes, by weekday class and start hour (session 16).

False silence calls concentrate by hour, not by elder (session 7), and a margin shaped by hour or weekday was
ahead of one data set's curve only (session 14: a daytime margin ours, a weekend margin the other generator's).
This bench asks whether the district can learn the shape itself, the only way a live system could: from the
outcomes its cadres record. Every community ``no_activity`` alert of every meter whose visit (``--visit-delay-h``
after it) came before the cut day gets the contract's outcome (``engine.outcomes.outcome_for``); the false
alarms are counted by the silence's start in cells of weekday class (Monday-Friday, weekend) x start-hour band,
against each cell's share of the week. A cell with more false alarms than its share gets a longer margin::

    margin = clip(1 + (ln(share of false alarms / share of time) - its time-weighted mean) / k, 1, --max)

and from the cut on every silence alert length (``SilenceModel``'s, per start hour, of each meter's current
local day) is multiplied by its cell's margin. Scored from the cut day on only (falls that start then, false
community calls raised then, the first alert in each real absence apart as in ``tapwatch eval``), against
the plain monitor's sensitivity curve on the same days. Without per-meter outcomes, so the margin is all that
differs. Data sets as ``bench/population_prior.py`` names them; tuning sets only::

    .venv/bin/python bench/district_margin.py --data sim:1000x120x2 --sensitivity 1e-3 --sensitivity 5e-4
    .venv/bin/python bench/district_margin.py --data sim:1000x120x2 --sensitivity 2e-3 --learn
    .venv/bin/python bench/district_margin.py --data other:300x120x2 --sensitivity 2e-3 --learn
    .venv/bin/python bench/district_margin.py --data real:2 --sensitivity 2e-3 --learn
"""

from __future__ import annotations

import argparse
import bisect
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.domain import Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor
from engine.outcomes import Label, outcome_for
from tapwatch import evaluate as ev

sys.path.insert(0, str(Path(__file__).resolve().parent))
from population_prior import DEFAULT_CSV, community_alerts, load

DAY = ev.DAY
#: Weekday classes: Monday-Friday, Saturday-Sunday, and the share of a week each holds.
CLASS_SHARE = (5 / 7, 2 / 7)
#: Start-hour bands of 4 h.
BAND_H = 4
BANDS = 24 // BAND_H

Margins = list[list[float]]  # [weekday class][band]
Run = dict[str, tuple[list[Interval], list[Finding]]]


def weekday_class(local_day: int) -> int:
    """0 for Monday-Friday, 1 for a weekend, from days since 1970-01-01 (a Thursday) in local time.

    >>> weekday_class(2), weekday_class(3)
    (1, 0)
    """
    return 1 if (local_day + 3) % 7 >= 5 else 0


def cell(ts: float, utc_offset_s: int) -> tuple[int, int]:
    """(weekday class, start-hour band) of a local time."""
    local = ts + utc_offset_s
    return weekday_class(int(local // DAY)), int(local % DAY // 3600) // BAND_H


@contextmanager
def margins_from(margins: Margins | None, cut: float) -> Iterator[None]:
    """Every MeterMonitor made meanwhile multiplies its silence alert lengths by ``margins`` from ``cut`` on."""
    base: dict[int, list[float]] = {}
    refresh, new_day = MeterMonitor._refresh_silence, MeterMonitor._new_day

    def apply(m: MeterMonitor) -> None:
        lengths = base.get(id(m))
        if margins is None or lengths is None or m.last_end is None or m.last_end < cut:
            return
        row = margins[weekday_class(m.day)]
        alert = m.silence._alert
        for h in range(24):
            alert[h] = lengths[h] * row[h // BAND_H]

    def refreshed(m: MeterMonitor) -> None:
        refresh(m)
        base[id(m)] = m.silence._alert[:]
        apply(m)

    def next_day(m: MeterMonitor, day: int, x: Interval, out: list[Finding]) -> None:
        new_day(m, day, x, out)
        apply(m)

    MeterMonitor._refresh_silence, MeterMonitor._new_day = refreshed, next_day  # type: ignore[method-assign]
    try:
        yield
    finally:
        MeterMonitor._refresh_silence, MeterMonitor._new_day = refresh, new_day  # type: ignore[method-assign]


def run(data: ev.Dataset, thresholds: Thresholds, margins: Margins | None, cut: float) -> Run:
    """Each meter's intervals and its community alerts, every meter through its own monitor."""
    with margins_from(margins, cut):
        return {meter_id: (xs, community_alerts(meter_id, xs, thresholds)) for meter_id, xs in data.intervals.items()}


def learn_margins(
    results: Run, labels: dict[str, list[Label]], cut: float, visit_delay_h: float, k: float, most: float
) -> tuple[Margins, np.ndarray]:
    """The margins the district's false alarms known by ``cut`` ask for, and the false alarms per cell."""
    false = np.full((2, BANDS), 0.5)  # half a false alarm in each cell: none seen is not "never"
    for meter_id, (xs, alerts) in results.items():
        off = xs[0].utc_offset_s if xs else 0
        for f in alerts:
            if f.kind != "no_activity" or f.ts + visit_delay_h * 3600 > cut:
                continue
            if outcome_for(labels.get(meter_id, []), f.ts) == "false_alarm":
                false[cell(f.since if f.since is not None else f.ts, off)] += 1
    share = np.array([[s / BANDS] * BANDS for s in CLASS_SHARE])
    ratio = np.log(false / false.sum() / share)
    margin = 1.0 + (ratio - float((ratio * share).sum())) / k
    return np.clip(margin, 1.0, most).tolist(), false


def score_after(data: ev.Dataset, results: Run, cut: float) -> tuple[float, list[float | None]]:
    """False community calls per elder-month raised from ``cut`` on, and the delays (h) of falls that began then."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    months = calls = 0.0
    delays: list[float | None] = []
    for meter_id, (xs, alerts) in results.items():
        if not xs:
            continue
        known, incidents = truth[meter_id], [t for t in truth[meter_id] if t.category == "incident"]
        months += max(xs[-1].end - max(xs[0].start, cut), 0.0) / (30 * DAY)
        times = [f.ts for f in alerts]
        for inc in incidents:
            if inc.kind == "fall" and inc.start >= cut:
                k = bisect.bisect_left(times, inc.start)
                hit = times[k] if k < len(times) and times[k] <= inc.window_end else None
                delays.append(None if hit is None else (hit - inc.start) / 3600)
        quiet, charged = ev.real_absences(xs, incidents), set()
        for f in alerts:
            if ev.explained(f, incidents, known):
                continue
            where = ev.absence_at(f.ts, quiet)
            if where is not None and where not in charged:
                charged.add(where)  # the first alert in a real absence is counted apart, as eval does
                continue
            calls += f.ts >= cut
    return calls / max(months, 1e-9), delays


def report(name: str, calls: float, delays: list[float | None]) -> None:
    found = sorted(d for d in delays if d is not None)
    if not found:
        print(f"{name}: {calls:.3f} false community calls per elder-month; no fall found of {len(delays)}")
        return
    p90 = found[min(len(found) - 1, math.ceil(0.9 * len(found)) - 1)]
    print(
        f"{name}: {calls:.3f} false community calls per elder-month; falls {len(found)} of {len(delays)}, "
        f"median {statistics.median(found):.2f} h, p90 {p90:.2f} h",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="sim:ExDxS, other:ExDxS or real:SEED (tuning sets only)")
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="the real homes (real:SEED)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/population-prior-cache"))
    p.add_argument("--cut", type=float, default=30.0, help="days: outcomes before it teach, scores from it on")
    p.add_argument("--sensitivity", type=float, action="append", help="repeat for a curve (default 1e-3)")
    p.add_argument("--learn", action="store_true", help="learn the margins by the cut and apply them after it")
    p.add_argument("--k", type=float, default=5.0, help="how far a cell's log ratio moves its margin")
    p.add_argument("--max", type=float, default=1.5, dest="most", help="the longest margin")
    p.add_argument("--visit-delay-h", type=float, default=ev.VISIT_DELAY_H)
    args = p.parse_args(argv)
    data = load(args.data, args.csv, args.cache)
    start = min(xs[0].start for xs in data.intervals.values() if xs)
    cut = start + args.cut * DAY
    labels: dict[str, list[Label]] = defaultdict(list)
    for t in data.truth:
        if t.category == "incident":
            labels[t.meter_id].append(Label(t.meter_id, t.kind, t.start, t.end))
    for sensitivity in args.sensitivity or [1e-3]:
        thresholds = Thresholds().replace(sensitivity=sensitivity)
        results = run(data, thresholds, None, cut)
        report(f"{args.data} sensitivity {sensitivity:g}", *score_after(data, results, cut))
        if args.learn:
            margins, false = learn_margins(results, labels, cut, args.visit_delay_h, args.k, args.most)
            print("  false alarms by cell (weekday / weekend x 4 h bands):", np.round(false, 1).tolist())
            print("  margins:", np.round(margins, 2).tolist())
            results = run(data, thresholds, margins, cut)
            report(f"{args.data} sensitivity {sensitivity:g} + district margin", *score_after(data, results, cut))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
