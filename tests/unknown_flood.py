"""A flood of unknown meter ids through the real pipeline, for `tests/app/test_faults.py` and the benchmark.

Each message comes from a meter id never registered (so never seen twice);
in the same batches a few registered meters keep reporting, one of them with
a leak (water flowing in every interval) so its alert must still be raised.
Batches of ``RawMessage`` go through ``Pipeline.process`` into the given
store, as the MQTT consumer hands them over.

The pipeline runs on a simulated clock that follows the data (a reading every
15 minutes per known meter: about three weeks for a million unknown
messages), so every known reading is inside the late window when it comes.

Memory is the process's resident set (RSS) after a warm-up, so the figure
includes everything (SQLite's page cache, the interpreter's arenas) without
slowing the run the way tracemalloc does (about threefold).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from alerts.manager import AlertManager
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.schema import alerts, dead_letters, readings
from tests.helpers import iso, message, register

UNKNOWN_REASON = "unknown meter (not registered)"
#: Registered meters that report in every batch; the first leaks.
KNOWN_METERS = ("KNOWN-LEAK", "KNOWN-2", "KNOWN-3")
LEAK_L_PER_READING = 30.0  # 30 L per 15 minutes = 2 L/min, far above the default leak threshold
READING_S = 900
WARM_UP_BATCHES = 20  # SQLite's page cache and the interpreter's arenas fill up first


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def unknown_payload(meter_id: str, ts_text: str) -> bytes:
    """A well-formed message from ``meter_id``, built by hand: a million orjson dumps would dominate the run."""
    return b'{"meter_id":"%s","readings":[{"ts":"%s","total_l":1.0}]}' % (meter_id.encode(), ts_text.encode())


class SimClock:
    """The pipeline's clock, moved by the flood: a minute after the newest known reading."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FloodResult:
    messages: int
    unknown: int
    known_readings: int
    seconds: float
    cpu_seconds: float
    rss_warm: int
    rss_peak_growth: int
    states_cached: int
    dead_letters_counted: int
    dead_letters_not_kept: int
    budget_sources: int  # topics the dead-letter budget follows

    def text(self) -> str:
        return (
            f"{self.unknown:,} unknown ids + {self.known_readings:,} readings of {len(KNOWN_METERS)} known meters "
            f"in {self.seconds:.1f} s ({self.messages / self.seconds:,.0f} msg/s; CPU {self.cpu_seconds:.1f} s, "
            f"{self.messages / self.cpu_seconds:,.0f} msg/CPU-s); RSS growth after warm-up at most "
            f"{self.rss_peak_growth / 1e6:.1f} MB; state cache {self.states_cached} meters; "
            f"dead letters kept {self.dead_letters_counted:,}, not kept (over budget) {self.dead_letters_not_kept:,}; "
            f"dead-letter budget follows {self.budget_sources:,} topics"
        )


def known_readings(start_ts: float, batches: int) -> Iterator[list[tuple[str, float, float]]]:
    """Per batch, one reading per known meter, 15 minutes after its last: (meter, ts, register total)."""
    for k in range(batches):
        ts = start_ts + k * READING_S
        yield [
            (meter, ts, 1000.0 + (LEAK_L_PER_READING * k if n == 0 else 0.5 * k))
            for n, meter in enumerate(KNOWN_METERS)
        ]


def flood(engine: Engine, messages: int, batch: int, start_ts: float | None = None) -> tuple[FloodResult, Pipeline]:
    """Register the known meters, then send ``messages`` unknown-id messages (and their readings) in batches."""
    for n, meter in enumerate(KNOWN_METERS):
        register(engine, f"E{n}", meter)
    per_batch = batch - len(KNOWN_METERS)
    batches = -(-messages // per_batch)
    start_ts = time.time() // READING_S * READING_S - batches * READING_S if start_ts is None else start_ts
    clock = SimClock(start_ts)
    pipeline = Pipeline(engine, AlertManager(), clock=clock)
    ts_text = iso(start_ts)
    sent_unknown = sent_known = dead = not_kept = rss_warm = peak = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for k, known in enumerate(known_readings(start_ts, batches)):
        clock.now = known[0][1] + 60
        count = min(per_batch, messages - sent_unknown)
        # Each id on its own topic, as an account that may publish anywhere (a gateway's) would send them.
        raw = [
            RawMessage(f"tapwatch/meters/U{k}-{n}/readings", unknown_payload(f"U{k}-{n}", ts_text), f"U{k}-{n}")
            for n in range(count)
        ]
        raw += [RawMessage("flood", message(m, [(ts, total)]), m) for m, ts, total in known]
        result = pipeline.process(raw)
        dead += result.dead_letters
        not_kept += result.dead_letters_not_kept
        sent_unknown += count
        sent_known += len(known)
        if k == WARM_UP_BATCHES:
            rss_warm = rss_bytes()
        elif k > WARM_UP_BATCHES:
            peak = max(peak, rss_bytes() - rss_warm)
    flooded = FloodResult(
        messages=sent_unknown + sent_known,
        unknown=sent_unknown,
        known_readings=sent_known,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        rss_warm=rss_warm,
        rss_peak_growth=peak,
        states_cached=len(pipeline.states),
        dead_letters_counted=dead,
        dead_letters_not_kept=not_kept,
        budget_sources=len(pipeline.dead_letter_budget),
    )
    return flooded, pipeline


def store_counts(engine: Engine) -> dict[str, Any]:
    """What the store holds: dead letters by reason, readings per meter, (meter, kind) of every alert."""
    with engine.connect() as conn:
        by_reason = select(dead_letters.c.reason, func.count()).group_by(dead_letters.c.reason)
        reasons: dict[str, int] = {reason: n for reason, n in conn.execute(by_reason)}
        by_meter = select(readings.c.meter_id, func.count()).group_by(readings.c.meter_id)
        per_meter: dict[str, int] = {meter: n for meter, n in conn.execute(by_meter)}
        raised = conn.execute(select(alerts.c.meter_id, alerts.c.kind).distinct()).all()
    return {"dead_letters": reasons, "readings": per_meter, "alerts": sorted((m, k) for m, k in raised)}
