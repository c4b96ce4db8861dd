"""A day's water: total volume against this elder's range, and slow drift of the routine.

At the end of each local day the model sees three features: the day's total,
the time of the first use after 04:00 (rising) and the number of half-hour
slots with any use (activity). The total is scored against an exponentially
weighted mean and spread of its logarithm (and the absolute bounds); rising
time and volume feed river's Page-Hinkley drift detectors, whose alarms are
``routine_change`` findings: low urgency, for the cadre's next visit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from river.drift import PageHinkley

_PH_STATE = ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease", "_drift_detected")


def _page_hinkley(mode: str) -> PageHinkley:
    """Drift in a standardised daily feature: a lasting shift of about one spread shows within a few weeks."""
    return PageHinkley(min_instances=28, delta=0.3, threshold=8.0, mode=mode)


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

    def __init__(self, alpha: float = 1 / 30, z_limit: float = 6.0, grace_days: int = 14) -> None:
        self.alpha = alpha
        self.z_limit = z_limit
        self.grace_days = grace_days
        self.n = 0
        self.mean = 0.0  # of log(total + 10)
        self.var = 0.0
        self.wake_mean = 7.0
        self.wake_var = 1.0
        # Frailty shows as rising later and using less: only those directions are worth a visit.
        self.wake_drift = _page_hinkley("up")
        self.volume_drift = _page_hinkley("down")

    def __getstate__(self) -> dict[str, object]:
        # Page-Hinkley pickles with its class paths and a bound method (~400 B each); its
        # state is six numbers, stored bare so a checkpoint stays small.
        state = dict(self.__dict__)
        for name in ("wake_drift", "volume_drift"):
            ph = state[name]
            state[name] = (ph._x_mean.n, ph._x_mean._mean, *(getattr(ph, a) for a in _PH_STATE))
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for name in ("wake_drift", "volume_drift"):
            saved: tuple[float, ...] = state[name]  # type: ignore[assignment]
            n, mean, rest = saved[0], saved[1], saved[2:]
            ph = _page_hinkley("up" if name == "wake_drift" else "down")
            ph._x_mean.n, ph._x_mean._mean = n, mean
            for attr, value in zip(_PH_STATE, rest, strict=True):
                setattr(ph, attr, value)
            state[name] = ph
        self.__dict__.update(state)

    def z_score(self, total_l: float) -> float:
        """Standardised log volume of a day's total; 0 before the grace period."""
        if self.n < self.grace_days:
            return 0.0
        spread = math.sqrt(self.var) + 0.15  # floor: a very regular elder still varies a bit
        return (math.log(total_l + 10.0) - self.mean) / spread

    def learn_one(self, day: DaySummary) -> list[str]:
        """Learn a normal day; return the drifting features (``"rising"``, ``"volume"``)."""
        x = math.log(day.total_l + 10.0)
        a = max(self.alpha, 1.0 / (self.n + 1))
        # The drift detectors see each day's surprise against the running estimate (in
        # spreads, taken before this day is learned), so their scale is stable over time.
        spread = math.sqrt(self.var) + 0.15
        surprise = (x - self.mean) / spread if self.n >= self.grace_days else 0.0
        delta = x - self.mean
        self.mean += a * delta
        self.var = (1 - a) * (self.var + a * delta * delta)
        self.n += 1
        drifting: list[str] = []
        self.volume_drift.update(surprise)
        if self.volume_drift.drift_detected:
            drifting.append("volume")
        if day.first_use_h is not None:
            w = day.first_use_h
            d = w - self.wake_mean
            w_surprise = d / (math.sqrt(self.wake_var) + 0.25) if self.n > self.grace_days else 0.0
            self.wake_mean += a * d
            self.wake_var = (1 - a) * (self.wake_var + a * d * d)
            self.wake_drift.update(w_surprise)
            if self.wake_drift.drift_detected:
                drifting.append("rising")
        return drifting if self.n >= 2 * self.grace_days else []
