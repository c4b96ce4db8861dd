"""Run a simulation: :func:`simulate` (elders -> lives -> use events -> meters) and :func:`demo_config`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from core.progress import Progress
from simulator.config import IncidentSpec, SimConfig, zone_for_offset
from simulator.household import usage_events
from simulator.labels import Label
from simulator.life import RawLabel, plan_life
from simulator.meter import MeterOut, simulate_meter
from simulator.population import draw_traits, registry_entry
from simulator.result import SimResult

# Independent random streams per elder, so elder i's life does not change when the
# number of elders changes or faults are switched off.
STREAM_TRAITS, STREAM_LIFE, STREAM_USE, STREAM_METER = range(4)


def start_epoch(cfg: SimConfig) -> float:
    """Epoch seconds of local midnight at the start date.

    >>> start_epoch(SimConfig(start="2026-01-05", tz_offset_h=8))
    1767542400.0
    """
    midnight = datetime.fromisoformat(cfg.start).replace(tzinfo=UTC)
    return (midnight - timedelta(seconds=cfg.tz_offset_s)).timestamp()


def tz_name(offset_h: float) -> str:
    """The zone the elders are registered in: one zoneinfo knows that keeps ``offset_h`` all year.

    ``elders.json`` carries it; a name zoneinfo does not know is refused by ``tapwatch register``
    and read on the default zone's clock by the engine (:func:`engine.localtime.meter_zone`).

    >>> tz_name(8), tz_name(-5), tz_name(0), tz_name(5.5)
    ('Asia/Shanghai', 'Etc/GMT+5', 'UTC', 'Asia/Kolkata')
    """
    return zone_for_offset(offset_h)


def simulate(cfg: SimConfig, progress: Progress | None = None) -> SimResult:
    """Simulate ``cfg.elders`` elders for ``cfg.days`` days; deterministic for ``cfg.seed``.

    ``progress`` counts the elders done (``tapwatch simulate`` and ``eval`` show it on a terminal).

    >>> res = simulate(SimConfig(elders=2, days=3, seed=7))
    >>> res.meter_ids, len(res.elders), res.usage.shape
    (['WM000001', 'WM000002'], 2, (2, 144))
    >>> bool((res.usage >= 0).all()) and 60 < float(res.usage.sum()) / 6 < 400
    True
    """
    t0 = start_epoch(cfg)
    width = max(6, len(str(cfg.elders)))
    meter_ids = [f"WM{i + 1:0{width}d}" for i in range(cfg.elders)]
    elders: list[dict[str, Any]] = []
    labels: list[Label] = []
    per_meter = cfg.days * 86400 // cfg.interval_s
    rows = _Rows(cfg.elders * (per_meter + per_meter // 200 + 8))
    usage = np.empty((cfg.elders, per_meter), dtype=np.float32)
    tz = tz_name(cfg.tz_offset_h)
    end_registers: list[float] = []
    for i, meter_id in enumerate(meter_ids):
        # The elders (traits, registry) are the same in every stretch; what happens to them is drawn anew.
        rng_traits = np.random.default_rng([cfg.seed, i, STREAM_TRAITS])
        rng_life, rng_use, rng_meter = (
            np.random.default_rng([cfg.seed, i, stream, *([cfg.stretch] if cfg.stretch else [])])
            for stream in (STREAM_LIFE, STREAM_USE, STREAM_METER)
        )
        traits = draw_traits(rng_traits)
        elders.append(registry_entry(i, meter_id, tz, rng_traits))
        life = plan_life(cfg, traits, i, rng_life)
        events = usage_events(traits, life, cfg.start, rng_use)
        register = None if cfg.start_registers_l is None else cfg.start_registers_l[i]
        out = simulate_meter(cfg, events, life.flows, rng_meter, register)
        rows.add(out, t0)
        usage[i] = out.usage
        end_registers.append(out.end_register_l)
        labels.extend(_labels(meter_id, life.labels + out.labels, t0))
        if progress is not None:
            progress.advance()
    if progress is not None:
        progress.close()
    return SimResult(
        config=cfg,
        start_ts=t0,
        meter_ids=meter_ids,
        elders=elders,
        labels=labels,
        meter_idx=np.repeat(np.arange(cfg.elders, dtype=np.int32), rows.meter_counts),
        ts=rows.get("ts"),
        total_l=rows.get("total_l"),
        delivered_at=rows.get("delivered_at"),
        battery_pct=rows.get("battery_pct"),
        rssi=rows.get("rssi"),
        malformed=rows.get("malformed"),
        message=rows.get("message"),
        usage=usage,
        end_registers_l=end_registers,
    )


def _labels(meter_id: str, raw: list[RawLabel], t0: float) -> list[Label]:
    """One meter's labels in time order (meters come in order, so the whole list is sorted)."""
    raw = sorted(raw, key=lambda r: (r.start, r.kind))
    return [
        Label(meter_id, r.kind, r.category, t0 + r.start, None if r.end is None else t0 + r.end, r.details) for r in raw
    ]


class _Rows:
    """Delivered rows of all meters in preallocated arrays (one copy, no big concatenation)."""

    FIELDS = (
        ("ts", np.float64),
        ("total_l", np.float64),
        ("delivered_at", np.float64),
        ("battery_pct", np.uint8),
        ("rssi", np.int8),
        ("malformed", np.int8),
        ("message", np.int32),
    )

    def __init__(self, capacity: int) -> None:
        self.size = 0
        self.meter_counts: list[int] = []
        self.arrays = {name: np.empty(capacity, dtype=dtype) for name, dtype in self.FIELDS}

    def add(self, out: MeterOut, t0: float) -> None:
        k = len(out.ts)
        if self.size + k > len(self.arrays["ts"]):
            grow = max(2 * len(self.arrays["ts"]), self.size + k)
            self.arrays = {name: np.resize(arr, grow) for name, arr in self.arrays.items()}
        end = self.size + k
        for name, _ in self.FIELDS:
            self.arrays[name][self.size : end] = getattr(out, name)
        for name in ("ts", "delivered_at"):  # meters work from the start; files and MQTT need epochs
            part = self.arrays[name][self.size : end]
            np.add(part, t0, out=part)
        self.size = end
        self.meter_counts.append(k)

    def get(self, name: str) -> np.ndarray:
        return self.arrays[name][: self.size]


def demo_config(
    start: str | None = None,
    days: int = 3,
    elders: int = 20,
    seed: int = 20261123,
    history_days: float = 1.0,
    fall_elder: int = 3,
    fall_hour: float = 8.5,
) -> SimConfig:
    """About 20 elders: ``history_days`` of normal history, then live; one elder falls
    ``fall_hour`` hours into the live part's first day (after they have risen).

    No random incidents, life events or faults, so the demo's one alert is the fall.

    >>> cfg = demo_config(start="2026-11-20")
    >>> [(s.elder, s.kind, s.start_day) for s in cfg.incidents]
    [(3, 'fall', 1.3541666666666667)]
    """
    if start is None:  # end at today's Shanghai midnight, so accelerated time never runs into the future
        start = ((datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=days)).isoformat()
    return SimConfig(
        elders=elders,
        days=days,
        seed=seed,
        start=start,
        random_incidents=False,
        random_events=False,
        faults=False,
        incidents=[IncidentSpec(elder=fall_elder, kind="fall", start_day=history_days + fall_hour / 24)],
    )
