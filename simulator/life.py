"""An elder's calendar: incidents and life events, their labels, and what they do to water use.

Everything here works in seconds from the simulation start (local midnight of
day 0). The output, :class:`Life`, is consumed by :mod:`simulator.household`
(day modifiers and absences) and :mod:`simulator.meter` (continuous flows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.config import EVENT_KINDS, INCIDENT_KINDS, IncidentSpec, SimConfig
from simulator.population import Traits

DAY = 86400.0
HOUR = 3600.0
GAP_S = 6 * HOUR  # spacing kept between occupying spans so labels do not run into each other
ABSENT_KINDS = ("away", "hospital", "fall", "fall_tap_running", "death")


@dataclass
class RawLabel:
    kind: str
    category: str
    start: float
    end: float | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Life:
    """Labels plus their effect on use. Arrays have one entry per simulated day (+1 spill-over day)."""

    labels: list[RawLabel]
    absent: list[tuple[float, float]]  # no normal use at all inside these spans
    flows: list[tuple[float, float, float]]  # (start, end, litres per second) on top of normal use
    act_mult: np.ndarray
    wake_shift_h: np.ndarray
    bed_shift_h: np.ndarray
    night_mult: np.ndarray
    shower_mult: np.ndarray
    guests: np.ndarray


class _Calendar:
    """Spans that exclude each other (you cannot fall while away)."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def free(self, start: float, end: float) -> bool:
        return all(end + GAP_S <= s or start >= e + GAP_S for s, e in self.spans)

    def take(self, start: float, end: float) -> None:
        self.spans.append((start, end))


def plan_life(cfg: SimConfig, traits: Traits, elder: int, rng: np.random.Generator) -> Life:
    """Place explicit and random incidents, then life events, for one elder."""
    horizon = cfg.days * DAY
    cal = _Calendar()
    labels: list[RawLabel] = []
    flows: list[tuple[float, float, float]] = []
    for spec in cfg.incidents:
        if spec.elder == elder:
            _add_incident(cfg, spec.kind, spec.start_day * DAY, spec, traits, rng, cal, labels, flows, force=True)
    if cfg.random_incidents:
        _random_incidents(cfg, traits, rng, cal, labels, flows)
    if cfg.random_events:
        _random_events(cfg, rng, cal, labels)
    death = min((lab.start for lab in labels if lab.kind == "death"), default=math.inf)
    if math.isfinite(death):  # nothing happens to the dead: drop what would start later
        labels = [lab for lab in labels if lab.kind == "death" or lab.start < death]
        for lab in labels:
            if lab.end is not None and lab.end > death and lab.kind != "death":
                lab.end, lab.details["cut_by_death"] = death, True
        flows = [(s, min(e, death) if e > death else e, r) for s, e, r in flows if s < death]
    labels = [lab for lab in labels if lab.start < horizon]  # e.g. a hospital stay after a fall found too late
    for lab in labels:
        if lab.end is not None and lab.end > horizon:
            lab.end, lab.details["open_at_end"] = horizon, True
    return _effects(cfg, traits, labels, flows, rng)


def _incident_window(cfg: SimConfig) -> tuple[float, float]:
    """Random incidents avoid the first days (no routine learned yet) and the last hours."""
    horizon = cfg.days * DAY
    lo = min(7 * DAY, 0.25 * horizon)
    hi = horizon - min(DAY, 0.1 * horizon)
    return lo, max(hi, lo + HOUR)


def _random_incidents(
    cfg: SimConfig,
    traits: Traits,
    rng: np.random.Generator,
    cal: _Calendar,
    labels: list[RawLabel],
    flows: list[tuple[float, float, float]],
) -> None:
    kinds = [k for k in INCIDENT_KINDS if cfg.incident_mix.get(k, 0.0) > 0]
    if not kinds:
        return
    weights = np.array([cfg.incident_mix[k] for k in kinds])
    count = int(rng.poisson(cfg.incident_rate_per_120d * cfg.days / 120.0))
    lo, hi = _incident_window(cfg)
    for _ in range(count):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        for _attempt in range(20):
            start = _incident_start(kind, lo, hi, traits, rng)
            if _add_incident(cfg, kind, start, None, traits, rng, cal, labels, flows, force=False):
                break


def _incident_start(kind: str, lo: float, hi: float, traits: Traits, rng: np.random.Generator) -> float:
    start = float(rng.uniform(lo, hi))
    if kind in ("fall_tap_running", "tap_running"):
        # Someone has to open the tap: move the moment into that day's waking hours.
        day = math.floor(start / DAY)
        start = day * DAY + float(rng.uniform(traits.wake_h + 0.3, traits.bed_h)) * HOUR
    return start


