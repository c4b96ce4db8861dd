"""Do false silence alerts concentrate on some elders? And per-elder calibration variants (issue 17).

Replays each meter of a tuning set through ``MeterMonitor`` (with and without cadres' outcomes, as
``tapwatch eval`` does: ``tapwatch.evaluate.score`` on one meter at a time) and reports:

* ``--concentration``: per-elder false ``no_activity`` counts against a Poisson with the same mean
  and against the model's own prediction (each learned silence exceeds its alert length with
  probability about the sensitivity), and whether an elder's false alerts in the first half of the
  run predict those in the second half;
* ``--sources`` (session 9): where false ``no_activity`` calls come from, next to the falls' alerts, by
  slice: days since the meter's first reading, basis (rule / prior / learned / habit), start hour, the
  alert length against the longest silence seen at that hour, how long after the alert water was used
  again, and the elder's first or a repeated false call; per slice the false calls a one-hour-later
  alert would have spared (the silence ended within the hour) per fall-hour it would have cost;
* otherwise, one line per ``--set NAME=VALUE`` variant (a ``detect.monitor`` or ``detect.silence``
  constant, ``TAIL_FRACTION`` / ``TAIL_BASE_H``, ``SilenceModel``'s defaults, or a threshold, e.g.
  ``ceiling_hours``): falls recall, median / p90 delay, false community alerts per elder-month
  (no_activity apart); ``--halves`` adds the same for each half of the meters by id (decide on one,
  report the other).

``--first-week`` replaces the tuning set by one where every elder (or real home) falls once in its
first week, which the evaluation's data never do (the simulator and ``tapwatch eval --csv`` place
incidents after a week of learning): what the learning week's safety net costs falls is measured there.

The per-elder calibration (``CALIB_*``) and rising-deadline (``RISE_*``) variants measured in
docs/detection-studies.md ("Outcomes as calibration") were dropped; their code is in commit 94cd4c0
(``git show 94cd4c0:detect/monitor.py``), where ``--set CALIB_START=3 --set CALIB_DOWN=0.5`` runs them.

Datasets are cached in ``--cache`` (pickled intervals and labels). Tuning sets only (simulator
seeds 2 and 3, real homes at injection seed 2): seed 1 is for the reported figure.

    .venv/bin/python bench/silence_calibration.py --sim 300x120x2 --concentration
    .venv/bin/python bench/silence_calibration.py --real /work/shared/data/real-water/dev.csv.gz --seed 2 \
        --set TAIL_FRACTION=0.1 --set TAIL_BASE_H=0.5 --sensitivity 5e-4
    .venv/bin/python bench/silence_calibration.py --sim 300x120x2 --sources
    .venv/bin/python bench/silence_calibration.py --sim 300x28x2 --first-week --set ceiling_hours=12 --no-outcomes
"""

from __future__ import annotations

import argparse
import ast
import bisect
import dataclasses
import math
import pickle
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import detect.monitor as monitor_module
import detect.silence as silence_module
from core.domain import COMMUNITY, DEVICE_KINDS, Finding, Interval
from core.progress import Progress
from core.thresholds import Thresholds
from detect.oracle import silences
from simulator import SimConfig, simulate
from simulator.config import IncidentSpec
from tapwatch import evaluate as ev
from tapwatch.replay import thresholds_from


def add_dataset_args(p: argparse.ArgumentParser, cache: str) -> None:
    """The arguments naming a tuning set (:func:`load`), the same in every script that reads one."""
    p.add_argument("--sim", help="ELDERSxDAYSxSEED, e.g. 300x120x2")
    p.add_argument("--real", help="CSV of real homes")
    p.add_argument("--seed", type=int, default=2, help="injection seed for --real")
    p.add_argument("--tz", default="Europe/Madrid")
    p.add_argument("--cache", default=cache)


def add_variant_args(p: argparse.ArgumentParser, const_help: str) -> None:
    """``--set`` (an operator threshold) and ``--const`` (a module constant: what a variant needs), read by
    :func:`variant`."""
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="an operator threshold")
    p.add_argument("--const", action="append", default=[], metavar="NAME=VALUE", help=const_help)


def variant(p: argparse.ArgumentParser, args: argparse.Namespace, modules: tuple[ModuleType, ...]) -> Thresholds:
    """Check that one tuning set is named, set the ``--const`` constants on ``modules`` (a usage error for a name
    none has) and return the ``--set`` thresholds."""
    if bool(args.sim) == bool(args.real):
        p.error("give one of --sim or --real")
    missing = set_constants(args.const, modules)
    if missing:
        p.error(f"no constant {missing}")
    return thresholds_from(args.set)


