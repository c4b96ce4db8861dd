"""Alerts raised by detection, filterable by community, state, kind, severity and time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select

from api.deps import ConnDep
from api.models import AlertKind, AlertList, AlertPublic, AlertState, Severity, to_dt, to_dt_or_none
from tapwatch.store.schema import alerts

router = APIRouter(prefix="/alerts", tags=["alerts"])


def _public(row: Any) -> AlertPublic:
    m = row._mapping
    return AlertPublic(
        alert_id=m["alert_id"],
        elder_id=m["elder_id"],
        meter_id=m["meter_id"],
        community=m["community"],
        kind=m["kind"],
        severity=m["severity"],
        state=m["state"],
        basis=m["basis"],
        data_time=to_dt(m["data_ts"]),
        since=to_dt_or_none(m["since_ts"]),
        raised_at=to_dt(m["raised_at"]),
        message={"zh": m["message_zh"], "en": m["message_en"]},
        outcome=m["outcome"],
        resolved_at=to_dt_or_none(m["resolved_at"]),
    )


@router.get("", response_model=AlertList, summary="List alerts, newest first.")
def list_alerts(
    conn: ConnDep,
    community: str | None = None,
    elder_id: str | None = None,
    state: AlertState | None = None,
    kind: AlertKind | None = None,
    severity: Severity | None = None,
    since: Annotated[datetime | None, Query(description="Raised at or after (ISO-8601 with offset).")] = None,
    until: Annotated[datetime | None, Query(description="Raised before (ISO-8601 with offset).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AlertList:
    where: list[Any] = []
    for column, value in (
        (alerts.c.community, community),
        (alerts.c.elder_id, elder_id),
        (alerts.c.state, state),
        (alerts.c.kind, kind),
        (alerts.c.severity, severity),
    ):
        if value is not None:
            where.append(column == value)
    for bound, op in ((since, "ge"), (until, "lt")):
        if bound is not None:
            if bound.tzinfo is None:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, "times need a UTC offset")
            where.append(
                alerts.c.raised_at >= bound.timestamp() if op == "ge" else alerts.c.raised_at < bound.timestamp()
            )
    count = conn.execute(select(func.count()).select_from(alerts).where(*where)).scalar_one()
    rows = conn.execute(
        select(alerts).where(*where).order_by(alerts.c.raised_at.desc()).limit(limit).offset(offset)
    ).all()
    return AlertList(data=[_public(r) for r in rows], count=count)


@router.get("/{alert_id}", response_model=AlertPublic, summary="One alert.")
def get_alert(alert_id: str, conn: ConnDep) -> AlertPublic:
    row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id!r}")
    return _public(row)
