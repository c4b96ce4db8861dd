"""Whose silences the population prior is: fitted on one population, scored on another (session 15).

The silence model blends a population prior (``detect.prior.SILENCE_PRIOR``: the share of silences from each
start hour in each length bin) into every elder's own silences. It was fitted on 100 of our simulator's elders,
and the evaluation's other data sets are not our simulator's: this bench fits the same kind of prior on any
tuning set (``tapwatch.evaluate.fit_prior``, each meter weighing the same) and scores a data set with it, as
``tapwatch eval`` scores (``tapwatch.evaluate.score``, each meter alone), with every false community call and
every fall also split by the home's age (days since its first reading) or by 30-day month of its data;
``--from-day D`` switches every meter on D days into its data (the same season, a younger home); ``--pace``
stretches the prior to each home's own pace (``prior_at_home_pace``: measured, not adopted).

Data sets are named ``sim:ELDERSxDAYSxSEED`` (our simulator), ``other:ELDERSxDAYSxSEED`` (``bench/other_elders.py``,
another generator of elders living alone; seed 1 is refused there) and ``real:SEED`` (the real homes of
``--csv`` with incidents injected at that seed). ``--prior`` takes a ``.npy`` written by ``fit`` or ``default``
(the shipped prior); given more than once, the priors are averaged. Without ``--prior`` the shipped one is used.
Tuning sets only (simulator and other generator seeds 2 and 3, real homes at injection seed 2; priors fitted at
seed 7, which no evaluation uses)::

    .venv/bin/python bench/population_prior.py fit --data other:100x60x7 --out /tmp/prior-other7.npy
    .venv/bin/python bench/population_prior.py fit --data real:7 --out /tmp/prior-real7.npy
    .venv/bin/python bench/population_prior.py score --data other:300x120x3 --prior /tmp/prior-other7.npy
    .venv/bin/python bench/population_prior.py score --data real:2 --prior default --prior /tmp/prior-other7.npy
    .venv/bin/python bench/population_prior.py score --data sim:300x180x2 --bands month
    .venv/bin/python bench/population_prior.py score --data sim:300x180x2 --bands month --from-day 90
"""

from __future__ import annotations

import argparse
import bisect
import pickle
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np

import detect.silence as silence_module
from core.domain import COMMUNITY, DEVICE_KINDS, Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor
from detect.prior import SILENCE_PRIOR
from tapwatch import evaluate as ev
from tapwatch.replay import thresholds_from

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "real-water" / "dev.csv.gz"
DAY = ev.DAY
#: Upper edges (days) of the bands of ``--bands age`` (a home's learning weeks, then settled).
AGE_EDGES = (7.0, 14.0, 30.0, 60.0, float("inf"))


def load(spec: str, csv: Path, cache: Path) -> ev.Dataset:
    """The data set ``spec`` names (``sim:300x120x2``, ``other:300x120x2``, ``real:2``), from ``cache`` when there."""
    source, _, size = spec.partition(":")
    if source not in ("sim", "other", "real") or not size:
        raise ValueError(f"a data set is sim:ExDxS, other:ExDxS or real:SEED, not {spec!r}")
    path = cache / f"{source}-{size}{'-' + csv.name if source == 'real' else ''}.pkl"
    if path.exists():
        data: ev.Dataset = pickle.loads(path.read_bytes())
        return data
    if source == "real":
        data = ev.real(csv, int(size), "Europe/Madrid")
    else:
        elders, days, seed = (int(v) for v in size.split("x"))
        if source == "sim":
            data = ev.simulated(elders, days, seed)
        else:
            sys.path.insert(0, str(REPO / "bench"))
            from other_elders import generate

            data = generate(elders, days, seed).data
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return data


def mixed(paths: list[str]) -> np.ndarray:
    """The average of the priors at ``paths`` (``default``: the shipped one); rows sum to 1."""
    rows = [SILENCE_PRIOR if p == "default" else np.load(p) for p in paths]
    if any(r.shape != SILENCE_PRIOR.shape for r in rows):
        raise ValueError(f"a prior is {SILENCE_PRIOR.shape[0]} start hours x {SILENCE_PRIOR.shape[1]} bins")
    out = np.mean(rows, axis=0)
    return np.asarray(out / out.sum(axis=1, keepdims=True))


@contextmanager
def population_prior(prior: np.ndarray) -> Iterator[None]:
    """Every silence model built or refreshed meanwhile blends ``prior`` instead of the shipped one."""
    saved = silence_module.SILENCE_PRIOR
    silence_module.SILENCE_PRIOR = prior
    silence_module._PRIOR_ALERT.clear()  # a new meter's alert lengths are cached by settings, not by prior
    try:
        yield
    finally:
        silence_module.SILENCE_PRIOR = saved
        silence_module._PRIOR_ALERT.clear()


