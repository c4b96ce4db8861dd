"""False cadre calls about flowing water: where they come from, and whether a rule holds on homes we never see.

Session 9 (issue 17): on other real households (families, hourly) false community ``continuous_flow``
calls were 1.46 per household-month, against about 0.3 on our 46 dev homes at the same commit. This
replays a tuning set and tells:

* ``--describe``: every false community flow call (with ``--outcomes``, as cadres' outcomes teach)
  by home (how concentrated), by cause (burst / run at an hour with no learned tap run / run past a
  learned run), by days since the meter's first reading, by month, by run length, rate and hour, and
  whether a burst drew more than the home had drawn before and what the next interval drew (session
  23: had the water stopped?); ``--show N`` prints the readings around the calls of the N worst homes;
* otherwise: ``tapwatch eval``'s figures that flows move (false community flow and all false
  community calls, false maintenance, taps, falls with a tap open, leaks), without and with outcomes,
  for all homes and, with ``--halves``, for each half of them split by meter_id (decide on one half,
  report the other).

Homes unlike ours, from the same readings: ``--jitter S`` reads every reading up to S seconds late (a
meter whose clock is not on the second, as most of the dev homes' are), ``--scale F`` has every home
draw F times the water outside the injected incidents (a bigger family), ``--mix`` adds another home's
use to each home's, time-aligned (a bigger household with real, overlapping habits: session 10) and
``--garden`` has a share of homes water a garden in warm months (:func:`gardened`, session 10).

``--set NAME=VALUE`` sets an operator threshold; ``--const NAME=VALUE`` a ``detect.flow`` or
``detect.monitor`` constant (what a variant needs). Datasets are cached in ``--cache``. Tuning sets
only (simulator seeds 2 and 3, real homes at injection seed 2)::

    .venv/bin/python bench/flow_generalise.py --real /work/shared/data/real-water/dev.csv.gz --describe --show 3
    .venv/bin/python bench/flow_generalise.py --real /work/shared/data/real-water/dev.csv.gz --halves
    .venv/bin/python bench/flow_generalise.py --real /work/shared/data/real-water/dev.csv.gz --jitter 30
    .venv/bin/python bench/flow_generalise.py --sim 300x120x3
    .venv/bin/python bench/flow_generalise.py --real /work/shared/data/real-water/dev.csv.gz --halves --mix
    .venv/bin/python bench/flow_generalise.py --real /work/shared/data/real-water/dev.csv.gz --garden --describe
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

import detect.flow as flow_module
import detect.monitor as monitor_module
from core.domain import COMMUNITY, Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor
from detect.flow import TAP_LPH
from tapwatch import evaluate as ev

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from silence_calibration import add_dataset_args, add_variant_args, load, variant

DAY = 86400.0


def half_of(meter_id: str) -> int:
    """0 or 1: a fixed split of the homes by their id, the same on every run and data set."""
    return hashlib.sha256(meter_id.encode()).digest()[0] & 1


@dataclass
class Call:
    """One false community ``continuous_flow`` call, and what the flow model looked like then."""

    meter: str
    k: int  # the interval's index in its meter's list
    ts: float
    off: int
    cause: str  # burst / no learned tap run / past a learned run
    days: float  # since the meter's first reading
    run_h: float  # the run at the leak level
    lph: float  # the interval's rate
    hours: float  # the interval's length
    hour: int
    tap_n: int  # intervals in the run at a tap's rate, this one included
    after: int  # intervals at a tap's rate after it
    next_lph: float | None  # the next interval's rate (None: no next reading, or a lost one)
    max_rate: float
    peak_ever: float  # the highest rate this home drew before (outside incidents)
    peak_90d: float  # ... in the last 90 days
    longest_tap: float  # learned longest run at a tap's rate at this hour
    longest_tap_any: float  # ... at any hour


class _Recording(MeterMonitor):
    """A monitor that notes what its flow model looked like at each community flow call."""

    def __init__(self, meter_id: str, thresholds: Thresholds, xs: list[Interval], out: list[Call]) -> None:
        super().__init__(meter_id, thresholds)
        self._xs, self._out, self._k = xs, out, -1
        self.incidents: list[tuple[float, float]] = []

    def update(self, x: Interval) -> list[Finding]:
        self._k += 1
        found = super().update(x)
        for f in found:
            if f.kind == "continuous_flow" and not f.resolved and f.route == COMMUNITY:
                self._out.append(self._note(x, self._k))
        return found

    def _note(self, x: Interval, k: int) -> Call:
        flow, xs = self.flow, self._xs
        tap = flow.levels.index(TAP_LPH)
        hour = flow._hour(x.end, x.utc_offset_s)
        if flow.burst:
            cause = "burst"
        elif max(flow._state[tap * 24 + hour], flow.floor_h[tap]) == 0.0:
            cause = "no learned tap run"
        else:
            cause = "past a learned run"
        began, tap_began = flow.run_start[0], flow.run_start[tap]
        after = 0
        for y in xs[k + 1 :]:
            if y.usage_l is None or y.usage_l < TAP_LPH * y.hours:
                break
            after += 1
        nxt = xs[k + 1] if k + 1 < len(xs) else None
        next_lph = None if nxt is None or nxt.usage_l is None or nxt.hours <= 0 else nxt.usage_l / nxt.hours
        rates = [
            (y.end, y.usage_l / y.hours)
            for y in xs[:k]
            if y.usage_l is not None and y.hours >= 0.25 and not any(a - 3600 <= y.end <= b for a, b in self.incidents)
        ]
        return Call(
            self.meter_id,
            k,
            x.end,
            x.utc_offset_s,
            cause,
            (x.end - xs[0].start) / DAY,
            (x.end - (x.start if began is None else began)) / 3600.0,
            (x.usage_l or 0.0) / max(x.hours, 1e-9),
            x.hours,
            hour,
            sum(1 for y in xs[: k + 1] if tap_began is not None and y.start >= tap_began),
            after,
            next_lph,
            flow.max_rate,
            max((r for _, r in rates), default=0.0),
            max((r for t, r in rates if t > x.end - 90 * DAY), default=0.0),
            float(flow._state[tap * 24 + hour]),
            max(float(flow._state[tap * 24 + h]) for h in range(24)),
        )


def calls(data: ev.Dataset, thresholds: Thresholds, delay: float | None = None) -> list[Call]:
    """Every false community ``continuous_flow`` call of a replay (with outcomes when ``delay``), with what it was."""
    out: list[Call] = []
    incidents: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t in data.truth:
        if t.category == "incident":
            incidents[t.meter_id].append((t.start, t.window_end))

    def make(meter_id: str, xs: list[Interval], _truth: object) -> _Recording:
        monitor = _Recording(meter_id, thresholds, xs, out)
        monitor.incidents = incidents.get(meter_id, [])
        return monitor

    ev.score("calls", make, data, delay)
    return [c for c in out if not any(a <= c.ts <= b for a, b in incidents.get(c.meter, []))]


def _quantiles(values: list[float], qs: tuple[int, ...] = (10, 25, 50, 75, 90)) -> str:
    if not values:
        return "-"
    return " / ".join(f"{np.percentile(values, q):.1f}" for q in qs)


def _counts(values: list[int]) -> dict[int, int]:
    return dict(sorted(Counter(values).items()))


def _next_band(lph: float | None) -> str:
    """What an interval after a call drew: stopped (under the leak level), slow, or still a tap's rate."""
    if lph is None:
        return "no reading"
    if lph < 6.0:
        return "under 6 L/h"
    return "6-120 L/h" if lph < TAP_LPH else "120 L/h or more"


