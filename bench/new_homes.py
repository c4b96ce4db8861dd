"""A new home's first weeks: what tapwatch says while it learns, by the home's age (session 11).

A district switches tapwatch on for all its elders at once: for weeks every home is new. This replays a
tuning set as ``tapwatch eval`` does (``tapwatch.evaluate.score``, each meter alone, without and with
cadres' outcomes) and splits every figure by the home's age when it happened (days since the meter's
first reading: 0-7, 7-14, 14-30, 30-45, 45+):

* false community calls per home-month (the home-months of that band), by kind and by the rule that
  raised them: for ``no_activity`` the learning week's safety net (``net``), the population prior
  (``prior``), the learned model (``learned``) or habitual hours (``habit``); for ``continuous_flow`` a
  burst (one interval far above the home's highest rate) or a run at a tap's rate (``tap run``); the
  day's total (``daily``) and ``routine_change``;
* false maintenance findings by kind and rule (a slow run past this home's longest, a steady run, the
  base-flow report, a month-long silence after a visit), as the eval counts them, and apart the device
  alerts (``meter_offline`` / ``meter_fault``), which the eval does not count as false maintenance (a real
  meter gap is a true one);
* falls (and taps, leaks) found and their median / p90 delay, by the age at which the incident began
  (``--first-week`` puts a fall in every home's first week: the evaluation's data never do).

Classes as ``score`` classes them: an alert within an incident's window is the incident's, the first
community alert in a real absence of 24 h or more is the absence's, any other community alert is false.

``--scale F`` has every home draw F times its water outside the incidents (a heavier household,
``bench/flow_generalise.py``); ``--halves`` prints the totals for each half of the homes by meter_id;
``--set NAME=VALUE`` an operator threshold, ``--const NAME=VALUE`` a ``detect.monitor`` / ``detect.flow`` /
``detect.silence`` constant.

Session 13 (docs/detection-studies.md, "A new home settles"): ``--calls`` prints, for the learned silence model's
community calls by age band (false, a fall's, an absence's), what the model had seen from the start hour (its own
silences' weight, the population prior's, where the tail starts: ``evidence``), how far past that the alert came
and when water was used again; ``--each FILE`` writes every incident's delay and the false community calls per
meter and band as JSON (to compare two variants incident by incident); ``--tail`` replaces the silence model's
tail by one of ``TailVariant``'s (not adopted); ``--settling-falls`` gives every elder or home one fall in days
7-30 (the evaluation's data place two there on the real homes). Tuning sets only (simulator seeds 2 and 3, real
homes at injection seed 2)::

    .venv/bin/python bench/new_homes.py --real /work/shared/data/real-water/dev.csv.gz --halves
    .venv/bin/python bench/new_homes.py --sim 300x120x2
    .venv/bin/python bench/new_homes.py --real /work/shared/data/real-water/dev.csv.gz --scale 2
    .venv/bin/python bench/new_homes.py --sim 300x28x2 --first-week
    .venv/bin/python bench/new_homes.py --sim 300x28x2 --first-week-taps
    .venv/bin/python bench/new_homes.py --real /work/shared/data/real-water/dev.csv.gz --halves --calls --tail own
    .venv/bin/python bench/new_homes.py --sim 300x45x2 --settling-falls --each /tmp/own.json --tail own
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import pickle
import random
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

import detect.flow as flow_module
import detect.monitor as monitor_module
import detect.silence as silence_module
from core.domain import COMMUNITY, DEVICE_KINDS, Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor
from simulator import SimConfig
from simulator.config import IncidentSpec
from tapwatch import evaluate as ev

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from flow_generalise import half_of, scaled
from silence_calibration import (
    add_dataset_args,
    add_variant_args,
    first_week_real,
    first_week_sim,
    load,
    simulated_set,
    variant,
)

DAY = ev.DAY
#: Upper edges (days since the first reading) of the age bands, and their names.
BAND_EDGES = (7.0, 14.0, 30.0, 45.0, math.inf)
BANDS = ("0-7", "7-14", "14-30", "30-45", "45+")


def first_week_taps_sim(elders: int, days: int, seed: int) -> ev.Dataset:
    """Simulated elders, each with a tap left open in days 1-7 at a waking hour (every other one by someone who fell
    there, ``fall_tap_running``; else ``tap_running``), no other incidents: what the learning weeks' flow rules cost
    taps, which the evaluation's data never place in a home's first week."""
    rng = random.Random(seed * 1000 + 11)
    taps = [
        IncidentSpec(
            elder=i,
            kind="fall_tap_running" if i % 2 else "tap_running",
            start_day=rng.randint(1, 6) + rng.uniform(9.0, 20.0) / 24.0,
        )
        for i in range(elders)
    ]
    config = SimConfig(elders=elders, days=days, seed=seed, random_incidents=False, incidents=taps)
    return simulated_set(config, "first-week taps")


def load_taps(spec: str, cache: str) -> ev.Dataset:
    """``first_week_taps_sim`` for ``ELDERSxDAYSxSEED``, from the cache when there."""
    elders, days, seed = (int(v) for v in spec.split("x"))
    path = Path(cache) / f"first-week-taps-sim-{elders}x{days}x{seed}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    data = first_week_taps_sim(elders, days, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return data


#: Days in which ``--settling-falls`` places each home's fall: the weeks after the learning week, before settling.
SETTLING = (7.0, 30.0)


def load_settling(args: argparse.Namespace) -> ev.Dataset:
    """Every elder or home falls once at a random moment of days 7-30 (``SETTLING``; the simulator's
    ``ELDERSxDAYSxSEED`` or the real homes' first 45 days), from the cache when there: what the settling weeks'
    silence rules cost falls, which the evaluation's data place few of there (two on the real homes at seed 2)."""
    key = f"sim-{args.sim}" if args.sim else f"real-{Path(args.real).name}-{args.seed}"
    path = Path(args.cache) / f"settling-falls-{key}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    if args.sim:
        elders, days, seed = (int(v) for v in args.sim.split("x"))
        data = first_week_sim(elders, days, seed, between=SETTLING)
    else:
        data = first_week_real(args.real, args.seed, args.tz, days=45.0, between=SETTLING)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return data


def band_of(days: float) -> int:
    """Index of the age band ``days`` falls in."""
    return bisect.bisect_right(BAND_EDGES, days)


class _NotingFlow(flow_module.FlowModel):
    """The flow model, noting whether the steady-leak rule spoke in the last interval scored (bench only)."""

    __slots__ = ("steady_h",)

    def _steady(self, start: float, end: float, hours: float, rate: float, hour: int) -> float:
        self.steady_h = super()._steady(start, end, hours, rate, hour)
        return self.steady_h


def own_and_prior(model: silence_module.SilenceModel) -> tuple[np.ndarray, np.ndarray]:
    """Per start hour, the silences the model has seen (their decayed weight, neighbours pooled as it pools them) and
    the population prior's weight then, as ``SilenceModel.survival`` weighs them."""
    sm = silence_module
    n = model.histogram().astype(np.float64).sum(axis=1)[sm._RING]
    n_own = 0.5 * n[:-2] + n[1:-1] + 0.5 * n[2:]
    return n_own, model.prior_weight * (sm._PRIOR_FADE / (sm._PRIOR_FADE + n_own)) ** 2


def evidence(model: silence_module.SilenceModel, hour: int) -> tuple[float, float, float]:
    """What the silence model had seen from ``hour`` (``own_and_prior``) and where its tail starts (h: the longest
    silence seen, within the last length bin a silence backs, as ``SilenceModel._solve`` places it)."""
    sm = silence_module
    n_own, weight = (float(v[hour]) for v in own_and_prior(model))
    surv, total = model.survival()
    backed = surv[hour] * total[hour] >= 1.0
    k = min(sm.N_BINS - int(backed[::-1].argmax()), sm.N_BINS - 1) if backed.any() else 1
    seen = np.frombuffer(model.longest, dtype=np.float32).astype(np.float64)[sm._RING][hour : hour + 3].max()
    return n_own, weight, float(min(max(seen, sm._LOWER_BELOW[k]), sm._LOWER[k]))


class TailVariant(silence_module.SilenceModel):
    """The silence model with another tail past the longest silences seen (bench only, session 13; not adopted).

    ``SilenceModel._solve`` starts the tail at ``max(S(anchor), 0.5 / silences seen)`` and lets it fall as
    ``exp(-x / tau)``, the silences seen counting the population prior's weight. Here:

    * ``prior_share``: how much of the prior's weight counts as silences seen (1 as the model; 0: the chance that the
      next silence outlasts all those seen is about one over the home's own, whatever the prior says);
    * ``lomax``: the tail's scale is itself known from the silences seen, so the tail is the Lomax predictive of an
      exponential whose rate was estimated from them, ``(1 + x / (n tau)) ** -n`` with ``n`` the silences seen:
      heavier when few were seen, the model's exponential when many were.

    ``young_days`` > 0 keeps the variant to a home's first that many days (the model's tail after them, from the
    first refresh after: weekly); ``young_sensitivity`` > 0 is the sensitivity in those days (the curve of the
    learning weeks alone, the baseline of a variant kept to them).

    Only the alert lengths change (``_tail_scales``, and ``_solve``'s sensitivity in the young days); ``p_value``
    and the messages keep the model's tail.
    """

    __slots__ = ("young",)
    #: Set on the class by ``--tail`` and ``--tail-days`` (the same for every meter of a run).
    prior_share = 1.0
    lomax = False
    young_days = 0.0
    young_sensitivity = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.young = True  # the monitor says when the home is no longer young (``_Noting._refresh_silence``)

    def refresh(self, sensitivity: float) -> None:
        # Not through the model's cache of a new meter's alert lengths, which is keyed by the settings alone.
        self._sensitivity = sensitivity
        self._solve(sensitivity)

    def _solve(self, sensitivity: float) -> None:
        super()._solve(self.young_sensitivity if self.young and self.young_sensitivity > 0.0 else sensitivity)

    def _tail_scales(self, s_anchor: np.ndarray, seen: np.ndarray, sensitivity: float) -> np.ndarray:
        share, lomax = (self.prior_share, self.lomax) if self.young else (1.0, False)
        if share != 1.0:
            n_own, weight = own_and_prior(self)
            seen = np.maximum(n_own + share * weight, 1.0)
        drop = super()._tail_scales(s_anchor, seen, sensitivity)
        if lomax:
            drop = seen * np.expm1(drop / seen)  # where (1 + x / n) ** -n reaches sensitivity / s_anchor
        return drop


#: ``--tail`` names: (prior_share, lomax).
TAILS = {"model": (1.0, False), "own": (0.0, False), "lomax": (1.0, True), "lomax-own": (0.0, True)}


class _Noting(MeterMonitor):
    """The monitor, noting for each finding it raises the rule that raised it (bench only), and for each silence
    call of the learned model what the model had seen from its start hour (``evidence``) and its alert length."""

    def __init__(self, meter_id: str, thresholds: Thresholds) -> None:
        super().__init__(meter_id, thresholds)
        t = self.thresholds
        self.flow = _NotingFlow(t.leak_flow_lpm * 60.0, run_factor=t.flow_run_factor, run_margin_h=t.flow_margin_h)
        if TailVariant.prior_share != 1.0 or TailVariant.lomax or TailVariant.young_sensitivity:
            self.silence = TailVariant()
        self.notes: list[tuple[Finding, str]] = []
        self.seen: dict[int, tuple[float, float, float, float]] = {}  # id(finding): evidence and alert length

    def _refresh_silence(self) -> None:
        model = self.silence
        if isinstance(model, TailVariant) and TailVariant.young_days > 0.0 and self.first_ts is not None:
            model.young = (self.last_end or self.first_ts) - self.first_ts < TailVariant.young_days * DAY
        super()._refresh_silence()

    def update(self, x: Interval) -> list[Finding]:
        self.flow.steady_h = 0.0
        out = super().update(x)
        for f in out:
            if not f.resolved:
                self.notes.append((f, self._rule(f, x.utc_offset_s)))
        return out

    def _rule(self, f: Finding, off: int) -> str:
        if f.kind == "no_activity":
            if f.route != COMMUNITY:
                return "silent after a visit"
            if f.basis in ("rule", "prior"):
                return "net" if f.basis == "rule" else "prior"
            hour = silence_module.hour_of(f.since or f.ts, off)
            alert_h = self.silence.alert_hours(hour)
            self.seen[id(f)] = (*evidence(self.silence, hour), alert_h)
            return "habit" if (f.ts - (f.since or f.ts)) / 3600.0 < alert_h - 1e-6 else "learned"
        if f.kind == "continuous_flow":
            if f.details.get("rule") == "water in every 2 h block":
                return "base flow"
            if f.route != COMMUNITY:
                return "steady run" if self.flow.steady_h > 0.0 else "slow run"
            return "burst" if self.flow.burst else "tap run"
        if f.kind in ("high_usage", "low_usage"):
            return f"daily ({f.basis})"
        return f.kind


def _span(xs: list[Interval]) -> list[float]:
    """Home-months in each age band of a meter's history."""
    first, last = xs[0].start, xs[-1].end
    out, lo = [], 0.0
    for hi in BAND_EDGES:
        out.append(max(0.0, min(last, first + hi * DAY) - (first + lo * DAY)) / (30 * DAY))
        lo = hi
    return out


class Tally:
    """Counts by age band: home-months, false calls by (route, kind, rule), incidents and their delays."""

    def __init__(self) -> None:
        self.months = [0.0] * len(BANDS)
        self.false: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * len(BANDS))
        self.device: dict[str, list[int]] = defaultdict(lambda: [0] * len(BANDS))
        self.found: dict[str, list[list[float | None]]] = defaultdict(lambda: [[] for _ in BANDS])
        #: Per learned-model silence call: (band, "false" or the incident's kind, own weight, prior weight, longest
        #: seen, alert length, hours from the silence's start until water was used again (None: data lost first),
        #: hours from its start to the call).
        self.calls: list[tuple[int, str, float, float, float, float, float | None, float]] = []
        #: Every incident: (meter, kind, start, hours to its alert or None), for ``--each``.
        self.each: list[tuple[str, str, float, float | None]] = []

    def add(self, other: Tally) -> None:
        self.months = [a + b for a, b in zip(self.months, other.months, strict=True)]
        for table, mine in ((other.false, self.false), (other.device, self.device)):
            for key, counts in table.items():
                mine[key] = [a + b for a, b in zip(mine[key], counts, strict=True)]
        for kind, lists in other.found.items():
            for i, d in enumerate(lists):
                self.found[kind][i].extend(d)
        self.calls.extend(other.calls)
        self.each.extend(other.each)