def load(args: argparse.Namespace) -> ev.Dataset:
    """The dataset the arguments name, from the cache when there."""
    first = getattr(args, "first_week", False)
    if args.sim:
        elders, days, seed = (int(v) for v in args.sim.split("x"))
        key = f"sim-{elders}x{days}x{seed}"
    else:
        key = f"real-{Path(args.real).name}-{args.seed}"
    cache = Path(args.cache) / f"{'first-week-' if first else ''}{key}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    if first:
        data = first_week_sim(elders, days, seed) if args.sim else first_week_real(args.real, args.seed, args.tz)
    else:
        data = ev.simulated(elders, days, seed) if args.sim else ev.real(args.real, args.seed, args.tz)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(data))
    return data


def simulated_set(config: SimConfig, label: str) -> ev.Dataset:
    """The simulator's elders under ``config`` as a tuning set: intervals as the pipeline makes them, and the
    incident and event labels (faults apart), named ``label``."""
    res = simulate(config, Progress(f"{label}: simulating", total=config.elders, unit="elders"))
    rows = zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True)
    intervals, n = ev.intervals_from_readings(res.meter_ids, rows, ev.simulated_zone(res.config.tz_offset_h))
    truth = [
        ev.Truth(lab.meter_id, lab.kind, lab.category, lab.start, lab.end, dict(lab.details))
        for lab in res.labels
        if lab.category in ("incident", "event")
    ]
    name = f"{label}: {config.elders} elders x {config.days} days, seed {config.seed}"
    return ev.Dataset(name, intervals, truth, n)


def set_constants(items: list[str], modules: tuple[ModuleType, ...]) -> str | None:
    """Set each ``NAME=VALUE`` (a Python literal, of the constant's type) on the first of ``modules`` that has NAME;
    return a name none has (then nothing after it is set), else None."""
    for item in items:
        name, value = item.split("=", 1)
        module = next((m for m in modules if hasattr(m, name)), None)
        if module is None:
            return name
        setattr(module, name, type(getattr(module, name))(ast.literal_eval(value)))
    return None


def first_week_sim(elders: int, days: int, seed: int, between: tuple[float, float] = (1.0, 7.0)) -> ev.Dataset:
    """Simulated elders, each falling once at a random moment of days 1-7 (or ``between``; no other incidents; life
    events, faults)."""
    rng = random.Random(seed * 1000 + 7)
    falls = [IncidentSpec(elder=i, kind="fall", start_day=rng.uniform(*between)) for i in range(elders)]
    config = SimConfig(elders=elders, days=days, seed=seed, random_incidents=False, incidents=falls)
    label = "first-week falls" if between == (1.0, 7.0) else f"falls in days {between[0]:g}-{between[1]:g}"
    return simulated_set(config, label)


def first_week_real(
    path: str, seed: int, tz: str, days: float = 28.0, between: tuple[float, float] = (1.0, 7.0)
) -> ev.Dataset:
    """Each real home's first ``days``, with one fall (48 h without water, as ``evaluate.inject``) in days 1-7 (or
    ``between``).

    As ``evaluate.inject`` places a fall: where readings are steady for three days and the home used water in
    the 2 h before; a home where no such moment is found in 50 draws gets none.
    """
    rng = random.Random(seed)
    series: dict[str, tuple[list[float], list[float]]] = {}
    truth: list[ev.Truth] = []
    for meter_id, (ts, total, _offs) in sorted(ev.read_csv_series(path).items()):
        t = np.array(ts, dtype=np.float64)
        keep = t < t[0] + days * ev.DAY
        t, totals = t[keep], np.array(total, dtype=np.float64)[keep]
        for _ in range(50):
            start = float(t[0] + rng.uniform(*between) * ev.DAY)
            i, j = int(np.searchsorted(t, start)), int(np.searchsorted(t, start + 3 * ev.DAY))
            if j >= len(t) or j - i < 48 or np.max(np.diff(t[max(i - 1, 0) : j + 1])) > 3 * ev.HOUR:
                continue
            if totals[i - 1] - totals[max(int(np.searchsorted(t, start - 2 * ev.HOUR)) - 1, 0)] < 1:
                continue  # falls happen to someone at home: water used in the last 2 h
            end = start + 48 * ev.HOUR
            k = int(np.searchsorted(t, end, side="right"))
            frozen = float(totals[k - 1] - totals[i - 1])
            totals[i:k] = totals[i - 1]
            totals[k:] -= frozen
            truth.append(ev.Truth(meter_id, "fall", "incident", start, end))
            break
        series[meter_id] = (t.tolist(), totals.tolist())
    ids = sorted(series)
    rows = ((k, a, b) for k, m in enumerate(ids) for a, b in zip(*series[m], strict=True))
    intervals, n = ev.intervals_from_readings(ids, rows, tz)
    label = "first-week falls" if between == (1.0, 7.0) else f"falls in days {between[0]:g}-{between[1]:g}"
    return ev.Dataset(f"{label}: real homes' first {days:g} days, seed {seed}", intervals, truth, n)