def _local(ts: float, off: int) -> datetime:
    return datetime.fromtimestamp(ts + off, tz=UTC)


AGE_EDGES = (0, 7, 14, 30, 60, 120, 240, 10_000)


def describe(data: ev.Dataset, thresholds: Thresholds, show: int, delay: float | None) -> None:
    found = calls(data, thresholds, delay)
    months = sum((xs[-1].end - xs[0].start) / (30 * DAY) for xs in data.intervals.values() if xs)
    print(f"{data.name}: {len(found)} false community flow calls, {len(found) / months:.3f} per home-month")
    per_home = Counter(c.meter for c in found)
    ranked = per_home.most_common()
    total, top = 0, 0
    for _, n in ranked:
        total, top = total + n, top + 1
        if total * 2 >= len(found):
            break
    print(f"homes with any: {len(per_home)} of {len(data.intervals)}; {top} homes give half of them")
    print("per home (most first):", [n for _, n in ranked])
    print("by cause:", dict(Counter(c.cause for c in found)))
    for cause in sorted({c.cause for c in found}):
        cs = [c for c in found if c.cause == cause]
        print(
            f"  {cause}: homes {len({c.meter for c in cs})}, run h {_quantiles([c.run_h for c in cs])}, "
            f"L/h {_quantiles([c.lph for c in cs])}, max_rate {_quantiles([c.max_rate for c in cs])}\n"
            f"    intervals at a tap's rate: at the call {_counts([c.tap_n for c in cs])}, "
            f"after it {_counts([c.after for c in cs])}; interval h {_quantiles([c.hours for c in cs])}"
        )
    ages = list(itertools.pairwise(AGE_EDGES))
    by_age = Counter(next(f"{a}-{b} d" for a, b in ages if c.days < b) for c in found)
    exposure: defaultdict[str, float] = defaultdict(float)  # home-months at each age
    for xs in data.intervals.values():
        if xs:
            span = (xs[-1].end - xs[0].start) / DAY
            for a, b in ages:
                exposure[f"{a}-{b} d"] += max(0.0, min(span, b) - a) / 30.0
    print(
        "by days since the meter's first reading (calls, per home-month):",
        {
            f"{a}-{b} d": (by_age[f"{a}-{b} d"], round(by_age[f"{a}-{b} d"] / exposure[f"{a}-{b} d"], 3))
            for a, b in ages
            if exposure[f"{a}-{b} d"]
        },
    )
    print("by month:", _counts([_local(c.ts, c.off).month for c in found]))
    print("by local hour:", _counts([c.hour for c in found]))
    print("run h:", _quantiles([c.run_h for c in found]), " L/h:", _quantiles([c.lph for c in found]))
    bursts = [c for c in found if c.cause == "burst"]
    print(
        f"bursts: {len(bursts)}; no more than this home drew before (outside incidents): "
        f"{sum(c.lph <= c.peak_ever for c in bursts)}, "
        f"in the last 90 days: {sum(c.lph <= c.peak_90d for c in bursts)}; "
        f"under 1.5 x the most it drew before: {sum(c.lph <= 1.5 * c.peak_ever for c in bursts)}"
    )
    # Whether the water had stopped by the next reading (a tap left open runs on): session 23.
    print("bursts by the next interval's rate:", dict(Counter(_next_band(c.next_lph) for c in bursts)))
    for meter_id, _ in ranked[:show]:
        xs = data.intervals[meter_id]
        print(f"\n== {meter_id}: {per_home[meter_id]} calls")
        for c in [c for c in found if c.meter == meter_id][:6]:
            print(
                f"  call {_local(c.ts, c.off):%Y-%m-%d %H:%M} day {c.days:.0f} {c.cause}: run {c.run_h:.1f} h, "
                f"{c.lph:.0f} L/h, max_rate {c.max_rate:.0f}, longest tap run here {c.longest_tap:.2f} h, "
                f"at any hour {c.longest_tap_any:.2f} h"
            )
            readings = (
                f"{_local(y.end, y.utc_offset_s):%H}:{'?' if y.usage_l is None else int(y.usage_l)}"
                for y in xs[max(c.k - 8, 0) : c.k + 5]
            )
            print("   ", " ".join(readings))


