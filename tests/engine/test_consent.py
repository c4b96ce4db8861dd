"""Consent: an elder who has not agreed to monitoring is not monitored (PIPL).

One live pipeline (its state cache included) runs across the API changes, as a
worker would: withdrawing consent stops storing, learning and alerting at once,
closes the open cases and erases the learned routine; restoring it starts
monitoring afresh, like a newly installed meter.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, func, select

from alerts.manager import AlertManager
from engine.pipeline import BatchResult, Pipeline
from ingest.payload import RawMessage
from store.schema import alerts, dead_letters, detector_state, meters, readings
from tests.api_fixtures import Api, add_elder, api_env, raise_alert  # noqa: F401
from tests.helpers import message

HALF_HOUR = 1800.0
NOW = time.time() // HALF_HOUR * HALF_HOUR


@pytest.fixture
def engine(any_engine: Engine) -> Engine:
    """The API fixture's store, on SQLite and on PostgreSQL: the consent checks are SQL on both."""
    return any_engine


def _send(pipeline: Pipeline, meter_id: str, start: float, steps: int, litres: float, total: float) -> BatchResult:
    """``steps`` half-hourly readings from ``start``, each ``litres`` above the last (``total`` before)."""
    points = [(start + k * HALF_HOUR, total + (k + 1) * litres) for k in range(steps)]
    return pipeline.process([RawMessage("test", message(meter_id, points))])


def _stored(engine: Engine, meter_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(readings.c.meter_id == meter_id)).scalar_one())


def _checkpointed(engine: Engine, meter_id: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(select(detector_state.c.meter_id).where(detector_state.c.meter_id == meter_id)).first()
            is not None
        )


def _open_alerts(engine: Engine, elder_id: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(alerts.c.kind).where(alerts.c.elder_id == elder_id, alerts.c.state != "resolved"))
        return [r.kind for r in rows]


def test_withdrawn_consent_stops_monitoring_and_restored_consent_starts_afresh(api: Api) -> None:
    engine = api.engine
    pipeline = Pipeline(engine, AlertManager(), late_window_s=90 * 86400)
    start = NOW - 3 * 86400
    assert _send(pipeline, "MA1", start, 48, 5.0, 0.0).readings_stored == 48
    pipeline.flush_checkpoints()
    assert _checkpointed(engine, "MA1")
    alert_id = raise_alert(engine, "MA1")

    withdrawn = api.patch("cadre_a", "/elders/EA1", json={"consent": False, "reason": "家属代为撤回同意"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["consent"] is False
    closed = api.get("cadre_a", f"/alerts/{alert_id}").json()
    assert closed["state"] == "resolved" and closed["resolved_by"] == "cadre_a"
    assert "consent withdrawn" in closed["note"]
    assert not _checkpointed(engine, "MA1")  # the routine learned from her water use is erased
    with engine.connect() as conn:  # and the cadence the devices page drew her meter's offline line on
        usual = conn.execute(select(meters.c.usual_interval_s).where(meters.c.meter_id == "MA1")).scalar_one()
    assert usual is None
    entry = api.get("admin", "/audit", params={"action": "elder.update"}).json()["data"][0]
    assert (entry["old"]["consent"], entry["new"]["consent"]) == (True, False)

    # Water running for ten hours: a case for a cadre, had she consented. The cached state must not be used.
    running = _send(pipeline, "MA1", start + 48 * HALF_HOUR, 20, 40.0, 240.0)
    assert (running.readings_withheld, running.readings_stored, running.dead_letters) == (20, 0, 0)
    assert running.findings == [] and running.alerts_touched == []
    assert _stored(engine, "MA1") == 48
    pipeline.flush_checkpoints()
    assert not _checkpointed(engine, "MA1")
    assert pipeline.tick(NOW, offline_after_s=3600).findings == []  # silence is not watched either
    assert _open_alerts(engine, "EA1") == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 0

    restored = api.patch("cadre_a", "/elders/EA1", json={"consent": True, "reason": "老人本人重新同意"})
    assert restored.status_code == 200, restored.text
    back = _send(pipeline, "MA1", NOW - 4 * HALF_HOUR, 4, 5.0, 1200.0)
    assert (back.readings_withheld, back.readings_stored) == (0, 4)
    with engine.connect() as conn:
        first = conn.execute(
            select(readings.c.status)
            .where(readings.c.meter_id == "MA1")
            .order_by(readings.c.ts.desc())
            .offset(3)
            .limit(1)
        ).scalar_one()
        last_ts = conn.execute(select(meters.c.last_reading_ts).where(meters.c.meter_id == "MA1")).scalar_one()
    assert first == "first"  # a fresh register: no usage claimed across the months without consent
    assert last_ts == NOW - HALF_HOUR
    pipeline.flush_checkpoints()
    assert _checkpointed(engine, "MA1")


def test_an_elder_registered_without_consent_is_never_monitored(api: Api) -> None:
    elder = {"elder_id": "EA2", "meter_id": "MA2", "name": "陈玉珍", "community": "大宁社区", "consent": False}
    add_elder(api.engine, elder)
    pipeline = Pipeline(api.engine, AlertManager(), late_window_s=90 * 86400)
    result = _send(pipeline, "MA2", NOW - 24 * HALF_HOUR, 20, 40.0, 0.0)
    assert (result.readings_in, result.readings_withheld, result.readings_stored, result.dead_letters) == (20, 20, 0, 0)
    assert _stored(api.engine, "MA2") == 0 and _open_alerts(api.engine, "EA2") == []
    assert pipeline.totals.readings_withheld == 20
    # An unregistered meter is still dead-lettered for an operator to look at: only consent withholds.
    assert _send(pipeline, "MX9", NOW - HALF_HOUR, 1, 1.0, 0.0).dead_letters == 1
