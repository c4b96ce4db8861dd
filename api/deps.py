"""Dependencies shared by routes: store, service, settings, time series, the caller and their role."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import Connection, Engine

from alerts.manager import AlertManager
from api.security import Principal, principal_for_token, roles_text
from core.metrics import Metrics
from core.settings import Settings
from store import audit
from timeseries.sql import Timeseries


class MonitorService(Protocol):
    """What the API uses of a monitor running in the same process (``tapwatch.service.Service``).

    Declared here, on the API's floor, so the API never imports the application above it.
    """

    @property
    def metrics(self) -> Metrics: ...

    @property
    def alert_manager(self) -> AlertManager: ...

    @property
    def timeseries(self) -> Timeseries: ...

    def readiness(self) -> dict[str, Any]:
        """Broker, store and delivery checks; refreshes their gauges."""
        ...


oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/auth/token",
    auto_error=False,
    description="A token from POST /auth/token, or a long-lived API key from `tapwatch token create`.",
)

_BEARER = {"WWW-Authenticate": "Bearer"}


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_caller(request: Request, engine: Annotated[Engine, Depends(get_engine)]) -> Principal | None:
    """The caller behind the request's bearer token, or ``None``; looked up once per request, before its
    connection is taken (:func:`get_conn`), in a short transaction of its own."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer" or not token:
        return None
    with engine.begin() as conn:
        caller = principal_for_token(conn, token, time.time())
    request.state.caller = caller  # its answer tells her rights as they are now (api.security.AccessHeader)
    return caller


def get_conn(
    engine: Annotated[Engine, Depends(get_engine)], _caller: Annotated[Principal | None, Depends(get_caller)]
) -> Iterator[Connection]:
    """One transaction per request: committed on success, rolled back on any error; before the answer is sent
    (``scope="function"`` on :data:`ConnDep`), so a caller told a change was made reads it back on its next
    request, and a commit that fails answers an error, not the 200 of a change lost.

    The caller is known before the connection is taken: a request holding its connection never waits for a
    second one, which a burst of requests, each holding one, would wait for until the pool's timeout (500).
    """
    with engine.begin() as conn:
        yield conn


def get_service(request: Request) -> MonitorService | None:
    return request.app.state.service


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_timeseries(request: Request) -> Timeseries:
    return request.app.state.timeseries


def get_alert_manager(request: Request) -> AlertManager:
    return request.app.state.alert_manager


ConnDep = Annotated[Connection, Depends(get_conn, scope="function")]
EngineDep = Annotated[Engine, Depends(get_engine)]
ServiceDep = Annotated[MonitorService | None, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
TimeseriesDep = Annotated[Timeseries, Depends(get_timeseries)]
AlertManagerDep = Annotated[AlertManager, Depends(get_alert_manager)]


def _principal(request: Request, engine: Engine, token: str | None) -> Principal:
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required", headers=_BEARER)
    with engine.begin() as conn:  # short and separate: streaming routes must not hold a transaction
        principal = principal_for_token(conn, token, time.time())
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the token is unknown or expired", headers=_BEARER)
    request.state.caller = principal
    return principal


def get_principal(
    token: Annotated[str | None, Depends(oauth2_scheme)], caller: Annotated[Principal | None, Depends(get_caller)]
) -> Principal:
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required", headers=_BEARER)
    if caller is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the token is unknown or expired", headers=_BEARER)
    return caller


def get_principal_for_stream(
    request: Request,
    engine: EngineDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    access_token: Annotated[
        str | None,
        Query(max_length=256, description="The token, for EventSource clients that cannot set headers."),
    ] = None,
) -> Principal:
    return _principal(request, engine, token or access_token)


CurrentUser = Annotated[Principal, Depends(get_principal)]
StreamUser = Annotated[Principal, Depends(get_principal_for_stream)]


def allow(*roles: str) -> Callable[[Principal], Principal]:
    """A route dependency admitting only ``roles``: ``dependencies=[Depends(allow("admin"))]``."""

    def guard(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles: {roles_text(roles)}")
        return user

    guard.__name__ = "allow_" + "_".join(roles)
    return guard


def require_community(user: Principal, community: str | None) -> None:
    """404, not 403, for what lies outside the caller's communities: existence must not leak."""
    if not user.sees(community):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")


class Page:
    """``limit`` and ``offset`` of every list."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip.")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PageDep = Annotated[Page, Depends()]


def audit_list(request: Request, conn: ConnDep, user: CurrentUser) -> None:
    """A route dependency auditing a list call: who listed what, with which filters (admins read these)."""
    # A repeated filter (?kind=a&kind=b) is kept whole: dict() of the parameters keeps only its last value.
    filters: dict[str, Any] = {
        key: request.query_params.getlist(key) for key in request.query_params if key != "access_token"
    }  # a token sent in the URL as well as the header is a secret, not a filter
    filters = {key: values[0] if len(values) == 1 else values for key, values in filters.items()}
    audit.record(
        conn,
        actor=user.username,
        action="list.read",
        target=request.url.path,
        community=None,
        new=filters or None,
    )


AuditedList = Depends(audit_list)

ANY_ROLE = ("admin", "operator", "cadre", "platform")
#: Who may read an elder's water use (readings, usage, routine) and learned thresholds: never the platform,
#: which gets only what a work order needs (docs/alerts.md).
PERSONAL_READERS = ("admin", "operator", "cadre")
REGISTRY_WRITERS = ("admin", "cadre")
ALERT_HANDLERS = ("admin", "cadre", "platform")
THRESHOLD_WRITERS = ("admin", "operator")
OPERATIONS = ("admin", "operator")
