"""Simulated elders living alone and their smart water meters, with ground-truth labels.

Stands in for thousands of meters in tests, benchmarks and the demo: each elder
has an individual routine (rising, toilets, meals, showers, laundry...) with
weekday, seasonal and day-to-day variation; life events (away, family visits,
illness, frailty, hospital) and incidents (falls, leaks, taps left running,
death) change it; meters deliver a cumulative register on their own schedule
with realistic faults. Everything is labelled; output is deterministic per seed.

>>> res = simulate(SimConfig(elders=3, days=2, seed=1))
>>> len(res.meter_ids), res.ts.dtype.name
(3, 'float64')
"""

from simulator.config import (
    DEFAULT_EVENT_RATES,
    DEFAULT_FAULT_RATES,
    DEFAULT_INCIDENT_MIX,
    EVENT_KINDS,
    FAULT_KINDS,
    INCIDENT_KINDS,
    IncidentSpec,
    SimConfig,
)
from simulator.core import demo_config, simulate
from simulator.labels import Label, load_labels
from simulator.result import SimResult

__all__ = [
    "DEFAULT_EVENT_RATES",
    "DEFAULT_FAULT_RATES",
    "DEFAULT_INCIDENT_MIX",
    "EVENT_KINDS",
    "FAULT_KINDS",
    "INCIDENT_KINDS",
    "IncidentSpec",
    "Label",
    "SimConfig",
    "SimResult",
    "demo_config",
    "load_labels",
    "simulate",
]
