"""docs/api.md's table of routes and the app agree: the routes, the status codes each row promises, and the
query parameters and sort keys each route takes.

A platform's developer writes the client from that table and from ``/openapi.json``; a route the table
names that the app lacks, a route the app serves that the table leaves out, a status code a row promises
that the OpenAPI document does not declare (a generated client then has no case for it), or a filter the
table never names (`GET /audit?action=...`, which its own walkthrough uses) sends them wrong.
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


def _rows() -> Iterator[tuple[list[tuple[str, str]], set[str], str]]:
    """Each row of the "Routes" table: its (method, path) pairs, paths' parameters as ``{}``, the codes named,
    and the row itself."""
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
        yield routes, set(STATUS.findall(line)), line


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
    documented = {route for routes, _codes, _row in _rows() for route in routes}
    served = set(_served(openapi))
    assert len(documented) > 30, "the table was not read"
    assert documented - served == set(), "docs/api.md names routes the API does not have"
    assert served - documented == set(), "the API has routes docs/api.md does not name"


def test_every_status_code_a_row_promises_is_in_the_openapi_document(openapi: dict[str, Any]) -> None:
    """A code a row names is declared by one of the row's routes (a row naming several shares its codes)."""
    served = _served(openapi)
    missing = []
    for routes, codes, _row in _rows():
        declared = set().union(*(served.get(route, set()) for route in routes))
        missing += [f"{routes[0][0]} {routes[0][1]}: {code}" for code in sorted(codes - declared)]
    assert missing == [], "docs/api.md promises status codes the OpenAPI document does not declare"


def _sort_keys(parameter: dict[str, Any]) -> set[str]:
    """The fields a ``sort`` parameter accepts (``-field`` is the same field, descending)."""
    schema = parameter["schema"]
    if "enum" in schema:
        return {key.lstrip("-") for key in schema["enum"]}
    return set(schema["pattern"].split("(", 1)[1].split(")", 1)[0].split("|"))


def test_every_query_parameter_and_sort_key_is_named_in_its_row(openapi: dict[str, Any]) -> None:
    """Paging (``limit``, ``offset``) is said once, under Conventions; every other parameter, and every field
    ``sort`` takes, is named in the route's row (in backticks: ``filters `actor action` ``)."""
    named = {
        route: {word for code in re.findall(r"`([^`]*)`", row) for word in re.findall(r"[\w-]+", code)}
        for routes, _codes, row in _rows()
        for route in routes
    }
    missing = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            route = (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query" or parameter["name"] in ("limit", "offset"):
                    continue
                wanted = _sort_keys(parameter) if parameter["name"] == "sort" else {parameter["name"]}
                missing += [f"{route[0]} {path}: {word}" for word in sorted(wanted - named.get(route, set()))]
    assert missing == [], "docs/api.md does not name these query parameters or sort keys in the route's row"
