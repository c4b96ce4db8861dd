"""Two requests taking the same new id at once: the one that loses answers 409 problem+json, not 500.

Each route checks that an id is free, then inserts it. Between the two, another
request's insert of the same id may be under way: on PostgreSQL the second
insert waits for the first transaction and then fails on the unique key, which
answered 500 (two cadres registering the same elder from the same paper form,
two admins creating the same user).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from api.main import create_app
from api.problems import PROBLEM_JSON
from core.settings import get_settings
from store import open_store
from store.registry import register_elder
from store.schema import login_familiar
from store.users import create_user
from tests.api_fixtures import ELDER_A, PASSWORD, add_elder, add_user
from tests.conftest import wait_until

NEW = {**ELDER_A, "elder_id": "EC1", "meter_id": "MC1", "contacts": []}


@pytest.fixture
def pg(postgres_server: Any) -> Iterator[tuple[Engine, dict[str, str]]]:
    engine = open_store(postgres_server.new_database())
    add_elder(engine, ELDER_A)
    _user_id, token = add_user(engine, "admin", "admin", [])
    yield engine, {"Authorization": f"Bearer {token}"}
    engine.dispose()


def _while_another_transaction_inserts(engine: Engine, hold: Any, method: str, path: str, body: Any) -> Any:
    """Send the request while ``hold`` holds the same id uncommitted; commit once the request waits on it."""
    answers: list[Any] = []
    with engine.connect() as other:
        transaction = other.begin()
        hold(other)
        client = TestClient(create_app(get_settings(), engine), raise_server_exceptions=False)
        sender = threading.Thread(target=lambda: answers.append(client.request(method, path, **body)))
        sender.start()
        with engine.connect() as probe:
            waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
            assert wait_until(lambda: probe.execute(text(waiting)).scalar_one() > 0, 10)
        transaction.commit()
    sender.join(10)
    assert answers
    return answers[0]


def test_registering_an_elder_id_taken_meanwhile_answers_409(pg: tuple[Engine, dict[str, str]]) -> None:
    engine, headers = pg
    elder = {k: v for k, v in NEW.items() if k != "meter_id"}
    answer = _while_another_transaction_inserts(
        engine,
        lambda conn: register_elder(conn, elder, "MC9", time.time()),
        "POST",
        "/elders",
        {"json": NEW, "headers": headers},
    )
    assert answer.status_code == 409 and answer.headers["content-type"] == PROBLEM_JSON
    assert "already in use" in answer.json()["detail"]


def test_replacing_with_a_meter_id_taken_meanwhile_answers_409(pg: tuple[Engine, dict[str, str]]) -> None:
    engine, headers = pg
    elder = {k: v for k, v in NEW.items() if k != "meter_id"}
    answer = _while_another_transaction_inserts(
        engine,
        lambda conn: register_elder(conn, elder, "MC2", time.time()),
        "POST",
        "/elders/EA1/meter",
        {"json": {"meter_id": "MC2", "reason": "broken"}, "headers": headers},
    )
    assert answer.status_code == 409 and answer.headers["content-type"] == PROBLEM_JSON


def test_creating_a_username_taken_meanwhile_answers_409(pg: tuple[Engine, dict[str, str]]) -> None:
    engine, headers = pg
    community = [ELDER_A["community"]]
    body = {"username": "li.cadre", "password": "a long blue passphrase", "role": "cadre", "communities": community}
    answer = _while_another_transaction_inserts(
        engine,
        lambda conn: create_user(
            conn, username="li.cadre", password=None, role="cadre", communities=community, now=time.time()
        ),
        "POST",
        "/users",
        {"json": body, "headers": headers},
    )
    assert answer.status_code == 409 and answer.headers["content-type"] == PROBLEM_JSON


def test_two_logins_of_one_user_from_one_address_at_once_both_succeed(pg: tuple[Engine, dict[str, str]]) -> None:
    """A double tap on the login button: both logins remembered the address, and the second answered 500."""
    engine, _headers = pg
    answer = _while_another_transaction_inserts(
        engine,
        lambda conn: conn.execute(
            insert(login_familiar).values(username="admin", address="testclient", until=time.time() + 86400)
        ),
        "POST",
        "/auth/token",
        {"data": {"username": "admin", "password": PASSWORD}},
    )
    assert answer.status_code == 200 and answer.json()["username"] == "admin"
