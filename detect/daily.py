"""A day's water: total volume against this elder's range, and slow drift of the routine.

At the end of each local day the model sees three features: the day's total,
the rising time (the first use after 04:00 that more use follows within the
hour: ``rising_hour``) and the number of half-hour slots with any use
(activity). The total is scored against an exponentially weighted mean and
spread of its logarithm (and the absolute bounds); rising time and volume
together feed river's Page-Hinkley drift detector, whose alarms are
``routine_change`` findings: low urgency, for the cadre's next visit.

A slow change is many moderately unusual days, never one very unusual day: each
day's rising time and volume are taken as distances from slow baselines (about
100 days of memory, so a decline over weeks accumulates instead of being
absorbed by the 30-day mean), clipped at ``DRIFT_CLIP`` spreads (the first use
at 19:00 on the day an elder came home cannot raise a drift alone). Measured
with ``bench/routine_drift.py`` (docs/detection-studies.md, "A slow change, not
one odd day").

Frailty moves both at once, in one direction: rising later AND using less. A
family's routine drifts too (seasons, school terms), but mostly one feature at a
time, or both the other way (a holiday morning: up later, home all day, more
water). So the drift detector sees one number a day, the sum of the two clipped
distances in frailty's direction over sqrt(2) (the volume's alone on a day
without a rising time): a decline in both adds up about twice as fast as in
either alone (docs/detection-studies.md, "A decline found sooner").

A Page-Hinkley detector is an object of a few hundred bytes but its state is
seven numbers, and it learns once a day: each model keeps those numbers in one
small array and loads them into a detector of this thread only to learn. The
model's own running statistics live in the same array (a float attribute costs
32 bytes, an array element 8, and a million meters each hold a model).
"""

from __future__ import annotations

import math
import threading
from array import array
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from detect.compact import restore_slots, slot_values

if TYPE_CHECKING:
    from river.drift import PageHinkley

#: Page-Hinkley state after the running mean's count and value, in the order stored.
_PH_STATE = ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease", "_drift_detected")
#: Numbers per detector: the mean's n and value, then ``_PH_STATE``.
_PH_SIZE = 2 + len(_PH_STATE)
#: Offset of the drift detector in ``_state``; it watches frailty's direction only (rising later, using less).
_DRIFT = 0


#: The drift detector's threshold unless the operator set another (``Thresholds.routine_threshold``): the
#: days' combined clipped distances from the baselines, less ``delta`` each, add up past it before a change is raised.
DRIFT_THRESHOLD = 8.0


def _page_hinkley() -> PageHinkley:
    """Drift in a standardised daily feature: a lasting shift of about one spread shows within a few weeks."""
    # Imported on first use: ``river.drift`` loads scipy (for KSWIN), about 1 s that a command's --help
    # or a process that never judges a day should not pay.
    from river.drift import PageHinkley

    return PageHinkley(min_instances=28, delta=0.3, threshold=DRIFT_THRESHOLD, mode="up")


def _fresh_state() -> list[float]:
    ph = _page_hinkley()
    return [ph._x_mean.n, ph._x_mean._mean, *(float(getattr(ph, a)) for a in _PH_STATE)]


#: Offsets in ``_state`` of the running statistics, after the drift detector's numbers; then the slow
#: baselines of log volume and rising time, and their recent means (what a change is told in).
_N, _MEAN, _VAR, _WAKE_MEAN, _WAKE_VAR, _SLOW_MEAN, _SLOW_WAKE, _RECENT_MEAN, _RECENT_WAKE = range(
    _PH_SIZE, _PH_SIZE + 9
)
#: Numbers in a model's ``_state``.
_STATE_SIZE = _RECENT_WAKE + 1
#: Sizes of older checkpoints' ``_state``: two detectors (rising time, volume: sessions 1-11) before the
#: statistics, and without the slow baselines before session 8.
_TWO_DETECTORS, _TWO_DETECTORS_NO_SLOW = 2 * _PH_SIZE + 7, 2 * _PH_SIZE + 5


@cache
def _fresh() -> array:
    """A new model's state: a fresh detector, no day learned, log volume 0 +- 0, rising at 07:00 +- 1 h."""
    return array("d", [*_fresh_state(), 0.0, 0.0, 0.0, 7.0, 1.0, 0.0, 7.0, 0.0, 7.0])


def rising_hour(slots: int, first_use_h: float | None = None) -> float | None:
    """The local hour a day began, from the bitmask of its half-hour slots with use (bit k: from k/2 h).

    Rising is the end of the first slot from 04:00 with use and more use in the hour after it: a lone
    night flush at 05:00 is not rising, the morning's flush, wash and kettle are. A day without such an
    hour (only lone uses) rose at its first use after 04:00, ``first_use_h``, if any.

    >>> h = lambda *hours: sum(1 << int(2 * x) for x in hours)  # slots with use, by their start hour
    >>> rising_hour(h(5.0, 7.0, 7.5, 12.0), 5.5)  # 05:00 alone, then 07:00-08:00: up at 07:30
    7.5
    >>> rising_hour(h(2.0, 2.5, 7.5, 8.5), 8.0)  # hourly readings mark every other slot; before 04:00 is night
    8.0
    >>> rising_hour(h(5.0, 9.0), 5.5), rising_hour(0)
    (5.5, None)
    """
    later = slots >> 8 << 8  # from 04:00
    starts = later & ((slots >> 1) | (slots >> 2))
    if not starts:
        return first_use_h
    return ((starts & -starts).bit_length()) / 2.0


