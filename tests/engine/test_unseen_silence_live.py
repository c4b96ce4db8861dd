"""Live: a meter that stops reporting in a long silence calls a cadre through the worker's tick (session 11).

The same readings as the unit tests go through the real pipeline on the store; then the meter stops, and the
worker's clock-driven tick (no reading arrives) raises the community case, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, select

from alerts.manager import AlertManager
from alerts.policy import route
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.schema import alerts
from tests.api_fixtures import ELDER_A, add_elder
from tests.helpers import message

DAY, HALF = 86400.0, 1800.0
SHANGHAI = 8 * 3600
USES = (14, 24, 36, 43)  # 07:00, 12:00, 18:00, 21:30 local


@pytest.fixture
def store(any_engine: Engine) -> Engine:
    return any_engine


def test_a_meter_silent_in_a_long_silence_raises_a_community_case_on_tick(store: Engine) -> None:
    add_elder(store, ELDER_A)
    midnight = (time.time() + SHANGHAI) // DAY * DAY - SHANGHAI - 31 * DAY  # local midnight 31 days ago
    total, points = 0.0, []
    for k in range(31 * 48):
        day, slot = divmod(k, 48)
        if day == 30 and slot >= 28:
            break  # the last day: her 07:00 wash, then silence until 14:00, when the meter stops
        total += 12.0 if slot in USES and (day < 30 or slot == 14) else 0.0
        points.append((midnight + (k + 1) * HALF, total))
    pipeline = Pipeline(store, AlertManager(), late_window_s=60 * DAY)
    for lo in range(0, len(points), 48):
        pipeline.process([RawMessage("test", message("MA1", points[lo : lo + 48]), "MA1")])
    last = points[-1][0]
    assert pipeline.tick(last + 5 * 3600, offline_after_s=6 * 3600).findings == []
    raised = pipeline.tick(last + 12 * 3600, offline_after_s=6 * 3600).findings
    assert sorted(f.kind for f in raised if not f.resolved) == ["meter_offline", "no_activity"]
    with store.connect() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.elder_id == "EA1")).mappings().all()
    assert [route(r) for r in rows if r["kind"] == "no_activity"] == ["community"]  # a cadre's case, open
    assert pipeline.tick(last + 13 * 3600, offline_after_s=6 * 3600).findings == []  # once
