"""A fall in a home whose water never stops: is it found? (session 10, issue 17)

The evaluation injects a fall by freezing the whole register (``evaluate.inject``), which also stops any
trickle the home has: a running cistern, a dripping tap, a leak under the leak level. In a real home the
trickle goes on through the fall, and if every interval draws a litre or more, nothing looks like silence.
This bench replays tuning sets where the base flow keeps running during falls, with ``tapwatch eval``'s
scoring (``tapwatch.evaluate.score``, with and without cadres' outcomes), in these variants:

* ``unchanged``: the data set as it is;
* ``base``: each fall keeps the home's own base flow: the lowest clock-hour volume of the 24 h before it,
  floored to the register's litre, drawn through the fall (only homes with a trickle then differ);
* ``constant``: a share (``--share``) of the homes get a constant trickle of 1-10 L/h for 3-21 days,
  around each of their falls (from 1-14 days before it to 1-7 days after its end; a home without a fall
  gets one at a random time);
* ``cistern``: the same homes and stretches, with a cistern that refills irregularly: 3-9 L every
  20-90 min.

The other side of the trade (session 11): people at all hours are not plumbing, and must not be taken for a
base flow (a false maintenance report, and their smaller uses taken for the trickle's range, which hides
them from the silence detector and teaches it nights longer than the elder's own):

* ``guests``: a share of the homes have family staying for 3-14 days: the use of 2-3 other homes of the
  same data set is added to theirs, time-aligned (as ``flow_generalise.py --mix`` aligns it; the other
  homes' incidents add nothing); in a home with a fall the stay ends 1-45 days before its first fall;
* ``allhours``: the same homes and stretches (7-28 days), with someone drawing water at every hour of the
  day and night: a baby's bottles and nappies, an insomniac, a night-shift worker: 2-9 L at random times,
  40-100 min apart on average (a Poisson process: the mean gap is the home's own).

There, "under a flow" is the falls after a stay began, and ``reports`` counts the base flows found (the
maintenance reports of ``MeterMonitor._base_flow_finding``) in all homes and in the homes given a stretch.

Trickles are added to the intervals' volumes through a cumulative register floored to the litre (what
a meter would count). Printed per variant: falls (all) recall, median / p90 delay (h); falls under a
base flow (a trickle runs through them) the same; false community and maintenance calls per
elder-month.

Tuning sets only (simulator seeds 2 and 3, real homes at injection seed 2):

    .venv/bin/python bench/fall_under_trickle.py --real /work/shared/data/real-water/dev.csv.gz --seed 2
    .venv/bin/python bench/fall_under_trickle.py --sim 200x90x2 --variants constant,cistern
    .venv/bin/python bench/fall_under_trickle.py --sim 300x120x2 --variants guests,allhours
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import sys
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from flow_generalise import use_at_readings  # (bench/ is this script's folder)
from silence_calibration import add_dataset_args, load  # the cached tuning sets

import detect.baseflow as baseflow
import detect.monitor as monitor_module
from core.domain import Finding
from core.thresholds import Thresholds
from detect.monitor import MeterMonitor
from engine.outcomes import VISIT_DELAY_H
from tapwatch import evaluate as ev
from tapwatch.replay import thresholds_from

HOUR = 3600.0
DAY = 86400.0
VARIANTS = ("unchanged", "base", "constant", "cistern", "guests", "allhours")
#: The variants of people (not plumbing): "under a flow" there is the falls after a stretch began.
PEOPLE = ("guests", "allhours")

#: A register's count of the water a trickle drew by time t (litres, not yet floored).
Register = Callable[[float], float]


def add_trickle(xs: list[ev.Interval], register: Register, start: float, end: float) -> list[ev.Interval]:
    """``xs`` with the trickle's water added to the intervals meeting [start, end] (a register floored to 1 L)."""
    out = list(xs)
    k = bisect.bisect_right([x.end for x in xs], start)
    for i in range(k, len(xs)):
        x = xs[i]
        if x.start >= end:
            break
        if x.usage_l is None:
            continue
        drawn = math.floor(register(min(x.end, end))) - math.floor(register(max(x.start, start)))
        if drawn > 0:
            out[i] = x._replace(usage_l=x.usage_l + drawn)
    return out


