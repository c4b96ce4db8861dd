"""Fetch one elder, meter or alert for the caller; what lies outside their communities does not exist."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from fastapi import HTTPException, status
from sqlalchemy import Connection, select

from api.security import Principal
from store.registry import lock_elder
from store.schema import alerts, elders, meters

DEFAULT_TZ = "Asia/Shanghai"


def elder_zone(name: str | None) -> ZoneInfo:
    """The elder's time zone; a malformed stored name (registered outside the API) falls back to Shanghai.

    >>> elder_zone("Europe/Berlin").key, elder_zone("no/such zone").key
    ('Europe/Berlin', 'Asia/Shanghai')
    """
    try:
        return ZoneInfo(name or DEFAULT_TZ)
    except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys
        return ZoneInfo(DEFAULT_TZ)


def _missing(what: str, key: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} {key!r}")


def load_elder(conn: Connection, user: Principal, elder_id: str) -> dict[str, Any]:
    row = conn.execute(select(elders).where(elders.c.elder_id == elder_id)).first()
    if row is None or not user.sees(row.community):
        raise _missing("elder", elder_id)
    return dict(row._mapping)


def load_active_elder(conn: Connection, user: Principal, elder_id: str) -> dict[str, Any]:
    elder = load_elder(conn, user, elder_id)
    if elder["retired_at"] is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"elder {elder_id!r} is retired")
    return elder


def lock_active_elder(conn: Connection, user: Principal, elder_id: str) -> dict[str, Any]:
    """:func:`load_active_elder` for a change of her or of what is hers: her row is taken first
    (:func:`store.registry.lock_elder`), then read. Read first, a move committed while the change waited for her
    row went unseen: a cadre of the community she had just left retired her (closing the cases of another's), or
    the change was audited in the trail of a community she was no longer in."""
    lock_elder(conn, elder_id)
    return load_active_elder(conn, user, elder_id)


def load_meter(conn: Connection, user: Principal, meter_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A meter (active or retired) and its elder."""
    row = conn.execute(select(meters).where(meters.c.meter_id == meter_id)).first()
    if row is None:
        raise _missing("meter", meter_id)
    elder = conn.execute(select(elders).where(elders.c.elder_id == row.elder_id)).one()
    if not user.sees(elder.community):
        raise _missing("meter", meter_id)
    return dict(row._mapping), dict(elder._mapping)


def active_meter_id(conn: Connection, elder_id: str) -> str | None:
    return conn.execute(
        select(meters.c.meter_id).where(meters.c.elder_id == elder_id, meters.c.retired_at.is_(None))
    ).scalar_one_or_none()


def load_alert(conn: Connection, user: Principal, alert_id: str) -> dict[str, Any]:
    row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
    if row is None or not user.sees(row.community):
        raise _missing("alert", alert_id)
    return dict(row._mapping)
