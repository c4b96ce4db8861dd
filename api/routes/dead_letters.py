"""Dead letters: messages ingest could not use (admin; operators see those of their communities' meters)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from api.deps import OPERATIONS, AuditedList, ConnDep, CurrentUser, PageDep, allow
from api.listing import fetch_page, sort_query
from api.models import DeadLetterList, DeadLetterPublic, Instant, to_dt
from api.problems import AUTH_RESPONSES
from store.schema import dead_letters, elders, meters

router = APIRouter(
    prefix="/dead-letters",
    tags=["operations"],
    dependencies=[Depends(allow(*OPERATIONS))],
    responses=AUTH_RESPONSES,
)

SORTS = {"received_at": dead_letters.c.received_at, "meter_id": dead_letters.c.meter_id}
DeadLetterSort = sort_query(list(SORTS), "-received_at")


@router.get(
    "",
    response_model=DeadLetterList,
    summary="Messages dead-lettered by ingest, newest first.",
    dependencies=[AuditedList],
)
def list_dead_letters(
    conn: ConnDep,
    user: CurrentUser,
    page: PageDep,
    meter_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
    sort: Annotated[str, DeadLetterSort] = "-received_at",
) -> DeadLetterList:
    where: list[Any] = []
    scope = user.community_filter(elders.c.community)
    if scope is not None:  # unknown meters belong to no community: admins only
        owned = select(meters.c.meter_id).join(elders, elders.c.elder_id == meters.c.elder_id).where(scope)
        where.append(dead_letters.c.meter_id.in_(owned))
    if meter_id is not None:
        where.append(dead_letters.c.meter_id == meter_id)
    if since is not None:
        where.append(dead_letters.c.received_at >= since.timestamp())
    if until is not None:
        where.append(dead_letters.c.received_at < until.timestamp())
    rows, count = fetch_page(conn, select(dead_letters), where, sort, SORTS, dead_letters.c.id, page)
    data = [
        DeadLetterPublic(
            id=r.id,
            received_at=to_dt(r.received_at),
            source=r.source,
            meter_id=r.meter_id,
            reason=r.reason,
            payload=r.payload,
        )
        for r in rows
    ]
    return DeadLetterList(data=data, count=count)
