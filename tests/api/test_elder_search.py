"""GET /elders?q= finds an elder by part of the name or id whatever the letter case, on both stores.

LIKE ignores ASCII case in SQLite and not in PostgreSQL: a cadre typing "ea1"
found elder EA1 on the embedded store and nothing on the production one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.main import create_app
from core.settings import get_settings
from tests.api_fixtures import ELDER_A, ELDER_B, add_elder, add_user


@pytest.fixture
def client(any_engine: Engine) -> Iterator[tuple[TestClient, dict[str, str]]]:
    add_elder(any_engine, ELDER_A)
    add_elder(any_engine, {**ELDER_B, "elder_id": "EB1", "name": "Anna Schmidt"})
    _user_id, token = add_user(any_engine, "admin", "admin", [])
    with TestClient(create_app(get_settings(), any_engine)) as test_client:
        yield test_client, {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("q", "found"), [("EA1", ["EA1"]), ("ea1", ["EA1"]), ("schmidt", ["EB1"]), ("%", [])])
def test_search_ignores_letter_case(client: tuple[TestClient, dict[str, str]], q: str, found: list[str]) -> None:
    test_client, headers = client
    listed = test_client.get("/elders", params={"q": q}, headers=headers).json()
    assert [e["elder_id"] for e in listed["data"]] == found
