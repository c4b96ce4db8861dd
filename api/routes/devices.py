"""Devices: meters that are offline, faulty or low on battery (a matter for maintenance, not for cadres)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import ColumnElement, Connection, exists, select

from alerts.cases import OPEN_STATES
from alerts.grouping import active_kinds
from api.deps import AuditedList, ConnDep, CurrentUser, PageDep, SettingsDep, allow
from api.models import DeviceList, DevicePublic, DeviceStatus, to_dt_or_none
from api.problems import AUTH_RESPONSES
from core.cadence import offline_line
from core.domain import DEVICE_KINDS
from core.thresholds import Thresholds
from store.schema import alerts, elders, meters, readings, thresholds

router = APIRouter(
    prefix="/devices",
    tags=["devices"],
    dependencies=[Depends(allow("admin", "operator", "platform"))],
    responses=AUTH_RESPONSES,
)

FAULTY_READING_STATUSES = ("glitch", "reset")
FAULT_LOOKBACK_S = 86400.0
SORT_KEYS = ("meter_id", "elder_id", "community", "last_reading_at", "battery_pct")


def _offline_hours(conn: Connection) -> Callable[[str, str], float]:
    """Each elder's ``offline_hours`` as detection applies it: elder over community over global over the default."""
    rows = conn.execute(
        select(thresholds.c.scope, thresholds.c.scope_id, thresholds.c.value).where(
            thresholds.c.name == "offline_hours"
        )
    ).all()
    set_at = {(r.scope, r.scope_id): float(r.value) for r in rows}
    everyone = set_at.get(("global", ""), Thresholds().offline_hours)

    def hours(elder_id: str, community: str) -> float:
        return set_at.get(("elder", elder_id), set_at.get(("community", community), everyone))

    return hours


def _open_device_alerts(conn: Connection) -> dict[str, set[str]]:
    """Each meter's device kinds still active in its open maintenance case (alerts.grouping)."""
    rows = conn.execute(
        select(alerts.c.meter_id, alerts.c.kind, alerts.c.details).where(alerts.c.state.in_(OPEN_STATES))
    ).all()
    out: dict[str, set[str]] = {}
    for row in rows:
        for kind in active_kinds(dict(row._mapping)):
            if kind in DEVICE_KINDS:
                out.setdefault(row.meter_id, set()).add(kind)
    return out


def _recent_fault(now: float) -> ColumnElement[bool]:
    """Whether the meter stored a reading of a faulty register within the lookback.

    Asked per meter, along its own readings of the last day: over the whole table, every page read every reading
    the city ever stored (a meter read every minute adds 1,440 a day), 0.5 s at 4.8 million readings, growing.
    """
    return (
        exists()
        .where(
            readings.c.meter_id == meters.c.meter_id,
            readings.c.ts > now - FAULT_LOOKBACK_S,
            readings.c.status.in_(FAULTY_READING_STATUSES),
        )
        .label("recent_fault")
    )


def device_statuses(
    row: Any, now: float, offline_s: float, low_pct: float, alerts_open: set[str], faulty: bool
) -> list[str]:
    """A meter's problems now. Offline by the line detection draws (``core.cadence.offline_line``): the elder's
    ``offline_hours``, or 2.5 of the meter's usual interval as its monitor learned it (stored with its newest
    reading) when longer; by ``offline_hours`` alone a meter that reports every 6 h was offline most of the time."""
    statuses: list[str] = []
    last = row.last_reading_ts if row.last_reading_ts is not None else row.installed_at
    if "meter_offline" in alerts_open or now - last >= offline_line(offline_s, row.usual_interval_s):
        statuses.append("offline")
    if faulty or "meter_fault" in alerts_open:
        statuses.append("faulty")
    if row.battery_pct is not None and row.battery_pct < low_pct:
        statuses.append("low_battery")
    return statuses


@router.get(
    "",
    response_model=DeviceList,
    summary="Active meters with a problem (offline, faulty, low battery).",
    dependencies=[AuditedList],
)
def list_devices(
    conn: ConnDep,
    user: CurrentUser,
    settings: SettingsDep,
    page: PageDep,
    status: Annotated[list[DeviceStatus] | None, Query(description="Only these problems (repeatable).")] = None,
    include_healthy: Annotated[bool, Query(description="Also list meters without a problem.")] = False,
    community: Annotated[str | None, Query(max_length=64)] = None,
    sort: Annotated[
        str, Query(pattern="^-?(" + "|".join(SORT_KEYS) + ")$", description="Sort key; '-' for descending.")
    ] = "meter_id",
) -> DeviceList:
    now = time.time()
    query = (
        select(meters, elders.c.community, _recent_fault(now))
        .join(elders, elders.c.elder_id == meters.c.elder_id)
        # Not an elder's without consent: her readings are dropped unread and her meter is not watched, so
        # its state is unknown (and her last reading time forgotten), not a problem to send anyone to.
        .where(meters.c.retired_at.is_(None), elders.c.retired_at.is_(None), elders.c.consent.is_(True))
    )
    scope = user.community_filter(elders.c.community)
    if scope is not None:
        query = query.where(scope)
    if community is not None:
        query = query.where(elders.c.community == community)
    offline_hours = _offline_hours(conn)
    open_alerts = _open_device_alerts(conn)
    found: list[DevicePublic] = []
    for row in conn.execute(query).all():
        offline_s = offline_hours(row.elder_id, row.community) * 3600
        statuses = device_statuses(
            row, now, offline_s, settings.low_battery_pct, open_alerts.get(row.meter_id, set()), bool(row.recent_fault)
        )
        wanted = set(status) if status else {"offline", "faulty", "low_battery"}
        if not (wanted & set(statuses)) and not (include_healthy and not status):
            continue
        found.append(
            DevicePublic(
                meter_id=row.meter_id,
                elder_id=row.elder_id,
                community=row.community,
                statuses=statuses,  # type: ignore[arg-type]
                last_reading_at=to_dt_or_none(row.last_reading_ts),
                last_seen_at=to_dt_or_none(row.last_seen_at),
                battery_pct=row.battery_pct,
                rssi=row.rssi,
            )
        )
    _sort(found, sort)
    return DeviceList(data=found[page.offset : page.offset + page.limit], count=len(found))


def _sort(items: list[DevicePublic], sort: str) -> None:
    """Sort in place by ``sort`` (``-`` for descending); meters without the value come last."""
    key, descending = sort.lstrip("-"), sort.startswith("-")
    present = [d for d in items if getattr(d, key) is not None]
    missing = sorted((d for d in items if getattr(d, key) is None), key=lambda d: d.meter_id)
    present.sort(key=lambda d: (getattr(d, key), d.meter_id), reverse=descending)
    items[:] = present + missing
