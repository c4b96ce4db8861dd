"""A day's water: total volume against this elder's range, and slow drift of the routine.

At the end of each local day the model sees three features: the day's total,
the time of the first use after 04:00 (rising) and the number of half-hour
slots with any use (activity). The total is scored against an exponentially
weighted mean and spread of its logarithm (and the absolute bounds); rising
time and volume feed river's Page-Hinkley drift detectors, whose alarms are
``routine_change`` findings: low urgency, for the cadre's next visit.

A slow change is many moderately unusual days, never one very unusual day: each
day enters the drift detectors as its distance from a slow baseline (about 100
days of memory, so a decline over weeks accumulates instead of being absorbed
by the 30-day mean), clipped at ``DRIFT_CLIP`` spreads (the first use at 19:00
on the day an elder came home cannot raise a drift alone). Measured with
``bench/routine_drift.py`` (docs/detection-studies.md, "A slow change, not one odd day").

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
#: Frailty shows as rising later and using less: only those directions are worth a visit.
_WAKE, _VOLUME = 0, _PH_SIZE  # offsets of the rising-time and volume detectors in ``_drift``
_MODES = {_WAKE: "up", _VOLUME: "down"}


#: The drift detectors' threshold unless the operator set another (``Thresholds.routine_threshold``): the
#: days' clipped distances from the baseline, less ``delta`` each, add up past it before a change is raised.
DRIFT_THRESHOLD = 8.0


def _page_hinkley(mode: str) -> PageHinkley:
    """Drift in a standardised daily feature: a lasting shift of about one spread shows within a few weeks."""
    # Imported on first use: ``river.drift`` loads scipy (for KSWIN), about 1 s that a command's --help
    # or a process that never judges a day should not pay.
    from river.drift import PageHinkley

    return PageHinkley(min_instances=28, delta=0.3, threshold=DRIFT_THRESHOLD, mode=mode)


def _fresh_state(mode: str) -> list[float]:
    ph = _page_hinkley(mode)
    return [ph._x_mean.n, ph._x_mean._mean, *(float(getattr(ph, a)) for a in _PH_STATE)]


#: Offsets in ``_state`` of the running statistics, after the two detectors' numbers; the slow
#: baselines of log volume and rising time last (added in session 8: older checkpoints lack them).
_N, _MEAN, _VAR, _WAKE_MEAN, _WAKE_VAR, _SLOW_MEAN, _SLOW_WAKE = range(2 * _PH_SIZE, 2 * _PH_SIZE + 7)
#: Numbers in a model's ``_state``.
_STATE_SIZE = _SLOW_WAKE + 1


@cache
def _fresh() -> array:
    """A new model's state: fresh detectors, no day learned, log volume 0 +- 0, rising at 07:00 +- 1 h."""
    return array("d", _fresh_state(_MODES[_WAKE]) + _fresh_state(_MODES[_VOLUME]) + [0.0, 0.0, 0.0, 7.0, 1.0, 0.0, 7.0])


#: Weight of a day in the drift detectors' baselines (about 100 days of memory): a decline over
#: weeks must not be learned as the new normal before it is noticed.
SLOW_ALPHA = 0.01
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
    first_use_h: float | None  # local hour of the first use after 04:00
    active_slots: int
    known_h: float  # hours of the day covered by known data


