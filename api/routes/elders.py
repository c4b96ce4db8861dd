"""Elders and their meters: register, update, retire, replace a meter."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from alerts.cases import OPEN_STATES, AlertStateError
from alerts.manager import AlertManager
from alerts.messages import CONSENT_WITHDRAWN, METER_REPLACED, RETIRED
from alerts.policy import for_maintenance
from api.deps import (
    REGISTRY_WRITERS,
    AlertManagerDep,
    AuditedList,
    ConnDep,
    CurrentUser,
    PageDep,
    SettingsDep,
    allow,
)
from api.listing import fetch_page, sort_query
from api.lookups import load_elder, lock_active_elder
from api.models import (
    ContactPublic,
    ElderCreate,
    ElderList,
    ElderPublic,
    ElderSummary,
    ElderUpdate,
    MeterPublic,
    MeterReplace,
    RetireRequest,
    to_dt,
    to_dt_or_none,
)
from api.problems import AUTH_RESPONSES, responses
from api.security import Principal
from engine.meterstate import carry_routine
from store import audit
from store.registry import (
    RegistryError,
    register_elder,
    replace_meter,
    require_fitting_thresholds,
    require_new_meter,
    retire_elder,
    set_consent,
)
from store.schema import alerts, elders, meters
from store.versions import mark_changed

router = APIRouter(prefix="/elders", tags=["elders"], responses={**AUTH_RESPONSES, **responses(404)})

#: Roles that call the elder or their family, and so see emergency contacts. Not the platform: it
#: never gets contacts' phone numbers (docs/alerts.md); cadres call the family.
CONTACT_ROLES = ("admin", "cadre")
#: A taken id answers the same whoever holds it, in whichever community: ids are unique across the
#: district, so a refusal is unavoidable, but it says nothing about the holder (scoping, docs/api.md).
ID_TAKEN = "the elder_id or meter_id is already in use (ids are unique across all communities)"

_open_alerts = (
    select(func.count())
    .where(alerts.c.elder_id == elders.c.elder_id, alerts.c.state.in_(OPEN_STATES))
    .correlate(elders)
    .scalar_subquery()
    .label("open_alerts")
)
_active_meter = (
    select(meters.c.meter_id)
    .where(meters.c.elder_id == elders.c.elder_id, meters.c.retired_at.is_(None))
    .correlate(elders)
    .limit(1)
    .scalar_subquery()
    .label("meter_id")
)
SORTS: dict[str, Any] = {
    "elder_id": elders.c.elder_id,
    "name": elders.c.name,
    "community": elders.c.community,
    "created_at": elders.c.created_at,
    "open_alerts": _open_alerts,
}
ElderSort = sort_query(list(SORTS), "elder_id")


def _summary_fields(m: Any) -> dict[str, Any]:
    return {
        "elder_id": m["elder_id"],
        "meter_id": m["meter_id"],
        "name": m["name"],
        "district": m["district"],
        "street": m["street"],
        "community": m["community"],
        "grid": m["grid"],
        "tz": m["tz"],
        "consent": m["consent"],
        "created_at": to_dt(m["created_at"]),
        "retired_at": to_dt_or_none(m["retired_at"]),
        "open_alerts": m["open_alerts"],
    }


def _query() -> Any:
    return select(elders, _active_meter, _open_alerts)


def _meters(conn: Connection, elder_id: str) -> list[MeterPublic]:
    rows = conn.execute(
        select(meters).where(meters.c.elder_id == elder_id).order_by(meters.c.installed_at.desc())
    ).all()
    return [
        MeterPublic(
            meter_id=r.meter_id,
            installed_at=to_dt(r.installed_at),
            retired_at=to_dt_or_none(r.retired_at),
            last_reading_at=to_dt_or_none(r.last_reading_ts),
            last_seen_at=to_dt_or_none(r.last_seen_at),
            battery_pct=r.battery_pct,
            rssi=r.rssi,
        )
        for r in rows
    ]


def elder_public(conn: Connection, user: Principal, elder_id: str) -> ElderPublic:
    m = conn.execute(_query().where(elders.c.elder_id == elder_id)).one()._mapping
    return ElderPublic(
        **_summary_fields(m),
        building=m["building"],
        room=m["room"],
        contacts=_contacts(m["contacts"]) if user.role in CONTACT_ROLES else None,
        meters=_meters(conn, elder_id),
    )


def _contacts(stored: Any) -> list[ContactPublic]:
    """Stored contacts as the API shows them; entries that are not records are skipped."""
    if not isinstance(stored, list):
        return []
    return [
        ContactPublic(
            **{k: str(c.get(k) or "") for k in ("name", "relation", "phone")}, daily_note=c.get("daily_note") is True
        )
        for c in stored
        if isinstance(c, dict)
    ]


def _invalidate(conn: Any, *meter_ids: str | None) -> None:
    """Every worker reloads these meters from the store (in this change's transaction)."""
    mark_changed(conn, [m for m in meter_ids if m is not None])


def _require_writable_community(user: Principal, community: str) -> None:
    if not user.sees(community):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"community {community!r} is not assigned to you")


