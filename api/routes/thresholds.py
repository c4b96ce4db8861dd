"""Detection thresholds at global, community and elder level: read, change (bounds-checked, audited)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import fields
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from sqlalchemy import Connection, delete, select

from alerts.queries import false_alarm_summary
from api.deps import PERSONAL_READERS, AuditedList, ConnDep, CurrentUser, allow
from api.lookups import active_meter_id, load_elder
from api.models import (
    EffectiveThreshold,
    EffectiveThresholds,
    FalseAlarmEntry,
    FalseAlarmList,
    ThresholdChange,
    ThresholdSet,
    ThresholdSpecList,
    ThresholdSpecPublic,
    ThresholdValue,
    to_dt,
)
from api.problems import AUTH_RESPONSES, responses
from api.security import Principal
from core.thresholds import THRESHOLD_SPECS, Thresholds
from store import audit
from store.ops import upsert
from store.registry import community_exists, effective_thresholds, take_thresholds_turn, thresholds_from_rows
from store.schema import elders, thresholds
from store.versions import mark_changed

router = APIRouter(tags=["thresholds"], responses=AUTH_RESPONSES)

RANK = {"global": 0, "community": 1, "elder": 2}
ScopeId = Annotated[str, Path(min_length=1, max_length=64)]


def defaults() -> dict[str, float]:
    base = Thresholds()
    return {f.name: float(getattr(base, f.name)) for f in fields(Thresholds)}


@router.get("/thresholds/spec", response_model=ThresholdSpecList, summary="Every threshold: unit, bounds, meaning.")
def spec(_user: CurrentUser) -> ThresholdSpecList:
    base = defaults()
    data = [
        ThresholdSpecPublic(
            name=name,
            unit=s.unit,
            low=s.low,
            high=s.high,
            default=base[name],
            description={"zh": s.zh, "en": s.en},
        )
        for name, s in THRESHOLD_SPECS.items()
    ]
    return ThresholdSpecList(data=data, count=len(data))


def _rows(conn: Connection, scope: str, scope_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(thresholds)
            .where(thresholds.c.scope == scope, thresholds.c.scope_id == scope_id)
            .order_by(thresholds.c.name)
        ).all()
    )


def _set(conn: Connection, scope: str, scope_id: str) -> ThresholdSet:
    rows = _rows(conn, scope, scope_id)
    return ThresholdSet(
        scope=scope,  # type: ignore[arg-type]
        scope_id=scope_id,
        values={r.name: r.value for r in rows},
        updated=[
            ThresholdValue(name=r.name, value=r.value, updated_at=to_dt(r.updated_at), updated_by=r.updated_by)
            for r in rows
        ],
    )


def _community_of(conn: Connection, user: Principal, scope: str, scope_id: str) -> str | None:
    """The community a scope belongs to, after checking the caller sees it (404 otherwise)."""
    if scope == "global":
        return None
    if scope == "elder":
        return str(load_elder(conn, user, scope_id)["community"])
    if not user.sees(scope_id) or not community_exists(conn, scope_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no community {scope_id!r}")
    return scope_id


def _layers(conn: Connection, scope: str, scope_id: str, community: str | None) -> list[tuple[str, str]]:
    layers = [("global", "")]
    if community is not None:
        layers.append(("community", community))
    if scope == "elder":
        layers.append(("elder", scope_id))
    return layers


def check_change(
    conn: Connection, scope: str, scope_id: str, community: str | None, change: Mapping[str, float | None]
) -> None:
    """A 422 unless ``change`` leaves valid thresholds at its level and at every level below with values of its own.

    A community's or an elder's own values must still fit with a change above them (a community's daily_max_l
    below an elder's daily_min_l): a monitor refuses thresholds that do not, and every reading of the elder
    would be set aside as a dead letter.
    """
    stored: dict[tuple[str, str], dict[str, float | None]] = {}
    for r in conn.execute(select(thresholds.c.scope, thresholds.c.scope_id, thresholds.c.name, thresholds.c.value)):
        stored.setdefault((r.scope, r.scope_id), {})[r.name] = r.value
    stored[(scope, scope_id)] = {**stored.get((scope, scope_id), {}), **change}
    stacks = [("", _layers(conn, scope, scope_id, community))]
    if scope == "global":
        stacks += [(f"for community {c}: ", [("global", ""), ("community", c)]) for s, c in stored if s == "community"]
    if scope != "elder":
        own = (
            select(elders.c.elder_id, elders.c.community)
            .join(thresholds, (thresholds.c.scope == "elder") & (thresholds.c.scope_id == elders.c.elder_id))
            .where(elders.c.retired_at.is_(None))
            .distinct()
        )
        if scope == "community":
            own = own.where(elders.c.community == scope_id)
        stacks += [
            (f"for elder {e}: ", [("global", ""), ("community", c), ("elder", e)]) for e, c in conn.execute(own).all()
        ]
    for label, layers in stacks:
        # Resolved as each monitor's thresholds are (store.registry.thresholds_from_rows): what it would refuse.
        rows = [(s, name, v) for s, sid in layers for name, v in stored.get((s, sid), {}).items() if v is not None]
        try:
            thresholds_from_rows(rows)[0].validate()
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{label}{exc}") from None


@router.get("/thresholds/global", response_model=ThresholdSet, summary="Values set for everyone.")
def get_global(conn: ConnDep, _user: CurrentUser) -> ThresholdSet:
    return _set(conn, "global", "")


@router.put(
    "/thresholds/global",
    response_model=ThresholdSet,
    summary="Change values for everyone (admin).",
    dependencies=[Depends(allow("admin"))],
)
def put_global(body: ThresholdChange, conn: ConnDep, user: CurrentUser) -> ThresholdSet:
    return _change(conn, user, "global", "", body)


@router.get(
    "/thresholds/{scope}/{scope_id}",
    response_model=ThresholdSet,
    summary="Values set for one community or one elder (unset names inherit).",
    dependencies=[Depends(allow(*PERSONAL_READERS))],
    responses=responses(404),
)
def get_scoped(
    scope: Literal["community", "elder"], scope_id: ScopeId, conn: ConnDep, user: CurrentUser
) -> ThresholdSet:
    _community_of(conn, user, scope, scope_id)
    return _set(conn, scope, scope_id)


@router.put(
    "/thresholds/{scope}/{scope_id}",
    response_model=ThresholdSet,
    summary="Change values for one community or one elder; null removes a value so it inherits again.",
    dependencies=[Depends(allow("admin", "operator"))],
    responses=responses(404),
)
def put_scoped(
    scope: Literal["community", "elder"],
    scope_id: ScopeId,
    body: ThresholdChange,
    conn: ConnDep,
    user: CurrentUser,
) -> ThresholdSet:
    return _change(conn, user, scope, scope_id, body)


def _change(conn: Connection, user: Principal, scope: str, scope_id: str, body: ThresholdChange) -> ThresholdSet:
    # The turn first: the check below, and the elder's community read here, are then what a change or move
    # just before saved (read before it, she could have moved meanwhile: checked against the community she left).
    take_thresholds_turn(conn)
    community = _community_of(conn, user, scope, scope_id)
    change: dict[str, float | None] = dict(body.values)
    check_change(conn, scope, scope_id, community, change)
    before = {r.name: r.value for r in _rows(conn, scope, scope_id)}
    now = time.time()
    removed = [name for name, value in change.items() if value is None]
    if removed:
        conn.execute(
            delete(thresholds).where(
                thresholds.c.scope == scope, thresholds.c.scope_id == scope_id, thresholds.c.name.in_(removed)
            )
        )
    rows = [
        {"scope": scope, "scope_id": scope_id, "name": n, "value": v, "updated_at": now, "updated_by": user.username}
        for n, v in change.items()
        if v is not None
    ]
    upsert(conn, thresholds, rows, keys=["scope", "scope_id", "name"])
    audit.record(
        conn,
        actor=user.username,
        action="thresholds.update",
        target=f"{scope}:{scope_id}" if scope_id else scope,
        community=community,
        old={name: before.get(name) for name in change},
        new=change,
        reason=body.reason,
        at=now,
    )
    # Every worker reloads the affected meters with the new values, in this change's transaction.
    if scope == "elder":
        meter_id = active_meter_id(conn, scope_id)
        if meter_id is not None:
            mark_changed(conn, [meter_id])
    else:
        mark_changed(conn)
    return _set(conn, scope, scope_id)


@router.get(
    "/thresholds/false-alarms",
    response_model=FalseAlarmList,
    dependencies=[Depends(allow("admin", "operator")), AuditedList],
    summary="Elders whose alerts of one kind were resolved as false alarms again and again, with a threshold to ease.",
)
def false_alarms(
    conn: ConnDep,
    user: CurrentUser,
    days: Annotated[int, Query(ge=1, le=365, description="Look back this many days.")] = 30,
    min_count: Annotated[int, Query(ge=1, le=100, description="At least this many false alarms.")] = 2,
) -> FalseAlarmList:
    since = time.time() - days * 86400
    scope = None if user.all_communities else user.communities
    rows = false_alarm_summary(conn, since, min_count=min_count, communities=scope)
    data = [FalseAlarmEntry(**{**row, "last_at": to_dt(row["last_at"])}) for row in rows]
    return FalseAlarmList(data=data, count=len(data))


@router.get(
    "/elders/{elder_id}/thresholds",
    response_model=EffectiveThresholds,
    tags=["elders"],
    summary="The thresholds in force for an elder, each with the level it comes from.",
    dependencies=[Depends(allow(*PERSONAL_READERS))],
    responses=responses(404),
)
def effective(elder_id: str, conn: ConnDep, user: CurrentUser) -> EffectiveThresholds:
    elder = load_elder(conn, user, elder_id)
    values, sources = effective_thresholds(conn, elder_id, elder["community"])
    data = [
        EffectiveThreshold(
            name=name,
            value=float(getattr(values, name)),
            unit=THRESHOLD_SPECS[name].unit if name in THRESHOLD_SPECS else "",
            source=sources[name],  # type: ignore[arg-type]
        )
        for name in sources
    ]
    return EffectiveThresholds(elder_id=elder_id, community=elder["community"], values=data)
