"""Elders and their meters."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select

from api.deps import ConnDep, ServiceDep
from api.models import ElderCreate, ElderList, ElderPublic, to_dt
from tapwatch.registry import RegistryError, register_elder
from tapwatch.store.schema import elders, meters

router = APIRouter(prefix="/elders", tags=["elders"])


def _public(row: Any) -> ElderPublic:
    m = row._mapping
    return ElderPublic(
        elder_id=m["elder_id"],
        meter_id=m["meter_id"],
        name=m["name"],
        district=m["district"],
        street=m["street"],
        community=m["community"],
        grid=m["grid"],
        building=m["building"],
        room=m["room"],
        tz=m["tz"],
        consent=m["consent"],
        created_at=to_dt(m["created_at"]),
    )


def _query() -> Any:
    active_meter = meters.c.retired_at.is_(None) & (meters.c.elder_id == elders.c.elder_id)
    return select(elders, meters.c.meter_id).select_from(elders.outerjoin(meters, active_meter))


@router.get("", response_model=ElderList, summary="List registered elders.")
def list_elders(
    conn: ConnDep,
    community: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ElderList:
    where: list[Any] = [elders.c.retired_at.is_(None)]
    if community:
        where.append(elders.c.community == community)
    count = conn.execute(select(func.count()).select_from(elders).where(*where)).scalar_one()
    rows = conn.execute(_query().where(*where).order_by(elders.c.elder_id).limit(limit).offset(offset)).all()
    return ElderList(data=[_public(r) for r in rows], count=count)


@router.post("", response_model=ElderPublic, status_code=status.HTTP_201_CREATED, summary="Register an elder.")
def create_elder(body: ElderCreate, conn: ConnDep, service: ServiceDep) -> ElderPublic:
    elder = body.model_dump(exclude={"meter_id"})
    try:
        register_elder(conn, elder, body.meter_id, time.time())
    except RegistryError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if service is not None:
        service.pipeline.invalidate(body.meter_id)
    row = conn.execute(_query().where(elders.c.elder_id == body.elder_id)).one()
    return _public(row)


@router.get("/{elder_id}", response_model=ElderPublic, summary="One elder.")
def get_elder(elder_id: str, conn: ConnDep) -> ElderPublic:
    row = conn.execute(_query().where(elders.c.elder_id == elder_id)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no elder {elder_id!r}")
    return _public(row)
