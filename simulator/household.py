"""Water-use events of one elder living alone: (start, duration, litres), vectorised over days.

Each activity kind draws per-day counts, then times relative to that day's
rising and bedtime, so routines are individual but never clockwork. Weekday,
season, illness, frailty and visiting family change the per-day inputs; absences
(away, hospital, a fall, death) delete events afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from simulator.life import DAY, HOUR, Life
from simulator.population import Traits

MIN = 60.0


@dataclass
class Events:
    start: np.ndarray  # seconds from the simulation start, sorted
    dur: np.ndarray  # seconds, > 0
    vol: np.ndarray  # litres


class _Acc:
    """Collects event arrays of every kind; times in hours from day 0 midnight."""

    def __init__(self) -> None:
        self.t: list[np.ndarray] = []
        self.d: list[np.ndarray] = []
        self.v: list[np.ndarray] = []

    def add(self, t_h: np.ndarray, vol: np.ndarray, dur_min: np.ndarray | float) -> None:
        self.t.append(np.asarray(t_h, dtype=float))
        self.v.append(np.asarray(vol, dtype=float))
        self.d.append(np.broadcast_to(np.asarray(dur_min, dtype=float), self.t[-1].shape))


@lru_cache(maxsize=8)
def season(start: str, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Per day: summer index in [-1, 1] (1 = late July) and weekend flag.

    >>> s, w = season("2026-07-20", 7)
    >>> round(float(s[0]), 2), w.tolist()
    (1.0, [False, False, False, False, False, True, True])
    """
    first = date.fromisoformat(start)
    doy = np.array([(first + timedelta(days=i)).timetuple().tm_yday for i in range(n_days)], dtype=float)
    summer = np.cos(2 * np.pi * (doy - 201) / 365.25)
    weekend = (first.weekday() + np.arange(n_days)) % 7 >= 5
    summer.flags.writeable = weekend.flags.writeable = False  # cached: shared by every elder
    return summer, weekend


def usage_events(traits: Traits, life: Life, start: str, rng: np.random.Generator) -> Events:
    """All use events of one elder over the simulated days (life.act_mult has days+1 entries)."""
    n = len(life.act_mult)
    summer, weekend = season(start, n)
    day = np.arange(n, dtype=float)
    act = traits.activity * life.act_mult * np.exp(rng.normal(0.0, 0.15, n))
    wake = traits.wake_h + life.wake_shift_h + 0.25 * weekend - 0.3 * summer + rng.normal(0.0, traits.wake_sd_h, n)
    bed = traits.bed_h + life.bed_shift_h + 0.2 * summer + rng.normal(0.0, traits.bed_sd_h, n)
    wake = np.clip(wake, 3.5, 12.0)
    bed = np.maximum(np.clip(bed, 18.5, 25.0), wake + 8.0)
    acc = _Acc()
    _toilets(acc, traits, life, rng, day, wake, bed, act)
    _washing(acc, traits, rng, day, wake, bed, act, summer, life)
    _kitchen(acc, traits, rng, day, wake, bed, act, life)
    _chores(acc, traits, rng, day, wake, act, summer, weekend)
    _guests(acc, rng, day, life)
    flushes = len(acc.t[0])  # the first kind added: toilets, whose cistern volume is fixed
    t = np.concatenate(acc.t) * HOUR
    dur = np.maximum(np.concatenate(acc.d) * MIN, 5.0)
    vol = np.concatenate(acc.v)
    vol[flushes:] *= traits.thrift
    keep = (t >= 0) & (t < (n - 1) * DAY) & (vol > 0)
    for a, b in life.absent:
        keep &= ~((t + dur > a) & (t < b))
    order = np.argsort(t[keep], kind="stable")
    return Events(t[keep][order], dur[keep][order], vol[keep][order])


