"""Users and their roles, and the tokens and API keys they hold (admin only).

The rules (password policy, revoking tokens on disable or new password) live in
:mod:`store.users`, shared with ``tapwatch user`` and ``tapwatch token``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from api.deps import AuditedList, ConnDep, CurrentUser, PageDep, SettingsDep, allow
from api.listing import fetch_page, sort_query
from api.models import (
    RoleName,
    TokenList,
    TokenPublic,
    UserCreate,
    UserList,
    UserPublic,
    UserUpdate,
    to_dt,
    to_dt_or_none,
)
from api.problems import AUTH_RESPONSES, responses
from store import audit
from store.schema import users
from store.users import (
    community_names,
    create_user,
    hash_password,
    hold_user,
    list_tokens,
    no_community_problem,
    password_problem,
    revoke_token,
    revoke_user_tokens,
    unknown_communities_problem,
)

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Depends(allow("admin"))], responses=AUTH_RESPONSES)
tokens_router = APIRouter(
    prefix="/tokens", tags=["users"], dependencies=[Depends(allow("admin"))], responses=AUTH_RESPONSES
)

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


def _refuse_unknown_communities(conn: Any, communities: list[str], *, allowed: bool) -> None:
    """422 for a community no elder belongs to, naming the closest known, unless set up on purpose."""
    if allowed:
        return
    try:
        problem = unknown_communities_problem(conn, communities)
    except ValueError as exc:  # a blank name
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if problem is not None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{problem}; to set a community up before its elders are registered, send allow_new_community: true",
        )


@router.get("", response_model=UserList, summary="List users.", dependencies=[AuditedList])
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
def add_user(body: UserCreate, conn: ConnDep, user: CurrentUser, settings: SettingsDep) -> UserPublic:
    if (words := no_community_problem(body.role, body.communities)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, words[settings.language])
    _refuse_unknown_communities(conn, body.communities, allowed=body.allow_new_community)
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
    except IntegrityError:  # another request created the same username after our check
        raise HTTPException(status.HTTP_409_CONFLICT, f"user {body.username!r} already exists") from None
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


#: Emptying a user's communities is not how access is taken away: the login would stay, seeing nothing.
_DISABLE_INSTEAD = {
    "zh": "；要收回该用户的访问权限，请停用该用户（disabled: true）",
    "en": "; to take the user's access away, disable the user (disabled: true)",
}


#: Demoting or disabling the one enabled admin left locks everyone out of users, tokens and settings.
_LAST_ADMIN = {
    "zh": "这是最后一个启用的管理员，不能降级或停用；请先将另一名用户设为管理员",
    "en": "this is the last enabled admin and cannot be demoted or disabled; make another user admin first",
}


def _removes_an_admin(body: UserUpdate) -> bool:
    """Whether the patch would take a user out of the enabled admins, if she is one."""
    return bool(body.disabled) or (body.role is not None and body.role != "admin")


def _hold_enabled_admins(conn: Any) -> list[int]:
    """The enabled admins' ids, their rows held to the end, in id order.

    Each admin's own row lock does not cover "another admin is left": two admins demoting each other at once each
    saw the other still admin. Held in one order, the second request waits, then reads who is left.
    """
    query = (
        select(users.c.user_id)
        .where(users.c.role == "admin", users.c.disabled.is_(False))
        .order_by(users.c.user_id)
        .with_for_update()
    )
    return [int(user_id) for user_id in conn.execute(query).scalars()]


def _refuse_no_community(row: Any, body: UserUpdate, language: str) -> None:
    """422 when the patch leaves a user who is no admin with no community, as ``POST /users`` refuses to make one.

    Only a patch of the role or the communities is judged: disabling a user left without one must still work.
    """
    if body.role is None and body.communities is None:
        return
    role = body.role if body.role is not None else row.role
    communities = body.communities if body.communities is not None else row.communities
    if (words := no_community_problem(role, communities)) is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, words[language] + _DISABLE_INSTEAD[language])


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    summary="Change a user's role, communities, password, or disable them (revokes their tokens).",
    responses=responses(404, 409),
)
def update_user(
    user_id: Annotated[int, Path(ge=1, le=2**53)],
    body: UserUpdate,
    conn: ConnDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> UserPublic:
    # Her row held to the end (``hold_user``, as a login and a key do): the change is judged on the user as another
    # change at once left her (one empties an admin's communities, another demotes her: each alone is allowed).
    # The enabled admins are held first (before her row, in one order, so two such patches cannot deadlock).
    admins = _hold_enabled_admins(conn) if _removes_an_admin(body) else []
    hold_user(conn, users.c.user_id == user_id)
    row = conn.execute(select(users).where(users.c.user_id == user_id)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    if user_id == user.user_id and (body.disabled or (body.role is not None and body.role != "admin")):
        raise HTTPException(status.HTTP_409_CONFLICT, "admins cannot disable or demote themselves")
    if admins and admins == [user_id]:
        raise HTTPException(status.HTTP_409_CONFLICT, _LAST_ADMIN[settings.language])
    if body.password is not None and (problem := password_problem(row.username, body.password)):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)
    _refuse_no_community(row, body, settings.language)
    if body.communities is not None:
        _refuse_unknown_communities(conn, body.communities, allowed=body.allow_new_community)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"password", "allow_new_community"})
    changes = {k: v for k, v in changes.items() if v is not None}
    if "communities" in changes:
        changes["communities"] = community_names(changes["communities"])
    if body.password is not None:
        changes["password_hash"] = hash_password(body.password)
    if changes:
        conn.execute(update(users).where(users.c.user_id == user_id).values(**changes))
    if changes.get("disabled") or "password_hash" in changes:
        revoke_user_tokens(conn, user_id)
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


def _token_public(token: dict[str, Any]) -> TokenPublic:
    return TokenPublic(
        **{
            **token,
            "created_at": to_dt(token["created_at"]),
            "expires_at": to_dt_or_none(token["expires_at"]),
            "last_used_at": to_dt_or_none(token["last_used_at"]),
        }
    )


@tokens_router.get(
    "",
    response_model=TokenList,
    summary="Login tokens and API keys still valid, oldest first (never their values).",
    dependencies=[AuditedList],
)
def list_all_tokens(
    page: PageDep,
    conn: ConnDep,
    username: Annotated[str | None, Query(max_length=128, description="Only this user's tokens.")] = None,
) -> TokenList:
    found = list_tokens(conn, username=username, now=time.time())
    data = [_token_public(t) for t in found[page.offset : page.offset + page.limit]]
    return TokenList(data=data, count=len(found))


@tokens_router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke one token or API key (audited); its holder is refused from the next request on.",
    responses=responses(404),
)
def revoke(token_id: Annotated[int, Path(ge=1, le=2**53)], conn: ConnDep, user: CurrentUser) -> Response:
    token = revoke_token(conn, token_id)
    if token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token {token_id}")
    audit.record(
        conn,
        actor=user.username,
        action="token.revoke",
        target=f"user:{token['username']}",
        community=None,
        old={"token_id": token_id, "name": token["name"]},
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