def tally_meter(
    meter_id: str, xs: list[Interval], truth: list[ev.Truth], thresholds: Thresholds, delay: float | None
) -> Tally:
    """One meter replayed as ``score`` does, its alerts classed as ``score`` classes them, by age band."""
    made: list[_Noting] = []

    def factory(mid: str, _xs: list[Interval], _t: list[ev.Truth]) -> Any:
        made.append(_Noting(mid, thresholds))
        return made[-1]

    ev.score("tapwatch", factory, ev.Dataset(meter_id, {meter_id: xs}, truth, len(xs)), delay)
    out = Tally()
    out.months = _span(xs)
    first = xs[0].start
    incidents = [t for t in truth if t.category == "incident"]
    notes = made[0].notes
    for f, _rule in notes:
        if f.kind in DEVICE_KINDS:
            out.device[f.kind][band_of((f.ts - first) / DAY)] += 1
    alerts = [(f, rule) for f, rule in notes if f.kind not in DEVICE_KINDS]
    community = [f.ts for f, _ in alerts if f.route == COMMUNITY]
    anywhere = [f.ts for f, _ in alerts]
    ends = [x.end for x in xs if x.usage_l is not None]
    for inc in incidents:
        if not ev.observed(ends, inc):
            continue  # nothing to see it by: counted apart by the eval too
        on_route = anywhere if inc.kind in ev.EITHER_ROUTE else community
        k = bisect.bisect_left(on_route, inc.start)
        hit = on_route[k] if k < len(on_route) and on_route[k] <= inc.window_end else None
        delay = None if hit is None else (hit - inc.start) / 3600.0
        out.found[inc.kind][band_of((inc.start - first) / DAY)].append(delay)
        out.each.append((meter_id, inc.kind, inc.start, delay))
    quiet = ev.real_absences(xs, incidents)
    charged: set[int] = set()
    # Where a silence ended: a use, or data lost (the meter went silent: what happened is unknown).
    ended = [x.end for x in xs if x.usage_l is None or x.usage_l >= monitor_module.RESUME_MIN_L]
    lost = {x.end for x in xs if x.usage_l is None}
    seen = made[0].seen
    for f, rule in alerts:
        if rule == "learned" and f.route == COMMUNITY and id(f) in seen:
            began = f.since or f.ts
            k = bisect.bisect_right(ended, f.ts)
            back = (ended[k] - began) / 3600.0 if k < len(ended) and ended[k] not in lost else None
            inc = next((i.kind for i in incidents if i.start <= f.ts <= i.window_end), "false")
            out.calls.append((band_of((f.ts - first) / DAY), inc, *seen[id(f)], back, (f.ts - began) / 3600.0))
        if ev.explained(f, incidents, truth):
            continue
        band = band_of((f.ts - first) / DAY)
        if f.route != COMMUNITY:
            out.false[("maintenance", f.kind, rule)][band] += 1
            continue
        where = ev.absence_at(f.ts, quiet)
        if where is not None and where not in charged:
            charged.add(where)
            if out.calls and out.calls[-1][1] == "false" and id(f) in seen and rule == "learned":
                out.calls[-1] = (out.calls[-1][0], "absence", *out.calls[-1][2:])
            continue
        out.false[("community", f.kind, rule)][band] += 1
    return out