def constant(start: float, lph: float) -> Register:
    return lambda t: max(t - start, 0.0) * lph / HOUR


def cistern(start: float, end: float, rng: random.Random) -> Register:
    """Refills of 3-9 L every 20-90 min from ``start`` to ``end``."""
    times, litres = [], []
    t, total = start, 0.0
    while t < end:
        t += rng.uniform(20.0, 90.0) * 60.0
        total += rng.uniform(3.0, 9.0)
        times.append(t)
        litres.append(total)
    return lambda at: 0.0 if at < times[0] else litres[bisect.bisect_right(times, at) - 1]


def others_use(data: ev.Dataset, m: str, other: str, a: float, b: float) -> list[float]:
    """Litres another home drew in each of ``m``'s intervals within [a, b], time-aligned as ``flow_generalise.mixed``
    aligns them (``use_at_readings``); its use during its own incidents and over lost readings left out."""
    ys = data.intervals[other]
    # Readings lost (an interval over 2.5 h) are left out: spread over the gap, their water would be a trickle.
    own = [0.0 if y.usage_l is None or y.end - y.start > baseflow.GAP_S else y.usage_l for y in ys]
    for t in data.truth:  # its incidents add nothing (incidents nobody labelled here)
        if t.meter_id == other and t.category == "incident":
            for k, y in enumerate(ys):
                if t.start - HOUR < y.end and y.start < t.window_end:
                    own[k] = 0.0
    return use_at_readings(data, m, other, own, a, b)


def all_hours(start: float, end: float, rng: random.Random) -> Register:
    """Someone drawing water at every hour: 2-9 L at random times, a home's own mean gap of 40-100 min apart."""
    gap = rng.uniform(40.0, 100.0) * 60.0
    times, litres = [start], [0.0]
    while times[-1] < end:
        times.append(times[-1] + rng.expovariate(1.0 / gap))
        litres.append(litres[-1] + rng.uniform(2.0, 9.0))
    return lambda at: litres[bisect.bisect_right(times, at) - 1]


def people(
    data: ev.Dataset, name: str, share: float, rng: random.Random, falls: dict[str, list[ev.Truth]]
) -> tuple[dict[str, list[ev.Interval]], set[tuple[str, float]], set[str]]:
    """The ``guests`` and ``allhours`` variants: the intervals, the falls after a stretch began, the homes given one."""
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t in data.truth:
        if t.category == "incident":
            windows[t.meter_id].append((t.start - HOUR, t.window_end))
    meters = sorted(m for m, xs in data.intervals.items() if xs)
    intervals = dict(data.intervals)
    under: set[tuple[str, float]] = set()
    homes: set[str] = set()
    for m in meters:
        xs = data.intervals[m]
        if rng.random() >= share:
            continue
        days = rng.uniform(3.0, 14.0) if name == "guests" else rng.uniform(7.0, 28.0)
        first = min((f.start for f in falls.get(m, [])), default=None)
        earliest = xs[0].start + 7 * DAY
        b = None if first is None else first - rng.uniform(1.0, 45.0) * DAY
        if b is None or b - days * DAY < earliest:
            a = rng.uniform(earliest, max(xs[-1].end - (days + 3) * DAY, earliest + DAY))
            b = a + days * DAY
        else:
            a = b - days * DAY
        if name == "guests":
            others = rng.sample([o for o in meters if o != m], rng.choice((2, 3)))
            extra = np.sum([others_use(data, m, o, a, b) for o in others], axis=0)
            add = [float(round(e)) for e in extra]
        else:
            reg = all_hours(a, b, rng)
            add = [float(math.floor(reg(min(x.end, b))) - math.floor(reg(max(x.start, a)))) for x in xs]
        out = list(xs)
        for k, x in enumerate(xs):
            if add[k] <= 0.0 or x.usage_l is None or x.end <= a or x.start >= b:
                continue
            if any(s < x.end and x.start < e for s, e in windows.get(m, [])):
                continue  # a fall freezes the register: nobody's water is read then
            out[k] = x._replace(usage_l=x.usage_l + add[k])
        intervals[m] = out
        homes.add(m)
        under.update((m, f.start) for f in falls.get(m, []) if f.start >= a)
    return intervals, under, homes