def per_meter(data: ev.Dataset, thresholds: Thresholds, delay: float | None) -> dict[str, ev.Score]:
    """``score`` of each meter alone (the same sums as one run over all meters)."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    out = {}
    for m, xs in data.intervals.items():
        one = ev.Dataset(m, {m: xs}, truth.get(m, []), len(xs))
        out[m] = ev.score("tapwatch", ev.tapwatch_factory(thresholds), one, delay)
    return out


class _Recorder(monitor_module.MeterMonitor):
    """The monitor, noting for each community no_activity it raises what the model knew then (bench only)."""

    def __init__(self, meter_id: str, thresholds: Thresholds) -> None:
        super().__init__(meter_id, thresholds)
        self.notes: list[dict[str, Any]] = []

    def update(self, x: Interval) -> list[Finding]:
        out = super().update(x)
        for f in out:
            if f.resolved or f.kind in DEVICE_KINDS:
                continue
            note: dict[str, Any] = {"ts": f.ts, "kind": f.kind, "route": f.route, "basis": f.basis}
            if f.kind == "no_activity" and f.route == COMMUNITY and f.since is not None:
                hour = silence_module.hour_of(f.since, x.utc_offset_s)
                longest = np.frombuffer(self.silence.longest, dtype=np.float32)
                silence_h = (f.ts - f.since) / 3600.0
                alert_h = self.silence.alert_hours(hour)
                note.update(
                    days=(f.ts - (self.first_ts or f.ts)) / 86400.0,
                    hour=hour,
                    alert_vs_seen=alert_h - float(max(longest[hour - 1], longest[hour], longest[(hour + 1) % 24])),
                    habit=f.basis == "learned" and silence_h < alert_h - 1e-6,
                )
            self.notes.append(note)
        return out


def _band(edges: tuple[float, ...], labels: tuple[str, ...]) -> Callable[[float], str]:
    return lambda v: next((label for e, label in zip(edges, labels, strict=False) if v < e), labels[-1])


#: Slices of ``--sources``: name -> (the slice of one noted alert, the slices in the order printed).
_DAYS = ("0-7", "7-14", "14-28", "28-56", "56+")
_HOURS = ("00-05", "05-09", "09-13", "13-18", "18-21", "21-24")
_PAST = ("below it", "0-1", "1-2", "2-3", "3-5", "5+")
_AFTER = ("<1", "1-3", "3-12", "12-24", "24+", "never")
_NTH = ("first", "second", "third", "4th+")
SLICES: dict[str, tuple[Callable[[dict[str, Any]], str], tuple[str, ...]]] = {
    "days since the first reading": (lambda n: _band((7, 14, 28, 56), _DAYS)(n["days"]), _DAYS),
    "basis": (lambda n: "habit" if n["habit"] else n["basis"], ("rule", "prior", "learned", "habit")),
    "start hour": (lambda n: _band((5, 9, 13, 18, 21), _HOURS)(n["hour"]), _HOURS),
    "alert length - longest seen there (h)": (lambda n: _band((0.0, 1, 2, 3, 5), _PAST)(n["alert_vs_seen"]), _PAST),
    "water again after the alert (h)": (
        lambda n: "never" if n["next_use_h"] is None else _band((1, 3, 12, 24), _AFTER[:5])(n["next_use_h"]),
        _AFTER,
    ),
    "the elder's false call (falls: -)": (lambda n: _NTH[min(n["nth"], 3)] if "nth" in n else "-", _NTH),
}


def noted(data: ev.Dataset, thresholds: Thresholds, delay: float | None) -> tuple[list[dict[str, Any]], float]:
    """Every community no_activity of every meter, noted and classed as ``score`` classes it; elder-months."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    rows: list[dict[str, Any]] = []
    months = 0.0
    for m, xs in data.intervals.items():
        if not xs:
            continue
        made: list[_Recorder] = []

        def factory(meter_id: str, _xs: list[Interval], _t: list[ev.Truth], made: list[_Recorder] = made) -> Any:
            made.append(_Recorder(meter_id, thresholds))
            return made[-1]

        ev.score("tapwatch", factory, ev.Dataset(m, {m: xs}, truth.get(m, []), len(xs)), delay)
        months += (xs[-1].end - xs[0].start) / (30 * ev.DAY)
        incidents = [t for t in truth.get(m, []) if t.category == "incident"]
        overlaps = [(i.start, i.window_end) for i in incidents]
        quiet = [(a, b) for a, b in ev._silences_24h(xs) if not any(s < b and a < e for s, e in overlaps)]
        community = [n["ts"] for n in made[0].notes if n["route"] == COMMUNITY]
        finds = {}
        for inc in incidents:  # the alert that finds it, as ``score``: the first community one in its window
            k = bisect.bisect_left(community, inc.start)
            if k < len(community) and community[k] <= inc.window_end:
                finds[community[k]] = inc
        uses = [x.start for x in xs if x.usage_l is not None and x.usage_l >= ev.ABSENCE_USE_L]
        charged: set[int] = set()
        n_false = 0
        for n in made[0].notes:
            inc = next((i for i in incidents if i.start <= n["ts"] <= i.window_end), None)
            if inc is not None:
                n["class"] = inc.kind if finds.get(n["ts"]) is inc else "in an incident"
                n["delay_h"] = (n["ts"] - inc.start) / ev.HOUR
            elif n["route"] != COMMUNITY or n["kind"] == "routine_change":
                n["class"] = "other"
            else:
                where = next((k for k, (a, b) in enumerate(quiet) if a <= n["ts"] <= b + ev.HOUR), None)
                if where is not None and where not in charged:
                    charged.add(where)
                    n["class"] = "absence"
                else:
                    n["class"] = "false"
            if n["kind"] == "no_activity" and "hour" in n:
                if n["class"] == "false":
                    n["nth"], n_false = n_false, n_false + 1
                k = bisect.bisect_left(uses, n["ts"])
                n["next_use_h"] = (uses[k] - n["ts"]) / ev.HOUR if k < len(uses) else None
                rows.append(n)
    return rows, months