def tally(data: ev.Dataset, thresholds: Thresholds, delay: float | None) -> dict[str, Tally]:
    """Each meter's tally."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    return {m: tally_meter(m, xs, truth.get(m, []), thresholds, delay) for m, xs in data.intervals.items() if xs}


def _sum(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for t in tallies:
        total.add(t)
    return total


def _delays(d: list[float | None]) -> str:
    got = [x for x in d if x is not None]
    if not d:
        return "-"
    if not got:
        return f"0/{len(d)}"
    return f"{len(got)}/{len(d)} {np.percentile(got, 50):.2f}/{np.percentile(got, 90):.2f}h"


def report_calls(t: Tally) -> None:
    """The learned model's silence calls by age band: what the model had seen from the start hour, and where the
    call and the silence's end fell against the longest silence seen (medians; quartiles in brackets)."""

    def q(v: list[float]) -> str:
        if not v:
            return "-"
        a, b, c = np.percentile(v, (25, 50, 75))
        return f"{b:5.1f} [{a:.1f}-{c:.1f}]"

    print(
        "  learned-model silence calls: own weight | prior weight | alert - longest seen (h) | water again after"
        " the call: < 1 / 1-3 / 3-12 / 12+ h / data lost first"
    )
    for band, name in enumerate(BANDS):
        for what in ("false", "fall", "absence"):
            rows = [c for c in t.calls if c[0] == band and c[1] == what]
            if not rows:
                continue
            after = [None if c[6] is None else c[6] - c[7] for c in rows]
            spans = ((0, 1), (1, 3), (3, 12), (12, math.inf))
            cuts = [sum(a is not None and lo <= a < hi for a in after) for lo, hi in spans]
            print(
                f"    {name:>5} {what:5} {len(rows):4}: {q([c[2] for c in rows])} | {q([c[3] for c in rows])} | "
                f"{q([c[5] - c[4] for c in rows])} | {' / '.join(map(str, cuts))} / {after.count(None)}"
            )


