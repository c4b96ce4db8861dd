"""The case store: every read and write of an ``alerts`` row, in the caller's transaction.

One case per elder and case key is open at a time (:mod:`alerts.grouping`: the
elder's community case, one maintenance case per meter; also a unique index in
the store). Every change goes through :func:`bump`, which takes the next sequence
number with ``UPDATE ... SET seq = seq + 1 ... RETURNING``, conditional on the
state the change starts from: concurrent changes are safe, and a change that
no longer applies matches no row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from alerts.muting import held_until, muted_by
from core.domain import Finding
from store.registry import meter_context
from store.schema import OUTBOX_UNSENT, alerts, away_windows, elders, held_findings, outbox

OPEN_STATES = ("open", "notified", "acknowledged")
#: Outcomes a person records on resolve.
HUMAN_OUTCOMES = ("ok", "needed_help", "hospital", "away", "false_alarm", "device_fault")
#: Outcomes the system records: use resumed after ``no_activity``; any other condition cleared by the data.
SYSTEM_OUTCOMES = ("use_resumed", "cleared")
OUTCOMES = HUMAN_OUTCOMES + SYSTEM_OUTCOMES
SYSTEM_ACTOR = "tapwatch"


class AlertStateError(ValueError):
    """The change does not apply to the alert's current state (e.g. acknowledging a resolved alert)."""


def insert_case(conn: Connection, case: Mapping[str, Any]) -> None:
    """Store a new case (a full ``alerts`` row)."""
    conn.execute(insert(alerts).values(**case))


def bump(
    conn: Connection, alert_id: str, from_states: Sequence[str], *, at_seq: int | None = None, **changes: Any
) -> dict[str, Any] | None:
    """Apply ``changes`` and take the next sequence number, if the alert is in ``from_states``.

    With ``at_seq``, only if no other change came in since the caller read the case at that
    sequence number (a change computed from the row read, such as a joined kind, is not lost).
    """
    where = [alerts.c.alert_id == alert_id, alerts.c.state.in_(from_states)]
    if at_seq is not None:
        where.append(alerts.c.seq == at_seq)
    row = conn.execute(
        update(alerts).where(*where).values(seq=alerts.c.seq + 1, **changes).returning(*alerts.c)
    ).first()
    return dict(row._mapping) if row is not None else None


def lock_case(conn: Connection, alert_id: str) -> None:
    """Hold the case's row (PostgreSQL; SQLite serialises writers) before its timers: every writer takes a case,
    then its timers (an acknowledge, a resolve, a rise in severity), so the escalation runner, which claims a timer
    to fire it, takes its case first too, or the two wait on each other (a deadlock: a failed acknowledge)."""
    conn.execute(select(alerts.c.alert_id).where(alerts.c.alert_id == alert_id).with_for_update())


