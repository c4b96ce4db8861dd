"""The live stream sends an alert whose event committed after a newer one: ids are taken at insert, not commit.

On PostgreSQL two transactions raising alerts at once (two ingest workers, an
escalation and a cadre's acknowledgement) can commit out of id order. The stream
moved its cursor to the newest id it saw, so an event with a smaller id that
committed a moment later was never sent: the cadre's live list missed the alert.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from alerts.manager import AlertManager
from api.main import create_app
from core.domain import Finding
from core.settings import get_settings
from store import open_store
from store.registry import meter_context
from store.schema import alert_events
from tests.api_fixtures import ELDER_A, add_elder, add_user, raise_alert, serving


@pytest.fixture
def pg_server(postgres_server: Any) -> Iterator[tuple[str, str, Engine]]:
    engine = open_store(postgres_server.new_database())
    _user_id, token = add_user(engine, "cadre_a", "cadre", [ELDER_A["community"]])
    add_elder(engine, ELDER_A)
    add_elder(engine, {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "张秀英"})
    with serving(create_app(get_settings(sse_poll_s=0.1), engine)) as (base, _port):
        yield base, token, engine
    engine.dispose()


def _next_alert(lines: Iterator[str]) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for line in lines:
        if line.startswith("data: "):
            event = json.loads(line[6:])
        elif line == "" and event:
            return event
    raise AssertionError("the stream ended")


def test_an_event_committed_after_a_newer_one_still_reaches_the_stream(pg_server: tuple[str, str, Engine]) -> None:
    base, token, engine = pg_server
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{base}/alerts/stream", headers=headers) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        with engine.connect() as slow:
            transaction = slow.begin()  # an ingest batch still working: its alert event holds the smaller id
            context = meter_context(slow, "MA1")
            assert context is not None
            now = time.time()
            first = AlertManager().apply(
                slow, context, Finding("MA1", "no_activity", "high", now, "未用水", "no use"), now
            )
            second = raise_alert(engine, "MA2")  # committed at once, with a larger id
            assert _next_alert(lines)["alert_id"] == second  # the stream has read past the smaller id
            transaction.commit()
        assert _next_alert(lines)["alert_id"] == first


@pytest.mark.parametrize("resume", [False, True], ids=["new stream", "resumed after the newer event"])
def test_a_stream_opened_while_an_older_event_is_uncommitted_still_sends_it(
    pg_server: tuple[str, str, Engine], resume: bool
) -> None:
    base, token, engine = pg_server
    headers = {"Authorization": f"Bearer {token}"}
    with engine.connect() as slow:
        transaction = slow.begin()  # an ingest batch still working: its alert event holds the smaller id
        context = meter_context(slow, "MA1")
        assert context is not None
        now = time.time()
        first = AlertManager().apply(slow, context, Finding("MA1", "no_activity", "high", now, "未用水", "no use"), now)
        raise_alert(engine, "MA2")  # committed at once, with a larger id, before the stream opens
        if resume:  # the client saw the newer event on a stream before this one
            with engine.connect() as conn:
                headers["Last-Event-ID"] = str(conn.execute(select(func.max(alert_events.c.id))).scalar_one())
        with httpx.Client(timeout=10) as client, client.stream("GET", f"{base}/alerts/stream", headers=headers) as s:
            assert s.status_code == 200  # the stream has taken its starting point
            transaction.commit()
            lines = s.iter_lines()
            assert _next_alert(lines)["alert_id"] == first
            client.post(f"{base}/alerts/{first}/ack", json={"note": "on my way"}, headers=headers).raise_for_status()
            change = _next_alert(lines)  # not the newer alert, stored before the stream began
        assert (change["alert_id"], change["state"]) == (first, "acknowledged")
