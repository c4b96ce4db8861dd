"""The shape of a run at a tap's rate: can it tell a family's heavy hours from a tap left open? (session 12)

Physical hypothesis: an open tap adds a constant rate (mains pressure) on top of whatever else the home
draws, so the intervals of its run keep a common floor near their own level; a family's heavy hours (baths,
laundry, guests) go up and down, drawing a tap's rate in one hour and a fraction of it in the next. This
replays a tuning set with today's detector and prints, measured (labels only score, as in ``tapwatch eval``):

* for every false community ``continuous_flow`` call and for every tap left running / fall with a tap open
  (the community finding that found it), the rates of the run at the tap level up to that moment (the run's
  first interval, maybe partial, first); bursts (a run of one interval) apart: no shape to judge;
* the separation a shape cut gives: how many false calls vs found taps an EXCUSE would spare/lose
  (the last interval under a share of the one before / of the run's peak; the run's full intervals' min/max
  or min/mean under a share), false side: calls by the run rule (bursts apart);
* for an ACCUSE rule (a near-flat run raised at its second full interval, whatever the learned runs say):
  every run at the tap level that reaches a second full interval, by whether it overlaps an injected /
  labelled tap, was already called, and how flat it is; and how much sooner the taps found later would be.

Homes unlike ours as in ``bench/flow_generalise.py`` (``--scale``, ``--mix``, ``--garden``). Tuning sets only::

    .venv/bin/python bench/run_shape.py --real /work/shared/data/real-water/dev.csv.gz
    .venv/bin/python bench/run_shape.py --real /work/shared/data/real-water/dev.csv.gz --scale 2
    .venv/bin/python bench/run_shape.py --sim 300x120x2
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

import detect.flow as flow_module
import detect.monitor as monitor_module
from core.domain import COMMUNITY, Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor
from detect.flow import GAP_INTERVAL_H, TAP_LPH
from tapwatch import evaluate as ev

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from flow_generalise import unlike_ours
from silence_calibration import add_dataset_args, add_variant_args, load, variant

HOUR = 3600.0
TAP_KINDS = ("tap_running", "fall_tap_running")
CUTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Seen:
    """One meter's replay: per interval the index where the tap-level run began (-1: none), community findings."""

    tap_first: list[int]
    found: list[tuple[int, Finding, str]]  # (interval index, finding, cause)


class _Shapes(MeterMonitor):
    def __init__(self, meter_id: str, thresholds: Thresholds, out: dict[str, Seen]) -> None:
        super().__init__(meter_id, thresholds)
        self._seen = out[meter_id] = Seen([], [])
        self._k = -1

    def update(self, x: Interval) -> list[Finding]:
        self._k += 1
        found = super().update(x)
        seen = self._seen
        flow = self.flow
        began = flow.run_start[flow.levels.index(TAP_LPH)]
        prev = seen.tap_first[-1] if seen.tap_first else -1
        seen.tap_first.append(-1 if began is None else (prev if prev >= 0 else self._k))
        for f in found:
            if f.route == COMMUNITY and not f.resolved:
                cause = f.kind
                if f.kind == "continuous_flow":
                    cause = "burst" if flow.burst else "run"
                seen.found.append((self._k, f, cause))
        return found


def replay(data: ev.Dataset, thresholds: Thresholds, delay: float | None) -> dict[str, Seen]:
    out: dict[str, Seen] = {}
    ev.score("shapes", lambda m, xs, _t: _Shapes(m, thresholds, out), data, delay)
    return out


def rates(xs: list[Interval], first: int, k: int) -> list[float]:
    return [(y.usage_l or 0.0) / max(y.hours, 1e-9) for y in xs[first : k + 1]]


def features(r: list[float]) -> dict[str, float]:
    """last / peak of the whole run; min / max and min / mean of its full intervals (all but the first)."""
    full = r[1:]
    out = {"last_peak": r[-1] / max(r), "last_prev": r[-1] / r[-2]}
    if len(full) >= 2:
        out["full_minmax"] = min(full) / max(full)
        out["full_floor"] = min(full) / float(np.mean(full))
    return out