def report(t: Tally, label: str) -> None:
    """Print one tally: rates per home-month by band, then the whole history."""
    months = [*t.months, sum(t.months)]

    def rates(counts: list[int]) -> str:
        cells = [*counts, sum(counts)]
        return " ".join(f"{c / m:6.2f}" if m > 0 else "     -" for c, m in zip(cells, months, strict=True))

    print(f"{label}: home-months by band {' '.join(f'{m:.1f}' for m in months)}")
    print(f"  {'per home-month':42} {' '.join(f'{b:>6}' for b in (*BANDS, 'all'))}")
    for route in ("community", "maintenance"):
        keys = sorted(k for k in t.false if k[0] == route)
        total = [sum(t.false[k][i] for k in keys) for i in range(len(BANDS))]
        print(f"  {'false ' + route:42} {rates(total)}")
        for kind in sorted({k[1] for k in keys}):
            of_kind = [k for k in keys if k[1] == kind]
            if len(of_kind) > 1:
                print(f"    {kind:40} {rates([sum(t.false[k][i] for k in of_kind) for i in range(len(BANDS))])}")
            for k in of_kind:
                print(f"      {kind + ': ' + k[2]:38} {rates(t.false[k])}")
    for kind, counts in sorted(t.device.items()):
        print(f"  {'device (not counted false): ' + kind:42} {rates(counts)}")
    for kind, lists in sorted(t.found.items()):
        cells = [_delays(d) for d in lists] + [_delays([x for d in lists for x in d])]
        print(f"  {kind + ' found, median/p90':42} " + " | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_args(p, cache="/tmp/newhomes-cache")
    p.add_argument("--first-week", action="store_true", help="every elder or home falls once in its first week")
    p.add_argument("--first-week-taps", action="store_true", help="with --sim: every elder leaves a tap open in week 1")
    p.add_argument("--settling-falls", action="store_true", help="every elder or home falls once in days 7-30")
    p.add_argument("--scale", type=float, default=1.0, help="homes drawing this many times the water")
    p.add_argument("--halves", action="store_true", help="totals for each half of the homes by meter_id too")
    p.add_argument("--tail", choices=sorted(TAILS), default="model", help="the silence tail (TailVariant)")
    p.add_argument("--tail-days", type=float, default=0.0, help="--tail only in a home's first DAYS days")
    p.add_argument("--young-sensitivity", type=float, default=0.0, help="the sensitivity in those days")
    p.add_argument("--no-outcomes", action="store_true", help="only the run without outcomes")
    p.add_argument("--calls", action="store_true", help="the learned model's silence calls by band, what it had seen")
    p.add_argument("--each", metavar="JSON", help="write every incident's delay (without, with outcomes) here")
    add_variant_args(p, "a detect module constant")
    args = p.parse_args(argv)
    thresholds = variant(p, args, (monitor_module, flow_module, silence_module))
    TailVariant.prior_share, TailVariant.lomax = TAILS[args.tail]
    TailVariant.young_days = args.tail_days
    TailVariant.young_sensitivity = args.young_sensitivity
    if args.young_sensitivity and not args.tail_days:
        p.error("--young-sensitivity needs --tail-days")
    if args.first_week_taps:
        data = load_taps(args.sim, args.cache)
    else:
        data = load_settling(args) if args.settling_falls else load(args)
    if args.scale != 1.0:
        data = scaled(data, args.scale)
    tail = [f"--tail {args.tail}"] if args.tail != "model" else []
    tail += [f"--young-sensitivity {args.young_sensitivity:g}"] if args.young_sensitivity else []
    tail += [f"--tail-days {args.tail_days:g}"] if tail and args.tail_days else []
    label = " ".join(args.set + args.const + tail) or "default"
    each: dict[str, Any] = {}
    for delay, name in ((None, "without outcomes"), (ev.VISIT_DELAY_H, "with outcomes")):
        if delay is not None and args.no_outcomes:
            break
        tallies = tally(data, thresholds, delay)
        report(_sum(tallies.values()), f"{label}, {name}")
        whole = _sum(tallies.values())
        each[name] = sorted(whole.each)
        each[f"false community by meter, {name}"] = {
            m: sum(sum(c) for k, c in t.false.items() if k[0] == "community") for m, t in tallies.items()
        }
        each[f"false community by band, {name}"] = [
            sum(c[i] for k, c in whole.false.items() if k[0] == "community") for i in range(len(BANDS))
        ]
        if args.calls:
            report_calls(_sum(tallies.values()))
        if args.halves:
            for half in (0, 1):
                report(_sum(t for m, t in tallies.items() if half_of(m) == half), f"  half {half}, {name}")
                if args.calls:
                    report_calls(_sum(t for m, t in tallies.items() if half_of(m) == half))
        sys.stdout.flush()
    if args.each:
        Path(args.each).write_text(json.dumps(each))
    return 0


if __name__ == "__main__":
    sys.exit(main())
