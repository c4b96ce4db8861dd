"""Log in for a token, log out, and who am I.

A failed login is refused after the same scrypt work whether or not the user
exists, logged (the username only when it is a real user: a password typed in
the username field must not reach the logs), audited (``auth.failed``) and
counted in ``tapwatch_login_failures_total``; :class:`api.security.LoginLimiter`
slows guessing down per username, per address and overall.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import Engine, delete

from api.deps import ConnDep, CurrentUser, EngineDep, SettingsDep
from api.models import Me, TokenResponse
from api.problems import AUTH_RESPONSES, responses
from api.security import LoginLimiter, check_login, client_address
from core.metrics import Metrics
from store import audit
from store.schema import api_tokens
from store.users import find_user, issue_login_token

router = APIRouter(tags=["auth"])
log = logging.getLogger(__name__)


def _limiter(request: Request) -> LoginLimiter:
    return request.app.state.login_limiter


def request_address(request: Request) -> str:
    """The caller's address, through the proxies named in ``trusted_proxies`` only."""
    peer = request.client.host if request.client else ""
    return client_address(peer, request.headers.get("x-forwarded-for"), request.app.state.trusted_proxies)


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    summary="Log in with username and password (OAuth2 password flow) for a bearer token.",
    responses=responses(400, 401, 413, 422, 429),
)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    limiter: Annotated[LoginLimiter, Depends(_limiter)],
) -> TokenResponse:
    if "\x00" in form.username:  # no user is named so, and PostgreSQL cannot compare it (a 500 otherwise)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the username holds a NUL character")
    username, address = form.username[:128], request_address(request)
    metrics: Metrics = request.app.state.metrics
    wait = limiter.retry_after(username, address)
    if wait:
        metrics.login_failures.labels(reason="limited").inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; try again later", {"Retry-After": str(wait)}
        )
    # One pooled connection at a time (the limiter takes its own): logins at the start of a shift must not
    # each hold one and wait for another until the pool's timeout.
    with engine.connect() as conn:
        checked = check_login(conn, form.username, form.password)
    if checked is None:
        limiter.failed(username, address)
        _failed(engine, metrics, username, address)
        raise _wrong_password()
    principal, checked_hash = checked
    limiter.succeeded(username, address)
    ttl = settings.token_ttl_hours * 3600
    with engine.begin() as conn:
        issued = issue_login_token(conn, principal.user_id, checked_hash, time.time(), ttl)
        if issued is None:  # a new password or disabling her committed since hers was checked: no token for it
            raise _wrong_password()
        audit.record(
            conn, actor=principal.username, action="auth.login", target=f"user:{principal.username}", community=None
        )
        token, _ = issued
    return TokenResponse(
        access_token=token,
        expires_in=int(ttl),
        role=principal.role,  # type: ignore[arg-type]
        communities=list(principal.communities),
        username=principal.username,
    )


def _wrong_password() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, "wrong username or password", headers={"WWW-Authenticate": "Bearer"}
    )


def _failed(engine: Engine, metrics: Metrics, username: str, address: str) -> None:
    """Log, audit and count a failed login, in a transaction of its own (the request's is rolled back)."""
    with engine.begin() as conn:
        known = find_user(conn, username) is not None
        who = username if known else "(unknown)"
        audit.record(
            conn,
            actor=who,
            action="auth.failed",
            target=f"user:{who}",
            community=None,
            new={"address": address},
        )
    metrics.login_failures.labels(reason="password" if known else "unknown_user").inc()
    log.warning("failed login for %s from %s", f"user {username!r}" if known else "an unknown username", address)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke the token this request was made with.",
    responses=AUTH_RESPONSES,
)
def logout(user: CurrentUser, conn: ConnDep) -> Response:
    conn.execute(delete(api_tokens).where(api_tokens.c.token_id == user.token_id))
    # Audited as the login and a revoke by an admin are: the trail shows when each session ended.
    audit.record(
        conn,
        actor=user.username,
        action="auth.logout",
        target=f"user:{user.username}",
        community=None,
        old={"token_id": user.token_id},
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=Me, summary="The caller: username, role and communities.", responses=AUTH_RESPONSES)
def me(user: CurrentUser) -> Me:
    return Me(
        user_id=user.user_id,
        username=user.username,
        role=user.role,  # type: ignore[arg-type]
        communities=list(user.communities),
    )