def sources(data: ev.Dataset, thresholds: Thresholds, delay: float | None) -> None:
    """False no_activity calls and the falls' alerts by slice, and what a later alert would trade there."""
    rows, months = noted(data, thresholds, delay)
    false = [n for n in rows if n["class"] == "false"]
    falls = [n for n in rows if n["class"] == "fall"]
    spared = sum(n["next_use_h"] is not None and n["next_use_h"] < 1.0 for n in false)
    print(
        f"false no_activity {len(false)} ({len(false) / months:.3f} per elder-month), falls found by it {len(falls)}; "
        f"an alert 1 h later everywhere spares {spared} for {len(falls)} fall-hours ({spared / max(len(falls), 1):.1f} "
        "per fall-hour)"
    )
    for name, (slice_of, order) in SLICES.items():
        cells: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for n in false:
            cell = cells[slice_of(n)]
            cell[0] += 1
            cell[1] += n["next_use_h"] is not None and n["next_use_h"] < 1.0
        delays: dict[str, list[float]] = defaultdict(list)
        for n in falls:
            delays[slice_of(n)].append(n["delay_h"])
        print(f"  {name}:")
        for key in (k for k in order if k in cells or k in delays):
            got, spare, d = cells[key][0], cells[key][1], delays.get(key, [])
            med = f", median {np.median(d):.1f} h" if d else ""
            print(
                f"    {key or '-':>9}: false {got:4d}, falls {len(d):3d}{med}; 1 h later spares {spare:3d}"
                f" = {spare / max(len(d), 0.5):5.1f} per fall-hour"
            )
    print("  falls' alerts by basis:", dict(Counter("habit" if n["habit"] else n["basis"] for n in falls)))


