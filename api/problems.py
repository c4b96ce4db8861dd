"""RFC 9457 problem details for every error the API returns, and their OpenAPI description."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)
#: Seconds a client is asked to wait before sending again a request the busy store refused.
STORE_BUSY_RETRY_S = 2


class FieldError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no elder 'E9'"}]
        },
    )

    type: str = "about:blank"
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | None = None
    errors: list[FieldError] | None = None


def _describe(status: int) -> dict[str, Any]:
    return {"model": Problem, "description": HTTPStatus(status).phrase}


#: Errors every authenticated route may answer with; routes add their own (404, 409, ...).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _describe(400),
    401: _describe(401),
    403: _describe(403),
    422: _describe(422),
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: _describe(status) for status in statuses}


def problem(status: int, title: str, detail: str = "", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else ""
        response = problem(exc.status_code, _title(exc.status_code), detail)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return problem(422, _title(422), "the request does not match the schema", errors=errors)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _store_busy(request: Request, exc: Exception) -> JSONResponse:
        # The store was locked, busy or briefly unreachable (SQLite's write lock, a PostgreSQL lock timeout or
        # dropped connection, every pooled connection in use): nothing is wrong with the request, and it may be
        # sent again. Only the error's type and first line are logged: a statement's parameters may name people.
        cause = getattr(exc, "orig", None) or exc
        first_line = (str(cause).splitlines() or [""])[0][:200]
        log.warning("store busy in %s %s: %s: %s", request.method, request.url.path, type(cause).__name__, first_line)
        response = problem(503, _title(503), "the store is busy; send the request again in a moment")
        response.headers["Retry-After"] = str(STORE_BUSY_RETRY_S)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return problem(500, _title(500), "unexpected error; it has been logged")


def problem_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses are ``application/problem+json``, not ``application/json``: say so in the document."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content")
                if str(status)[0] in "45" and content and "application/json" in content:
                    response["content"] = {PROBLEM_JSON: content.pop("application/json")}
    return schema