def load_case(conn: Connection, alert_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
    return dict(row._mapping) if row is not None else None


def describe_state(conn: Connection, alert: Mapping[str, Any]) -> str:
    """Why a change did not apply, for :class:`AlertStateError`: the state the alert is in now."""
    state = conn.execute(select(alerts.c.state).where(alerts.c.alert_id == alert["alert_id"])).scalar()
    return f"it is {state}" if state else "no such alert"


def open_case(conn: Connection, elder_id: str, key: str) -> dict[str, Any] | None:
    """The elder's open case with this case key (:func:`alerts.grouping.case_key`), if any."""
    row = conn.execute(
        select(alerts).where(alerts.c.elder_id == elder_id, alerts.c.case_key == key, alerts.c.state.in_(OPEN_STATES))
    ).first()
    return dict(row._mapping) if row is not None else None


def open_cases(conn: Connection, elder_id: str) -> list[dict[str, Any]]:
    """Every open case of the elder, oldest first (a community case and a few maintenance cases at most)."""
    rows = conn.execute(
        select(alerts)
        .where(alerts.c.elder_id == elder_id, alerts.c.state.in_(OPEN_STATES))
        .order_by(alerts.c.raised_at, alerts.c.alert_id)
    )
    return [dict(row._mapping) for row in rows]


def cases_with_unsent_steps(conn: Connection, elder_id: str) -> list[dict[str, Any]]:
    """Every case of the elder, open or closed, with an event not sent yet (pending or parked), oldest first."""
    unsent = select(outbox.c.alert_id).where(outbox.c.elder_id == elder_id, outbox.c.status.in_(OUTBOX_UNSENT))
    rows = conn.execute(
        select(alerts)
        .where(alerts.c.elder_id == elder_id, alerts.c.alert_id.in_(unsent))
        .order_by(alerts.c.raised_at, alerts.c.alert_id)
    )
    return [dict(row._mapping) for row in rows]


def by_data(case: Mapping[str, Any]) -> bool:
    """The case was closed by the data (its conditions cleared), not by a person."""
    return (
        case.get("state") == "resolved"
        and case.get("resolved_by") == SYSTEM_ACTOR
        and case.get("outcome") in SYSTEM_OUTCOMES
    )


def last_case(conn: Connection, elder_id: str, key: str) -> dict[str, Any] | None:
    """The elder's newest closed case with this key, with ``by_data`` (a person's resolution ends grouping).

    Newest in data time: one case of a key is open at a time, so the last finding of a later case is
    newer than any of an earlier one, even when a batch of readings caught up raised and closed both
    at the same wall-clock time.
    """
    row = conn.execute(
        select(alerts)
        .where(alerts.c.elder_id == elder_id, alerts.c.case_key == key, alerts.c.state == "resolved")
        .order_by(alerts.c.data_ts.desc(), alerts.c.resolved_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    case = dict(row._mapping)
    case["by_data"] = by_data(case)
    return case


def muting_window(conn: Connection, elder_id: str, f: Finding) -> tuple[str, float | None] | None:
    """:func:`alerts.muting.muted_by` over the elder's stored windows that cover the finding's data time, with
    :func:`alerts.muting.held_until` (when a silence or a running tap a snooze muted is offered again)."""
    covering = conn.execute(
        select(away_windows.c.start_ts, away_windows.c.end_ts, away_windows.c.kind).where(
            away_windows.c.elder_id == elder_id, away_windows.c.start_ts <= f.ts, away_windows.c.end_ts > f.ts
        )
    )
    windows = [(row.start_ts, row.end_ts, row.kind) for row in covering]
    muted = muted_by(f, windows)
    return None if muted is None else (muted, held_until(f, windows))


def hold(conn: Connection, elder_id: str, f: Finding, until: float, now: float) -> None:
    """Keep ``f``, muted until ``until``, to be offered again then (one per meter and kind: the newest)."""
    drop_held(conn, elder_id, f)
    finding = dataclasses.asdict(f)
    conn.execute(
        insert(held_findings).values(
            elder_id=elder_id, meter_id=f.meter_id, kind=f.kind, finding=finding, release_at=until, created_at=now
        )
    )


def drop_held(conn: Connection, elder_id: str, f: Finding) -> None:
    """The detector cleared ``f``'s kind on its meter: a finding of it held is over, nothing to offer again."""
    conn.execute(
        delete(held_findings).where(
            held_findings.c.elder_id == elder_id, held_findings.c.meter_id == f.meter_id, held_findings.c.kind == f.kind
        )
    )


def held_due(conn: Connection, now: float, limit: int) -> list[dict[str, Any]]:
    """Held findings whose windows have ended by ``now``, oldest release first."""
    rows = conn.execute(
        select(held_findings).where(held_findings.c.release_at <= now).order_by(held_findings.c.release_at).limit(limit)
    )
    return [dict(row._mapping) for row in rows]


def watched(conn: Connection, elder_id: str, meter_id: str) -> dict[str, Any] | None:
    """The context of ``meter_id`` (:func:`store.registry.meter_context`) if it is still active and ``elder_id``'s,
    and she still consents to being watched; else None."""
    context = meter_context(conn, meter_id)
    if context is None or context["elder_id"] != elder_id:
        return None
    consent = conn.execute(select(elders.c.consent).where(elders.c.elder_id == elder_id)).scalar()
    return context if consent else None


def take_held(conn: Connection, held: Mapping[str, Any]) -> Finding | None:
    """Take a held finding out, as stored when it was read (None: a clear, a newer hold or a rival took it first)."""
    taken = conn.execute(
        delete(held_findings).where(
            held_findings.c.elder_id == held["elder_id"],
            held_findings.c.meter_id == held["meter_id"],
            held_findings.c.kind == held["kind"],
            held_findings.c.release_at == held["release_at"],
            held_findings.c.created_at == held["created_at"],
        )
    ).rowcount
    return Finding(**held["finding"]) if taken == 1 else None


def who(conn: Connection, elder_id: str, known: Mapping[str, Any]) -> dict[str, Any]:
    """Who the alert is about, as registered now (name, community, building, room, time zone)."""
    row = conn.execute(
        select(elders.c.name, elders.c.community, elders.c.building, elders.c.room, elders.c.tz).where(
            elders.c.elder_id == elder_id
        )
    ).first()
    if row is None:
        return {k: known.get(k, "") for k in ("name", "community", "building", "room", "tz")}
    return dict(row._mapping)


def public(who: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``who`` the platform receives."""
    return {k: who.get(k, "") for k in ("name", "community", "building", "room")}