def summary(scores: dict[str, ev.Score]) -> str:
    """Falls recall, median / p90, community noise (no_activity) per elder-month."""
    falls = [d for s in scores.values() for d in s.delays.get("fall", [])]
    found = [d for d in falls if d is not None]
    months = sum(s.months for s in scores.values())
    noise = sum(s.noise for s in scores.values())
    na = sum(s.false_by_kind.get("no_activity", 0) for s in scores.values())
    med, p90 = (np.percentile(found, 50), np.percentile(found, 90)) if found else (math.nan, math.nan)
    return (
        f"falls {len(found) / max(len(falls), 1):.2f} {med:5.2f} / {p90:5.2f} h  "
        f"community {noise / months:.3f}  no_activity {na / months:.3f}"
    )


def false_times(data: ev.Dataset, thresholds: Thresholds) -> tuple[dict[str, list[float]], list[int]]:
    """Per meter, the times of false no_activity alerts (no outcomes) as ``score`` charges them; their start hours."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    out: dict[str, list[float]] = {}
    hours: list[int] = []
    for m, xs in data.intervals.items():
        incidents = [t for t in truth.get(m, []) if t.category == "incident"]
        det = monitor_module.MeterMonitor(m, thresholds)
        quiet = ev.real_absences(xs, incidents)
        charged: set[int] = set()
        times = []
        for x in xs:
            for f in det.update(x):
                if f.resolved or f.kind != "no_activity":
                    continue
                if any(i.start <= f.ts <= i.window_end for i in incidents):
                    continue
                where = ev.absence_at(f.ts, quiet)
                if where is not None and where not in charged:
                    charged.add(where)
                    continue
                times.append(f.ts)
                hours.append(int(((f.since or f.ts) + x.utc_offset_s) % 86400) // 3600)
        out[m] = times
    return out, hours


def concentration(data: ev.Dataset, thresholds: Thresholds, learn_days: float) -> None:
    """Per-elder false silence alerts against Poisson: overdispersion, top-decile share, first-half -> second-half."""
    times, false_hours = false_times(data, thresholds)
    rng = np.random.default_rng(0)
    meters = sorted(times)
    spans = {m: (data.intervals[m][0].start, data.intervals[m][-1].end) for m in meters if data.intervals[m]}
    meters = [m for m in meters if m in spans]
    counts = np.array([len(times[m]) for m in meters], dtype=float)
    months = np.array([(spans[m][1] - spans[m][0]) / (30 * 86400) for m in meters])
    # The model's own expectation: each learned silence (after the learning weeks) is past its alert
    # length with probability about the sensitivity.
    n_sil = np.array(
        [
            sum(1 for s, h, _ in silences(data.intervals[m]) if s - spans[m][0] >= learn_days * 86400 and h < 24)
            for m in meters
        ],
        dtype=float,
    )
    total = counts.sum()
    print(f"elders {len(meters)}, false no_activity {int(total)}, per elder-month {total / months.sum():.3f}")
    for name, expected in (
        ("same rate per elder-month", total * months / months.sum()),
        ("model: silences x share", total * n_sil / n_sil.sum()),
    ):
        disp = float(((counts - expected) ** 2 / np.maximum(expected, 1e-9)).sum() / (len(meters) - 1))
        sims = rng.poisson(expected, size=(2000, len(meters)))
        top = max(1, len(meters) // 10)
        share = np.sort(counts)[::-1][:top].sum() / total
        sim_share = np.sort(sims, axis=1)[:, ::-1][:, :top].sum(axis=1) / np.maximum(sims.sum(axis=1), 1)
        zero = float((counts == 0).mean())
        sim_zero = float((sims == 0).mean())
        sim_disp = ((sims - expected) ** 2 / np.maximum(expected, 1e-9)).sum(axis=1) / (len(meters) - 1)
        print(
            f"  vs Poisson ({name}): dispersion {disp:.2f} (Poisson 95%: {np.percentile(sim_disp, 95):.2f}); "
            f"top 10% of elders hold {share:.2f} of false alerts (Poisson {np.mean(sim_share):.2f}, "
            f"95% {np.percentile(sim_share, 95):.2f}); elders with none {zero:.2f} (Poisson {sim_zero:.2f})"
        )
    # Does an elder's first half predict the second?
    first, second = [], []
    for m in meters:
        a, b = spans[m]
        mid = a + (b - a) / 2
        first.append(sum(t < mid for t in times[m]))
        second.append(sum(t >= mid for t in times[m]))
    f, s = np.array(first), np.array(second)
    # By start hour: the model expects the false alerts in proportion to the silences (one sensitivity for all).
    sil_hours = np.zeros(24)
    for m in meters:
        for s, h, off in silences(data.intervals[m]):
            if s - spans[m][0] >= learn_days * 86400 and h < 24:
                sil_hours[int((s + off) % 86400) // 3600] += 1
    got = np.bincount(false_hours, minlength=24).astype(float)
    want = got.sum() * sil_hours / sil_hours.sum()
    chi = float(((got - want) ** 2 / np.maximum(want, 1e-9)).sum())
    by_block = [(a, got[a : a + 4].sum() / got.sum(), want[a : a + 4].sum() / got.sum()) for a in range(0, 24, 4)]
    print(
        f"  by start hour vs silences: chi2 {chi:.0f} on 23 df; "
        + ", ".join(f"{a:02d}-{a + 4:02d}h {g:.2f} (expected {w:.2f})" for a, g, w in by_block)
    )
    print(f"  first half vs second half: Pearson r {np.corrcoef(f, s)[0, 1]:.2f}")
    for lo, hi in ((0, 0), (1, 1), (2, 3), (4, 1000)):
        sel = (f >= lo) & (f <= hi)
        if sel.any():
            print(f"    first half {lo}-{hi}: {int(sel.sum())} elders, second half mean {s[sel].mean():.2f}")
    # After an elder's first false alert, the next 30 days against an elder's base rate.
    after = []
    for m in meters:
        ts = sorted(times[m])
        if ts and ts[0] + 30 * 86400 <= spans[m][1]:
            after.append(sum(ts[0] < t <= ts[0] + 30 * 86400 for t in ts))
    rate = total / months.sum()
    print(
        f"  after an elder's first false alert: {np.mean(after):.2f} more in the next 30 days "
        f"({len(after)} elders; the mean elder: {rate:.2f} per 30 days)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_args(p, cache="/tmp/calib-cache")
    p.add_argument("--sensitivity", type=float, default=Thresholds().sensitivity)
    p.add_argument("--concentration", action="store_true")
    p.add_argument("--no-outcomes", action="store_true", help="only the run without outcomes")
    p.add_argument("--sources", action="store_true", help="where false silence calls come from, by slice")
    p.add_argument("--first-week", action="store_true", help="every elder or home falls once in its first week")
    p.add_argument("--halves", action="store_true", help="also each half of the meters by id")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        help="NAME=VALUE: a threshold, or a detect.monitor or detect.silence constant",
    )
    args = p.parse_args(argv)
    if not (args.sim or args.real):
        p.error("--sim or --real")
    changes: dict[str, float] = {}
    for item in args.set:
        name, value = item.split("=", 1)
        if name in {f.name for f in dataclasses.fields(Thresholds)}:
            changes[name] = float(value)
            continue
        if name in ("TAIL_FRACTION", "TAIL_BASE_H"):  # SilenceModel's defaults
            d = list(silence_module.SilenceModel.__init__.__defaults__ or ())
            d[2 if name == "TAIL_FRACTION" else 3] = float(value)
            silence_module.SilenceModel.__init__.__defaults__ = tuple(d)
            continue
        module = silence_module if name in vars(silence_module) else monitor_module
        if not hasattr(module, name):
            p.error(f"detect.monitor has no {name}")
        setattr(module, name, type(getattr(module, name))(float(value)))
    data = load(args)
    thresholds = Thresholds().replace(sensitivity=args.sensitivity, **changes)
    if args.concentration:
        concentration(data, thresholds, thresholds.cold_start_days)
        return 0
    label = " ".join(args.set) or "default"
    for delay, name in ((None, "without"), (ev.VISIT_DELAY_H, "with")):
        if delay is not None and args.no_outcomes:
            break
        if args.sources:
            print(f"{label} s={args.sensitivity:g} {name} outcomes:", flush=True)
            sources(data, thresholds, delay)
            continue
        scores = per_meter(data, thresholds, delay)
        print(f"{label} s={args.sensitivity:g} {name + ':':8} {summary(scores)}", flush=True)
        if args.halves:
            ids = sorted(scores)
            for half, part in (("A", ids[: len(ids) // 2]), ("B", ids[len(ids) // 2 :])):
                print(f"    half {half} ({len(part)} meters): {summary({m: scores[m] for m in part})}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
