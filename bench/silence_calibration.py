"""Do false silence alerts concentrate on some elders? And per-elder calibration variants (issue 17).

Replays each meter of a tuning set through ``MeterMonitor`` (with and without cadres' outcomes, as
``tapwatch eval`` does: ``tapwatch.evaluate.score`` on one meter at a time) and reports:

* ``--concentration``: per-elder false ``no_activity`` counts against a Poisson with the same mean
  and against the model's own prediction (each learned silence exceeds its alert length with
  probability about the sensitivity), and whether an elder's false alerts in the first half of the
  run predict those in the second half;
* otherwise, one line per ``--set NAME=VALUE`` variant (a ``detect.monitor`` or ``detect.silence``
  constant, or ``TAIL_FRACTION`` / ``TAIL_BASE_H``, ``SilenceModel``'s defaults): falls recall,
  median / p90 delay, false community alerts per elder-month (no_activity apart).

The per-elder calibration (``CALIB_*``) and rising-deadline (``RISE_*``) variants measured in
docs/detection.md ("Outcomes as calibration") were dropped; their code is in commit 94cd4c0
(``git show 94cd4c0:detect/monitor.py``), where ``--set CALIB_START=3 --set CALIB_DOWN=0.5`` runs them.

Datasets are cached in ``--cache`` (pickled intervals and labels). Tuning sets only (simulator
seeds 2 and 3, real homes at injection seed 2): seed 1 is for the reported figure.

    .venv/bin/python bench/silence_calibration.py --sim 300x120x2 --concentration
    .venv/bin/python bench/silence_calibration.py --real /work/shared/data/real-water/dev.csv.gz --seed 2 \
        --set TAIL_FRACTION=0.1 --set TAIL_BASE_H=0.5 --sensitivity 5e-4
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

import detect.monitor as monitor_module
import detect.silence as silence_module
from core.thresholds import Thresholds
from detect.oracle import silences
from tapwatch import evaluate as ev


def load(args: argparse.Namespace) -> ev.Dataset:
    """The dataset the arguments name, from the cache when there."""
    if args.sim:
        elders, days, seed = (int(v) for v in args.sim.split("x"))
        key = f"sim-{elders}x{days}x{seed}"
    else:
        key = f"real-{Path(args.real).name}-{args.seed}"
    cache = Path(args.cache) / f"{key}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    data = ev.simulated(elders, days, seed) if args.sim else ev.real(args.real, args.seed, args.tz)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(data))
    return data


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
        quiet = [
            (a, b) for a, b in ev._silences_24h(xs) if not any(i.start < b and a < i.window_end for i in incidents)
        ]
        charged: set[int] = set()
        times = []
        for x in xs:
            for f in det.update(x):
                if f.resolved or f.kind != "no_activity":
                    continue
                if any(i.start <= f.ts <= i.window_end for i in incidents):
                    continue
                where = next((k for k, (a, b) in enumerate(quiet) if a <= f.ts <= b + 3600), None)
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
    p.add_argument("--sim", help="ELDERSxDAYSxSEED, e.g. 300x120x2")
    p.add_argument("--real", help="CSV of real homes")
    p.add_argument("--seed", type=int, default=2, help="injection seed for --real")
    p.add_argument("--tz", default="Europe/Madrid")
    p.add_argument("--cache", default="/tmp/calib-cache")
    p.add_argument("--sensitivity", type=float, default=Thresholds().sensitivity)
    p.add_argument("--concentration", action="store_true")
    p.add_argument("--no-outcomes", action="store_true", help="only the run without outcomes")
    p.add_argument("--set", action="append", default=[], help="NAME=VALUE: a detect.monitor or detect.silence constant")
    args = p.parse_args(argv)
    if not (args.sim or args.real):
        p.error("--sim or --real")
    for item in args.set:
        name, value = item.split("=", 1)
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
    thresholds = Thresholds().replace(sensitivity=args.sensitivity)
    if args.concentration:
        concentration(data, thresholds, thresholds.cold_start_days)
        return 0
    label = " ".join(args.set) or "default"
    print(f"{label} s={args.sensitivity:g} without: {summary(per_meter(data, thresholds, None))}", flush=True)
    if not args.no_outcomes:
        with_ = per_meter(data, thresholds, ev.VISIT_DELAY_H)
        print(f"{label} s={args.sensitivity:g} with:    {summary(with_)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