def figures(data: ev.Dataset, thresholds: Thresholds, halves: bool) -> None:
    groups: list[tuple[str, set[str]]] = [("all", set(data.intervals))]
    if halves:
        groups += [(f"half {h}", {m for m in data.intervals if half_of(m) == h}) for h in (0, 1)]
    for label, ids in groups:
        sub = ev.Dataset(
            label,
            {m: xs for m, xs in data.intervals.items() if m in ids},
            [t for t in data.truth if t.meter_id in ids],
            0,
            None if data.faults is None else [t for t in data.faults if t.meter_id in ids],
        )
        for delay in (None, ev.VISIT_DELAY_H):
            s = ev.score("tapwatch", ev.tapwatch_factory(thresholds), sub, delay)
            flow = s.false_by_kind.get("continuous_flow", 0)
            parts = [
                f"{label:7s} {'+out' if delay else '    '}",
                f"flow {s.per_month(flow):.3f} ({flow})",
                f"noise {s.noise_rate:.3f}",
                f"maint {s.per_month(s.maintenance):.3f}",
            ]
            for kind in ("tap_running", "fall_tap_running", "leak"):
                if s.delays.get(kind):
                    r, med, p90 = s.recall(kind), s.quantile(kind, 50), s.quantile(kind, 90)
                    n = len(s.delays[kind])
                    parts.append(f"{kind} {r:.2f} {med or math.nan:.2f}/{p90 or math.nan:.2f} (n={n})")
            print("  ".join(parts), flush=True)