@router.get("", response_model=ElderList, summary="List elders in your communities.", dependencies=[AuditedList])
def list_elders(
    conn: ConnDep,
    user: CurrentUser,
    page: PageDep,
    community: Annotated[str | None, Query(max_length=64)] = None,
    district: Annotated[str | None, Query(max_length=64)] = None,
    street: Annotated[str | None, Query(max_length=64)] = None,
    grid: Annotated[str | None, Query(max_length=64)] = None,
    consent: bool | None = None,
    q: Annotated[str | None, Query(max_length=64, description="Part of the name or elder id.")] = None,
    status_: Annotated[Literal["active", "retired", "all"], Query(alias="status")] = "active",
    sort: Annotated[str, ElderSort] = "elder_id",
) -> ElderList:
    where: list[Any] = [user.community_filter(elders.c.community)]
    for column, value in (
        (elders.c.community, community),
        (elders.c.district, district),
        (elders.c.street, street),
        (elders.c.grid, grid),
        (elders.c.consent, consent),
    ):
        if value is not None:
            where.append(column == value)
    if q:
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # ilike: SQLite's LIKE ignores ASCII case, PostgreSQL's does not; "ea1" finds EA1 on both
        where.append(or_(elders.c.name.ilike(like, escape="\\"), elders.c.elder_id.ilike(like, escape="\\")))
    if status_ == "active":
        where.append(elders.c.retired_at.is_(None))
    elif status_ == "retired":
        where.append(elders.c.retired_at.is_not(None))
    rows, count = fetch_page(conn, _query(), where, sort, SORTS, elders.c.elder_id, page)
    return ElderList(data=[ElderSummary(**_summary_fields(r._mapping)) for r in rows], count=count)


@router.post(
    "",
    response_model=ElderPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Register an elder with their meter.",
    dependencies=[Depends(allow(*REGISTRY_WRITERS))],
    responses=responses(409),
)
def create_elder(body: ElderCreate, conn: ConnDep, user: CurrentUser, settings: SettingsDep) -> ElderPublic:
    _require_writable_community(user, body.community)
    elder = body.model_dump(exclude={"meter_id"})
    try:
        register_elder(conn, elder, body.meter_id, time.time(), default_tz=settings.timezone)
    except (RegistryError, IntegrityError):  # IntegrityError: another request took the id after our check
        raise HTTPException(status.HTTP_409_CONFLICT, ID_TAKEN) from None
    audit.record(
        conn,
        actor=user.username,
        action="elder.create",
        target=f"elder:{body.elder_id}",
        community=body.community,
        new={"meter_id": body.meter_id, "community": body.community},
    )
    _invalidate(conn, body.meter_id)
    return elder_public(conn, user, body.elder_id)


@router.get("/{elder_id}", response_model=ElderPublic, summary="One elder, with address and meters.")
def get_elder(elder_id: str, conn: ConnDep, user: CurrentUser) -> ElderPublic:
    elder = load_elder(conn, user, elder_id)
    # Who looked at an elder's address (and, for the roles that see them, her family's phone numbers) is
    # audited whoever it is: an operator or the platform reads her building and room too.
    audit.record(
        conn, actor=user.username, action="elder.view", target=f"elder:{elder_id}", community=elder["community"]
    )
    return elder_public(conn, user, elder_id)


@router.patch(
    "/{elder_id}",
    response_model=ElderPublic,
    summary="Change an elder's details, consent, contacts or place in the grid.",
    dependencies=[Depends(allow(*REGISTRY_WRITERS))],
    responses=responses(404, 409),
)
def update_elder(
    elder_id: str, body: ElderUpdate, conn: ConnDep, user: CurrentUser, manager: AlertManagerDep
) -> ElderPublic:
    elder = lock_active_elder(conn, user, elder_id)  # what a change at the same time saved is where this one starts
    changes = {k: v for k, v in body.model_dump(exclude_unset=True, exclude={"reason"}).items() if v is not None}
    if "community" in changes:
        _require_writable_community(user, changes["community"])
    changed = {k: v for k, v in changes.items() if elder[k] != v}
    if "community" in changed:
        _require_valid_thresholds(conn, elder_id, changed["community"])
    if changed:
        conn.execute(update(elders).where(elders.c.elder_id == elder_id).values(**changed))
        # A move is recorded in both communities: the one she left must see in its own audit where she went.
        for community in dict.fromkeys((changed.get("community", elder["community"]), elder["community"])):
            audit.record(
                conn,
                actor=user.username,
                action="elder.update",
                target=f"elder:{elder_id}",
                community=community,
                old=audit.without_contacts({k: elder[k] for k in changed}),
                new=audit.without_contacts(changed),
                reason=body.reason,
            )
        manager.elder_changed(conn, elder_id, elder, changed, user.username, time.time())  # her cases follow
        if "consent" in changed:
            set_consent(conn, elder_id, changed["consent"])
        if changed.get("consent") is False:  # nobody keeps working a case the elder opted out of
            _close_open_alerts(conn, manager, elder_id, user.username, f"{CONSENT_WITHDRAWN}{body.reason}", time.time())
        _invalidate(conn, *_meter_ids(conn, elder_id))
    return elder_public(conn, user, elder_id)


