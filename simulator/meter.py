"""One smart meter: a cumulative register read on its own jittered schedule, and its faults.

The register integrates the household's events and continuous flows exactly
(1 L resolution, like the real meters), then faults change what is delivered:
readings lost (offline, low battery), repeated, delayed, reordered, wrong
(glitch, negative step, reset, drifting clock) or unparsable (malformed).
Times are seconds from the simulation start; :mod:`simulator.core` adds the epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.config import SimConfig
from simulator.household import Events
from simulator.life import DAY, HOUR, RawLabel

MALFORMED_VARIANTS = ("no_offset", "empty_total", "negative_total", "bad_ts", "truncated")


@dataclass
class MeterOut:
    """Delivered rows of one meter, in delivery order, plus fault labels and the true usage grid."""

    ts: np.ndarray  # reported reading time (a drifting clock reports it wrong)
    total_l: np.ndarray  # register as reported; NaN where the delivery is malformed
    delivered_at: np.ndarray
    battery_pct: np.ndarray
    rssi: np.ndarray
    malformed: np.ndarray  # 0 valid, else 1 + index into MALFORMED_VARIANTS
    message: np.ndarray  # rows with the same id travel in one message (daily batches)
    labels: list[RawLabel]
    usage: np.ndarray  # true use per grid interval, float32
    end_register_l: float = 0.0  # the register at the horizon (faults included): a next stretch starts there


def cumulative(events: Events, flows: list[tuple[float, float, float]], t: np.ndarray) -> np.ndarray:
    """Litres used from the start up to each time in ``t`` (exact for non-overlapping events).

    An event still running when the next one starts counts as finished then, which
    keeps the result non-decreasing; continuous flows are added on top.

    >>> ev = Events(np.array([0.0, 100.0]), np.array([10.0, 10.0]), np.array([5.0, 7.0]))
    >>> cumulative(ev, [(200.0, 300.0, 0.5)], np.array([0.0, 5.0, 50.0, 105.0, 250.0, 1000.0])).tolist()
    [0.0, 2.5, 5.0, 8.5, 37.0, 62.0]
    """
    # A zero-volume event far in the past makes every lookup valid (no masking).
    start = np.concatenate([[-1e18], events.start])
    end = start + np.concatenate([[1.0], events.dur])
    rate = np.concatenate([[0.0], events.vol / events.dur])
    cum = np.cumsum(np.concatenate([[0.0], events.vol]))
    j = np.searchsorted(start, t, side="right") - 1
    # t >= start[j], so at most the whole event is still to come: no upper clip needed.
    out = cum[j] - rate[j] * np.maximum(end[j] - t, 0.0)
    for start_s, end_s, lps in flows:
        out += lps * np.clip(t - start_s, 0.0, end_s - start_s)
    return out


def simulate_meter(
    cfg: SimConfig,
    events: Events,
    flows: list[tuple[float, float, float]],
    rng: np.random.Generator,
    start_register_l: float | None = None,
) -> MeterOut:
    """One meter's delivered rows; its register starts at ``start_register_l``, else at a random reading."""
    interval = cfg.interval_s
    n = cfg.days * 86400 // interval
    grid = np.arange(n + 1, dtype=float) * interval
    t = grid[:n] + _phases(cfg, n, rng) + rng.integers(-6, 7, n)  # own schedule, seconds of jitter
    both = cumulative(events, flows, np.concatenate([t, grid]))  # one pass for readings and ground truth
    drawn = float(rng.uniform(2e4, 1.5e6))  # drawn either way: the draws after it stay the same
    value = np.floor((drawn if start_register_l is None else start_register_l) + both[:n])
    usage = np.diff(both[n:]).astype(np.float32)
    battery = np.clip(float(rng.uniform(55, 100)) - 0.01 * t / DAY, 20, 100)
    rssi = np.clip(round(rng.normal(-95, 8)) + rng.integers(-4, 5, n), -127, -40)
    state = _FaultState(cfg, rng, t, value, battery)
    if cfg.faults:
        state.apply_all(events, flows)
    out = state.deliver(rssi, usage)
    # The last reading as faults left it (a reset or a step back carries on; a glitch never sits there), plus
    # the water used between it and the horizon.
    out.end_register_l = float(state.value[-1]) + float(both[-1] - both[n - 1])
    return out