def _times(rng: np.random.Generator, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Uniform times in [lo, hi) hours of each day, ``counts[d]`` of them for day d."""
    idx = np.repeat(np.arange(len(counts)), counts)
    return idx * 24.0 + lo[idx] + rng.random(len(idx)) * np.maximum(hi[idx] - lo[idx], 0.0)


def _toilets(
    acc: _Acc,
    tr: Traits,
    life: Life,
    rng: np.random.Generator,
    day: np.ndarray,
    wake: np.ndarray,
    bed: np.ndarray,
    act: np.ndarray,
) -> None:
    n = len(day)
    first = day * 24 + wake + rng.uniform(0.0, 0.15, n)  # the first flush on rising: the "I'm up" sign
    daytime = _times(rng, rng.poisson(tr.toilet_day * np.sqrt(act)), wake + 0.4, bed)
    nights = _times(rng, rng.poisson(tr.toilet_night * life.night_mult), bed + 0.3, wake + 23.7)
    flushes = np.concatenate([first, daytime, nights])
    acc.add(flushes, tr.flush_l * rng.uniform(0.95, 1.05, len(flushes)), tr.flush_l / 6.0)
    washed = flushes[rng.random(len(flushes)) < tr.handwash_p]
    acc.add(washed + 1.5 / 60, rng.uniform(0.5, 2.0, len(washed)), 0.5)


def _washing(
    acc: _Acc,
    tr: Traits,
    rng: np.random.Generator,
    day: np.ndarray,
    wake: np.ndarray,
    bed: np.ndarray,
    act: np.ndarray,
    summer: np.ndarray,
    life: Life,
) -> None:
    n = len(day)
    acc.add(day * 24 + wake + rng.uniform(0.05, 0.4, n), rng.uniform(2.0, 5.0, n), 2.0)  # face, teeth
    evening = rng.uniform(2.0, 6.0, n) + (rng.uniform(4.0, 8.0, n) if tr.foot_bath else 0.0)
    acc.add(day * 24 + bed - rng.uniform(0.1, 0.6, n), evening, 3.0)
    # Showers every 1-3 days, daily in a Shanghai summer; illness and frailty cut them.
    p = np.clip((1.0 + 0.6 * np.maximum(summer, 0.0)) / tr.shower_every_d * life.shower_mult, 0.0, 1.0)
    took = rng.random(n) < p
    when = {
        "evening": bed - rng.uniform(0.5, 2.5, n),
        "afternoon": rng.uniform(13.0, 17.0, n),
        "morning": wake + rng.uniform(0.2, 1.5, n),
    }[tr.shower_time]
    vol = np.clip(rng.normal(tr.shower_l, 0.12 * tr.shower_l, n), 25.0, 90.0)
    acc.add((day * 24 + when)[took], vol[took], (vol / rng.uniform(5.0, 8.0, n))[took])
    small = rng.poisson(2.5 * act)  # rinsing a cup, wiping the table: tiny draws
    acc.add(_times(rng, small, wake, bed), rng.uniform(0.3, 2.0, int(small.sum())), 0.3)


def _kitchen(
    acc: _Acc,
    tr: Traits,
    rng: np.random.Generator,
    day: np.ndarray,
    wake: np.ndarray,
    bed: np.ndarray,
    act: np.ndarray,
    life: Life,
) -> None:
    n = len(day)
    kettle = rng.poisson(tr.kettle_per_day * np.ones(n))
    acc.add(_times(rng, kettle, wake, bed - 1.0), rng.uniform(0.8, 1.6, int(kettle.sum())), 0.2)
    meals = [
        (wake + rng.uniform(0.3, 1.0, n), tr.cook_p[0], 0.5),
        (tr.lunch_h + rng.normal(0.0, 0.4, n), tr.cook_p[1], 0.85),
        (tr.dinner_h + rng.normal(0.0, 0.5, n), tr.cook_p[2], 0.85),
    ]
    for meal_h, p_cook, p_dish in meals:
        cooked = rng.random(n) < p_cook * np.minimum(act, 1.2) * (1.0 + 0.5 * (life.guests > 0))
        draws = np.where(cooked, rng.poisson(3.0 * (1 + 0.5 * life.guests)) + 1, 0)
        idx = np.repeat(np.arange(n), draws)
        acc.add(idx * 24.0 + meal_h[idx] - rng.uniform(0.0, 0.6, len(idx)), rng.uniform(0.5, 3.0, len(idx)), 1.0)
        dished = cooked & (rng.random(n) < p_dish)
        vol = rng.uniform(6.0, 20.0, n) * (1.0 + 0.6 * life.guests)
        acc.add(
            (day * 24 + meal_h + rng.uniform(0.3, 1.5, n))[dished],
            vol[dished],
            rng.uniform(5.0, 10.0, n)[dished],
        )


def _chores(
    acc: _Acc,
    tr: Traits,
    rng: np.random.Generator,
    day: np.ndarray,
    wake: np.ndarray,
    act: np.ndarray,
    summer: np.ndarray,
    weekend: np.ndarray,
) -> None:
    n = len(day)
    # Laundry 1-2 a week, a little likelier at weekends; a twin-tub or pulsator machine fills 3 times.
    p = tr.laundry_per_week / 7.0 * np.where(weekend, 1.3, 0.88) * np.minimum(act, 1.2)
    wash = rng.random(n) < p
    t0 = day * 24 + wake + rng.uniform(1.0, 4.0, n)
    for offset in (0.0, 0.33, 0.7):
        acc.add((t0 + offset + rng.uniform(0.0, 0.08, n))[wash], rng.uniform(12.0, 25.0, n)[wash], 2.0)
    if tr.plants:
        water = rng.random(n) < np.clip((1 + 0.8 * summer) / tr.plant_every_d, 0.0, 1.0)
        acc.add((day * 24 + wake + rng.uniform(0.5, 2.0, n))[water], rng.uniform(3.0, 10.0, n)[water], 3.0)
    mop = rng.random(n) < np.clip(act / tr.mop_every_d, 0.0, 1.0)
    when = np.where(rng.random(n) < 0.6, wake + rng.uniform(1.0, 4.0, n), tr.dinner_h + 1.5)
    acc.add((day * 24 + when)[mop], rng.uniform(5.0, 10.0, n)[mop], 1.5)


def _guests(acc: _Acc, rng: np.random.Generator, day: np.ndarray, life: Life) -> None:
    """Visiting family: more toilets, showers and cooking, at hours the elder keeps quiet (odd hours)."""
    g = life.guests
    if not g.any():
        return
    toilets = rng.poisson(5.0 * g)
    t = _times(rng, toilets, np.full(len(day), 7.0), np.full(len(day), 25.5))
    acc.add(t, rng.uniform(4.5, 9.0, len(t)), 1.0)
    showers = rng.binomial(g, 0.7)
    t = _times(rng, showers, np.full(len(day), 20.5), np.full(len(day), 24.5))
    vol = rng.uniform(30.0, 80.0, len(t))
    acc.add(t, vol, vol / 7.0)
