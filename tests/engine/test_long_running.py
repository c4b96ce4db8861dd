"""Live, after months: what a meter's state carries must not grow with the age of the deployment.

A worker restarted (or a meter reloaded after a change) loads the meter's checkpoint and its elder's away
windows from the store, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import pickle
import time

from sqlalchemy import Engine, func, insert, select

from alerts.manager import AlertManager
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.registry import replace_meter, retire_elder
from store.schema import away_windows, detector_state
from store.versions import mark_changed
from tests.helpers import HOUR, daily_pattern, message, register

DAY = 86400.0
NOW = time.time() // 1800 * 1800
#: docs/performance.md: a meter's detector state, pickled, takes at most 4 KB.
STATE_BUDGET_B = 4096


def _away(engine: Engine, elder_id: str, start: float, end: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(away_windows).values(
                elder_id=elder_id,
                kind="away",
                start_ts=start,
                end_ts=end,
                reason="",
                created_by="li.cadre",
                created_at=0,
            )
        )


def _send(pipeline: Pipeline, meter_id: str, points: list[tuple[float, float]]) -> None:
    for k in range(0, len(points), 48):
        part = points[k : k + 48]
        pipeline.process([RawMessage("t", message(meter_id, part), meter_id, part[-1][0])])


def _checkpoint(engine: Engine, meter_id: str) -> tuple[int, list[tuple[float, float]]]:
    """The stored checkpoint's size and the away windows its monitor holds."""
    with engine.connect() as conn:
        blob = conn.execute(select(detector_state.c.state).where(detector_state.c.meter_id == meter_id)).scalar_one()
        assert conn.execute(select(func.count()).select_from(detector_state)).scalar_one() == 2
    _tracker, monitor, _zone = pickle.loads(blob)
    return len(blob), list(monitor.away)


def test_away_windows_long_over_leave_the_meters_state(any_engine: Engine) -> None:
    """An elder away every weekend for three years: 150 windows, each kept in her meter's state and pickled with
    every checkpoint (20 bytes each), where only those that can still touch a reading, a day or a silence matter.
    Those stay: one going on, one that ended yesterday, one within a silence that began weeks ago."""
    engine = any_engine
    register(engine, "E1", "M1")
    register(engine, "E2", "M2", name="赵兰英")
    weekends = [NOW - (3 * 365 - 7 * k) * DAY for k in range(150)]
    for start in weekends:
        _away(engine, "E1", start, start + 2 * DAY)
        _away(engine, "E2", start, start + 2 * DAY)
    _away(engine, "E1", NOW - 3 * DAY, NOW - 1 * DAY)  # ended yesterday
    _away(engine, "E1", NOW - 2 * HOUR, NOW + 5 * DAY)  # going on
    _away(engine, "E2", NOW - 28 * DAY, NOW - 15 * DAY)  # in her silence: no water for 30 days (learned without it)
    used = daily_pattern(10, NOW - 7 * HOUR)
    silent = [(ts, total) for ts, total in daily_pattern(40, NOW - 7 * HOUR) if ts < NOW - 30 * DAY]
    silent += [(ts, silent[-1][1]) for ts in (NOW - 30 * DAY + k * 1800 for k in range(1, 1427))]
    first = Pipeline(engine, AlertManager(), late_window_s=60 * DAY)
    _send(first, "M1", used)
    _send(first, "M2", silent)

    # A restart: the meters reload from their checkpoints, and commit one when it is next due (6 h of data).
    restarted = Pipeline(engine, AlertManager(), late_window_s=60 * DAY)
    _send(restarted, "M1", [(NOW - 7 * HOUR + k * 1800, used[-1][1]) for k in range(1, 15)])
    _send(restarted, "M2", [(NOW - 7 * HOUR + k * 1800, silent[-1][1]) for k in range(1, 15)])

    size, kept = _checkpoint(engine, "M1")
    assert kept == [(NOW - 3 * DAY, NOW - 1 * DAY), (NOW - 2 * HOUR, NOW + 5 * DAY)]
    assert size <= STATE_BUDGET_B
    size, kept = _checkpoint(engine, "M2")
    assert kept == [(NOW - 28 * DAY, NOW - 15 * DAY)]
    assert size <= STATE_BUDGET_B


def test_a_worker_lets_go_of_the_meters_retired_or_replaced(any_engine: Engine) -> None:
    """A worker caches the state of each meter it saw (about 4 KB). One retired with its elder, or swapped for a
    new one, never reports nor is asked for again: its state stayed for the worker's life, one more per meter
    retired. The monitor's periodic pass (with the retention purge) lets them go; a meter in use stays."""
    engine = any_engine
    for elder_id, meter_id in (("E1", "M1"), ("E2", "M2"), ("E3", "M3")):
        register(engine, elder_id, meter_id)
    pipeline = Pipeline(engine, AlertManager())
    used = daily_pattern(2, NOW)
    for meter_id in ("M1", "M2", "M3"):
        _send(pipeline, meter_id, used[:-1])
    with engine.begin() as conn:  # as the API's retire and replace do
        retire_elder(conn, "E1", NOW)
        replace_meter(conn, "E2", "M2b", NOW)
        mark_changed(conn, ["M1", "M2"])
    _send(pipeline, "M3", used[-1:])
    assert len(pipeline.states) == 3

    assert pipeline.forget_moved() == 2
    assert len(pipeline.states) == 1 and pipeline.states.get("M3") is not None