class DailyModel:
    """Learned range of daily totals, and drift in rising time and volume.

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
        # The rising-time and volume Page-Hinkley detectors' numbers, then ``n``, ``mean`` and
        # ``var`` of log(total + 10), ``wake_mean`` and ``wake_var``.
        self._state = _fresh()[:]

    def __getstate__(self) -> tuple[object, ...]:
        return slot_values(self)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        restore_slots(self, state, share=frozenset(("alpha", "z_limit", "grace_days")))
        if len(self._state) < _STATE_SIZE:  # a checkpoint from before the slow baselines: start them here
            self._state.extend((self._state[_MEAN], self._state[_WAKE_MEAN]))

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
    def wake_drift(self) -> PageHinkley:
        """River's detector of a later rising time, as it stands (a copy: updating it changes nothing here)."""
        return _load(self._state, _WAKE, _page_hinkley(_MODES[_WAKE]))

    @property
    def volume_drift(self) -> PageHinkley:
        """River's detector of a falling daily volume, as it stands (a copy)."""
        return _load(self._state, _VOLUME, _page_hinkley(_MODES[_VOLUME]))

    def _drift_update(self, at: int, x: float, threshold: float) -> bool:
        """Feed one day's value to a stored detector judging at ``threshold``; whether it signals drift."""
        workers: dict[int, PageHinkley] | None = getattr(_workers, "by_offset", None)
        if workers is None:
            workers = _workers.by_offset = {}
        ph = workers.get(at)
        if ph is None:
            ph = workers[at] = _page_hinkley(_MODES[at])
        # The threshold is the operator's, not state: the detector's sums do not depend on it, only the test.
        ph.threshold = threshold
        _load(self._state, at, ph).update(x)
        _store(ph, self._state, at)
        return bool(ph.drift_detected)

    def z_score(self, total_l: float) -> float:
        """Standardised log volume of a day's total; 0 before the grace period."""
        state = self._state
        if state[_N] < self.grace_days:
            return 0.0
        spread = math.sqrt(state[_VAR]) + 0.15  # floor: a very regular elder still varies a bit
        return (math.log(total_l + 10.0) - state[_MEAN]) / spread

    def learn_one(self, day: DaySummary, drift_threshold: float = DRIFT_THRESHOLD) -> list[str]:
        """Learn a normal day; return the drifting features (``"rising"``, ``"volume"``).

        ``drift_threshold`` is the drift detectors' threshold (larger: a change must add up longer).
        """
        state = self._state
        n, mean, var = int(state[_N]), state[_MEAN], state[_VAR]
        x = math.log(day.total_l + 10.0)
        a = max(self.alpha, 1.0 / (n + 1))
        # The drift detectors see each day's distance from the slow baseline (in spreads of the
        # running estimate, taken before this day is learned), clipped: see the module's docstring.
        spread = math.sqrt(var) + 0.15
        judged = n >= self.grace_days
        surprise = _clip((x - state[_SLOW_MEAN]) / spread) if judged else 0.0
        delta = x - mean
        state[_MEAN] = mean + a * delta
        state[_VAR] = (1 - a) * (var + a * delta * delta)
        # Until the grace days are learned the baseline is the running mean; then it moves slowly.
        state[_SLOW_MEAN] = _follow(state[_SLOW_MEAN], x, SLOW_ALPHA) if judged else state[_MEAN]
        n += 1
        state[_N] = n
        drifting: list[str] = []
        if self._drift_update(_VOLUME, surprise, drift_threshold):
            drifting.append("volume")
        if day.first_use_h is not None:
            w = day.first_use_h
            wake_mean, wake_var = state[_WAKE_MEAN], state[_WAKE_VAR]
            d = w - wake_mean
            judged = n > self.grace_days
            w_surprise = _clip((w - state[_SLOW_WAKE]) / (math.sqrt(wake_var) + 0.25)) if judged else 0.0
            state[_WAKE_MEAN] = wake_mean + a * d
            state[_WAKE_VAR] = (1 - a) * (wake_var + a * d * d)
            state[_SLOW_WAKE] = _follow(state[_SLOW_WAKE], w, SLOW_ALPHA) if judged else state[_WAKE_MEAN]
            if self._drift_update(_WAKE, w_surprise, drift_threshold):
                drifting.append("rising")
        return drifting if n >= 2 * self.grace_days else []


def _clip(surprise: float) -> float:
    return max(-DRIFT_CLIP, min(DRIFT_CLIP, surprise))


def _follow(baseline: float, x: float, alpha: float) -> float:
    return baseline + alpha * (x - baseline)
