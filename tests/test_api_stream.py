"""Live alerts over server-sent events, against a real uvicorn on a loopback port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from api.main import create_app
from core.settings import get_settings
from tests.api_fixtures import ELDER_A, ELDER_B, USERS, add_elder, add_user, raise_alert
from tests.conftest import free_port, wait_until


@pytest.fixture
def server(engine: Engine) -> Iterator[tuple[str, dict[str, str]]]:
    tokens = {name: add_user(engine, name, role, communities)[1] for name, (role, communities) in USERS.items()}
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    port = free_port()
    app = create_app(get_settings(sse_poll_s=0.1), engine)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    assert wait_until(lambda: srv.started, 10)
    yield f"http://127.0.0.1:{port}", tokens
    srv.should_exit = True
    thread.join(10)


def _first_event(response: httpx.Response, deadline_s: float) -> dict[str, Any]:
    event: dict[str, Any] = {}
    deadline = time.monotonic() + deadline_s
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            break
        if line.startswith("event: "):
            event["event"] = line[7:]
        elif line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])
        elif line == "" and "data" in event:
            return event
    raise AssertionError("no event arrived")


def test_stream_sends_alerts_of_own_communities_only(server: tuple[str, dict[str, str]], engine: Engine) -> None:
    base, tokens = server
    raised: list[str] = []

    def raise_later() -> None:
        time.sleep(0.5)
        raise_alert(engine, "MB1")  # community B first: a cadre of A must never see it
        raised.append(raise_alert(engine, "MA1"))

    with httpx.Client(timeout=10) as client:
        url = f"{base}/alerts/stream"
        with client.stream("GET", url, params={"access_token": tokens["cadre_a"]}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            threading.Thread(target=raise_later, daemon=True).start()
            event = _first_event(response, 8)
    assert event["event"] == "alert"
    assert event["data"]["alert_id"] == raised[0] and event["data"]["community"] == ELDER_A["community"]
    assert event["data"]["state"] in ("open", "notified")
    assert int(event["id"]) > 0


def test_stream_resumes_after_last_event_id_and_reports_changes(
    server: tuple[str, dict[str, str]], engine: Engine
) -> None:
    base, tokens = server
    alert_id = raise_alert(engine, "MA1")
    headers = {"Authorization": f"Bearer {tokens['cadre_a']}", "Last-Event-ID": "0"}
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", f"{base}/alerts/stream", headers=headers) as response:
            first = _first_event(response, 5)  # events already stored are replayed after id 0
        assert first["data"]["alert_id"] == alert_id
        client.post(
            f"{base}/alerts/{alert_id}/ack",
            json={"note": "on my way"},
            headers={"Authorization": f"Bearer {tokens['cadre_a']}"},
        ).raise_for_status()
        headers["Last-Event-ID"] = first["id"]
        with client.stream("GET", f"{base}/alerts/stream", headers=headers) as response:
            change = _first_event(response, 5)
    assert change["data"]["alert_id"] == alert_id and change["data"]["state"] == "acknowledged"


def test_stream_needs_a_token(server: tuple[str, dict[str, str]]) -> None:
    base, _tokens = server
    response = httpx.get(f"{base}/alerts/stream", params={"access_token": "nope"}, timeout=5)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
