"""Property-based API tests: schemathesis generates requests from the OpenAPI document and checks responses.

Runs against the ASGI app over a real migrated SQLite store seeded with users,
elders, readings and alerts, as an admin. Every response must be a documented
status with a documented content type and match its schema, and none may be a
server error. ``fail_on_log_exception`` (conftest) also fails on any logged
traceback. Left out: ``/alerts/stream`` (never ends by design; tested in
test_api_stream.py), ``/auth/logout`` and ``PATCH /users/{user_id}`` (they would
revoke the admin token the run uses).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from api.main import create_app
from core.settings import get_settings
from store import open_store
from tests.api_fixtures import ELDER_A, ELDER_B, USERS, add_elder, add_user, raise_alert
from tests.helpers import daily_pattern, ingest

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, dict[str, str]]]:
    engine = open_store(f"sqlite:///{Path(tmp_path_factory.mktemp('schemathesis')) / 'api.db'}")
    tokens = {name: add_user(engine, name, role, communities)[1] for name, (role, communities) in USERS.items()}
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    ingest(engine, "MA1", daily_pattern(3, time.time()))
    raise_alert(engine, "MA1", "routine_change")
    raise_alert(engine, "MB1", "meter_offline")
    yield engine, tokens
    engine.dispose()


@pytest.fixture(scope="module")
def api_schema(seeded: tuple[Engine, dict[str, str]]) -> Any:
    engine, _tokens = seeded
    app = create_app(get_settings(login_max_failures=1000), engine)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def admin_headers(seeded: tuple[Engine, dict[str, str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded[1]['admin']}"}


SKIPPED = {("GET", "/alerts/stream"), ("POST", "/auth/logout"), ("PATCH", "/users/{user_id}")}
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}


def _check_operation(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:  # nothing to negate (no query or body): the positive run covers it
        assert mode is GenerationMode.NEGATIVE


def test_api_conforms_to_its_openapi_document(api_schema: Any, admin_headers: dict[str, str]) -> None:
    failures: list[str] = []
    tested = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        tested += 1
        negatable = len(operation.query) > 0 or len(operation.body) > 0
        for mode in EXAMPLES if negatable else [GenerationMode.POSITIVE]:
            try:
                _check_operation(operation, mode, admin_headers)
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {str(exc)[:1500]}")
    assert tested >= 30
    assert not failures, "\n\n".join(failures)