def _require_valid_thresholds(conn: Connection, elder_id: str, community: str) -> None:
    try:
        require_fitting_thresholds(conn, elder_id, community)
    except RegistryError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


def _meter_ids(conn: Connection, elder_id: str) -> list[str]:
    return list(
        conn.execute(
            select(meters.c.meter_id).where(meters.c.elder_id == elder_id, meters.c.retired_at.is_(None))
        ).scalars()
    )


@router.post(
    "/{elder_id}/retire",
    response_model=ElderPublic,
    summary="Retire an elder (moved, passed away): monitoring stops, open alerts close, history stays.",
    dependencies=[Depends(allow(*REGISTRY_WRITERS))],
    responses=responses(404, 409),
)
def retire(
    elder_id: str,
    body: RetireRequest,
    conn: ConnDep,
    user: CurrentUser,
    manager: AlertManagerDep,
) -> ElderPublic:
    elder = lock_active_elder(conn, user, elder_id)
    now = time.time()
    meter_id = retire_elder(conn, elder_id, now)
    _close_open_alerts(conn, manager, elder_id, user.username, f"{RETIRED}{body.reason}", now)
    audit.record(
        conn,
        actor=user.username,
        action="elder.retire",
        target=f"elder:{elder_id}",
        community=elder["community"],
        old={"meter_id": meter_id},
        reason=body.reason,
    )
    _invalidate(conn, meter_id)
    return elder_public(conn, user, elder_id)


def _close_open_alerts(
    conn: Connection,
    manager: AlertManager,
    elder_id: str,
    actor: str,
    note: str,
    now: float,
    which: Callable[[Mapping[str, Any]], bool] | None = None,
) -> None:
    """Resolve the elder's open alerts (those ``which`` picks, or all) as ``cleared`` by ``actor``.

    A case another request or the data closed since it was read here is left as that closed it: it is closed,
    as this change wants, and refusing the whole change for it would undo the rest."""
    query = select(alerts).where(alerts.c.elder_id == elder_id, alerts.c.state.in_(OPEN_STATES))
    for row in conn.execute(query).all():
        case = dict(row._mapping)
        if which is None or which(case):
            with contextlib.suppress(AlertStateError):
                manager.resolve(conn, case, actor, "cleared", note, now)


@router.post(
    "/{elder_id}/meter",
    response_model=ElderPublic,
    summary=(
        "Replace the elder's meter: the old one is retired, both keep their readings, the new one"
        " carries on the routine learned so far; the old meter's maintenance cases (offline, fault, a slow leak) close."
    ),
    dependencies=[Depends(allow(*REGISTRY_WRITERS))],
    responses=responses(404, 409),
)
def replace(
    elder_id: str,
    body: MeterReplace,
    conn: ConnDep,
    user: CurrentUser,
    manager: AlertManagerDep,
    settings: SettingsDep,
) -> ElderPublic:
    elder = lock_active_elder(conn, user, elder_id)
    now = time.time()
    try:
        require_new_meter(conn, body.meter_id)
    except RegistryError:
        raise HTTPException(status.HTTP_409_CONFLICT, ID_TAKEN) from None
    # The routine is the elder's, not the device's: it moves to the new meter (before the old retires).
    carried = any(carry_routine(conn, m, body.meter_id, settings.timezone, now) for m in _meter_ids(conn, elder_id))
    try:
        old = replace_meter(conn, elder_id, body.meter_id, now)
    except IntegrityError:  # another request registered the meter id after our check
        raise HTTPException(status.HTTP_409_CONFLICT, ID_TAKEN) from None
    note = f"{METER_REPLACED}{body.reason}"
    # The old meter never reports again: its maintenance cases (by route, whatever kind began them: a slow leak
    # too) would stay open for good; the new meter has none yet. Her community case is hers, not the device's:
    # it stays open, and the new meter's readings close it.
    _close_open_alerts(conn, manager, elder_id, user.username, note, now, which=for_maintenance)
    audit.record(
        conn,
        actor=user.username,
        action="meter.replace",
        target=f"elder:{elder_id}",
        community=elder["community"],
        old={"meter_id": old},
        new={"meter_id": body.meter_id, "routine_carried": carried},
        reason=body.reason,
    )
    _invalidate(conn, old, body.meter_id)
    return elder_public(conn, user, elder_id)
