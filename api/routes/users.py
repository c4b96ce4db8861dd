"""Users and their roles (admin only)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from sqlalchemy import delete, select, update

from api.deps import ConnDep, CurrentUser, PageDep, allow
from api.listing import fetch_page, sort_query
from api.models import RoleName, UserCreate, UserList, UserPublic, UserUpdate, to_dt
from api.problems import AUTH_RESPONSES, responses
from store import audit
from store.schema import api_tokens, users
from store.users import create_user, hash_password

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Depends(allow("admin"))], responses=AUTH_RESPONSES)

SORTS = {"username": users.c.username, "role": users.c.role, "created_at": users.c.created_at}
UserSort = sort_query(list(SORTS), "username")


def _public(row: Any) -> UserPublic:
    m = row._mapping
    return UserPublic(
        user_id=m["user_id"],
        username=m["username"],
        role=m["role"],
        communities=list(m["communities"] or []),
        created_at=to_dt(m["created_at"]),
        disabled=bool(m["disabled"]),
    )


def _summary(row: Any) -> dict[str, Any]:
    return {"role": row.role, "communities": list(row.communities or []), "disabled": bool(row.disabled)}


@router.get("", response_model=UserList, summary="List users.")
def list_users(
    conn: ConnDep,
    page: PageDep,
    role: RoleName | None = None,
    sort: Annotated[str, UserSort] = "username",
) -> UserList:
    where = [users.c.role == role] if role else []
    rows, count = fetch_page(conn, select(users), where, sort, SORTS, users.c.user_id, page)
    return UserList(data=[_public(r) for r in rows], count=count)


@router.post(
    "",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user.",
    responses=responses(409),
)
def add_user(body: UserCreate, conn: ConnDep, user: CurrentUser) -> UserPublic:
    try:
        user_id = create_user(
            conn,
            username=body.username,
            password=body.password,
            role=body.role,
            communities=body.communities,
            now=time.time(),
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    row = conn.execute(select(users).where(users.c.user_id == user_id)).one()
    audit.record(
        conn,
        actor=user.username,
        action="user.create",
        target=f"user:{body.username}",
        community=None,
        new=_summary(row),
    )
    return _public(row)


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    summary="Change a user's role, communities, password, or disable them (revokes their tokens).",
    responses=responses(404, 409),
)
def update_user(
    user_id: Annotated[int, Path(ge=1, le=2**53)], body: UserUpdate, conn: ConnDep, user: CurrentUser
) -> UserPublic:
    row = conn.execute(select(users).where(users.c.user_id == user_id)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    if user_id == user.user_id and (body.disabled or (body.role is not None and body.role != "admin")):
        raise HTTPException(status.HTTP_409_CONFLICT, "admins cannot disable or demote themselves")
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"password"})
    changes = {k: v for k, v in changes.items() if v is not None}
    if "communities" in changes:
        changes["communities"] = sorted(set(changes["communities"]))
    if body.password is not None:
        changes["password_hash"] = hash_password(body.password)
    if changes:
        conn.execute(update(users).where(users.c.user_id == user_id).values(**changes))
    if changes.get("disabled") or "password_hash" in changes:
        conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
    new = conn.execute(select(users).where(users.c.user_id == user_id)).one()
    new_summary = {**_summary(new), **({"password": "changed"} if body.password is not None else {})}
    audit.record(
        conn,
        actor=user.username,
        action="user.update",
        target=f"user:{row.username}",
        community=None,
        old=_summary(row),
        new=new_summary,
    )
    return _public(new)
