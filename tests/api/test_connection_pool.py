"""A request takes one pooled connection at a time: a busy pool delays requests, it never deadlocks them.

Each request took its transaction's connection first, then a second one to look
its caller up. With every connection but one taken by others (a burst of
dashboards reconnecting), a request took the last one and waited for another
until the pool's timeout, and answered 500; a burst of 30 requests stalled that
way for 30 s, some of them failing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, QueuePool

from api.main import create_app
from core.settings import get_settings
from store import open_store
from tests.api_fixtures import ELDER_A, PASSWORD, add_elder, add_user


@pytest.fixture
def pg(postgres_server: Any) -> Iterator[tuple[Engine, str]]:
    engine = open_store(postgres_server.new_database())  # the production store's engine and pool
    add_elder(engine, ELDER_A)
    _user_id, token = add_user(engine, "cadre_a", "cadre", [ELDER_A["community"]])
    yield engine, token
    engine.dispose()


def test_a_request_needs_only_one_free_connection(pg: tuple[Engine, str]) -> None:
    engine, token = pg
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(get_settings(), engine), raise_server_exceptions=False) as client:
        assert client.get("/elders", headers=headers).status_code == 200
        others: list[Connection] = []
        try:
            while len(others) < pool.size() + pool._max_overflow - 1:  # all but one, as other requests would
                others.append(engine.connect())
            listed = client.get("/elders", headers=headers)
            changed = client.patch("/elders/EA1", json={"room": "302"}, headers=headers)
            refused = client.get("/elders", headers={"Authorization": "Bearer nope"})
        finally:
            for conn in others:
                conn.close()
    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert changed.status_code == 200 and changed.json()["room"] == "302"
    assert refused.status_code == 401


def test_a_login_needs_only_one_free_connection(pg: tuple[Engine, str]) -> None:
    """The login held its transaction's connection while the login limiter took others (a shift's logins)."""
    engine, _token = pg
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    with TestClient(create_app(get_settings(), engine), raise_server_exceptions=False) as client:
        others: list[Connection] = []
        try:
            while len(others) < pool.size() + pool._max_overflow - 1:
                others.append(engine.connect())
            wrong = client.post("/auth/token", data={"username": "cadre_a", "password": "not the password"})
            right = client.post("/auth/token", data={"username": "cadre_a", "password": PASSWORD})
        finally:
            for conn in others:
                conn.close()
        assert wrong.status_code == 401
        assert right.status_code == 200
        me = client.get("/me", headers={"Authorization": f"Bearer {right.json()['access_token']}"})
        assert me.json()["username"] == "cadre_a"
