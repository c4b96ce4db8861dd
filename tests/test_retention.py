"""Retention: what is past its time leaves the store; what is still needed, or not yet delivered, stays.

Readings and dead letters come through the real pipeline, alert jobs through
the real manager and outbox sender to a webhook receiver on loopback; the
purge runs on SQLite and on PostgreSQL, once from the CLI and on its own in a
running monitor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pydantic
import pytest
from sqlalchemy import Engine, func, insert, select

from alerts.manager import AlertManager
from alerts.notifiers import WebhookNotifier
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.domain import Finding
from ingest.payload import RawMessage
from store.registry import meter_context
from store.retention import DAY_S, RetentionPolicy, purge
from store.schema import dead_letters, outbox, readings
from tapwatch.pipeline import Pipeline
from tests.conftest import wait_until
from tests.helpers import message, register

NOW = time.time() // 1800 * 1800
SECRET = b"platform-secret"


def _store_readings(engine: Engine, meter_id: str, days_ago: list[float]) -> None:
    pipeline = Pipeline(engine, AlertManager(), late_window_s=500 * DAY_S)
    points = [(NOW - d * DAY_S, 100.0 + k) for k, d in enumerate(sorted(days_ago, reverse=True))]
    assert pipeline.process([RawMessage("test", message(meter_id, points))]).readings_stored == len(points)


def _dead_letter(engine: Engine, days_ago: float) -> None:
    pipeline = Pipeline(engine, AlertManager(), clock=lambda: NOW - days_ago * DAY_S)
    assert pipeline.process([RawMessage("test", b"{not json")]).dead_letters == 1


def _alert_jobs(engine: Engine, meter_id: str, days_ago: float, platform_status: int, kind: str) -> None:
    """An alert raised ``days_ago``, its events tried then by a platform answering ``platform_status``."""
    at = NOW - days_ago * DAY_S
    with engine.begin() as conn:
        context = meter_context(conn, meter_id)
        assert context is not None
        finding = Finding(meter_id, kind, "high", at, "未用水", "no use")
        assert AlertManager(["webhook"]).apply(conn, context, finding, at)
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _e: (platform_status, {})).start()
    try:
        OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=lambda: at).run_once()
    finally:
        receiver.stop()


def _count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_purge_removes_only_what_is_past_retention(any_engine: Engine) -> None:
    engine = any_engine
    register(engine, "E1", "M1")
    register(engine, "E2", "M2", name="赵兰英")
    _store_readings(engine, "M1", [420, 410, 401, 399, 30, 1])
    _store_readings(engine, "M2", [405, 2])
    _dead_letter(engine, 100)
    _dead_letter(engine, 10)
    _alert_jobs(engine, "M1", 40, 204, "continuous_flow")  # delivered long ago: goes
    _alert_jobs(engine, "M2", 40, 400, "continuous_flow")  # refused long ago, parked: kept for an operator
    _alert_jobs(engine, "M1", 1, 204, "routine_change")  # delivered yesterday: stays
    delivered_long_ago = _count(engine, outbox, outbox.c.status == "sent", outbox.c.sent_at < NOW - 30 * DAY_S)
    delivered_lately = _count(engine, outbox, outbox.c.status == "sent", outbox.c.sent_at >= NOW - 30 * DAY_S)
    parked_before = _count(engine, outbox, outbox.c.status == "parked")
    assert delivered_long_ago >= 1 and delivered_lately >= 1 and parked_before >= 1

    purged = purge(engine, RetentionPolicy(readings_days=400, dead_letter_days=90, delivered_days=30), NOW, 1)
    assert (purged.readings, purged.dead_letters, purged.delivered) == (4, 1, delivered_long_ago)
    with engine.connect() as conn:
        left = sorted(conn.execute(select(readings.c.meter_id, readings.c.ts)).all())
    assert left == [("M1", NOW - d * DAY_S) for d in (399, 30, 1)] + [("M2", NOW - 2 * DAY_S)]
    assert _count(engine, dead_letters) == 1
    assert _count(engine, outbox, outbox.c.status == "parked") == parked_before
    assert _count(engine, outbox, outbox.c.status == "sent") == delivered_lately
    assert purge(engine, RetentionPolicy(), NOW).total == 0  # nothing twice


def test_tapwatch_purge_applies_the_configured_retention(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from store import open_store
    from tapwatch.cli import main

    monkeypatch.setenv("TAPWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAPWATCH_READINGS_RETENTION_DAYS", "30")
    engine = open_store(get_settings().effective_database_url)
    register(engine, "E1", "M1")
    _store_readings(engine, "M1", [45, 31, 29, 1])
    engine.dispose()
    assert main(["purge"]) == 0
    assert "purged 2 readings older than 30 days, 0 dead letters" in capsys.readouterr().out
    with pytest.raises(pydantic.ValidationError):
        get_settings(readings_retention_days=3)  # below the late window and a week of replay: refused


def test_the_running_monitor_purges_on_its_own(mosquitto, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from tapwatch.service import Service

    settings = get_settings(
        data_dir=tmp_path,
        database_url=db_url,
        mqtt_url=mosquitto.url,
        mqtt_client_id="t-retention",
        retention_check_hours=1 / 3600,  # every second, for the test
    )
    service = Service(settings)
    with service.engine.begin() as conn:
        row = {"received_at": NOW - 100 * DAY_S, "source": "t", "meter_id": None, "reason": "r", "payload": "p"}
        conn.execute(insert(dead_letters).values(**row))
    service.start()
    try:
        assert wait_until(lambda: _count(service.engine, dead_letters) == 0, 15)
        purged = service.metrics.registry.get_sample_value("tapwatch_purged_rows_total", {"table": "dead_letters"})
        assert purged == 1.0
    finally:
        service.stop()