def _phases(cfg: SimConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Offset of each reading from the grid: a random minute, re-chosen nearby now and then.

    Real meters read at an arbitrary minute that shifts occasionally, which gives the
    odd 10-50 minute interval; the offset stays within one interval, so no drift builds up.
    """
    interval = cfg.interval_s
    shifts = np.sort(rng.integers(1, n, int(rng.poisson(cfg.rephase_per_30d * cfg.days / 30.0))))
    steps = (rng.uniform(-0.5, 0.5, len(shifts)) * interval).tolist()
    values = [float(rng.integers(60, interval - 60))]
    for step in steps:  # a bounded random walk: a few hundred scalars, cheaper than numpy calls
        values.append(min(max(values[-1] + step, 60.0), interval - 60.0))
    lengths = np.diff(np.concatenate([[0], shifts, [n]]))
    return np.round(np.repeat(values, lengths))


class _FaultState:
    """Applies each fault kind to free readings and records its label."""

    def __init__(
        self, cfg: SimConfig, rng: np.random.Generator, t: np.ndarray, value: np.ndarray, battery: np.ndarray
    ) -> None:
        self.cfg, self.rng, self.t = cfg, rng, t
        self.n = len(t)
        self.value = value
        self.ts = t.copy()
        self.battery = battery
        self.taken = np.zeros(self.n, dtype=bool)
        self.dropped = np.zeros(self.n, dtype=bool)
        self.delay = rng.uniform(2.0, 40.0, self.n)  # network latency
        self.own_message = np.zeros(self.n, dtype=bool)
        self.duplicated = np.zeros(self.n, dtype=bool)
        self.malformed = np.zeros(self.n, dtype=np.int8)
        self.labels: list[RawLabel] = []
        self.register_faults: list[tuple[int, str]] = []  # (reading, kind), applied in time order at the end
        self.battery_windows: list[tuple[int, int]] = []

    def apply_all(self, events: Events, flows: list[tuple[float, float, float]]) -> None:
        # Window faults first (they need long free stretches), point faults after.
        for _ in range(self._count("low_battery")):
            self._low_battery()
        for _ in range(self._count("clock_drift")):
            self._clock_drift()
        self._offline(self._count("offline"))
        kinds: list[tuple[str, Callable[[], None]]] = [
            ("late", self._late),
            ("register_reset", self._reset),
            ("negative_step", self._negative_step),
            ("glitch", self._glitch),
            ("out_of_order", self._out_of_order),
            ("duplicate", self._duplicate),
            ("malformed", self._malformed),
        ]
        for kind, apply in kinds:
            for _ in range(self._count(kind)):
                apply()
        self._apply_register_faults(events, flows)
        self._apply_battery()

    def _count(self, kind: str) -> int:
        return int(self.rng.poisson(self.cfg.fault_rates.get(kind, 0.0) * self.cfg.days / 30.0))

    def _pick(self, length: int, margin: int = 2) -> int | None:
        """First index of ``length`` free readings (with ``margin`` free around), or None."""
        for _ in range(30):
            k = int(self.rng.integers(margin, max(margin + 1, self.n - length - margin)))
            lo, hi = k - margin, k + length + margin
            if hi <= self.n and not self.taken[lo:hi].any():
                self.taken[k : k + length] = True
                return k
        return None

    def _end_of(self, k: int) -> float:
        """Label end for a window ending before reading k: that reading's time (or the horizon)."""
        return float(self.t[k]) if k < self.n else float(self.cfg.days * DAY)

    def _offline(self, count: int) -> None:
        """All outages at once (they are the most frequent fault: ~20 a month)."""
        rng = self.rng
        u = rng.random(count)
        # Mostly brief radio outages; the real file's typical gap is 4-6 h; a few last days.
        hours = np.select(
            [u < 0.45, u < 0.88, u < 0.98],
            [rng.uniform(0.5, 1.0, count), rng.uniform(3, 6, count), rng.uniform(6, 24, count)],
            rng.uniform(24, 120, count),
        )
        lengths = np.maximum(1, np.round(hours * HOUR / self.cfg.interval_s)).astype(int)
        starts = rng.integers(2, max(3, self.n - 2), count)
        order = np.argsort(starts, kind="stable")
        # Keep outages clear of the long windows placed before them, then of each other.
        ks, ls = starts[order], lengths[order]
        ends = np.minimum(ks + ls + 2, self.n)
        busy = np.concatenate([[0], np.cumsum(self.taken)])
        clear = (busy[ends] == busy[ks - 2]) & (ks + ls + 2 <= self.n)
        free_until = 0
        kept: list[tuple[int, int]] = []
        for k, length in zip(ks[clear].tolist(), ls[clear].tolist(), strict=True):
            if k - 2 >= free_until:
                kept.append((k, length))
                free_until = k + length + 2
        if not kept:
            return
        kk, kl = np.array(kept).T
        edge = np.zeros(self.n + 1, dtype=np.int32)
        edge[kk] += 1
        edge[kk + kl] -= 1
        out = np.cumsum(edge[:-1]) > 0
        self.taken |= out
        self.dropped |= out
        times = np.append(self.t, float(self.cfg.days * DAY))
        self.labels.extend(
            RawLabel("offline", "fault", a, b, {"readings_lost": n})
            for a, b, n in zip(times[kk].tolist(), times[kk + kl].tolist(), kl.tolist(), strict=True)
        )

    def _low_battery(self) -> None:
        length = int(self.rng.uniform(3, 20) * DAY / self.cfg.interval_s)
        k = self._pick(length)
        if k is None:
            return
        # A dying battery skips transmissions; the battery is replaced at the end.
        lost = self.rng.random(length) < 0.3
        self.dropped[k : k + length] |= lost
        self.battery_windows.append((k, length))
        self.labels.append(
            RawLabel(
                "low_battery",
                "fault",
                float(self.t[k]),
                self._end_of(k + length),
                {"readings_lost": int(lost.sum())},
            )
        )

    def _apply_battery(self) -> None:
        for k, length in sorted(self.battery_windows):
            self.battery[k : k + length] = np.linspace(15.0, 3.0, length)
            fresh = self.t[k + length :] - self.t[min(k + length, self.n - 1)]
            self.battery[k + length :] = 100.0 - 0.01 * fresh / DAY  # new battery, slow decline again

    def _clock_drift(self) -> None:
        length = int(self.rng.uniform(1, 10) * DAY / self.cfg.interval_s)
        k = self._pick(length)
        if k is None:
            return
        rate = float(self.rng.uniform(30, 600)) * float(self.rng.choice([-1.0, 1.0]))  # seconds per day
        span = self.t[k : k + length] - self.t[k]
        self.ts[k : k + length] = np.round(self.t[k : k + length] + rate * span / DAY)
        self.labels.append(
            RawLabel(
                "clock_drift",
                "fault",
                float(self.t[k]),
                self._end_of(k + length),
                {
                    "drift_s_per_day": round(rate, 1),
                    "max_drift_s": round(abs(rate) * float(span[-1]) / DAY, 1),
                },
            )
        )

    def _late(self) -> None:
        length = int(self.rng.integers(1, 13))
        k = self._pick(length)
        if k is not None:
            # Held back longer than the block spans: newer readings arrive before it does.
            delay = float(self.t[k + length - 1] - self.t[k]) + float(self.rng.uniform(2, 24)) * HOUR
            self.delay[k : k + length] += delay
            self.own_message[k : k + length] = True
            self.labels.append(
                RawLabel(
                    "late",
                    "fault",
                    float(self.t[k]),
                    float(self.t[k + length - 1]),
                    {"delay_s": round(delay), "readings": length},
                )
            )

    def _reset(self) -> None:
        k = self._pick(1, margin=3)
        if k is not None:
            self.register_faults.append((k, "register_reset"))

    def _negative_step(self) -> None:
        k = self._pick(1)
        if k is not None:
            self.register_faults.append((k, "negative_step"))

    def _glitch(self) -> None:
        k = self._pick(1)
        if k is not None:
            self.register_faults.append((k, "glitch"))

    def _apply_register_faults(self, events: Events, flows: list[tuple[float, float, float]]) -> None:
        """Change the register in time order, so a later fault sees what the earlier ones did."""
        v = self.value
        for k, kind in sorted(self.register_faults):
            at = float(self.t[k])
            if kind == "register_reset":  # meter replaced between two readings; the new one starts near 0
                if v[k - 1] < 1000:
                    continue  # nobody replaces a meter that was installed days ago
                swap = at - float(self.rng.uniform(60, self.cfg.interval_s - 60))
                base = cumulative(events, flows, np.array([swap]))[0]
                old = float(v[k - 1])
                v[k:] = np.floor(float(self.rng.uniform(0, 5)) + cumulative(events, flows, self.t[k:]) - base)
                details: dict[str, float] = {"old_total_l": old, "new_total_l": float(v[k])}
            elif kind == "negative_step":  # the register steps back below the previous reading, and stays
                step = float(v[k] - v[k - 1]) + float(self.rng.integers(5, 101))
                if v[k] - step < 0:
                    continue
                v[k:] -= step
                details = {"step_l": -step, "below_previous_l": float(v[k] - v[k - 1])}
            else:  # glitch: half like the real file's +-248 kL single-reading jumps, half smaller
                size = round(
                    float(self.rng.uniform(1e5, 3e5) if self.rng.random() < 0.5 else self.rng.uniform(500, 5000))
                )
                sign = -1.0 if self.rng.random() < 0.3 and v[k] > size else 1.0
                v[k] += sign * size
                details = {"offset_l": sign * size}
            self.labels.append(RawLabel(kind, "fault", at, at, details))

    def _out_of_order(self) -> None:
        k = self._pick(2)
        if k is not None:
            self.delay[k] = self.t[k + 1] - self.t[k] + self.delay[k + 1] + float(self.rng.uniform(5, 300))
            self.own_message[k] = True
            self.labels.append(RawLabel("out_of_order", "fault", float(self.t[k]), float(self.t[k + 1]), {}))

    def _duplicate(self) -> None:
        k = self._pick(1)
        if k is not None:
            self.duplicated[k] = True
            self.labels.append(RawLabel("duplicate", "fault", float(self.t[k]), float(self.t[k]), {}))

    def _malformed(self) -> None:
        k = self._pick(1)
        if k is not None:
            code = int(self.rng.integers(len(MALFORMED_VARIANTS)))
            self.malformed[k] = code + 1
            self.labels.append(
                RawLabel(
                    "malformed",
                    "fault",
                    float(self.t[k]),
                    float(self.t[k]),
                    {"variant": MALFORMED_VARIANTS[code]},
                )
            )

    def deliver(self, rssi: np.ndarray, usage: np.ndarray) -> MeterOut:
        delivered = self.t + self.delay
        message = np.arange(self.n, dtype=np.int32)
        if self.cfg.daily_batches:
            # One upload a night with the previous local day's 48 readings, in order.
            upload = float(self.rng.uniform(0.5, 4.0)) * HOUR
            day = np.floor(self.t / DAY)
            batch = ~self.own_message
            delivered[batch] = (day[batch] + 1) * DAY + upload + np.arange(self.n)[batch] * 1e-3
            message[batch] = day[batch].astype(np.int32)
            message[~batch] = self.n + np.arange(int((~batch).sum()))
        keep = ~self.dropped
        idx = np.flatnonzero(keep)
        dup = np.flatnonzero(self.duplicated & keep)
        rows = np.concatenate([idx, dup])
        when = np.concatenate([delivered[idx], delivered[dup] + self.rng.uniform(1.0, 600.0, len(dup))])
        msg = np.concatenate([message[idx], 2 * self.n + np.arange(len(dup))])
        order = np.argsort(when, kind="stable")
        rows, when, msg = rows[order], when[order], msg[order]
        total = self.value[rows].astype(float)
        code = self.malformed[rows]
        total[code > 0] = np.nan
        return MeterOut(
            ts=self.ts[rows],
            total_l=total,
            delivered_at=when,
            battery_pct=np.round(self.battery[rows]).astype(np.uint8),
            rssi=rssi[rows].astype(np.int8),
            malformed=code,
            message=msg,
            labels=self.labels,
            usage=usage,
        )
