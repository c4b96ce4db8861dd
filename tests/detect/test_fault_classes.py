"""What a broken or odd meter sends must never make a monitor's state grow without bound (issue 20, detect side).

A worker holds a monitor for each of up to a million meters and writes each one's checkpoint after every batch:
the state of one meter must stay a few kilobytes whatever its readings' cadence.
"""

from __future__ import annotations

import pickle

import pytest

from core.domain import Interval
from detect import MeterMonitor
from tests.helpers import longest_runs

DAY, HOUR, HALF = 86400, 3600, 1800
USED = (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42)  # half hours with use: rising, meals, evening


def _routine(days: int = 30) -> MeterMonitor:
    m = MeterMonitor("m1")
    for d in range(days):
        for k in range(48):
            t = d * DAY + k * HALF
            m.update(Interval("m1", t, t + HALF, 12.0 if k in USED else 0.0, "ok", 0))
    return m


def test_a_meter_read_every_second_keeps_a_small_checkpoint_through_a_flow_alert() -> None:
    m = _routine()
    before = len(pickle.dumps(m))
    start = 30 * DAY + 3 * HOUR  # a tap left open at 03:00 at 6 L/min, read every second, closed 2 h later
    found, largest = [], 0
    for s in range(2 * HOUR):
        found += m.update(Interval("m1", start + s, start + s + 1, 0.1, "ok", 0))
        if s % 60 == 0:
            largest = max(largest, len(pickle.dumps(m)))
    assert [f.kind for f in found if not f.resolved] == ["continuous_flow"]
    alerted = next(f for f in found if not f.resolved).ts
    assert alerted < start + 1.5 * HOUR  # the run stopped within the hour after its alert: a near miss
    # One entry per reading held back for the near miss grew it by 4 a second: 190 kB after the alert's hour.
    assert largest <= before + 2048, f"{largest} B at most during the alert, {before} B before it"
    found = m.update(Interval("m1", start + 2 * HOUR, start + 2 * HOUR + HALF, 0.0, "ok", 0))
    assert [(f.kind, f.resolved) for f in found] == [("continuous_flow", True)]
    # ... and what the near miss teaches is learned as before: the run's length at each level, at 03:00 and 04:00.
    runs = longest_runs(m)
    assert runs[:, 4] == pytest.approx([2.0] * len(runs), abs=1e-3)
