"""A million meters' state in memory (docs/performance.md, "detector state in RAM"): what most meters hold alike is
held once, in a live monitor and in one loaded from its checkpoint, and it decides as before."""

from __future__ import annotations

import math
import pickle

from core.domain import Interval
from detect import MeterMonitor
from engine.meterstate import load_checkpoint
from ingest.register import RegisterTracker

DAY, SLOT = 86400, 1800
#: Half-hour slots with use: every other hour from 07:00 to 21:00, every day (habits are learned).
ROUTINE = tuple(range(14, 44, 4))


def _trained(meter_id: str, days: int = 40) -> MeterMonitor:
    m = MeterMonitor(meter_id)
    for d in range(days):
        for k in range(48):
            t = d * DAY + k * SLOT
            m.update(Interval(meter_id, t, t + SLOT, 12.0 if k in ROUTINE else 0.0, "ok", 0))
    return m


def _loaded(m: MeterMonitor) -> MeterMonitor:
    blob = pickle.dumps((RegisterTracker(m.meter_id).state(), m, "Asia/Shanghai"), protocol=pickle.HIGHEST_PROTOCOL)
    monitor = load_checkpoint(blob)[1]
    assert isinstance(monitor, MeterMonitor)
    return monitor


def test_meters_with_the_same_habitual_hours_hold_one_table() -> None:
    a, b = _trained("m1"), _trained("m2")
    assert a.habit_h is not None and a.habit_h is b.habit_h
    loaded_a, loaded_b = _loaded(a), _loaded(b)
    assert loaded_a.habit_h is loaded_b.habit_h
    assert list(loaded_a.habit_h or ()) == list(a.habit_h)


def test_loaded_meters_hold_one_object_for_a_slot_nothing_has_moved_from_its_start() -> None:
    a, b = _loaded(_trained("m1")), _loaded(_trained("m2"))
    # Nothing taught, no base flow, no slow leak limit: the values a fresh monitor holds, alike in most homes.
    for owner, name in [
        ("", "flow_excused"),
        ("", "flow_excused_lph"),
        ("", "sil_excused"),
        ("", "day_gap_s"),
        ("base", "lph"),
        ("base", "allow_lph"),
        ("base", "quiet_lph"),
        ("base", "reported"),
        ("base", "ended"),
        ("flow", "maint_lph"),
    ]:
        in_a = getattr(getattr(a, owner) if owner else a, name)
        in_b = getattr(getattr(b, owner) if owner else b, name)
        assert in_a == in_b and in_a is in_b, (owner, name)


def test_a_negative_zero_is_not_taken_for_a_zero_on_load() -> None:
    m = _trained("m1", days=2)
    m.day_gap_s = -0.0
    assert math.copysign(1.0, _loaded(m).day_gap_s) == -1.0


def test_loaded_meters_share_a_run_never_flat_and_a_usual_interval() -> None:
    a, b = _loaded(_trained("m1")), _loaded(_trained("m2"))
    assert a.flow.run_flat == (0.0, 0) and a.flow.run_flat is b.flow.run_flat
    assert a.usual_s == b.usual_s and a.usual_s is b.usual_s


def test_a_loaded_meter_holds_one_float_for_a_time_its_register_and_models_hold_alike() -> None:
    m = _trained("m1")
    tracker = RegisterTracker("m1")
    tracker.restore((m.last_end, 100.0, None, 0.0, m.usual_s, 0))
    blob = pickle.dumps((tracker.state(), m, "Asia/Shanghai"), protocol=pickle.HIGHEST_PROTOCOL)
    tracker_state, loaded, _zone = load_checkpoint(blob)
    assert m.sil_start == m.base.wet_end and loaded.sil_start is loaded.base.wet_end
    assert tracker_state[0] == m.last_end and tracker_state[0] is loaded.last_end
    assert tracker_state[4] is loaded.usual_s


def test_a_checkpoint_whose_shared_slots_hold_another_kind_is_refused_naming_the_slot() -> None:
    for name, odd in [("habit_h", 5), ("base", 5)]:
        m = _trained("m1")
        setattr(m, name, odd)
        blob = pickle.dumps((RegisterTracker("m1").state(), m, "Asia/Shanghai"), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            load_checkpoint(blob)
        except ValueError as exc:
            assert f"MeterMonitor.{name} holds a int" in str(exc)
        else:
            raise AssertionError(f"{name}: loaded")
