"""How long this elder's silences last, by the hour of the day they start.

A silence is a stretch with no water use. Its length only means something
against the hour it began: eight hours from 22:00 is a night's sleep, three
hours from 07:00 may be a fall. The model keeps, for each starting hour, a
histogram of the lengths of past silences that ended normally, forgets it
slowly (half-life in days), pools neighbouring hours and blends a population
prior for the first weeks. From it comes a survival curve ``S(d | start)``:
the share of silences from that hour that lasted at least ``d`` hours. Past
the longest silences seen, the curve continues with an exponential tail, so
a silence that outlasts everything seen becomes rarer the longer it goes on.

``alert_hours(start_hour)`` is the silence length at which ``S`` falls below
the sensitivity; it is recomputed once a day (``refresh``), so the per-reading
check is one comparison.

A million meters each hold one model, so its state is a few flat arrays: the
histogram as float16 bit patterns in an ``array('H')`` (a numpy view for the
daily maths, a lookup table for the per-silence increment), no per-object dict.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right

import numpy as np

from detect.compact import restore_slots, slot_values
from detect.prior import SILENCE_EDGES, SILENCE_PRIOR

EDGES = SILENCE_EDGES
N_BINS = len(EDGES) + 1
#: Lower edge of each bin, for the survival curve.
_LOWER = np.array((0.0, *EDGES), dtype=np.float64)
#: Grid (hours) on which the alert length is searched.
_GRID = np.arange(0.25, 48.01, 0.25)
#: Longest alert length the model ever sets (h); beyond it only the safety net speaks.
_MAX_ALERT_H = 14 * 24.0
#: Where each grid point falls between the bin lower edges, for log-linear interpolation.
_HI = np.minimum(np.searchsorted(_LOWER, _GRID, side="right"), N_BINS - 1)
_LO = _HI - 1
_W = np.clip((_GRID - _LOWER[_LO]) / np.maximum(_LOWER[_HI] - _LOWER[_LO], 1e-9), 0.0, 1.0)
#: Hours 23, 0, ..., 23, 0: rows ``[:-2]`` and ``[2:]`` of it are every hour's neighbours, from one index.
_RING = np.array((23, *range(24), 0))
_ROWS = np.arange(24)
#: Per bin ``j``: the bin below (0 for the first), its lower edge, and the width up to ``j``'s lower edge.
_BELOW = np.maximum(np.arange(N_BINS) - 1, 0)
_LOWER_BELOW = _LOWER[_BELOW]
_WIDTH_BELOW = _LOWER - _LOWER_BELOW
#: State of a model that has learned nothing yet, and the alert lengths it gets, by settings.
_NO_COUNTS = array("H", bytes(2 * 24 * N_BINS))
_NO_LONGEST = array("f", [0.0] * 24)
_NO_ALERT = array("d", [48.0] * 24)
_PRIOR_ALERT: dict[tuple[float, ...], array] = {}
#: ``(tail_fraction, tail_base_h)`` by default, and the defaults before session 7 (checkpoints take today's).
_DEFAULT_TAIL = (0.0, 1.0)
_OLD_DEFAULT_TAIL = (0.1, 0.5)
#: Own silences (the hour and half of each neighbour pooled) after which the prior weighs a quarter of ``prior_weight``.
_PRIOR_FADE = 20.0
#: A silence shorter than this (h: half an hour, less five minutes of the readings' clock) is not learned: it is a
#: pause between two draws of one use as a meter read more often than every half hour sees it, which a half-hourly
#: meter never shows. Learned, they made up half of a quarter-hourly meter's silences, and the share of silences a
#: long one outlasts, which the sensitivity is set in, smaller: the same elders' silence alerts came sooner and more
#: often (no_activity noise 0.39 per elder-month against 0.31 half-hourly, 150 simulated elders over 90 days), and a
#: meter's firmware moving it from 30 to 15 minutes made its elder's alerts so.
MIN_SILENCE_H = 25.0 / 60.0


def _plus_one_table() -> array:
    """``table[b]``: bits of (the float16 with bits ``b``) + 1, rounded to float16 as numpy does."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinity patterns stay what they are
        values = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64) + 1.0
        return array("H", values.astype(np.float16).view(np.uint16).tobytes())


#: Adding one silence to a histogram cell is a table lookup, exact as float16 arithmetic.
_PLUS_ONE = _plus_one_table()


def hour_of(ts: float, utc_offset_s: int) -> int:
    """Local hour of the day (0-23) of an epoch time."""
    return int((ts + utc_offset_s) % 86400.0) // 3600


