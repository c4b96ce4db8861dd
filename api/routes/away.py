"""Away and snooze windows: times when an elder is known not to be home, or no-use alerts are muted."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from sqlalchemy import delete, insert, select

from api.deps import REGISTRY_WRITERS, AuditedList, ConnDep, CurrentUser, PageDep, allow
from api.listing import fetch_page, sort_query
from api.lookups import active_meter_id, load_elder, lock_active_elder
from api.models import AwayCreate, AwayList, AwayPublic, WindowKind, to_dt
from api.problems import AUTH_RESPONSES, responses
from store import audit
from store.registry import lock_elder
from store.schema import away_windows
from store.versions import mark_changed

router = APIRouter(prefix="/elders/{elder_id}/away", tags=["away"], responses={**AUTH_RESPONSES, **responses(404)})

SORTS = {"start": away_windows.c.start_ts, "end": away_windows.c.end_ts, "created_at": away_windows.c.created_at}
AwaySort = sort_query(list(SORTS), "-start")


def _public(row: Any) -> AwayPublic:
    return AwayPublic(
        window_id=row.id,
        elder_id=row.elder_id,
        kind=row.kind,
        start=to_dt(row.start_ts),
        end=to_dt(row.end_ts),
        reason=row.reason,
        created_by=row.created_by,
        created_at=to_dt(row.created_at),
    )


def _invalidate(conn: Any, elder_id: str) -> None:
    """Every worker reloads the elder's meter with its new windows (in this change's transaction)."""
    meter_id = active_meter_id(conn, elder_id)
    if meter_id is not None:
        mark_changed(conn, [meter_id])


@router.get("", response_model=AwayList, summary="The elder's away and snooze windows.", dependencies=[AuditedList])
def list_windows(
    elder_id: str,
    conn: ConnDep,
    user: CurrentUser,
    page: PageDep,
    kind: WindowKind | None = None,
    current: Annotated[bool, Query(description="Only windows not yet over.")] = False,
    sort: Annotated[str, AwaySort] = "-start",
) -> AwayList:
    load_elder(conn, user, elder_id)
    where: list[Any] = [away_windows.c.elder_id == elder_id]
    if kind is not None:
        where.append(away_windows.c.kind == kind)
    if current:
        where.append(away_windows.c.end_ts > time.time())
    rows, count = fetch_page(conn, select(away_windows), where, sort, SORTS, away_windows.c.id, page)
    return AwayList(data=[_public(r) for r in rows], count=count)


@router.post(
    "",
    response_model=AwayPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add an away or snooze window; no-use alerts are muted inside it.",
    dependencies=[Depends(allow(*REGISTRY_WRITERS))],
    responses=responses(409),
)
def add_window(elder_id: str, body: AwayCreate, conn: ConnDep, user: CurrentUser) -> AwayPublic:
    elder = lock_active_elder(conn, user, elder_id)
    now = time.time()
    result = conn.execute(
        insert(away_windows).values(
            elder_id=elder_id,
            kind=body.kind,
            start_ts=body.start.timestamp(),
            end_ts=body.end.timestamp(),
            reason=body.reason,
            created_by=user.username,
            created_at=now,
        )
    )
    window_id = result.inserted_primary_key[0]  # type: ignore[index]
    row = conn.execute(select(away_windows).where(away_windows.c.id == window_id)).one()
    audit.record(
        conn,
        actor=user.username,
        action="away.create",
        target=f"elder:{elder_id}",
        community=elder["community"],
        new=_public(row).model_dump(mode="json", include={"window_id", "kind", "start", "end"}),
        reason=body.reason,
        at=now,
    )
    _invalidate(conn, elder_id)
    return _public(row)


@router.delete(
    "/{window_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an away or snooze window.",
    dependencies=[Depends(allow(*REGISTRY_WRITERS))],
)
def remove_window(
    elder_id: str,
    window_id: Annotated[int, Path(ge=1, le=2**53)],
    conn: ConnDep,
    user: CurrentUser,
) -> Response:
    lock_elder(conn, elder_id)  # then read her: a move committed meanwhile is what the caller is checked against
    elder = load_elder(conn, user, elder_id)
    row = conn.execute(
        select(away_windows).where(away_windows.c.id == window_id, away_windows.c.elder_id == elder_id)
    ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no window {window_id} for elder {elder_id!r}")
    conn.execute(delete(away_windows).where(away_windows.c.id == window_id))
    audit.record(
        conn,
        actor=user.username,
        action="away.delete",
        target=f"elder:{elder_id}",
        community=elder["community"],
        old=_public(row).model_dump(mode="json", include={"window_id", "kind", "start", "end"}),
    )
    _invalidate(conn, elder_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