def _q(values: list[float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{np.percentile(values, q):.2f}" for q in (10, 25, 50, 75, 90))


def report(data: ev.Dataset, seen: dict[str, Seen], verbose: int) -> None:
    months = sum((xs[-1].end - xs[0].start) / (30 * 86400.0) for xs in data.intervals.values() if xs)
    incidents: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        if t.category == "incident":
            incidents[t.meter_id].append(t)
    false_calls: list[tuple[str, int, str, list[float]]] = []
    taps: list[tuple[str, int, str, list[float], float]] = []  # (meter, k, finding kind/cause, rates, delay h)
    missed = 0
    for m, s in seen.items():
        xs = data.intervals[m]
        incs = incidents.get(m, [])
        for k, f, cause in s.found:
            if f.kind != "continuous_flow" or any(i.start <= f.ts <= i.window_end for i in incs):
                continue
            first = s.tap_first[k]
            false_calls.append((m, k, cause, rates(xs, first, k) if first >= 0 else []))
        for inc in incs:
            if inc.kind not in TAP_KINDS:
                continue
            hit = next(((k, f, c) for k, f, c in s.found if inc.start <= f.ts <= inc.window_end), None)
            if hit is None:
                missed += 1
                continue
            k, f, cause = hit
            first = s.tap_first[k]
            shape = rates(xs, first, k) if first >= 0 else []
            taps.append((m, k, f"{inc.kind}:{cause}", shape, (f.ts - inc.start) / HOUR))
    per_month = len(false_calls) / months
    print(f"{data.name}: {len(false_calls)} false community flow calls ({per_month:.3f} per home-month)")
    print("  by cause and intervals in the tap-level run at the call:")
    for cause in ("burst", "run"):
        cs = [c for c in false_calls if c[2] == cause]
        print(f"    {cause}: {len(cs)}, run intervals {dict(sorted(Counter(len(c[3]) for c in cs).items()))}")
    print(f"  taps found: {len(taps)} (missed {missed}); by finding: {dict(Counter(t[2] for t in taps))}")
    print(f"    run intervals at the finding: {dict(sorted(Counter(len(t[3]) for t in taps).items()))}")
    runs_f = [c for c in false_calls if c[2] == "run" and len(c[3]) >= 2]  # (a burst is one interval's volume)
    runs_t = [t for t in taps if len(t[3]) >= 2]
    for feat in ("last_peak", "last_prev", "full_minmax", "full_floor"):
        fv = [features(c[3]).get(feat) for c in runs_f]
        tv = [features(t[3]).get(feat) for t in runs_t]
        fv2 = [v for v in fv if v is not None]
        tv2 = [v for v in tv if v is not None]
        print(f"  {feat}: false runs n={len(fv2)} q10-90 {_q(fv2)} | taps n={len(tv2)} q10-90 {_q(tv2)}")
        print(
            "    excuse if < cut: "
            + ", ".join(f"{c:.1f}: {sum(v < c for v in fv2)} calls / {sum(v < c for v in tv2)} taps" for c in CUTS)
        )
    if verbose:
        print("  false run calls (rates L/h, first interval in brackets):")
        for m, k, _c, r in runs_f[:verbose]:
            print(f"    {m[:8]} k={k} [{r[0]:.0f}] " + " ".join(f"{v:.0f}" for v in r[1:]))
        print("  taps at their finding:")
        for m, k, c, r, d in runs_t[:verbose]:
            print(f"    {m[:8]} k={k} {c} {d:.2f} h [{r[0]:.0f}] " + " ".join(f"{v:.0f}" for v in r[1:]))
    accuse(data, seen, incidents)


def accuse(data: ev.Dataset, seen: dict[str, Seen], incidents: dict[str, list[ev.Truth]]) -> None:
    """Every tap-level run reaching its second full interval: flat or not, incident or not, called already or not."""
    rows: list[tuple[bool, bool, float, float]] = []  # (incident, called by then, full min/max, hours saved)
    for m, s in seen.items():
        xs = data.intervals[m]
        incs = incidents.get(m, [])
        called_at = sorted(k for k, f, _c in s.found if f.kind == "continuous_flow")
        for k, first in enumerate(s.tap_first):
            if first < 0 or k - first != 2:
                continue
            run = xs[first : k + 1]
            if any(y.hours > GAP_INTERVAL_H or y.usage_l is None for y in run):
                continue
            r = rates(xs, first, k)
            flat = min(r[1:]) / max(r[1:])
            tap = any(i.kind in TAP_KINDS and i.start < xs[k].end and xs[first].start < i.window_end for i in incs)
            other_inc = any(i.start < xs[k].end and xs[first].start < i.window_end for i in incs)
            if other_inc and not tap:
                continue
            called = any(first <= c <= k for c in called_at)
            later = next((c for c in called_at if c > k), None)
            saved = (xs[later].end - xs[k].end) / HOUR if later is not None and s.tap_first[later] == first else 0.0
            rows.append((tap, called, flat, saved))
    print("  accuse at the second full interval (runs reaching it; not yet called):")
    for tap in (False, True):
        sub = [r for r in rows if r[0] == tap and not r[1]]
        name = "taps" if tap else "other runs"
        print(
            f"    {name}: {len(sub)} (already called: {sum(1 for r in rows if r[0] == tap and r[1])}); "
            + ", ".join(f">= {c:.1f}: {sum(r[2] >= c for r in sub)}" for c in CUTS)
        )
        if tap:
            saved = [r[3] for r in sub if r[3] > 0]
            print(f"      of these, called later in the same run: {len(saved)}, hours sooner {_q(saved)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataset_args(p, cache="/tmp/flowgen-cache")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--mix", action="store_true")
    p.add_argument("--garden", action="store_true")
    p.add_argument("--outcomes", action="store_true")
    p.add_argument("--verbose", type=int, default=0, help="print this many runs of each side")
    add_variant_args(p, "a detect.flow/monitor constant")
    args = p.parse_args(argv)
    thresholds = variant(p, args, (flow_module, monitor_module))
    data = unlike_ours(load(args), args)
    seen = replay(data, thresholds, ev.VISIT_DELAY_H if args.outcomes else None)
    report(data, seen, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
