"""Read side of alerts and delivery, for the API and operators: plain functions over a connection.

The routes call these functions (the API pages and scopes their queries with
:func:`api.listing.fetch_page`), and the tests test the same functions:

* :func:`parked_select`, :func:`parked_filters`, :func:`parked_row`,
  :func:`parked_jobs`, :func:`parked_job`, :func:`requeue_parked`,
  :func:`delivery_summary`: what could not be delivered, and putting it back
  once the receiver is fixed;
* :func:`history_select`, :func:`alert_history`: every state change of an
  alert with who and when;
* :func:`false_alarm_summary`, :func:`suggest_threshold_change`: repeated
  ``false_alarm`` outcomes for one elder and kind, shown to operators with a
  less eager threshold they may set (an audited threshold change).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, select, update

from core.thresholds import THRESHOLD_SPECS
from store.audit import record
from store.registry import effective_thresholds
from store.schema import alert_events, alerts, elders, outbox

#: Which threshold a repeated false alarm of a kind points at, and the factor that makes it less eager.
FALSE_ALARM_KNOBS: dict[str, tuple[str, float]] = {
    "no_activity": ("sensitivity", 0.5),
    "routine_change": ("sensitivity", 0.5),
    "continuous_flow": ("leak_flow_lpm", 1.5),
    "high_usage": ("daily_max_l", 1.25),
    "low_usage": ("daily_min_l", 0.75),
}


def parked_select() -> Select[Any]:
    """Parked delivery jobs with their alert's community and kind; rows go through :func:`parked_row`."""
    return (
        select(
            outbox.c.id,
            outbox.c.alert_id,
            outbox.c.event_seq,
            outbox.c.elder_id,
            outbox.c.notifier,
            outbox.c.idempotency_key,
            outbox.c.attempts,
            outbox.c.created_at,
            outbox.c.last_error,
            outbox.c.payload,
            alerts.c.community,
            alerts.c.kind,
        )
        .join(alerts, alerts.c.alert_id == outbox.c.alert_id)
        .where(outbox.c.status == "parked")
    )


def parked_row(row: Any) -> dict[str, Any]:
    """One row of :func:`parked_select` without the payload text (it may hold names): its event type and id."""
    item = dict(row._mapping)
    payload = item.pop("payload") or {}
    item["event_type"] = str(payload.get("type", "")).rsplit(".", 1)[-1]
    item["event_id"] = payload.get("id")
    return item


def parked_filters(*, notifier: str | None = None, community: str | None = None) -> list[ColumnElement[bool]]:
    """WHERE clauses on :func:`parked_select` for one notifier and one community (None: any)."""
    where: list[ColumnElement[bool]] = []
    if notifier is not None:
        where.append(outbox.c.notifier == notifier)
    if community is not None:
        where.append(alerts.c.community == community)
    return where


