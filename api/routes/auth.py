"""Log in for a token, log out, and who am I."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import delete

from api.deps import ConnDep, CurrentUser, SettingsDep
from api.models import Me, TokenResponse
from api.problems import AUTH_RESPONSES, responses
from api.security import LoginLimiter, authenticate
from store import audit
from store.schema import api_tokens
from store.users import issue_token

router = APIRouter(tags=["auth"])


def _limiter(request: Request) -> LoginLimiter:
    return request.app.state.login_limiter


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    summary="Log in with username and password (OAuth2 password flow) for a bearer token.",
    responses=responses(400, 401, 422, 429),
)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    limiter: Annotated[LoginLimiter, Depends(_limiter)],
) -> TokenResponse:
    key = (form.username[:128], request.client.host if request.client else "")
    wait = limiter.retry_after(key)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; try again later", {"Retry-After": str(wait)}
        )
    principal = authenticate(conn, form.username, form.password)
    if principal is None:
        limiter.failed(key)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "wrong username or password", headers={"WWW-Authenticate": "Bearer"}
        )
    limiter.succeeded(key)
    audit.record(
        conn, actor=principal.username, action="auth.login", target=f"user:{principal.username}", community=None
    )
    ttl = settings.token_ttl_hours * 3600
    token, _ = issue_token(conn, principal.user_id, "login", time.time(), ttl)
    return TokenResponse(
        access_token=token,
        expires_in=int(ttl),
        role=principal.role,  # type: ignore[arg-type]
        communities=list(principal.communities),
        username=principal.username,
    )


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke the token this request was made with.",
    responses=AUTH_RESPONSES,
)
def logout(user: CurrentUser, conn: ConnDep) -> Response:
    conn.execute(delete(api_tokens).where(api_tokens.c.token_id == user.token_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=Me, summary="The caller: username, role and communities.", responses=AUTH_RESPONSES)
def me(user: CurrentUser) -> Me:
    return Me(
        user_id=user.user_id,
        username=user.username,
        role=user.role,  # type: ignore[arg-type]
        communities=list(user.communities),
    )
