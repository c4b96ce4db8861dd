"""Live: an operator's change reaches a worker's meters from their next reading, not from their last checkpoint.

A change moves the meters' state versions on (``store.versions.mark_changed``); the worker then reloads the
meter from its checkpoint and catches it up on the readings stored since. Those readings were judged under the
settings in force when they came: judged again under the new ones, a stretch that raised nothing live raised
and cleared a case for hours already past.
"""

from __future__ import annotations

import pickle
import time

from sqlalchemy import select

from alerts.manager import AlertManager
from core.domain import Finding
from detect import MeterMonitor
from engine.localtime import local_offset
from engine.meterstate import MeterState, MeterStates
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.schema import alerts, detector_state
from tests.api_fixtures import Api, api_env  # noqa: F401
from tests.helpers import HOUR, message

HALF = HOUR / 2


def test_a_threshold_change_applies_from_the_next_reading_not_to_the_readings_before_it(api: Api) -> None:
    pipeline = Pipeline(api.engine, AlertManager())
    t0 = time.time() - 12 * HOUR

    def send(*points: tuple[float, float]) -> None:
        pipeline.process([RawMessage("t", message("MA1", list(points)), "MA1")])

    send(*((t0 + k * HALF, 10.0 * k) for k in range(5)))  # the meter's first commit writes its checkpoint
    with api.engine.connect() as conn:
        assert conn.execute(select(detector_state.c.meter_id)).scalars().all() == ["MA1"]
    # Two and a half hours without a reading, then two readings: under offline_hours 6 that is nothing.
    send((t0 + 4.5 * HOUR, 50.0), (t0 + 5 * HOUR, 55.0))
    changed = api.put("op_a", "/thresholds/elder/EA1", json={"values": {"offline_hours": 1}, "reason": "r"})
    assert changed.status_code == 200, changed.text
    found = pipeline.process([RawMessage("t", message("MA1", [(t0 + 5.5 * HOUR, 60.0)]), "MA1")]).findings
    with api.engine.connect() as conn:
        raised = conn.execute(select(alerts.c.kind, alerts.c.data_ts).where(alerts.c.elder_id == "EA1")).all()
    assert (found, raised) == ([], [])  # the gap came before the change: no meter_offline for it now
    # From here on it applies.
    found = pipeline.process([RawMessage("t", message("MA1", [(t0 + 7 * HOUR, 65.0)]), "MA1")]).findings
    assert [(f.kind, f.resolved, round((f.ts - t0) / HOUR, 2)) for f in found] == [
        ("meter_offline", False, 6.5),
        ("meter_offline", True, 7.0),
    ]


def test_readings_judged_under_a_change_are_not_judged_under_the_old_thresholds_after_a_restart(api: Api) -> None:
    """The first commit after a change writes the checkpoint: a restart then catches up from it, not from before."""
    assert api.put("op_a", "/thresholds/elder/EA1", json={"values": {"offline_hours": 1}, "reason": "r"}).is_success
    t0 = time.time() - 12 * HOUR
    worker = Pipeline(api.engine, AlertManager())

    def send(pipeline: Pipeline, *points: tuple[float, float]) -> list[Finding]:
        return pipeline.process([RawMessage("t", message("MA1", list(points)), "MA1")]).findings

    send(worker, *((t0 + k * HALF, 10.0 * k) for k in range(5)))  # checkpointed under offline_hours 1
    assert api.put("op_a", "/thresholds/elder/EA1", json={"values": {"offline_hours": 6}, "reason": "r"}).is_success
    assert send(worker, (t0 + 4.5 * HOUR, 50.0), (t0 + 5 * HOUR, 55.0)) == []  # a gap of 2.5 h, under 6 h: nothing
    assert send(Pipeline(api.engine, AlertManager()), (t0 + 5.5 * HOUR, 60.0)) == []  # restarted: nothing either


def test_a_new_time_zone_leaves_the_readings_before_it_judged_in_the_zone_they_were_judged_in(api: Api) -> None:
    """A reload after her zone changed replayed the readings since the checkpoint in the new zone: her days, hours
    and silences moved for readings judged live in the old one. The catch-up ends where live left the meter."""
    worker = Pipeline(api.engine, AlertManager())
    t0 = time.time() - 12 * HOUR

    def send(*points: tuple[float, float]) -> None:
        worker.process([RawMessage("t", message("MA1", list(points)), "MA1")])

    def reloaded() -> MeterState:
        with api.engine.connect() as conn:
            states = MeterStates(worker.states.default_tz)
            states.load(conn, ["MA1"], lambda _state, _findings: None)
        state = states.get("MA1")
        assert state is not None
        return state

    def live() -> MeterMonitor:
        state = worker.states.get("MA1")
        assert state is not None
        return state.monitor

    send(*((t0 + k * HALF, 10.0 * k) for k in range(5)))  # checkpointed in Shanghai's zone
    send((t0 + 2.5 * HOUR, 50.0), (t0 + 3 * HOUR, 55.0))  # judged in Shanghai's zone, not checkpointed
    changed = api.patch("admin", "/elders/EA1", json={"tz": "America/New_York", "reason": "moved to her son"})
    assert changed.status_code == 200, changed.text
    caught_up = reloaded()
    assert caught_up.monitor.last_off == live().last_off == 8 * 3600
    assert pickle.dumps(caught_up.monitor) == pickle.dumps(live())
    assert caught_up.meter.offset_at(t0) == local_offset("America/New_York", t0)  # her next reading: the new zone
    # Her next readings are judged in her new zone, and so is their catch-up after a restart.
    send((t0 + 3.5 * HOUR, 60.0))  # the first in the new zone: its commit writes a checkpoint
    send((t0 + 4 * HOUR, 65.0))  # not checkpointed
    assert live().last_off == local_offset("America/New_York", t0 + 4 * HOUR)
    assert pickle.dumps(reloaded().monitor) == pickle.dumps(live())


def test_a_checkpoint_from_before_zones_were_recorded_is_read_in_her_zone_now(api: Api) -> None:
    worker = Pipeline(api.engine, AlertManager())
    t0 = time.time() - 12 * HOUR
    worker.process([RawMessage("t", message("MA1", [(t0 + k * HALF, 10.0 * k) for k in range(5)]), "MA1")])
    with api.engine.begin() as conn:
        blob = conn.execute(select(detector_state.c.state)).scalar_one()
        tracker_state, monitor, zone = pickle.loads(blob)
        assert zone == "Asia/Shanghai"
        conn.execute(detector_state.update().values(state=pickle.dumps((tracker_state, monitor))))
        states = MeterStates()
        states.load(conn, ["MA1"], lambda _state, _findings: None)
    state = states.get("MA1")
    assert state is not None and state.meter.tz == "Asia/Shanghai" and state.has_checkpoint
    assert pickle.dumps(state.monitor) == pickle.dumps(monitor)