def switched_on_later(data: ev.Dataset, days: float) -> ev.Dataset:
    """``data`` as if each meter had been switched on ``days`` after its first reading (a season apart from age)."""
    intervals = {}
    for meter_id, xs in data.intervals.items():
        start = xs[0].start + days * DAY if xs else 0.0
        intervals[meter_id] = [x for x in xs if x.start >= start]
    starts = {m: xs[0].start for m, xs in intervals.items() if xs}
    # Incidents that began before the switch-on are left out; an absence still under way is kept (it explains).
    truth = [
        t
        for t in data.truth
        if t.meter_id in starts
        and (t.start >= starts[t.meter_id] if t.category == "incident" else t.window_end > starts[t.meter_id])
    ]
    return replace(data, intervals=intervals, truth=truth, readings=sum(len(xs) for xs in intervals.values()))


#: Where each length bin's silences lie, in log hours (the geometric middle; 15 min for the first bin).
_UPPER = np.array((*silence_module.EDGES, 36.0))
_LOG_MID = np.log(np.where(silence_module._LOWER > 0, np.sqrt(silence_module._LOWER * _UPPER), 0.25))
_LOG_LOWER = np.log(np.maximum(silence_module._LOWER, 1e-3))


def stretched(prior: np.ndarray, scale: float) -> np.ndarray:
    """``prior`` with every silence ``scale`` times as long: the survival read at each lower edge / ``scale``."""
    if scale == 1.0:
        return prior
    survival = np.add.accumulate(prior[:, ::-1], axis=1)[:, ::-1]
    out = np.empty_like(prior)
    for hour in range(prior.shape[0]):
        at = np.exp(np.interp(_LOG_LOWER - np.log(scale), _LOG_LOWER, np.log(np.maximum(survival[hour], 1e-12))))
        at[0] = 1.0
        mass = np.maximum(at - np.append(at[1:], 0.0), 0.0)
        out[hour] = mass / mass.sum()
    return out


def pace(counts: np.ndarray, prior: np.ndarray, n0: float, low: float, high: float) -> float:
    """How much longer this home's silences are than the prior's from the same start hours (a length factor),
    shrunk towards 1 with ``n0`` silences of doubt and kept within [``low``, ``high``]."""
    n = float(counts.sum())
    if n <= 0.0:
        return 1.0
    prior_mean = (prior * _LOG_MID).sum(axis=1)
    delta = float((counts * _LOG_MID).sum() - (counts.sum(axis=1) * prior_mean).sum()) / n
    return float(np.clip(np.exp(delta * n / (n + n0)), low, high))


@contextmanager
def prior_at_home_pace(n0: float, low: float, high: float) -> Iterator[None]:
    """Every silence model meanwhile blends the population prior stretched to its home's pace (:func:`pace`,
    rounded to 0.01) instead of the prior as it is."""
    saved = silence_module.SilenceModel.survival
    cache: dict[float, np.ndarray] = {}

    def survival(self: silence_module.SilenceModel) -> tuple[np.ndarray, np.ndarray]:
        prior = silence_module.SILENCE_PRIOR
        scale = round(pace(self.histogram().astype(np.float64), prior, n0, low, high), 2)
        if scale not in cache:
            cache[scale] = stretched(prior, scale)
        silence_module.SILENCE_PRIOR = cache[scale]
        try:
            return saved(self)
        finally:
            silence_module.SILENCE_PRIOR = prior

    silence_module.SilenceModel.survival = survival  # type: ignore[method-assign]
    silence_module._PRIOR_ALERT.clear()
    try:
        yield
    finally:
        silence_module.SilenceModel.survival = saved  # type: ignore[method-assign]
        silence_module._PRIOR_ALERT.clear()