def _add_incident(
    cfg: SimConfig,
    kind: str,
    start: float,
    spec: IncidentSpec | None,
    traits: Traits,
    rng: np.random.Generator,
    cal: _Calendar,
    labels: list[RawLabel],
    flows: list[tuple[float, float, float]],
    force: bool,
) -> bool:
    dur_h = spec.duration_h if spec is not None else None
    lpm = spec.flow_lpm if spec is not None else None
    details: dict[str, Any] = {}
    end: float | None
    if kind == "fall":
        end = start + (dur_h if dur_h is not None else float(rng.uniform(*cfg.fall_found_h))) * HOUR
    elif kind == "fall_tap_running":
        end = start + (dur_h if dur_h is not None else float(rng.uniform(2.0, 12.0))) * HOUR
        lpm = lpm if lpm is not None else float(rng.uniform(2.0, 8.0))
    elif kind == "tap_running":
        end = start + (dur_h if dur_h is not None else float(rng.uniform(1.0, 6.0))) * HOUR
        lpm = lpm if lpm is not None else float(rng.uniform(5.0, 12.0))
    elif kind == "leak":
        end = start + (dur_h if dur_h is not None else float(rng.uniform(2.0, 14.0)) * 24.0) * HOUR
        # Log-uniform: small running cisterns are far more common than burst pipes.
        lpm = lpm if lpm is not None else float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
    else:  # death
        end = None
    span_end = math.inf if end is None else end
    if kind != "leak":  # a leak needs nobody at home; everything else excludes other spans
        if not force and not cal.free(start, span_end):
            return False
        cal.take(start, span_end)
    if lpm is not None:
        details["flow_lpm"] = round(lpm, 3)
        flows.append((start, span_end, lpm / 60.0))
    if end is not None and kind in ("fall", "fall_tap_running"):
        details["found"] = True
    labels.append(RawLabel(kind, "incident", start, end, details))
    if kind in ("fall", "fall_tap_running") and end is not None and rng.random() < cfg.hospital_after_fall_p:
        stay = float(rng.uniform(2.0, 14.0)) * DAY
        cal.take(end, end + stay)
        labels.append(RawLabel("hospital", "event", end, end + stay, {"after": kind}))
    return True


def _random_events(cfg: SimConfig, rng: np.random.Generator, cal: _Calendar, labels: list[RawLabel]) -> None:
    horizon = cfg.days * DAY
    for kind in EVENT_KINDS:
        rate = cfg.event_rates.get(kind, 0.0)
        for _ in range(int(rng.poisson(rate * cfg.days / 30.0))):
            for _attempt in range(20):
                start, end, details = _event_span(kind, horizon, rng)
                if kind == "frailty" or cal.free(start, end):
                    if kind != "frailty":
                        cal.take(start, end)
                    labels.append(RawLabel(kind, "event", start, end, details))
                    break


def _event_span(kind: str, horizon: float, rng: np.random.Generator) -> tuple[float, float, dict[str, Any]]:
    day = float(rng.integers(0, max(1, int(horizon / DAY))))
    if kind == "away":
        nights = int(rng.integers(1, 3)) if rng.random() < 0.8 else int(rng.integers(3, 11))
        start = (day + rng.uniform(8, 16) / 24) * DAY
        end = (day + nights + rng.uniform(10, 20) / 24) * DAY
        return start, end, {"nights": nights, "reason": "visiting family" if rng.random() < 0.7 else "travel"}
    if kind == "family_visit":
        start = (day + rng.uniform(10, 18) / 24) * DAY
        end = start + float(rng.uniform(1, 4)) * DAY
        return start, end, {"guests": int(rng.integers(1, 4))}
    if kind == "illness":
        start = day * DAY + rng.uniform(5, 9) * HOUR
        return start, start + float(rng.uniform(3, 10)) * DAY, {}
    if kind == "hospital":
        start = day * DAY + rng.uniform(0, 24) * HOUR
        end = (math.floor(start / DAY) + rng.uniform(3, 20)) * DAY
        end = math.floor(end / DAY) * DAY + rng.uniform(9, 17) * HOUR
        return start, end, {}
    start = day * DAY
    weeks = float(rng.uniform(4, 12))
    return start, start + weeks * 7 * DAY, {"weeks": round(weeks, 1)}


def _effects(
    cfg: SimConfig,
    traits: Traits,
    labels: list[RawLabel],
    flows: list[tuple[float, float, float]],
    rng: np.random.Generator,
) -> Life:
    n = cfg.days + 1
    days = np.arange(n, dtype=float)
    act = np.ones(n)
    wake = np.zeros(n)
    bed = np.zeros(n)
    night = np.ones(n)
    shower = np.ones(n)
    guests = np.zeros(n, dtype=np.int64)
    absent: list[tuple[float, float]] = []
    for lab in labels:
        end = math.inf if lab.end is None else lab.end
        if lab.kind in ABSENT_KINDS:
            absent.append((lab.start, end))
        hit = (days * DAY < end) & ((days + 1) * DAY > lab.start)
        if lab.kind == "illness":
            act[hit] *= 0.55
            wake[hit] += float(rng.uniform(1.0, 2.5))
            night[hit] *= 1.5
            shower[hit] *= 0.2
        elif lab.kind == "family_visit":
            guests[hit] += int(lab.details["guests"])
        elif lab.kind == "frailty":
            # A slow, lasting decline: ramps over the labelled weeks and stays after.
            progress = np.clip((days * DAY - lab.start) / (end - lab.start), 0.0, 1.0)
            depth = float(rng.uniform(0.3, 0.45))
            shift = float(rng.uniform(1.0, 2.0))
            lab.details.update({"activity_drop": round(depth, 2), "rising_later_h": round(shift, 2)})
            act *= 1.0 - depth * progress
            wake += shift * progress
            bed -= 0.5 * progress
            shower *= 1.0 - 0.4 * progress
    return Life(labels, absent, flows, act, wake, bed, night, shower, guests)