def unlike_ours(data: ev.Dataset, args: argparse.Namespace) -> ev.Dataset:
    """The homes unlike ours the command line asks for (``--jitter``, ``--scale``, ``--mix``, ``--garden``)."""
    if getattr(args, "jitter", 0.0):
        data = jittered(data, args.jitter)
    if args.scale != 1.0:
        data = scaled(data, args.scale)
    if args.mix:
        data = mixed(data)
    if args.garden:
        data = gardened(data)
    return data


def jittered(data: ev.Dataset, seconds: float) -> ev.Dataset:
    """The same homes read by meters whose clocks report each reading 0 to ``seconds`` late (fixed per reading).

    Other households' meters need not read on the second as these do (most intervals here are exactly
    3600 s): a rule that turns on an interval being a few seconds over an hour must not be trusted.
    """

    def late(meter_id: str, ts: float) -> float:
        digest = hashlib.sha256(f"{meter_id}:{ts:.0f}".encode()).digest()
        return ts + seconds * int.from_bytes(digest[:4], "big") / 2**32

    intervals = {
        m: [x._replace(start=late(m, x.start), end=late(m, x.end)) for x in xs] for m, xs in data.intervals.items()
    }
    name = f"{data.name}, readings up to {seconds:g} s late"
    return ev.Dataset(name, intervals, data.truth, data.readings, data.faults)


def scaled(data: ev.Dataset, factor: float) -> ev.Dataset:
    """The same homes drawing ``factor`` times the water (a bigger family) outside the injected incidents."""
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t in data.truth:
        if t.category == "incident":
            windows[t.meter_id].append((t.start - 3600.0, t.window_end))

    def more(x: Interval) -> Interval:
        if x.usage_l is None or any(a < x.end and x.start < b for a, b in windows.get(x.meter_id, [])):
            return x
        return x._replace(usage_l=round(x.usage_l * factor))

    intervals = {m: [more(x) for x in xs] for m, xs in data.intervals.items()}
    return ev.Dataset(f"{data.name}, x{factor:g} the water", intervals, data.truth, data.readings, data.faults)