#: Weight of a day in the drift detectors' baselines (about 100 days of memory): a decline over
#: weeks must not be learned as the new normal before it is noticed.
SLOW_ALPHA = 0.01
#: Weight of a day in the recent means a change of routine is told in ("lately": about the last two weeks;
#: the 30-day running mean lags a decline by a month, and at the alarm would tell of little change).
RECENT_ALPHA = 0.1
#: A day's distance from the baseline, in spreads, is clipped here before the drift detectors
#: see it: one odd day (after an absence, a party) must not look like weeks of change.
DRIFT_CLIP = 2.0
_workers = threading.local()  # one loaded detector per mode and thread, refilled from each model's numbers


def _load(state: array, at: int, ph: PageHinkley) -> PageHinkley:
    ph._x_mean.n, ph._x_mean._mean = state[at], state[at + 1]
    ph._sum_increase, ph._sum_decrease = state[at + 2], state[at + 3]
    ph._min_increase, ph._max_decrease = state[at + 4], state[at + 5]
    ph._drift_detected = bool(state[at + 6])
    return ph


def _store(ph: PageHinkley, state: array, at: int) -> None:
    state[at], state[at + 1] = ph._x_mean.n, ph._x_mean._mean
    state[at + 2], state[at + 3] = ph._sum_increase, ph._sum_decrease
    state[at + 4], state[at + 5] = ph._min_increase, ph._max_decrease
    state[at + 6] = float(ph._drift_detected)


@dataclass(slots=True)
class DaySummary:
    """What one local day looked like."""

    day: int  # local day number since the epoch
    total_l: float
    rising_h: float | None  # local hour the day began (``rising_hour``)
    active_slots: int
    known_h: float  # hours of the day covered by known data