def parked_jobs(
    conn: Connection, *, notifier: str | None = None, community: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Delivery jobs parked as undeliverable, newest first (no payload text: it may hold names)."""
    query = parked_select().where(*parked_filters(notifier=notifier, community=community))
    return [parked_row(row) for row in conn.execute(query.order_by(outbox.c.id.desc()).limit(limit))]


def parked_job(conn: Connection, job_id: int, scope: ColumnElement[bool] | None = None) -> dict[str, Any] | None:
    """One parked job as :func:`parked_row` gives it, if parked and within ``scope`` (a WHERE clause); else None."""
    query = parked_select().where(outbox.c.id == job_id)
    if scope is not None:
        query = query.where(scope)
    row = conn.execute(query).first()
    return parked_row(row) if row is not None else None


def requeue_parked(conn: Connection, job_id: int, *, actor: str, reason: str, now: float) -> bool:
    """Put a parked job back in its lane (audited); the give-up clock restarts. False if not parked."""
    done = conn.execute(
        update(outbox)
        .where(outbox.c.id == job_id, outbox.c.status == "parked")
        .values(status="pending", next_attempt_at=now, created_at=now)
    )
    if done.rowcount != 1:
        return False
    community = conn.execute(
        select(alerts.c.community).join(outbox, outbox.c.alert_id == alerts.c.alert_id).where(outbox.c.id == job_id)
    ).scalar()
    record(
        conn,
        actor=actor,
        action="delivery.requeue",
        target=f"outbox:{job_id}",
        community=community,
        old="parked",
        new="pending",
        reason=reason,
        at=now,
    )
    return True


def delivery_summary(conn: Connection, now: float) -> dict[str, dict[str, float]]:
    """Per notifier: pending, parked and sent counts, and the age of the oldest pending job (s)."""
    rows = conn.execute(
        select(outbox.c.notifier, outbox.c.status, func.count(), func.min(outbox.c.created_at)).group_by(
            outbox.c.notifier, outbox.c.status
        )
    ).all()
    out: dict[str, dict[str, float]] = {}
    for notifier, status, count, oldest in rows:
        entry = out.setdefault(notifier, {"pending": 0, "parked": 0, "sent": 0, "oldest_pending_s": 0.0})
        entry[status] = count
        if status == "pending" and oldest is not None:
            entry["oldest_pending_s"] = round(max(0.0, now - oldest), 1)
    return out


def history_select(alert_id: str) -> Select[Any]:
    """The events of one alert: seq, type, at, actor, data (unordered: the caller sorts and pages)."""
    return select(
        alert_events.c.seq, alert_events.c.type, alert_events.c.at, alert_events.c.actor, alert_events.c.data
    ).where(alert_events.c.alert_id == alert_id)


def alert_history(conn: Connection, alert_id: str) -> list[dict[str, Any]]:
    """Every event of one alert in order: seq, type, at, actor, data."""
    return [dict(r._mapping) for r in conn.execute(history_select(alert_id).order_by(alert_events.c.seq))]


def false_alarm_summary(
    conn: Connection,
    since: float,
    *,
    min_count: int = 2,
    communities: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Elders with at least ``min_count`` alerts of one kind resolved as ``false_alarm`` since ``since``.

    Each entry: elder_id, name, community, kind, count, last_at and, when a
    threshold governs that kind, ``suggestion`` (see :func:`suggest_threshold_change`).
    ``communities`` limits it to those communities (None: all).
    """
    query = (
        select(
            alerts.c.elder_id,
            alerts.c.community,
            alerts.c.kind,
            func.count().label("count"),
            func.max(alerts.c.resolved_at).label("last_at"),
        )
        .where(alerts.c.outcome == "false_alarm", alerts.c.resolved_at >= since)
        .group_by(alerts.c.elder_id, alerts.c.community, alerts.c.kind)
        .having(func.count() >= min_count)
        .order_by(func.count().desc(), alerts.c.elder_id)
    )
    if communities is not None:
        query = query.where(alerts.c.community.in_(list(communities)))
    out = []
    for row in conn.execute(query):
        item = dict(row._mapping)
        item["name"] = conn.execute(select(elders.c.name).where(elders.c.elder_id == row.elder_id)).scalar() or ""
        item["suggestion"] = suggest_threshold_change(conn, row.elder_id, row.kind)
        out.append(item)
    return out


def suggest_threshold_change(conn: Connection, elder_id: str, kind: str) -> dict[str, Any] | None:
    """A less eager value of the threshold behind ``kind`` for one elder, within its bounds; None if none applies."""
    knob = FALSE_ALARM_KNOBS.get(kind)
    community = conn.execute(select(elders.c.community).where(elders.c.elder_id == elder_id)).scalar()
    if knob is None or community is None:
        return None
    name, factor = knob
    current, _sources = effective_thresholds(conn, elder_id, community)
    old = float(getattr(current, name))
    spec = THRESHOLD_SPECS[name]
    new = min(spec.high, max(spec.low, old * factor))
    if new == old:
        return None  # already at its bound: an operator must look at this elder another way
    return {"scope": "elder", "scope_id": elder_id, "name": name, "old": old, "new": round(new, 6), "unit": spec.unit}
