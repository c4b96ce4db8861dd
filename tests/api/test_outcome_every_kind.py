"""A person's resolution teaches every kind the case held, each on the meter that found it, live as in replay.

With one community case per elder a case may hold several kinds: here an elder with two meters goes silent
on the kitchen's (``no_activity``) while a tap runs on the bathroom's (``continuous_flow`` joins the case).
The cadre's ``false_alarm`` (``POST /alerts/{id}/resolve``) must end both detectors' episodes and teach both
(the silence to the kitchen meter, the run to the bathroom's), and replay with the same visit
(``engine.outcomes.OutcomeSchedule``) must leave both monitors byte for byte as live does.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

from sqlalchemy import insert, select

from alerts.manager import AlertManager
from detect import MeterMonitor, Thresholds
from engine.meterstate import MeterStates
from engine.outcomes import OutcomeSchedule
from engine.pipeline import Pipeline, RawMessage
from engine.replay import Home, Replayer
from store.schema import alerts, meters
from tests.api_fixtures import Api, api_env  # noqa: F401
from tests.helpers import ingest, message

DAY, SLOT = 86400.0, 1800.0
#: Half-hour slots (Shanghai time) with 12 L of use on each meter: rising at 06:30, meals, evening.
ROUTINE = (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42)
DAYS, EVENT_DAY = 24, 21
#: Day 21: no water in the kitchen all day (silence alert 09:30); 3 L/min in the bathroom 09:00-12:00.
TAP_SLOTS = range(18, 24)
#: The cadre comes two hours after the silence alert: the tap's flow has joined its case, and still runs.
VISIT_DELAY_H = 2.0
KITCHEN, BATHROOM = "MA1", "MA2"


def _readings() -> dict[str, list[tuple[float, float]]]:
    """Half-hourly register totals of both meters from a Shanghai midnight; they end days before now."""
    start = (time.time() // DAY - DAYS - 3) * DAY - 8 * 3600
    out: dict[str, list[tuple[float, float]]] = {KITCHEN: [], BATHROOM: []}
    totals = dict.fromkeys(out, 0.0)
    for d in range(DAYS):
        for k in range(48):
            ts = start + d * DAY + (k + 1) * SLOT
            for meter_id in out:
                if k in ROUTINE and not (meter_id == KITCHEN and d == EVENT_DAY):
                    totals[meter_id] += 12.0
                if meter_id == BATHROOM and d == EVENT_DAY and k in TAP_SLOTS:
                    totals[meter_id] += 90.0
                out[meter_id].append((ts, totals[meter_id]))
    return out


def _rows(readings: dict[str, list[tuple[float, float]]], lo: int = 0) -> list[tuple[str, float, float]]:
    """Both meters' readings from index ``lo`` in time order (the kitchen's first at one time), as live sees them."""
    rows = [(m, ts, total) for m, own in readings.items() for ts, total in own[lo:]]
    return sorted(rows, key=lambda row: (row[1], row[0]))


def _replay(readings: dict[str, list[tuple[float, float]]], schedule: OutcomeSchedule | None) -> Replayer:
    homes = {KITCHEN: Home("EA1"), BATHROOM: Home("EA1")}
    replayer = Replayer(Thresholds(), default_tz="Asia/Shanghai", homes=homes, outcomes=schedule)
    for _ in replayer.events(_rows(readings)):
        pass
    return replayer


def _live_monitors(api: Api) -> dict[str, MeterMonitor]:
    """Both monitors as the store holds them, caught up from the stored readings."""
    with api.engine.begin() as conn:
        states = MeterStates("Asia/Shanghai")
        states.load(conn, [KITCHEN, BATHROOM], lambda _state, _findings: None)
        found = {m: states.get(m) for m in (KITCHEN, BATHROOM)}
    return {m: state.monitor for m, state in found.items() if state is not None}


def _cases(api: Api) -> list[dict[str, Any]]:
    with api.engine.connect() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.elder_id == "EA1").order_by(alerts.c.data_ts)).all()
    return [dict(r._mapping) for r in rows]


def _pickled(monitor: MeterMonitor) -> bytes:
    return pickle.dumps(monitor, protocol=pickle.HIGHEST_PROTOCOL)


def test_a_resolution_teaches_every_kind_of_the_case_live_exactly_as_replay(api: Api) -> None:
    with api.engine.begin() as conn:  # the elder's second meter, in the bathroom
        conn.execute(insert(meters).values(meter_id=BATHROOM, elder_id="EA1", installed_at=time.time()))
    readings = _readings()
    learn = EVENT_DAY * 48
    for meter_id, own in readings.items():  # the usual weeks, raising nothing, each meter on its own
        ingest(api.engine, meter_id, own[:learn])
    assert _cases(api) == []
    # The day of the silence reading by reading in time order, both meters, as live sees them.
    pipeline = Pipeline(api.engine, AlertManager(), late_window_s=60 * DAY)
    rest = _rows(readings, learn)
    k, visit = 0, None
    while visit is None or rest[k][1] < visit:
        meter_id, ts, total = rest[k]
        pipeline.process([RawMessage("test", message(meter_id, [(ts, total)]), meter_id)])
        k += 1
        if visit is None and (cases := _cases(api)):
            visit = cases[0]["data_ts"] + VISIT_DELAY_H * 3600  # the cadre comes after the case was raised
    [case] = _cases(api)
    assert (case["kind"], case["details"]["kinds"], case["state"]) == (
        "no_activity",
        ["no_activity", "continuous_flow"],
        "open",
    )
    assert (case["meter_id"], case["details"]["episodes"]["continuous_flow"]["meter_id"]) == (KITCHEN, BATHROOM)
    done = api.post("cadre_a", f"/alerts/{case['alert_id']}/resolve", json={"outcome": "false_alarm", "note": "好"})
    assert done.status_code == 200, done.text
    for meter_id, ts, total in rest[k:]:
        pipeline.process([RawMessage("test", message(meter_id, [(ts, total)]), meter_id)])

    schedule = OutcomeSchedule([], VISIT_DELAY_H)
    replayer = _replay(readings, schedule)
    assert schedule.applied == {"false_alarm": 1}
    untaught = _replay(readings, None)
    live = _live_monitors(api)
    for meter_id in (KITCHEN, BATHROOM):
        taught = _pickled(replayer.meters[meter_id].monitor)
        assert _pickled(live[meter_id]) == taught, meter_id  # live learned what replay learned, byte for byte
        assert taught != _pickled(untaught.meters[meter_id].monitor), meter_id  # and each meter did learn
    assert [(c["kind"], c["outcome"]) for c in _cases(api)] == [("no_activity", "false_alarm")]