def _incident_windows(data: ev.Dataset) -> dict[str, list[tuple[float, float]]]:
    """Each meter's injected incidents, from an hour before each to the end of its window."""
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t in data.truth:
        if t.category == "incident":
            windows[t.meter_id].append((t.start - 3600.0, t.window_end))
    return windows


def _added(data: ev.Dataset, extra: dict[str, list[float]], name: str) -> ev.Dataset:
    """The data set with ``extra[meter][k]`` litres added to each meter's k-th interval, outside its incidents."""
    windows = _incident_windows(data)

    def more(x: Interval, litres: float) -> Interval:
        if x.usage_l is None or litres <= 0.0 or any(a < x.end and x.start < b for a, b in windows.get(x.meter_id, [])):
            return x
        return x._replace(usage_l=float(round(x.usage_l + litres)))

    intervals = {
        m: [more(x, e) for x, e in zip(xs, extra[m], strict=True)] if m in extra else xs
        for m, xs in data.intervals.items()
    }
    return ev.Dataset(f"{data.name}, {name}", intervals, data.truth, data.readings, data.faults)


def mixed(data: ev.Dataset) -> ev.Dataset:
    """Each home's use plus another home's, time-aligned: a bigger household whose habits really overlap.

    Homes are paired in a fixed cycle (ordered by a hash of their ids: home i gets the use of home i+1). The
    other home's series is shifted by whole weeks so that it starts within a week of this one's (the
    weekday and the time of day stay; on the simulator every home shares one clock and no shift is
    made), and its cumulative use is read at this home's readings (linear between its own). Its injected
    incidents add nothing (they would be incidents nobody labelled here), nor does it outside its own span.
    """
    windows = _incident_windows(data)
    order = sorted((m for m, xs in data.intervals.items() if xs), key=lambda m: hashlib.sha256(m.encode()).digest())
    extra: dict[str, list[float]] = {}
    for i, m in enumerate(order):
        other = order[(i + 1) % len(order)]
        own = [
            0.0 if y.usage_l is None or any(a < y.end and y.start < b for a, b in windows.get(other, [])) else y.usage_l
            for y in data.intervals[other]
        ]
        extra[m] = use_at_readings(data, m, other, own)
    return _added(data, extra, "with another home's use")


def use_at_readings(
    data: ev.Dataset, m: str, other: str, own: list[float], a: float = -math.inf, b: float = math.inf
) -> list[float]:
    """Litres ``other`` drew (``own``: per interval of its own) in each of ``m``'s intervals within [a, b].

    ``other``'s series is shifted by whole weeks to start within a week of ``m``'s (the weekday and the time of
    day stay; on the simulator every home shares one clock: no shift), and its cumulative use is read at ``m``'s
    readings, linear between its own.
    """
    ys = data.intervals[other]
    weeks = round((data.intervals[m][0].start - ys[0].start) / (7 * DAY))
    knots = np.array([ys[0].start] + [y.end for y in ys]) + weeks * 7 * DAY
    cumulative = np.concatenate(([0.0], np.cumsum(own)))
    xs = data.intervals[m]
    at_start = np.interp(np.clip([x.start for x in xs], a, b), knots, cumulative)
    at_end = np.interp(np.clip([x.end for x in xs], a, b), knots, cumulative)
    return (at_end - at_start).tolist()


#: ``--garden``: a share of homes water a garden (assumptions, not data: a hose or a sprinkler draws 10-25
#: L/min; 20-90 minutes a time; on most days of warm months; at a habitual hour of the morning or evening
#: that drifts by about 20 minutes from day to day; some on an automatic timer at night, on the minute).
GARDEN_SHARE = 0.5
GARDEN_LPH = (600.0, 1500.0)
GARDEN_MIN = (20.0, 90.0)
GARDEN_DAY_P = {4: 0.3, 5: 0.7, 6: 0.85, 7: 0.85, 8: 0.85, 9: 0.6, 10: 0.3}  # by local month; none in others
GARDEN_TIMER_P = 0.25
GARDEN_DRIFT_MIN = 20.0