def base_flow_lph(xs: list[ev.Interval], at: float) -> float:
    """The lowest clock-hour volume of the 24 h before ``at`` (L/h, floored to the litre; 0 if any hour is unknown)."""
    hours = np.zeros(24)
    first = math.floor(at / HOUR) - 24
    for x in xs[max(bisect.bisect_left([y.end for y in xs], first * HOUR) - 1, 0) :]:
        if x.start >= at:
            break
        if x.usage_l is None:
            return 0.0
        h = math.floor((x.end - 1.0) / HOUR) - first
        if 0 <= h < 24:
            hours[h] += x.usage_l
    return float(math.floor(hours.min()))


def variant(
    data: ev.Dataset, name: str, share: float, seed: int
) -> tuple[ev.Dataset, set[tuple[str, float]], set[str]]:
    """``data`` with the named variant's trickles (or people), the falls (meter, start) a trickle runs through (or
    that came after people's stretch began), and the homes given a stretch."""
    under: set[tuple[str, float]] = set()
    if name == "unchanged":
        return data, under, set()
    rng = random.Random(seed)
    falls: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        if t.kind == "fall" and t.category == "incident":
            falls[t.meter_id].append(t)
    if name in PEOPLE:
        made, under, homes = people(data, name, share, rng, falls)
        return ev.Dataset(f"{data.name}, {name}", made, data.truth, data.readings, data.faults), under, homes
    intervals = {}
    homes = set()
    for m in sorted(data.intervals):
        xs = data.intervals[m]
        if name == "base":
            for f in falls.get(m, []):
                lph = base_flow_lph(xs, f.start)
                if lph > 0:
                    xs = add_trickle(xs, constant(f.start, lph), f.start, f.window_end)
                    under.add((m, f.start))
        elif xs and rng.random() < share:
            stretches = [(f.start - rng.uniform(1, 14) * DAY, f.window_end + rng.uniform(1, 7) * DAY) for f in falls[m]]
            if not stretches:
                a = rng.uniform(xs[0].start + 7 * DAY, max(xs[-1].end - 10 * DAY, xs[0].start + 8 * DAY))
                stretches = [(a, a + rng.uniform(3, 21) * DAY)]
            homes.add(m)
            for a, b in stretches:
                a = max(a, xs[0].start + 3 * DAY)
                reg = constant(a, rng.uniform(1.0, 10.0)) if name == "constant" else cistern(a, b, rng)
                xs = add_trickle(xs, reg, a, b)
            under.update(
                (m, f.start) for f in falls[m] if any(a <= f.start and f.window_end <= b for a, b in stretches)
            )
        intervals[m] = xs
    return ev.Dataset(f"{data.name}, {name}", intervals, data.truth, data.readings, data.faults), under, homes


