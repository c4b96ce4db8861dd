"""docs/api.md's table of routes and the app agree: the routes, and the status codes each row promises.

A platform's developer writes the client from that table and from ``/openapi.json``; a route the table
names that the app lacks, a route the app serves that the table leaves out, or a status code a row promises
that the OpenAPI document does not declare (a generated client then has no case for it) sends them wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from api.main import create_app
from core.settings import get_settings
from tests.conftest import REPO

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: A status code a row may name: success codes other than the plain 200, and every error.
STATUS = re.compile(r"\b(20[1-6]|4\d\d|5\d\d)\b")


def _rows() -> Iterator[tuple[list[tuple[str, str]], set[str]]]:
    """Each row of the "Routes" table: its (method, path) pairs, paths' parameters as ``{}``, and the codes named."""
    table = (REPO / "docs" / "api.md").read_text(encoding="utf-8").split("\n## Routes\n", 1)[1].split("\n## ", 1)[0]
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        first = re.split(r"(?<!\\)\|", line)[1]
        routes: list[tuple[str, str]] = []
        methods: list[str] = []
        for written in re.findall(r"`([^`]+)`", first):
            named = re.match(rf"((?:{'|'.join(METHODS)})(?:/(?:{'|'.join(METHODS)}))*) (/\S*)", written)
            if named:
                methods, path = named[1].split("/"), named[2]
            elif written.startswith("/") and methods:  # `GET /healthz`, `/readyz`: the methods before it
                path = written
            else:  # a body such as `{note}`
                continue
            path = re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0])
            routes += [(method, path) for method in methods]
        yield routes, set(STATUS.findall(line))


@pytest.fixture
def openapi(engine: Engine) -> dict[str, Any]:
    return create_app(get_settings(), engine).openapi()


def _served(openapi: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(method, path) -> the status codes its OpenAPI operation declares."""
    return {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path)): set(operation["responses"])
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
    }


def test_the_routes_table_names_every_route_and_only_those(openapi: dict[str, Any]) -> None:
    documented = {route for routes, _codes in _rows() for route in routes}
    served = set(_served(openapi))
    assert len(documented) > 30, "the table was not read"
    assert documented - served == set(), "docs/api.md names routes the API does not have"
    assert served - documented == set(), "the API has routes docs/api.md does not name"


def test_every_status_code_a_row_promises_is_in_the_openapi_document(openapi: dict[str, Any]) -> None:
    """A code a row names is declared by one of the row's routes (a row naming several shares its codes)."""
    served = _served(openapi)
    missing = []
    for routes, codes in _rows():
        declared = set().union(*(served.get(route, set()) for route in routes))
        missing += [f"{routes[0][0]} {routes[0][1]}: {code}" for code in sorted(codes - declared)]
    assert missing == [], "docs/api.md promises status codes the OpenAPI document does not declare"
