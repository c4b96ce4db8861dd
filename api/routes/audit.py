"""The audit trail (admin, and operators for their communities)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import and_, or_, select

from api.deps import OPERATIONS, AuditedList, ConnDep, CurrentUser, PageDep, allow
from api.listing import fetch_page, sort_query
from api.models import AuditEntry, AuditList, Instant, to_dt
from api.problems import AUTH_RESPONSES
from api.security import Principal
from store.schema import audit_log

router = APIRouter(
    prefix="/audit", tags=["operations"], dependencies=[Depends(allow(*OPERATIONS))], responses=AUTH_RESPONSES
)

SORTS = {"at": audit_log.c.at, "actor": audit_log.c.actor, "action": audit_log.c.action}
AuditSort = sort_query(list(SORTS), "-at")


def _visible(user: Principal) -> Any:
    """Operators see their communities' entries and global threshold changes; admins see everything."""
    scope = user.community_filter(audit_log.c.community)
    if scope is None:
        return None
    global_thresholds = and_(audit_log.c.community.is_(None), audit_log.c.action == "thresholds.update")
    return or_(scope, global_thresholds)


@router.get(
    "",
    response_model=AuditList,
    summary="Who changed what, when, from what to what, and why.",
    dependencies=[AuditedList],
)
def list_audit(
    conn: ConnDep,
    user: CurrentUser,
    page: PageDep,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. thresholds.update")] = None,
    target: Annotated[str | None, Query(max_length=128, description="e.g. elder:E0001 or community:大宁社区")] = None,
    community: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[Instant | None, Query()] = None,
    until: Annotated[Instant | None, Query()] = None,
    sort: Annotated[str, AuditSort] = "-at",
) -> AuditList:
    where: list[Any] = [_visible(user)]
    for column, value in (
        (audit_log.c.actor, actor),
        (audit_log.c.action, action),
        (audit_log.c.target, target),
        (audit_log.c.community, community),
    ):
        if value is not None:
            where.append(column == value)
    if since is not None:
        where.append(audit_log.c.at >= since.timestamp())
    if until is not None:
        where.append(audit_log.c.at < until.timestamp())
    rows, count = fetch_page(conn, select(audit_log), where, sort, SORTS, audit_log.c.id, page)
    data = [
        AuditEntry(
            id=r.id,
            at=to_dt(r.at),
            actor=r.actor,
            action=r.action,
            target=r.target,
            community=r.community,
            old=r.old,
            new=r.new,
            reason=r.reason,
        )
        for r in rows
    ]
    return AuditList(data=data, count=count)
