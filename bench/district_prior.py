"""A population prior the district learns from its own elders, causally (session 17).

Session 15 found that a silence prior fitted on a home's own population takes a quarter of the other generator's
false calls away, mostly in a home's learning weeks, and that no fixed prior travels. A live district sees all its
elders: it could refit the prior from their pooled silences as they accumulate. This bench measures that as a live
system would have it. Every ``--every`` days of data time it fits ``tapwatch.evaluate.fit_prior`` on the silences
every meter had *completed* by then (from the district's first ``--min-days`` on; the shipped prior before), mixes it
with the shipped prior (``--mix``: the district's share), and from that moment every meter's silence model blends
the new prior when it refreshes. Each meter is then scored alone, as ``tapwatch eval`` scores
(``tapwatch.evaluate.score``; outcomes by the contract), so the prior a meter sees at data time t comes only from
data before t. Falls' and absences' silences are in the fit as they would be live: nobody has told the district.

Data sets as in ``bench/population_prior.py`` (``sim:``, ``other:``, ``real:``; tuning seeds only)::

    .venv/bin/python bench/district_prior.py --data other:300x120x2
    .venv/bin/python bench/district_prior.py --data real:2 --mix 0.5 --outcomes
    .venv/bin/python bench/district_prior.py --data sim:300x120x2 --shipped --set sensitivity=7e-4
"""

from __future__ import annotations

import argparse
import bisect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np

import detect.silence as silence_module
from core.domain import Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor
from detect.oracle import silences
from detect.prior import SILENCE_EDGES, SILENCE_PRIOR
from tapwatch import evaluate as ev
from tapwatch.replay import thresholds_from

sys.path.insert(0, str(Path(__file__).resolve().parent))
import population_prior
from population_prior import DEFAULT_CSV, load, report_bands, report_score

DAY = ev.DAY
N_BINS = len(SILENCE_EDGES) + 1


def completed_silences(data: ev.Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per meter: the end times of its completed silences under 24 h, and each one's cell (start hour x bin)."""
    out = []
    for xs in data.intervals.values():
        rows = [
            (
                start + hours * 3600.0,
                silence_module.hour_of(start, off) * N_BINS + bisect.bisect_right(SILENCE_EDGES, hours),
            )
            for start, hours, off in silences(xs)
            if hours < 24.0
        ]
        ends = np.array([r[0] for r in rows], dtype=np.float64)
        cells = np.array([r[1] for r in rows], dtype=np.int64)
        out.append((ends, cells))
    return out


def district_prior_at(per_meter: list[tuple[np.ndarray, np.ndarray]], t: float) -> np.ndarray:
    """``fit_prior`` on the silences every meter completed before ``t`` (each meter weighs the same)."""
    total = np.zeros((24, N_BINS))
    for ends, cells in per_meter:
        own = np.bincount(cells[ends < t], minlength=24 * N_BINS).reshape(24, N_BINS).astype(np.float64)
        sums = own.sum(axis=1, keepdims=True)
        total += np.divide(own, sums, out=np.zeros_like(own), where=sums > 0)
    total += 1e-3  # no bin is impossible, as fit_prior
    return np.asarray(total / total.sum(axis=1, keepdims=True))


def schedule(data: ev.Dataset, every_days: float, min_days: float, mix: float) -> list[tuple[float, np.ndarray]]:
    """(from data time, prior) pairs: the shipped prior first, then the district's refits."""
    starts = [xs[0].start for xs in data.intervals.values() if xs]
    ends = [xs[-1].end for xs in data.intervals.values() if xs]
    first, last = min(starts), max(ends)
    per_meter = completed_silences(data)
    out: list[tuple[float, np.ndarray]] = [(first, SILENCE_PRIOR)]
    t = first + min_days * DAY
    while t < last:
        learned = district_prior_at(per_meter, t)
        prior = mix * learned + (1.0 - mix) * SILENCE_PRIOR
        out.append((t, prior / prior.sum(axis=1, keepdims=True)))
        t += every_days * DAY
    return out


def set_prior(prior: np.ndarray) -> None:
    silence_module.SILENCE_PRIOR = prior
    silence_module._PRIOR_ALERT.clear()  # a new meter's alert lengths are cached by settings, not by prior


class DistrictMonitor(MeterMonitor):
    """A monitor whose silence model blends the district's prior of the moment (a module-wide swap: one meter
    is replayed at a time, from the district's first prior on)."""

    priors: ClassVar[list[tuple[float, np.ndarray]]] = []
    #: Days of a home's own data after which it goes back to the shipped prior (inf: never).
    young_days: ClassVar[float] = float("inf")

    def __init__(self, meter_id: str, thresholds: Thresholds) -> None:
        set_prior(self.priors[0][1])
        self._next = 1
        self._until: float | None = None
        super().__init__(meter_id, thresholds)

    def update(self, x: Interval) -> list[Finding]:
        priors = self.priors
        if self._until is None:
            self._until = x.start + self.young_days * DAY
        if x.start >= self._until:
            if self._next <= len(priors):
                set_prior(SILENCE_PRIOR)
                self._next = len(priors) + 1
        else:
            while self._next < len(priors) and x.start >= priors[self._next][0]:
                set_prior(priors[self._next][1])
                self._next += 1
        return super().update(x)


@contextmanager
def district(priors: list[tuple[float, np.ndarray]]) -> Iterator[None]:
    """Every monitor ``tapwatch eval`` and the age bands build meanwhile follows ``priors``."""
    saved = silence_module.SILENCE_PRIOR
    DistrictMonitor.priors = priors
    ev.MeterMonitor = population_prior.MeterMonitor = DistrictMonitor  # type: ignore[misc]
    try:
        yield
    finally:
        ev.MeterMonitor = population_prior.MeterMonitor = MeterMonitor  # type: ignore[misc]
        set_prior(saved)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="sim:ELDERSxDAYSxSEED, other:ELDERSxDAYSxSEED or real:SEED")
    p.add_argument("--every", type=float, default=7.0, help="days between refits")
    p.add_argument("--min-days", type=float, default=7.0, help="days of district data before the first refit")
    p.add_argument("--mix", type=float, default=1.0, help="the district prior's share (the shipped one the rest)")
    p.add_argument("--young-days", type=float, default=float("inf"), help="a home older than this: shipped prior")
    p.add_argument("--shipped", action="store_true", help="the shipped prior throughout (the curve's points)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="an operator threshold")
    p.add_argument("--outcomes", action="store_true", help="also with cadres' outcomes")
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="the real homes (meter_id,ts,total_l)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/population-prior-cache"))
    args = p.parse_args(argv)
    if args.data.startswith("real:") and not args.csv.exists():
        p.error(f"no real homes at {args.csv} (--csv)")
    data = load(args.data, args.csv, args.cache)
    thresholds = thresholds_from(args.set)
    priors = [(0.0, SILENCE_PRIOR)] if args.shipped else schedule(data, args.every, args.min_days, args.mix)
    what = (
        "shipped prior"
        if args.shipped
        else f"district prior every {args.every:g} d from day {args.min_days:g}, mix {args.mix:g}"
        f", homes to day {args.young_days:g}"
    )
    DistrictMonitor.young_days = args.young_days
    print(f"{args.data}, {what}, {' '.join(args.set) or 'defaults'}")
    with district(priors):
        report_score(data, thresholds, args.outcomes)
        report_bands(data, thresholds, "age")
    return 0


if __name__ == "__main__":
    sys.exit(main())
