"""The case store: every read and write of an ``alerts`` row, in the caller's transaction.

One case per elder and case key is open at a time (:mod:`alerts.grouping`: the
elder's community case, one maintenance case per meter; also a unique index in
the store). Every change goes through :func:`bump`, which takes the next sequence
number with ``UPDATE ... SET seq = seq + 1 ... RETURNING``, conditional on the
state the change starts from: concurrent changes are safe, and a change that
no longer applies matches no row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from alerts.muting import muted_by
from core.domain import Finding
from store.schema import OUTBOX_UNSENT, alerts, away_windows, elders, outbox

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


def muting_window(conn: Connection, elder_id: str, f: Finding) -> str | None:
    """:func:`alerts.muting.muted_by` over the elder's stored windows that cover the finding's data time."""
    covering = conn.execute(
        select(away_windows.c.start_ts, away_windows.c.end_ts, away_windows.c.kind).where(
            away_windows.c.elder_id == elder_id, away_windows.c.start_ts <= f.ts, away_windows.c.end_ts > f.ts
        )
    )
    return muted_by(f, [(row.start_ts, row.end_ts, row.kind) for row in covering])


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
