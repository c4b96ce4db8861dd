"""Every route of the app needs a valid token, except the few the app declares public.

The routes are enumerated from the app itself (as the OpenAPI document is), so
a route added later without authentication fails this test without anyone
remembering to list it. Each protected route, with every method, is called
with no token, with malformed ones and with a real but expired one, in the
``Authorization`` header and in the ``access_token`` query (which the event
stream accepts); each must answer 401 ``application/problem+json`` with
``WWW-Authenticate: Bearer``, never 2xx, never 5xx.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.problems import PROBLEM_JSON
from store.users import issue_token
from tests.api_fixtures import Api, api_env  # noqa: F401
from tests.helpers import PUBLIC_MOUNTS, PUBLIC_ROUTES, every_route, protected_routes, unprotected_mounts

MALFORMED = [
    "Bearer",
    "Bearer ",
    "Bearer not-a-token",
    "Bearer " + "x" * 4096,
    "Basic eDp5",
    "bearer\tnot-a-token",
    "Token abc",
]
_PATH_PARAM = re.compile(r"\{[^}]+\}")


def expired_token(api: Api) -> str:
    """A real admin token that expired an hour ago: admin would see everything if expiry were not checked."""
    with api.engine.begin() as conn:
        token, _ = issue_token(conn, api.user_ids["admin"], "expired", time.time() - 7200, 3600)
    return token


def bad_credentials(expired: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(what, headers, query) for every way of calling without a valid token."""
    cases: list[tuple[str, dict[str, str], dict[str, str]]] = [("no token", {}, {})]
    cases += [(f"malformed {value[:20]!r}", {"Authorization": value}, {}) for value in MALFORMED]
    cases.append(("expired", {"Authorization": f"Bearer {expired}"}, {}))
    cases.append(("malformed in query", {}, {"access_token": "not-a-token"}))
    cases.append(("expired in query", {}, {"access_token": expired}))
    return cases


def refusals_missing(client: TestClient, routes: list[tuple[str, str]], expired: str) -> list[tuple[Any, ...]]:
    """(method, path, credentials, status, content type, challenge) of each call not refused as it must be."""
    wrong = []
    for method, path in routes:
        url = _PATH_PARAM.sub("x1", path)  # any value: authentication comes before looking anything up
        for what, headers, query in bad_credentials(expired):
            response = client.request(method, url, headers=headers, params=query)
            headers_got = response.headers
            answer = (response.status_code, headers_got.get("content-type"), headers_got.get("www-authenticate"))
            if answer != (401, PROBLEM_JSON, "Bearer"):
                wrong.append((method, path, what, *answer))
    return wrong


def test_every_route_but_the_declared_public_ones_refuses_missing_malformed_and_expired_tokens(api: Api) -> None:
    routes = protected_routes(api.app)
    assert len(routes) >= 30  # the enumeration really sees the included routers (39 today)
    assert ("GET", "/alerts/stream") in routes and ("DELETE", "/elders/{elder_id}/away/{window_id}") in routes
    assert refusals_missing(api.client, routes, expired_token(api)) == []
    assert unprotected_mounts(api.app) == []


def test_the_declared_public_routes_exist_and_answer_without_a_token(api: Api) -> None:
    found = set(every_route(api.app))
    assert found >= PUBLIC_ROUTES, PUBLIC_ROUTES - found  # no stale entry widening the public list
    assert {("MOUNT", path) for path in PUBLIC_MOUNTS} <= found
    for method, path in sorted(PUBLIC_ROUTES):
        if method in ("GET", "HEAD") and path != "/docs/oauth2-redirect":
            assert api.client.request(method, path).status_code == 200, (method, path)
    assert api.client.get("/static/app.js").status_code == 200


@pytest.mark.allow_log_exceptions  # the broken route's 500 is logged, as it must be
def test_a_route_added_without_authentication_is_caught(api: Api) -> None:
    @api.app.get("/elders/{elder_id}/export")
    def export(elder_id: str) -> dict[str, str]:  # forgot CurrentUser: anyone could read it
        return {"elder_id": elder_id}

    @api.app.post("/maintenance/vacuum")
    def vacuum() -> None:
        raise RuntimeError("a broken unauthenticated route answers 500")

    added = [("GET", "/elders/{elder_id}/export"), ("POST", "/maintenance/vacuum")]
    assert all(route in protected_routes(api.app) for route in added)  # enumerated without being listed
    client = TestClient(api.app, raise_server_exceptions=False)
    wrong = refusals_missing(client, added, expired_token(api))
    assert len(wrong) == len(added) * len(bad_credentials("x"))  # every credential case flagged, for both
    assert {(method, status) for method, _path, _what, status, *_ in wrong} == {("GET", 200), ("POST", 500)}