class DailyModel:
    """Learned range of daily totals, and drift in rising time and volume taken together.

    Parameters
    ----------
    alpha
        Weight of each new day in the running mean and spread (1/alpha days of memory).
    z_limit
        How many spreads (of log volume) from the mean a day must be to alert.
    grace_days
        Days learned before the learned range is used.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(3)
    >>> model = DailyModel()
    >>> for d in range(30):
    ...     _ = model.learn_one(DaySummary(d, rng.uniform(120, 180), 7.0, 20, 24.0))
    >>> abs(round(model.z_score(150.0), 1)), round(model.z_score(900.0), 1)
    (0.0, 6.8)
    >>> model.z_score(20.0) < -4
    True
    """

    __slots__ = ("_state", "alpha", "grace_days", "z_limit")

    def __init__(self, alpha: float = 1 / 30, z_limit: float = 6.0, grace_days: int = 14) -> None:
        self.alpha = alpha
        self.z_limit = z_limit
        self.grace_days = grace_days
        # The Page-Hinkley drift detector's numbers, then ``n``, ``mean`` and ``var`` of log(total + 10),
        # ``wake_mean`` and ``wake_var`` of the rising time, and the slow baselines of both.
        self._state = _fresh()[:]

    def __getstate__(self) -> tuple[object, ...]:
        return slot_values(self)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        restore_slots(self, state, share=frozenset(("alpha", "z_limit", "grace_days")))
        if len(self._state) in (_TWO_DETECTORS, _TWO_DETECTORS_NO_SLOW):
            self._state = _one_detector(self._state)

    @property
    def n(self) -> int:
        """Days learned."""
        return int(self._state[_N])

    @property
    def mean(self) -> float:
        """Running mean of log(total + 10)."""
        return self._state[_MEAN]

    @property
    def var(self) -> float:
        """Running variance of log(total + 10)."""
        return self._state[_VAR]

    @property
    def wake_mean(self) -> float:
        """Running mean of the rising time (local hours)."""
        return self._state[_WAKE_MEAN]

    @property
    def wake_var(self) -> float:
        return self._state[_WAKE_VAR]

    @property
    def usual_mean(self) -> float:
        """Slow baseline of log(total + 10): what the drift detectors measure a day against."""
        return self._state[_SLOW_MEAN]

    @property
    def usual_wake(self) -> float:
        """Slow baseline of the rising time (local hours)."""
        return self._state[_SLOW_WAKE]

    @property
    def recent_litres(self) -> float:
        """The daily volume lately (about two weeks), in litres."""
        return math.exp(self._state[_RECENT_MEAN]) - 10.0

    @property
    def recent_wake(self) -> float:
        """The rising time lately (about two weeks; local hours)."""
        return self._state[_RECENT_WAKE]

    @property
    def drift(self) -> PageHinkley:
        """River's detector of rising later and using less, as it stands (a copy: updating it changes nothing here)."""
        return _load(self._state, _DRIFT, _page_hinkley())

    def _drift_update(self, x: float, threshold: float) -> bool:
        """Feed one day's value to the stored detector judging at ``threshold``; whether it signals drift."""
        ph: PageHinkley | None = getattr(_workers, "ph", None)
        if ph is None:
            ph = _workers.ph = _page_hinkley()
        # The threshold is the operator's, not state: the detector's sums do not depend on it, only the test.
        ph.threshold = threshold
        _load(self._state, _DRIFT, ph).update(x)
        _store(ph, self._state, _DRIFT)
        return bool(ph.drift_detected)

    def z_score(self, total_l: float) -> float:
        """Standardised log volume of a day's total; 0 before the grace period."""
        state = self._state
        if state[_N] < self.grace_days:
            return 0.0
        spread = math.sqrt(state[_VAR]) + 0.15  # floor: a very regular elder still varies a bit
        return (math.log(total_l + 10.0) - state[_MEAN]) / spread

    def learn_one(self, day: DaySummary, drift_threshold: float = DRIFT_THRESHOLD) -> bool:
        """Learn a normal day; whether the routine has drifted (rising later and using less, taken together).

        ``drift_threshold`` is the drift detector's threshold (larger: a change must add up longer).
        """
        state = self._state
        n, mean, var = int(state[_N]), state[_MEAN], state[_VAR]
        x = math.log(day.total_l + 10.0)
        a = max(self.alpha, 1.0 / (n + 1))
        # The drift detector sees each day's distance from the slow baselines (in spreads of the
        # running estimates, taken before this day is learned), clipped: see the module's docstring.
        spread = math.sqrt(var) + 0.15
        judged = n >= self.grace_days
        less = -_clip((x - state[_SLOW_MEAN]) / spread) if judged else 0.0
        delta = x - mean
        state[_MEAN] = mean + a * delta
        state[_VAR] = (1 - a) * (var + a * delta * delta)
        # Until the grace days are learned the baseline is the running mean; then it moves slowly.
        state[_SLOW_MEAN] = _follow(state[_SLOW_MEAN], x, SLOW_ALPHA) if judged else state[_MEAN]
        state[_RECENT_MEAN] = _follow(state[_RECENT_MEAN], x, RECENT_ALPHA) if judged else state[_MEAN]
        n += 1
        state[_N] = n
        frailer = less
        if day.rising_h is not None:
            w = day.rising_h
            wake_mean, wake_var = state[_WAKE_MEAN], state[_WAKE_VAR]
            d = w - wake_mean
            judged = n > self.grace_days
            later = _clip((w - state[_SLOW_WAKE]) / (math.sqrt(wake_var) + 0.25)) if judged else 0.0
            state[_WAKE_MEAN] = wake_mean + a * d
            state[_WAKE_VAR] = (1 - a) * (wake_var + a * d * d)
            state[_SLOW_WAKE] = _follow(state[_SLOW_WAKE], w, SLOW_ALPHA) if judged else state[_WAKE_MEAN]
            state[_RECENT_WAKE] = _follow(state[_RECENT_WAKE], w, RECENT_ALPHA) if judged else state[_WAKE_MEAN]
            # Two noisy measures of one decline: their sum over sqrt(2) keeps a day's spread about one.
            frailer = (less + later) / _TWO
        drifted = self._drift_update(frailer, drift_threshold)
        return drifted and n >= 2 * self.grace_days


_TWO = math.sqrt(2.0)


def _clip(surprise: float) -> float:
    return max(-DRIFT_CLIP, min(DRIFT_CLIP, surprise))


def _follow(baseline: float, x: float, alpha: float) -> float:
    return baseline + alpha * (x - baseline)


def _one_detector(old: array) -> array:
    """The state of a checkpoint with a rising-time and a volume detector (before session 12), upgraded.

    The statistics carry over (the slow baselines start at the running means if the checkpoint predates
    them, and so do the recent means); the combined detector starts its sums afresh, counting the days the
    old ones saw (no new 28 days of silence) and taking its running mean from theirs, in frailty's direction.
    """
    stats = old[2 * _PH_SIZE :]
    means = (stats[_MEAN - _PH_SIZE], stats[_WAKE_MEAN - _PH_SIZE])
    if len(stats) < _SLOW_WAKE + 1 - _PH_SIZE:  # before the slow baselines (session 8): start them here
        stats.extend(means)
    stats.extend(means)  # the recent means
    detector = _fresh_state()
    wake_mean, volume_mean = old[1], old[_PH_SIZE + 1]  # the old detectors' running means of their inputs
    detector[0], detector[1] = old[_PH_SIZE], (wake_mean - volume_mean) / _TWO
    return array("d", detector) + stats