class SilenceModel:
    """Survival of silences by start hour, learned online with forgetting.

    Parameters
    ----------
    half_life_days
        After this many days, a past silence counts half as much.
    prior_weight
        How many silences the population prior is worth. It fades as the
        elder's own silences accumulate.
    tail_fraction, tail_base_h
        Scale of the exponential tail past the longest silences seen: this
        share of that length plus ``tail_base_h`` hours. By default one hour
        whatever the length: how much longer than ever before a normal
        silence may last does not grow with its length (a night ends at the
        elder's rising time, not at a multiple of the night), and a share of
        the length gave nights the widest margin where false alerts are rarest
        (docs/detection-studies.md, "Outcomes as calibration").
    cap_hours
        Silences this long are absences or incidents, never learned as routine.

    Examples
    --------
    An elder who sleeps 22:00-06:30 and otherwise uses water every hour or two.

    >>> import random
    >>> rng = random.Random(7)
    >>> model = SilenceModel()
    >>> day = 86400.0
    >>> for d in range(60):
    ...     model.learn_one(d * day + 22 * 3600, 8.5 + rng.uniform(-0.5, 0.5), 0)
    ...     for start in range(7, 21, 2):
    ...         model.learn_one(d * day + start * 3600, rng.uniform(0.5, 1.8), 0)
    ...     model.decay(1.0)
    >>> model.refresh(1e-3)
    >>> round(model.alert_hours(22), 1)  # a silence from 22:00: only after a long night
    10.9
    >>> round(model.alert_hours(9), 1)  # from 09:00: a few hours are already unusual
    3.9
    >>> model.p_value(9, 1.0) > 0.3, model.p_value(9, 4.5) < 1e-3
    (True, True)
    """

    __slots__ = (
        "_alert",
        "_sensitivity",
        "cap_hours",
        "counts",
        "half_life_days",
        "longest",
        "n_learned",
        "prior_weight",
        "tail_base_h",
        "tail_fraction",
    )

    def __init__(
        self,
        half_life_days: float = 90.0,
        prior_weight: float = 10.0,
        tail_fraction: float = _DEFAULT_TAIL[0],
        tail_base_h: float = _DEFAULT_TAIL[1],
        cap_hours: float = 24.0,
    ) -> None:
        if half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        self.half_life_days = half_life_days
        self.prior_weight = prior_weight
        self.tail_fraction = tail_fraction
        self.tail_base_h = tail_base_h
        self.cap_hours = cap_hours
        # float16 halves the checkpoint and the memory; counts stay well inside its range.
        # Bit patterns, [start hour * N_BINS + bin]: see ``histogram`` for the numbers.
        self.counts = _NO_COUNTS[:]  # copies of templates: building arrays from lists was half a new meter's cost
        self.longest = _NO_LONGEST[:]  # longest recent silence per start hour (decays too)
        self.n_learned = 0
        self._alert = _NO_ALERT[:]
        self._sensitivity = 0.0

    def __getstate__(self) -> tuple[object, ...]:
        # The alert lengths are kept as refreshed at the start of the local day (192 bytes): recomputing
        # them on load from today's counts would make a reloaded model (another worker, a restart)
        # alert differently from one that stayed in memory.
        return slot_values(self, _STATE)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        restore_slots(self, state, _STATE, share=_SETTINGS | {"_sensitivity"})
        if (self.tail_fraction, self.tail_base_h) == _OLD_DEFAULT_TAIL:
            # A checkpoint from before session 7 holds the defaults of then: the meter takes today's tail
            # at its next refresh (every worker loads the same checkpoint, so all of them do).
            self.tail_fraction, self.tail_base_h = _DEFAULT_TAIL

    def histogram(self) -> np.ndarray:
        """Decayed counts of past silences, start hour x length bin (a float16 view of the state)."""
        return np.frombuffer(self.counts, dtype=np.float16).reshape(24, N_BINS)

    def learn_one(self, start_ts: float, hours: float, utc_offset_s: int) -> None:
        """Record a silence that began at ``start_ts`` and lasted ``hours`` (shorter than ``MIN_SILENCE_H``: none)."""
        if hours >= self.cap_hours or hours < MIN_SILENCE_H:
            return
        row = int((start_ts + utc_offset_s) % 86400.0) // 3600  # ``hour_of``, inlined: once per use
        cell = row * N_BINS + bisect_right(EDGES, hours)
        counts = self.counts
        counts[cell] = _PLUS_ONE[counts[cell]]
        longest = self.longest
        if hours > longest[row]:
            longest[row] = hours
        self.n_learned += 1

    def decay(self, days: float) -> None:
        """Forget: every past silence loses weight as ``days`` pass."""
        factor = 0.5 ** (days / self.half_life_days)
        counts = np.frombuffer(self.counts, dtype=np.float16)
        counts[:] = counts.astype(np.float32) * factor  # in float32, rounded to float16 on assignment
        longest = np.frombuffer(self.longest, dtype=np.float32)
        longest[:] = longest.astype(np.float64) * factor  # rounded once to float32, as element by element

    def survival(self) -> tuple[np.ndarray, np.ndarray]:
        """Survival at the bin lower edges for every start hour (24 x bins), and pooled weights."""
        # The daily refresh is some 60 numpy calls on 24 x 23 arrays, where each call's overhead is
        # the cost: the ufuncs are called directly (``sum`` and ``cumsum`` go through Python wrappers)
        # and shared terms are computed once, in the same order of operations, so the same bits.
        counts = np.frombuffer(self.counts, dtype=np.float16).astype(np.float64).reshape(24, N_BINS)
        half = 0.5 * counts[_RING]
        own = half[:-2] + counts + half[2:]
        n_own = np.add.reduce(own, axis=1, keepdims=True)
        # The prior speaks for a new meter and fades as the elder's own silences accumulate.
        weight = self.prior_weight * (_PRIOR_FADE / (_PRIOR_FADE + n_own)) ** 2
        pooled = own + weight * SILENCE_PRIOR
        total = np.add.reduce(pooled, axis=1)
        tail = np.add.accumulate(pooled[:, ::-1], axis=1)[:, ::-1]  # weight of silences >= each lower edge
        return tail / total[:, None], total

    def curves(self) -> np.ndarray:
        """``S(d | start hour)`` on the search grid (24 x grid): empirical part, then a tail."""
        surv, total = self.survival()
        log_s = np.log(np.maximum(surv, 1e-12))
        emp = np.exp(log_s[:, _LO] * (1.0 - _W) + log_s[:, _HI] * _W)
        # Anchor the tail where less than one silence is longer: beyond it the
        # data say nothing, and a longer silence gets rarer at scale ``tau``.
        backed = surv * total[:, None] >= 1.0
        last = N_BINS - 1 - np.argmax(backed[:, ::-1], axis=1)
        k = np.minimum(np.where(backed.any(axis=1), last + 1, 1), N_BINS - 1)
        anchor = _LOWER[k][:, None]
        s_anchor = np.maximum(surv[np.arange(24), k], 0.5 / total)[:, None]
        tau = self.tail_fraction * anchor + self.tail_base_h
        tail = s_anchor * np.exp(-np.maximum(_GRID - anchor, 0.0) / tau)
        return np.where(anchor >= _GRID, emp, np.maximum(np.minimum(emp, s_anchor), tail))

    def _curve(self, start_hour: int) -> np.ndarray:
        """Row ``start_hour`` of :meth:`curves`, by the same operations on that row alone.

        An alert message needs one start hour; the 24 rows on the fine grid cost as much as a refresh.
        """
        surv, total = self.survival()
        row, n = surv[start_hour], total[start_hour]
        log_s = np.log(np.maximum(row, 1e-12))
        emp = np.exp(log_s[_LO] * (1.0 - _W) + log_s[_HI] * _W)
        backed = row * n >= 1.0
        k = min(N_BINS - int(backed[::-1].argmax()), N_BINS - 1) if backed.any() else 1
        anchor = _LOWER[k]
        s_anchor = np.maximum(row[k], 0.5 / n)
        tau = self.tail_fraction * anchor + self.tail_base_h
        tail = s_anchor * np.exp(-np.maximum(_GRID - anchor, 0.0) / tau)
        return np.where(anchor >= _GRID, emp, np.maximum(np.minimum(emp, s_anchor), tail))

    def refresh(self, sensitivity: float) -> None:
        """Recompute the alert length of every start hour (once a day is enough).

        Solved on the bin edges and the tail formula rather than the fine grid:
        this runs once per meter and day, so it must stay in tens of microseconds.
        """
        self._sensitivity = sensitivity
        if self.n_learned == 0 and self.counts == _NO_COUNTS and self.longest == _NO_LONGEST:
            # A new meter (twice on its first reading, and again each day until it learns a
            # silence): the prior alone decides, the same for every meter with these settings.
            key = (sensitivity, self.prior_weight, self.tail_fraction, self.tail_base_h)
            alert = _PRIOR_ALERT.get(key)
            if alert is None:
                self._solve(sensitivity)
                if len(_PRIOR_ALERT) < 64 and 0.0 not in key:  # 0.0 and -0.0 are equal keys: not cached
                    _PRIOR_ALERT[key] = self._alert[:]
            else:
                self._alert[:] = alert
            return
        self._solve(sensitivity)

    def _solve(self, sensitivity: float) -> None:
        surv, total = self.survival()
        backed = surv * total[:, None] >= 1.0
        # k: the bin after the last one backed by a silence (1 when none is), at most the last bin.
        k = np.minimum(
            np.where(np.logical_or.reduce(backed, axis=1), N_BINS - backed[:, ::-1].argmax(axis=1), 1), N_BINS - 1
        )
        # The tail starts at the longest silence actually seen (neighbours pooled), not at
        # the bin edge above it: bins are an hour wide at night lengths.
        seen = np.frombuffer(self.longest, dtype=np.float32).astype(np.float64)
        ring = seen[_RING]
        seen = np.maximum(np.maximum(ring[:-2], seen), ring[2:])
        anchor = np.minimum(np.maximum(seen, _LOWER_BELOW[k]), _LOWER[k])
        tau = self.tail_fraction * anchor + self.tail_base_h
        d_tail = anchor + tau * self._tail_scales(surv[_ROWS, k], total, sensitivity)
        # First edge where the empirical survival is already below the sensitivity.
        below = surv <= sensitivity
        any_below = np.logical_or.reduce(below, axis=1)
        j = np.where(any_below, below.argmax(axis=1), N_BINS - 1)
        s_hi, s_lo = np.maximum(surv[_ROWS, j], 1e-12), np.maximum(surv[_ROWS, _BELOW[j]], 1e-12)
        frac = np.log(s_lo / sensitivity) / np.maximum(np.log(s_lo / s_hi), 1e-9)
        d_emp = _LOWER_BELOW[j] + np.minimum(np.maximum(frac, 0.0), 1.0) * _WIDTH_BELOW[j]
        # Still above the sensitivity at 24 h: only absences are that long, the model cannot
        # call such a silence rare; the safety net speaks instead.
        d_emp = np.where(any_below, d_emp, _MAX_ALERT_H)
        hours = np.where(d_emp <= anchor, d_emp, np.maximum(d_emp, d_tail))
        alert = np.frombuffer(self._alert, dtype=np.float64)  # written in place: no new array per refresh
        np.minimum(np.maximum(hours, _GRID[0]), _MAX_ALERT_H, out=alert)

    def _tail_scales(self, s_anchor: np.ndarray, seen: np.ndarray, sensitivity: float) -> np.ndarray:
        """Per start hour, how many of the tail's scales past its start the survival takes to fall to ``sensitivity``.

        The tail starts at the survival where the silences seen end, or at half a silence in ``seen`` (the prior's
        weight counted as silences seen), whichever is more: the fewer seen, the more margin.
        """
        return np.log(np.maximum(np.maximum(s_anchor, 0.5 / seen) / sensitivity, 1.0))

    def alert_hours(self, start_hour: int) -> float:
        """Silence length (hours) from this start hour that is rarer than the sensitivity."""
        return self._alert[start_hour]

    def p_value(self, start_hour: int, hours: float) -> float:
        """How often a silence from this hour lasted at least ``hours``."""
        return float(np.interp(hours, _GRID, self._curve(start_hour)))

    def explain(self, start_hour: int, hours: float) -> tuple[float, float]:
        """``(p_value, usual longest)`` for an alert message, from one survival curve."""
        curve = self._curve(start_hour)
        below = np.nonzero(curve <= 0.01)[0]
        usual = float(_GRID[below[0]]) if below.size else float(_GRID[-1])
        return float(np.interp(hours, _GRID, curve)), usual

    def share_ended_within(self, start_hour: int, hours: float) -> float:
        """Share of this elder's silences from this hour that ended within ``hours`` (for messages)."""
        return 1.0 - self.p_value(start_hour, hours)

    def longest_usual(self, start_hour: int, quantile: float = 0.99) -> float:
        """Length (hours) that ``quantile`` of silences from this hour stay under."""
        curve = self._curve(start_hour)
        below = np.nonzero(curve <= 1.0 - quantile)[0]
        return float(_GRID[below[0]]) if below.size else float(_GRID[-1])


#: What a checkpoint stores, in order; settings are shared between meters on load.
_SETTINGS = frozenset(("half_life_days", "prior_weight", "tail_fraction", "tail_base_h", "cap_hours"))
_STATE = (*sorted(_SETTINGS), "counts", "longest", "n_learned", "_sensitivity", "_alert")