def gardened(data: ev.Dataset, seed: int = 10) -> ev.Dataset:
    """A share of the homes (``GARDEN_SHARE``, by a hash of the id) water a garden in warm months.

    Each such home has its own rate (``GARDEN_LPH``, +-10 % a day), its usual length (within ``GARDEN_MIN``,
    +-30 % a day) and a habitual local start (06:00-09:00 or 18:00-21:30, drifting by ``GARDEN_DRIFT_MIN``
    minutes (sd) a day); one in four (``GARDEN_TIMER_P``) has an automatic timer instead: 01:00-05:00, the
    same minute and length every watering. Watering days follow ``GARDEN_DAY_P`` by the local month.
    """
    extra: dict[str, list[float]] = {}
    for m, xs in data.intervals.items():
        digest = hashlib.sha256(f"garden:{seed}:{m}".encode()).digest()
        if not xs or digest[0] >= 256 * GARDEN_SHARE:
            continue
        rng = np.random.default_rng(int.from_bytes(digest[1:9], "big"))
        lph = rng.uniform(*GARDEN_LPH)
        minutes = rng.uniform(*GARDEN_MIN)
        timer = rng.random() < GARDEN_TIMER_P
        if timer:
            hour = rng.uniform(1.0, 5.0)
        else:
            hour = rng.uniform(6.0, 9.0) if rng.random() < 0.5 else rng.uniform(18.0, 21.5)
        off = xs[0].utc_offset_s
        first = math.floor((xs[0].start + off) / DAY)
        last = math.floor((xs[-1].end + off) / DAY)
        spans: list[tuple[float, float, float]] = []  # (start, end, L/h), UTC
        for day in range(first, last + 1):
            month = datetime.fromtimestamp(day * DAY, tz=UTC).month
            if rng.random() >= GARDEN_DAY_P.get(month, 0.0):
                continue
            if timer:
                start_h, length, rate = hour, minutes, lph
            else:
                start_h = hour + rng.normal(0.0, GARDEN_DRIFT_MIN / 60.0)
                length = minutes * rng.uniform(0.7, 1.3)
                rate = lph * rng.uniform(0.9, 1.1)
            start = day * DAY + start_h * 3600.0 - off
            spans.append((start, start + length * 60.0, rate))
        added = [0.0] * len(xs)
        j = 0
        for k, x in enumerate(xs):
            while j < len(spans) and spans[j][1] <= x.start:
                j += 1
            for a, b, rate in spans[j : j + 2]:
                overlap = min(b, x.end) - max(a, x.start)
                if overlap > 0:
                    added[k] += rate * overlap / 3600.0
        extra[m] = added
    return _added(data, extra, f"gardens in {len(extra)} homes")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataset_args(p, cache="/tmp/flowgen-cache")
    p.add_argument("--describe", action="store_true")
    p.add_argument("--show", type=int, default=0, help="with --describe: the readings of this many worst homes")
    p.add_argument("--outcomes", action="store_true", help="with --describe: cadres' outcomes applied")
    p.add_argument("--jitter", type=float, default=0.0, help="readings up to this many seconds late (robustness)")
    p.add_argument("--scale", type=float, default=1.0, help="homes drawing this many times the water (robustness)")
    p.add_argument("--mix", action="store_true", help="each home's use plus another home's (robustness)")
    p.add_argument("--garden", action="store_true", help="a share of homes water a garden (robustness)")
    p.add_argument("--halves", action="store_true", help="figures for each half of the homes too")
    add_variant_args(p, "a detect.flow/monitor constant")
    args = p.parse_args(argv)
    thresholds = variant(p, args, (flow_module, monitor_module))
    data = unlike_ours(load(args), args)
    if args.describe:
        describe(data, thresholds, args.show, ev.VISIT_DELAY_H if args.outcomes else None)
    else:
        figures(data, thresholds, args.halves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