def falls_in_order(data: ev.Dataset) -> list[tuple[str, ev.Truth]]:
    """The falls in the order ``evaluate.score`` appends their delays (meters in order, the observable ones)."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    out = []
    for m, xs in data.intervals.items():
        if not xs:
            continue
        ends = [x.end for x in xs if x.usage_l is not None]
        for inc in (t for t in truth.get(m, []) if t.category == "incident"):
            if inc.kind == "fall" and ev.observed(ends, inc):
                out.append((m, inc))
    return out


def quantiles(delays: list[float | None]) -> str:
    found = [d for d in delays if d is not None]
    if not delays:
        return "     -      "
    med, p90 = (np.percentile(found, 50), np.percentile(found, 90)) if found else (math.nan, math.nan)
    return f"{len(found) / len(delays):.2f} {med:4.1f}/{p90:4.1f} (n={len(delays)})"


#: The base flows found in a replay: (meter, since, reported at), as ``MeterMonitor._base_flow_finding`` made them.
REPORTS: list[tuple[str, float, float]] = []


class _Recorded(MeterMonitor):
    """The monitor, recording each base flow it reports (``REPORTS``)."""

    __slots__ = ()

    def _base_flow_finding(self, x: ev.Interval) -> Finding:
        f = super()._base_flow_finding(x)
        REPORTS.append((self.meter_id, f.since or f.ts, f.ts))
        return f


def report(
    name: str,
    data: ev.Dataset,
    under: set[tuple[str, float]],
    homes: set[str],
    thresholds: Thresholds,
    delay: float | None,
) -> str:
    REPORTS.clear()
    s = ev.score("tapwatch", lambda m, _xs, _truth: _Recorded(m, thresholds), data, delay)
    reports = len(REPORTS)
    in_homes = sum(m in homes for m, *_ in REPORTS)
    order = falls_in_order(data)
    delays = s.delays.get("fall", [])
    assert len(order) == len(delays), (len(order), len(delays))
    trickled = [d for (m, f), d in zip(order, delays, strict=True) if (m, f.start) in under]
    na = s.false_by_kind.get("no_activity", 0) / s.months
    return (
        f"{name:9s} {'outcomes' if delay else 'none    '}  falls {quantiles(delays)}  "
        f"under a flow {quantiles(trickled)}  community {s.noise_rate:.3f} (no_activity {na:.3f})  "
        f"maintenance {s.per_month(s.maintenance):.3f}  reports {reports} ({in_homes} in {len(homes)} homes given one)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_args(p, cache="/tmp/fall-under-trickle-cache")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--share", type=float, default=0.3, help="share of homes given a synthetic trickle")
    p.add_argument("--trickle-seed", type=int, default=10)
    p.add_argument("--no-outcomes", action="store_true")
    p.add_argument("--set", action="append", default=[], help="NAME=VALUE, a threshold")
    p.add_argument("--base", action="append", default=[], help="NAME=VALUE, a detect.baseflow constant")
    p.add_argument("--off", action="store_true", help="the base flow never found (main's behaviour)")
    p.add_argument("--half", choices=("A", "B"), help="only the first (A) or second (B) half of the meters by id")
    args = p.parse_args(argv)
    if not (args.sim or args.real):
        p.error("--sim or --real")
    thresholds = thresholds_from(args.set)
    for pair in args.base:
        name, value = pair.split("=", 1)
        if not hasattr(baseflow, name):
            p.error(f"no constant {name} in detect.baseflow")
        setattr(baseflow, name, type(getattr(baseflow, name))(float(value)))
        if hasattr(monitor_module, name):  # the monitor's own copy (read on its hot path)
            setattr(monitor_module, name, getattr(baseflow, name))
    if args.off:
        baseflow.WINDOW_BLOCKS = 10**9  # never a full window of blocks: nothing engages, nothing is reported
        baseflow._FULL = 2 * baseflow.WINDOW_BLOCKS  # (the window's length in floats, read on the hot path)
    data = load(args)
    if args.half:
        meters = sorted(data.intervals)
        keep = set(meters[: len(meters) // 2] if args.half == "A" else meters[len(meters) // 2 :])
        intervals = {m: xs for m, xs in data.intervals.items() if m in keep}
        truth = [t for t in data.truth if t.meter_id in keep]
        faults = None if data.faults is None else [t for t in data.faults if t.meter_id in keep]
        readings = sum(len(xs) for xs in intervals.values())
        data = ev.Dataset(f"{data.name}, meters {args.half}", intervals, truth, readings, faults)
    print(data.name, flush=True)
    for name in args.variants.split(","):
        if name not in VARIANTS:
            p.error(f"unknown variant {name!r}")
        made, under, homes = variant(data, name, args.share, args.trickle_seed)
        for delay in (None,) if args.no_outcomes else (None, VISIT_DELAY_H):
            print(report(name, made, under, homes, thresholds, delay), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