def band_edges(kind: str, days: float) -> tuple[float, ...]:
    if kind == "age":
        return AGE_EDGES
    return (*(30.0 * k for k in range(1, int(days // 30) + 1)), float("inf"))


def community_alerts(meter_id: str, xs: list[Interval], thresholds: Thresholds) -> list[Finding]:
    """The community alerts one monitor raises over a meter's intervals (device and cleared findings left out)."""
    monitor = MeterMonitor(meter_id, thresholds)
    return [
        f
        for x in xs
        for f in monitor.update(x)
        if not f.resolved and f.route == COMMUNITY and f.kind not in DEVICE_KINDS
    ]


def by_band(
    data: ev.Dataset, thresholds: Thresholds, edges: tuple[float, ...]
) -> tuple[list[float], list[int], list[list[float]]]:
    """Per band of ``edges`` (days since each meter's first reading): home-months, false community calls as
    ``score`` classes them (without outcomes), and the delays (h) of the falls that began in it (48 h: missed)."""
    months = [0.0] * len(edges)
    false = [0] * len(edges)
    falls: list[list[float]] = [[] for _ in edges]
    truth_by_meter: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth_by_meter[t.meter_id].append(t)
    for meter_id, xs in data.intervals.items():
        if not xs:
            continue
        first, last = xs[0].start, xs[-1].end
        lower = 0.0
        for i, upper in enumerate(edges):
            span = min(last, first + upper * DAY) - (first + lower * DAY)
            months[i] += max(span, 0.0) / (30 * DAY)
            lower = upper
        truth = truth_by_meter.get(meter_id, [])
        incidents = [t for t in truth if t.category == "incident"]
        alerts = community_alerts(meter_id, xs, thresholds)
        quiet = ev.real_absences(xs, incidents)
        for f in alerts:
            if not ev.explained(f, incidents, truth) and ev.absence_at(f.ts, quiet) is None:
                false[bisect.bisect_right(edges, (f.ts - first) / DAY)] += 1
        times = [f.ts for f in alerts]
        for inc in incidents:
            if inc.kind != "fall":
                continue
            k = bisect.bisect_left(times, inc.start)
            found = k < len(times) and times[k] <= inc.window_end
            falls[bisect.bisect_right(edges, (inc.start - first) / DAY)].append(
                (times[k] - inc.start) / 3600.0 if found else 48.0
            )
    return months, false, falls


def report_score(data: ev.Dataset, thresholds: Thresholds, outcomes: bool) -> None:
    for delay in (None, ev.VISIT_DELAY_H) if outcomes else (None,):
        s = ev.score("tapwatch", ev.tapwatch_factory(thresholds), data, delay)
        kinds = Counter({k: round(v / s.months, 3) for k, v in s.false_by_kind.items()})
        cells = []
        for kind in sorted(s.delays):
            med, p90 = s.quantile(kind, 50), s.quantile(kind, 90)
            cells.append(f"{kind} {s.recall(kind):.2f}" + (f" {med:.2f} / {p90:.2f} h" if med is not None else ""))
        print(
            f"{'with' if delay else 'without'} outcomes: false community {s.noise_rate:.3f} /elder-month "
            f"{dict(sorted(kinds.items()))}; false maintenance {s.per_month(s.maintenance):.3f}; "
            f"2nd in an absence {s.second_absence}"
        )
        print("  " + " | ".join(cells))


def report_bands(data: ev.Dataset, thresholds: Thresholds, kind: str) -> None:
    days = max((xs[-1].end - xs[0].start) / DAY for xs in data.intervals.values() if xs)
    edges = band_edges(kind, days)
    months, false, falls = by_band(data, thresholds, edges)
    print(f"by {kind} (days), without outcomes: false community calls /elder-month (count); falls, median h")
    lower = 0.0
    for upper, m, n, f in zip(edges, months, false, falls, strict=True):
        if m > 0:
            name = f"{lower:g}-{'' if upper == float('inf') else f'{upper:g}'}"
            med = f"{statistics.median(f):.2f}" if f else "-"
            print(f"  {name:>8}: {n / m:.3f} ({n}); falls {len(f)}, {med}")
        lower = upper


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("fit", "score"))
    p.add_argument("--data", required=True, help="sim:ELDERSxDAYSxSEED, other:ELDERSxDAYSxSEED or real:SEED")
    p.add_argument("--out", help="fit: write the prior here (.npy)")
    p.add_argument("--prior", action="append", default=[], help="score: a prior (.npy or 'default'); repeat to mix")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="an operator threshold")
    p.add_argument("--outcomes", action="store_true", help="score: also with cadres' outcomes")
    p.add_argument("--bands", choices=("age", "month"), default="age", help="score: split by home age or month")
    p.add_argument(
        "--pace",
        metavar="N0,LOW,HIGH",
        help="score: the prior stretched to each home's pace, shrunk with N0 silences, within [LOW, HIGH]",
    )
    p.add_argument("--from-day", type=float, default=0.0, help="score: each meter switched on this many days in")
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="the real homes (meter_id,ts,total_l)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/population-prior-cache"))
    args = p.parse_args(argv)
    if args.data.startswith("real:") and not args.csv.exists():
        p.error(f"no real homes at {args.csv} (--csv)")
    data = load(args.data, args.csv, args.cache)
    if args.from_day:
        data = switched_on_later(data, args.from_day)
    if args.what == "fit":
        if not args.out:
            p.error("fit needs --out")
        np.save(args.out, ev.fit_prior([data]))
        print(f"prior of {args.data} ({len(data.intervals)} meters) written to {args.out}")
        return 0
    thresholds = thresholds_from(args.set)
    at_pace = prior_at_home_pace(*(float(v) for v in args.pace.split(","))) if args.pace else nullcontext()
    with population_prior(mixed(args.prior or ["default"])), at_pace:
        paced = f", at each home's pace ({args.pace})" if args.pace else ""
        print(f"{args.data}, prior {' + '.join(args.prior) or 'default'}{paced}, {' '.join(args.set) or 'defaults'}")
        report_score(data, thresholds, args.outcomes)
        report_bands(data, thresholds, args.bands)
    return 0


if __name__ == "__main__":
    sys.exit(main())
