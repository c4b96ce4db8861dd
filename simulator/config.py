"""Simulation settings: :class:`SimConfig`, explicit :class:`IncidentSpec`, and the default rates.

Rates are per elder (or meter) per 30 days unless the name says otherwise; every
one of them can be overridden through ``SimConfig`` so tests and benchmarks can
dial the amount of trouble up or down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

INCIDENT_KINDS = ("fall", "fall_tap_running", "leak", "tap_running", "death")
EVENT_KINDS = ("away", "family_visit", "illness", "frailty", "hospital")
FAULT_KINDS = (
    "offline",
    "duplicate",
    "out_of_order",
    "late",
    "register_reset",
    "glitch",
    "negative_step",
    "clock_drift",
    "low_battery",
    "malformed",
)

# Share of each kind among random incidents. Falls dominate (the reason the product
# exists); running water follows; deaths at home are rare but must be caught.
DEFAULT_INCIDENT_MIX: dict[str, float] = {
    "fall": 0.35,
    "fall_tap_running": 0.10,
    "leak": 0.25,
    "tap_running": 0.25,
    "death": 0.05,
}

# Life events per elder per 30 days. Nagano/Sakaki logged 1,124 non-use messages for
# 40 elders in 19 months (~1.5 per elder-month, mostly nights away and hospital stays,
# some late rising), so ~0.7 away spells a month (mostly one or two nights) fits.
DEFAULT_EVENT_RATES: dict[str, float] = {
    "away": 0.7,
    "family_visit": 0.8,
    "illness": 0.25,
    "hospital": 0.04,
    "frailty": 0.01,
}

# Meter faults per meter per 30 days, calibrated on the real DAIAD file (docs/simulator.md):
# it has ~12 gaps over 3 h per meter-month (most 4-6 h), 0.05% negative steps and about one
# 5,000 L/h jump per 100,000 intervals. Nearly half the outages lose only one or two readings.
DEFAULT_FAULT_RATES: dict[str, float] = {
    "offline": 25.0,
    "duplicate": 2.0,
    "out_of_order": 1.0,
    "late": 1.0,
    "register_reset": 0.03,
    "glitch": 0.05,
    "negative_step": 0.2,
    "clock_drift": 0.1,
    "low_battery": 0.05,
    "malformed": 0.5,
}


#: Zones that keep an offset of a fraction of an hour all year (no daylight saving time).
FRACTIONAL_OFFSET_ZONES: dict[float, str] = {
    -9.5: "Pacific/Marquesas",
    4.5: "Asia/Kabul",
    5.5: "Asia/Kolkata",
    5.75: "Asia/Kathmandu",
    6.5: "Asia/Yangon",
    8.75: "Australia/Eucla",
    9.5: "Australia/Darwin",
}


def zone_for_offset(offset_h: float) -> str:
    """A zone zoneinfo knows that keeps UTC offset ``offset_h`` all year: Shanghai for the default +8, a
    fixed-offset ``Etc`` zone for other whole hours (POSIX signs: UTC-5 is ``Etc/GMT+5``)."""
    if offset_h == 8:
        return "Asia/Shanghai"
    if offset_h == int(offset_h) and -12 <= offset_h <= 14:
        return f"Etc/GMT{-int(offset_h):+d}" if offset_h else "UTC"
    if offset_h in FRACTIONAL_OFFSET_ZONES:
        return FRACTIONAL_OFFSET_ZONES[offset_h]
    raise ValueError(f"no IANA zone keeps a UTC offset of {offset_h:g} h all year")


@dataclass(frozen=True)
class IncidentSpec:
    """An incident to place on purpose (on top of random ones).

    ``start_day`` is fractional days from the simulation start (local midnight);
    ``duration_h`` and ``flow_lpm`` default to a random draw from the kind's range.
    """

    elder: int
    kind: str
    start_day: float
    duration_h: float | None = None
    flow_lpm: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(f"unknown incident kind {self.kind!r}; expected one of {INCIDENT_KINDS}")


@dataclass
class SimConfig:
    """Everything :func:`simulator.simulate` needs; equal configs give equal output.

    >>> SimConfig(elders=3, days=2).interval_s
    1800
    """

    elders: int = 100
    days: int = 30
    seed: int = 0
    start: str = "2026-01-05"  # local date; the simulation starts at its midnight
    tz_offset_h: float = 8.0
    interval_min: int = 30
    random_incidents: bool = True
    random_events: bool = True
    faults: bool = True
    unit: str = "l"  # "l" or "m3" (register resolution is 1 L either way)
    incidents: list[IncidentSpec] = field(default_factory=list)
    daily_batches: bool = False
    incident_rate_per_120d: float = 0.5
    incident_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_INCIDENT_MIX))
    event_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_RATES))
    fault_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FAULT_RATES))
    hospital_after_fall_p: float = 0.5
    fall_found_h: tuple[float, float] = (24.0, 72.0)
    rephase_per_30d: float = 10.0  # meters shift their reading minute now and then (as the real ones do)
    # One stretch of an endless simulation (simulator.follow, `tapwatch simulate --follow`): stretch k > 0 draws
    # its own lives, use and faults for the same elders, and each meter's register goes on from where the
    # previous stretch left it (start_registers_l, one per elder; None: a new meter's random register).
    stretch: int = 0
    start_registers_l: list[float] | None = None

    def __post_init__(self) -> None:
        if self.elders < 1 or self.days < 1:
            raise ValueError("elders and days must be at least 1")
        if self.unit not in ("l", "m3"):
            raise ValueError(f"unit must be 'l' or 'm3', got {self.unit!r}")
        if 1440 % self.interval_min:
            raise ValueError("interval_min must divide a day (e.g. 15, 30, 60)")
        date.fromisoformat(self.start)
        zone_for_offset(self.tz_offset_h)  # the elders are registered in it
        if self.start_registers_l is not None and len(self.start_registers_l) != self.elders:
            raise ValueError(f"start_registers_l has {len(self.start_registers_l)} registers for {self.elders} elders")
        for spec in self.incidents:
            if not 0 <= spec.elder < self.elders:
                raise ValueError(f"incident for elder {spec.elder} but only {self.elders} elders")
        for name, table, known in (
            ("incident_mix", self.incident_mix, INCIDENT_KINDS),
            ("event_rates", self.event_rates, EVENT_KINDS),
            ("fault_rates", self.fault_rates, FAULT_KINDS),
        ):
            unknown = set(table) - set(known)
            if unknown:
                raise ValueError(f"{name}: unknown kinds {sorted(unknown)}")

    @property
    def interval_s(self) -> int:
        return self.interval_min * 60

    @property
    def tz_offset_s(self) -> int:
        return round(self.tz_offset_h * 3600)
