"""The backtest registers readings into intervals as the per-meter step does, register faults and all.

:func:`engine.backtest.intervals_of` calls each meter's register directly, a run
of one meter's readings at a time, without a :class:`engine.meter.MeterStep`
per reading; the intervals (and so every alert made from them) must be those the
step makes: on simulated meters with register faults (glitches, resets, gaps,
duplicates, readings out of order), the meters' readings interleaved or one meter
after another, in a zone with daylight saving time.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from core.domain import Interval
from engine.backtest import intervals_of
from engine.meter import MeterStep
from ingest.register import RegisterTracker
from simulator import SimConfig, simulate

TZ = "America/New_York"  # the simulated weeks cross the end of daylight saving time


def _by_steps(readings: list[tuple[str, float, float]]) -> dict[str, list[Interval]]:
    """Each reading through its meter's step, as live and replay push them."""
    steps: dict[str, MeterStep] = {}
    out: dict[str, list[Interval]] = {}
    for meter_id, ts, total_l in readings:
        if meter_id not in steps:
            steps[meter_id] = MeterStep(RegisterTracker(meter_id), None, TZ)
            out[meter_id] = []
        out[meter_id].extend(steps[meter_id].push(ts, total_l).intervals)
    return out


def _readings() -> list[tuple[str, float, float]]:
    start = datetime(2026, 10, 20, tzinfo=UTC).date().isoformat()
    res = simulate(SimConfig(elders=6, days=21, seed=7, start=start, faults=True))
    rows = [
        (res.meter_ids[i], float(ts), float(total))
        for i, ts, total in zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True)
        if math.isfinite(total)
    ]
    rows.sort(key=lambda r: r[1])
    shuffle = random.Random(3)
    for k in shuffle.sample(range(1, len(rows)), 40):  # a few readings out of order and repeated
        rows[k - 1], rows[k] = rows[k], rows[k - 1]
    rows[100:100] = rows[90:95]
    return rows


@pytest.mark.parametrize("order", ["interleaved", "meter after meter"])
def test_intervals_are_the_steps_intervals(order: str) -> None:
    rows = _readings()
    if order == "meter after meter":
        rows.sort(key=lambda r: r[0])  # stable: each meter's readings stay in the order they came
    expected = _by_steps(rows)
    assert intervals_of(rows, TZ) == expected
    made = [i for intervals in expected.values() for i in intervals]
    assert {"ok", "gap"} <= {i.status for i in made} and len({i.utc_offset_s for i in made}) == 2
    assert any(i.usage_l is None for i in made)  # a register fault made an interval of unknown use


def test_the_backtest_dates_a_held_intervals_alert_at_the_reading_that_released_it_as_live() -> None:
    """A reading 250 kL up and back (a glitch) is held until the next reading: live and replay raise its
    meter_fault then (:meth:`engine.meter.MeterStep.push`); the backtest raised it half an hour earlier,
    at the held interval's end, so a preview listed it at another time than live (and counted one held
    across the start of the period in the wrong period)."""
    from detect import Thresholds
    from engine.backtest import backtest
    from engine.replay import Home, Replayer

    start, step = 1_767_542_400.0, 1800.0
    rows, total = [], 0.0
    for k in range(48 * 20):
        total += 5.0 if 14 <= k % 48 < 44 else 0.0
        rows.append(("M1", start + k * step, total + (250_000.0 if k == 48 * 15 + 20 else 0.0)))
    live = [(f.kind, f.ts) for f in Replayer(default_tz=TZ).run(rows) if not f.resolved]
    assert [kind for kind, _ in live] == ["meter_fault"]
    for proposal in (Thresholds(), Thresholds(sensitivity=0.01)):  # the prepared replay, and a proposal's
        outcome = backtest(Home("M1"), proposal, rows, start + 10 * 86400.0, TZ)
        assert [(f.kind, f.ts) for f in outcome.current] == live
        assert [(f.kind, f.ts) for f in outcome.proposed] == live
