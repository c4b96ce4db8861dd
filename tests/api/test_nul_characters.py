"""A NUL character in a URL or a login answers 400 problem+json on both stores: PostgreSQL cannot compare or
store one, so each route that looked it up failed with a 500 there (SQLite answered 404 or an empty list).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.main import create_app
from api.problems import PROBLEM_JSON
from core.settings import get_settings
from tests.api_fixtures import ELDER_A, add_elder, add_user

URLS = [
    "/elders/EA1%00",
    "/elders?q=%00",
    "/elders?community=%E5%A4%A7%00",
    "/meters/MA1%00/readings",
    "/alerts?elder_id=EA1%00",
    "/alerts/x%00/events",
    "/audit?actor=admin%00",
    "/devices?community=%00",
    "/reports/outcomes?community=%00",
    "/alerts/stream?access_token=%00",
]


@pytest.fixture
def client(any_engine: Engine) -> Iterator[tuple[TestClient, dict[str, str]]]:
    add_elder(any_engine, ELDER_A)
    _user_id, token = add_user(any_engine, "admin", "admin", [])
    with TestClient(create_app(get_settings(), any_engine), raise_server_exceptions=False) as test_client:
        yield test_client, {"Authorization": f"Bearer {token}"}


def test_a_nul_in_the_url_answers_400_not_500(client: tuple[TestClient, dict[str, str]]) -> None:
    test_client, headers = client
    for url in URLS:
        answer = test_client.get(url, headers=headers)
        assert (url, answer.status_code) == (url, 400)
        assert answer.headers["content-type"] == PROBLEM_JSON
    assert test_client.get("/elders/EA1", headers=headers).status_code == 200  # the same elder without it


def test_a_nul_in_the_login_username_answers_400_not_500(client: tuple[TestClient, dict[str, str]]) -> None:
    test_client, _headers = client
    answer = test_client.post("/auth/token", data={"username": "admin\x00", "password": "correct horse battery"})
    assert answer.status_code == 400 and answer.headers["content-type"] == PROBLEM_JSON
    assert test_client.post("/auth/token", data={"username": "admin", "password": "x" * 10}).status_code == 401
