"""Alert delivery: what waits, what was parked as undeliverable, putting it back or dismissing it (admin, operator).

A parked job is never dropped (:mod:`alerts.sender`): once the platform or the
SMS gateway is fixed, an operator looks at what was parked in their
communities and puts each job back in its lane, with a reason for the audit log.
A job the receiver refuses for good (requeued, it is parked again) is dismissed
instead, with a reason: final, never sent, and no longer counted as parked.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from sqlalchemy import Connection, event

from alerts.queries import (
    JOB_COMMUNITY,
    delivery_summary,
    dismiss_parked,
    parked_filters,
    parked_job,
    parked_row,
    parked_select,
    requeue_parked,
)
from api.deps import OPERATIONS, AuditedList, ConnDep, CurrentUser, PageDep, allow
from api.listing import fetch_page, sort_query
from api.models import (
    DeliverySummary,
    DismissRequest,
    NotifierDelivery,
    ParkedJobList,
    ParkedJobPublic,
    RequeueRequest,
    to_dt,
)
from api.problems import AUTH_RESPONSES, responses
from api.security import Principal
from core.metrics import Metrics
from store.schema import DISMISSED, outbox

router = APIRouter(
    prefix="/deliveries",
    tags=["operations"],
    dependencies=[Depends(allow(*OPERATIONS))],
    responses=AUTH_RESPONSES,
)

SORTS = {"id": outbox.c.id, "created_at": outbox.c.created_at, "attempts": outbox.c.attempts}
ParkedSort = sort_query(list(SORTS), "-id")


@router.get(
    "", response_model=DeliverySummary, summary="Per notifier: events pending, parked, sent, expired and dismissed."
)
def summary(conn: ConnDep) -> DeliverySummary:
    # Counts only, no elder or community: the same figures /metrics and /readyz carry.
    rows = delivery_summary(conn, time.time())
    data = [
        NotifierDelivery(
            notifier=name,
            pending=int(counts["pending"]),
            parked=int(counts["parked"]),
            sent=int(counts["sent"]),
            expired=int(counts["expired"]),
            dismissed=int(counts[DISMISSED]),
            oldest_pending_s=counts["oldest_pending_s"],
        )
        for name, counts in sorted(rows.items())
    ]
    return DeliverySummary(data=data)


@router.get(
    "/parked",
    response_model=ParkedJobList,
    summary="Events parked as undeliverable, newest first.",
    dependencies=[AuditedList],
)
def list_parked(
    conn: ConnDep,
    user: CurrentUser,
    page: PageDep,
    notifier: Annotated[str | None, Query(max_length=32)] = None,
    community: Annotated[str | None, Query(max_length=64)] = None,
    sort: Annotated[str, ParkedSort] = "-id",
) -> ParkedJobList:
    where = [user.community_filter(JOB_COMMUNITY), *parked_filters(notifier=notifier, community=community)]
    rows, count = fetch_page(conn, parked_select(), where, sort, SORTS, outbox.c.id, page)
    return ParkedJobList(data=[_public(parked_row(r)) for r in rows], count=count)


@router.post(
    "/parked/{job_id}/requeue",
    response_model=ParkedJobPublic,
    summary="Put a parked event back in its lane for delivery (audited); the give-up clock restarts.",
    responses=responses(404),
)
def requeue(
    job_id: Annotated[int, Path(ge=1, le=2**53)], body: RequeueRequest, conn: ConnDep, user: CurrentUser
) -> ParkedJobPublic:
    job = _visible_parked_job(conn, user, job_id)
    if not requeue_parked(conn, job_id, actor=user.username, reason=body.reason, now=time.time()):
        # Another operator put it back between our look and our update.
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"delivery job {job_id} is not parked")
    return _public(job)


@router.post(
    "/parked/{job_id}/dismiss",
    response_model=ParkedJobPublic,
    summary="Never send a parked event the receiver refuses for good (audited): final, no longer parked.",
    responses=responses(404),
)
def dismiss(
    job_id: Annotated[int, Path(ge=1, le=2**53)],
    body: DismissRequest,
    conn: ConnDep,
    user: CurrentUser,
    request: Request,
) -> ParkedJobPublic:
    job = _visible_parked_job(conn, user, job_id)
    if not dismiss_parked(conn, job_id, actor=user.username, reason=body.reason, now=time.time()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"delivery job {job_id} is not parked")
    metrics: Metrics = request.app.state.metrics
    counter = metrics.delivery_attempts.labels(notifier=job["notifier"], result=DISMISSED)
    event.listen(conn, "commit", lambda _conn: counter.inc(), once=True)  # counted once it holds
    return _public(job)


def _visible_parked_job(conn: Connection, user: Principal, job_id: int) -> dict[str, Any]:
    """The parked job, if the caller may see it; 404 otherwise (outside one's communities looks the same)."""
    job = parked_job(conn, job_id, user.community_filter(JOB_COMMUNITY))
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no parked delivery job {job_id} in your communities")
    return job


def _public(job: dict[str, Any]) -> ParkedJobPublic:
    return ParkedJobPublic(**{**job, "created_at": to_dt(job["created_at"])})
