"""API test fixtures: an app over a real migrated store, users of every role, elders in two communities.

Import the fixture into a test module with ``from tests.api_fixtures import api_env  # noqa: F401``;
it is named ``api`` in test signatures.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text

from alerts.manager import AlertManager
from api.main import create_app
from core.domain import Finding
from core.settings import Settings, get_settings
from store import open_store
from store.registry import meter_context, register_elder
from store.schema import alerts, users
from store.users import hash_password, issue_token

A, B = "大宁社区", "彭浦社区"
PASSWORD = "correct horse battery"

#: name -> (role, communities)
USERS: dict[str, tuple[str, list[str]]] = {
    "admin": ("admin", []),
    "op_a": ("operator", [A]),
    "op_b": ("operator", [B]),
    "cadre_a": ("cadre", [A]),
    "cadre_b": ("cadre", [B]),
    "platform_a": ("platform", [A]),
    "platform_all": ("platform", ["*"]),
}

ELDER_A = {
    "elder_id": "EA1",
    "meter_id": "MA1",
    "name": "李桂芳",
    "district": "静安区",
    "street": "大宁路街道",
    "community": A,
    "grid": "网格3",
    "building": "7号楼",
    "room": "201",
    "contacts": [{"name": "李强", "relation": "儿子", "phone": "13900000000"}],
}
ELDER_B = {
    **ELDER_A,
    "elder_id": "EB1",
    "meter_id": "MB1",
    "name": "王秀兰",
    "community": B,
    "building": "3号楼",
    "room": "502",
}


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)  # scrypt is slow on purpose: hash once per test session


def add_user(engine: Engine, name: str, role: str, communities: list[str]) -> tuple[int, str]:
    """A user with :data:`PASSWORD` and a fresh token."""
    with engine.begin() as conn:
        result = conn.execute(
            insert(users).values(
                username=name,
                password_hash=password_hash(),
                role=role,
                communities=communities,
                created_at=time.time(),
                disabled=False,
            )
        )
        user_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        token, _ = issue_token(conn, user_id, "test", time.time(), 3600)
    return user_id, token


def add_elder(engine: Engine, elder: dict[str, Any]) -> None:
    with engine.begin() as conn:
        register_elder(conn, {k: v for k, v in elder.items() if k != "meter_id"}, elder["meter_id"], time.time())


def raise_alert(
    engine: Engine,
    meter_id: str,
    kind: str = "no_activity",
    ts: float | None = None,
    severity: str = "high",
    basis: str = "rule",
) -> str:
    now = time.time() if ts is None else ts
    found = Finding(meter_id, kind, severity, now, "未用水", "no use", basis)
    with engine.begin() as conn:
        context = meter_context(conn, meter_id)
        assert context is not None
        alert_id = AlertManager().apply(conn, context, found, now)
    assert alert_id is not None
    return alert_id


class Api:
    """A TestClient with a token per user; ``api.get("cadre_a", "/elders")``."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.app = create_app(settings, engine)
        self.client = TestClient(self.app)
        self.tokens: dict[str, str] = {}
        self.user_ids: dict[str, int] = {}
        for name, (role, communities) in USERS.items():
            self.user_ids[name], self.tokens[name] = add_user(engine, name, role, communities)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def request(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, path, headers=self.headers(who), **kwargs)

    def get(self, who: str, path: str, **kwargs: Any) -> Any:
        return self.request(who, "GET", path, **kwargs)

    def post(self, who: str, path: str, **kwargs: Any) -> Any:
        return self.request(who, "POST", path, **kwargs)

    def put(self, who: str, path: str, **kwargs: Any) -> Any:
        return self.request(who, "PUT", path, **kwargs)

    def patch(self, who: str, path: str, **kwargs: Any) -> Any:
        return self.request(who, "PATCH", path, **kwargs)

    def delete(self, who: str, path: str, **kwargs: Any) -> Any:
        return self.request(who, "DELETE", path, **kwargs)


@pytest.fixture(name="api")
def api_env(engine: Engine) -> Iterator[Api]:
    """The app with users of every role and one elder in each of communities A and B."""
    env = Api(engine, get_settings(login_max_failures=3, login_window_s=60))
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    with env.client:
        yield env


@contextmanager
def serving(app: FastAPI) -> Iterator[tuple[str, int]]:
    """``app`` served by a real uvicorn on a free loopback port, in a thread: ``(base url, port)``."""
    from tests.conftest import free_port, wait_until

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 10), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving_on(url: str) -> Iterator[tuple[str, str, Engine]]:
    """The real app on the store at ``url`` (the race tests' PostgreSQL database), with an admin and elder A:
    ``(base url, the admin's token, the store's engine)``."""
    engine = open_store(url)
    try:
        _user_id, token = add_user(engine, "admin", "admin", [])
        add_elder(engine, ELDER_A)
        with serving(create_app(get_settings(), engine)) as (base, _port):
            yield base, token, engine
    finally:
        engine.dispose()


def waiting_on_a_lock(engine: Engine) -> int:
    """PostgreSQL sessions of this database waiting for a lock: a racing request has reached the row it shares."""
    with engine.connect() as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return int(conn.execute(text(query)).scalar_one())


def live_cases(engine: Engine, elder_id: str, since: float) -> list[tuple[str, str, float]]:
    """The cases live raised for an elder from data time ``since`` on: (meter, kind, data time), sorted."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts.c.meter_id, alerts.c.kind, alerts.c.data_ts).where(
                alerts.c.elder_id == elder_id, alerts.c.data_ts >= since
            )
        ).all()
    return sorted((r.meter_id, r.kind, round(r.data_ts)) for r in rows)


def previewed_cases(body: dict[str, Any]) -> list[tuple[str, str, float]]:
    """The alerts a backtest preview (``POST /thresholds/backtest``) counted, as :func:`live_cases` gives live's."""
    return sorted(
        (a["meter_id"], a["kind"], round(datetime.fromisoformat(a["data_time"]).timestamp())) for a in body["alerts"]
    )
