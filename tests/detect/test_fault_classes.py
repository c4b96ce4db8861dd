"""What a broken or odd meter sends must never make a monitor's state grow without bound (issue 20, detect side).

A worker holds a monitor for each of up to a million meters and writes each one's checkpoint after every batch:
the state of one meter must stay a few kilobytes whatever its readings' cadence.
"""

from __future__ import annotations

import pickle

import pytest

from core.domain import Interval
from detect import MeterMonitor
from detect.rules import MERGE_S, LowUseWindowRule
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


def test_a_meter_read_every_second_under_a_drip_keeps_a_small_checkpoint() -> None:
    m = _routine()
    before = len(pickle.dumps(m))
    start = 30 * DAY  # from midnight a drip of 3.6 L/h, read every second to the millilitre
    found, largest = [], 0
    for s in range(6 * HOUR):
        found += m.update(Interval("m1", start + s, start + s + 1, 0.001, "ok", 0))
        if s % 600 == 0:
            largest = max(largest, len(pickle.dumps(m)))
    assert [f for f in found if not f.resolved] == []
    # The safety net held one entry per reading until the newer ones alone reached its 10 L: 160 kB.
    assert largest <= before + 1024, f"{largest} B at most under the drip, {before} B before it"


def test_the_safety_net_counts_a_fast_meters_litres_as_before_within_five_minutes() -> None:
    rule = LowUseWindowRule(hours=2, litres=10)
    found = []
    for s in range(0, 3 * HOUR, 10):  # read every 10 s: 12 L in the first minute, then 0.01 L a reading
        found += rule.update(Interval("m", s, s + 10, 2.0 if s < 60 else 0.01, "ok", 0))
    # 0.01 L every 10 s is 3.6 L an hour: under 10 L in the 2 h once 10 L of the first minute's 12 L left the window
    # (their fifth reading's 2 h after it, counted reading by reading), now within five minutes of that.
    assert [(f.kind, f.resolved) for f in found] == [("no_activity", False)]
    assert 2 * HOUR + 50 <= found[0].ts <= 2 * HOUR + 50 + MERGE_S
