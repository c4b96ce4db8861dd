"""Detection thresholds: one set per elder, resolved from global, community and elder levels."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Tunable parameters of detection; the API exposes them to operators."""

    sensitivity: float = 1e-3  # alert when a silence this long is rarer than this
    ceiling_hours: float = 12.0  # safety net: under ceiling_litres in this many hours
    ceiling_litres: float = 10.0
    leak_flow_lpm: float = 0.3  # smallest steady flow treated as a leak
    daily_min_l: float = 10.0
    daily_max_l: float = 2000.0
    cold_start_days: float = 7.0  # until then: population prior plus fixed rules
    offline_hours: float = 6.0  # no reading for this long: meter_offline

    def replace(self, **changes: Any) -> Thresholds:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown thresholds: {sorted(unknown)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Thresholds(**values)
