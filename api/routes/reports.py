"""Reports for operators: what the cadres found on the cases tapwatch raised (issue 17, measured live).

``GET /reports/outcomes?days=30`` gives, per community the caller may see and in
total, the false calls per elder-month that reached the cadres (the figure
``tapwatch eval`` measures offline), the confirmed ones, the outcome mix, both
routes' case rates and the times to acknowledge and resolve; ``tapwatch report``
prints the same figures (:func:`alerts.queries.outcome_report` serves both).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from alerts.queries import outcome_report
from api.deps import AuditedList, ConnDep, CurrentUser, allow, require_community
from api.models import OutcomeReport, to_dt
from api.problems import AUTH_RESPONSES, responses

router = APIRouter(prefix="/reports", tags=["reports"], responses={**AUTH_RESPONSES})

#: Who reads the report: operators and admins for every community they see, a cadre for her own.
REPORT_READERS = ("admin", "operator", "cadre")


@router.get(
    "/outcomes",
    response_model=OutcomeReport,
    summary="What the cases raised in the last days came to, per community and in total: false calls and "
    "confirmed ones per elder-month, the outcome mix, cases per route, times to acknowledge and resolve.",
    dependencies=[Depends(allow(*REPORT_READERS)), AuditedList],
    responses=responses(404),
)
def outcomes(
    conn: ConnDep,
    user: CurrentUser,
    days: Annotated[int, Query(ge=1, le=365, description="Cases raised in this many days up to now.")] = 30,
    community: Annotated[str | None, Query(min_length=1, max_length=64, description="Only this community.")] = None,
) -> OutcomeReport:
    if community is not None:
        require_community(user, community)  # 404 outside the caller's communities: existence must not leak
        scope: list[str] | None = [community]
    else:
        scope = None if user.all_communities else list(user.communities)
    until = time.time()
    since = until - days * 86400.0
    report = outcome_report(conn, since, until, scope)
    return OutcomeReport(
        days=days,
        start=to_dt(since),
        end=to_dt(until),
        communities=report["communities"],
        total=report["total"],
    )
