"""The case lifecycle: a finding raises, joins, reopens, clears or resolves a case; people acknowledge and resolve.

States: ``open -> notified -> acknowledged -> resolved`` (who and when on
each, in ``alert_events``). Rules kept here (grouping: :mod:`alerts.grouping`):

* one open community case per elder, one open maintenance case per meter: a
  finding of a kind the case holds raises nothing new (no second work
  order); another kind *joins* the case (a ``joined`` event; a higher
  severity raises the case's and re-plans its escalation, a lower one
  notifies nobody); a kind's clear is a ``cleared`` event, and the data
  resolves the case when every kind it holds has cleared;
* flapping: a community condition that comes back within ``hold_down_s`` of
  data time after the data closed the elder's case reopens the same case (same
  id, so the same work order on the platform, and one visit) instead of raising
  a new one; it is re-notified and its escalation starts again (a call); a
  meter's maintenance finding reopens its case closed by the data within
  ``maintenance_hold_down_s`` of data time, counting occurrences; a case a
  person resolved (or recorded an outcome on) is never reopened. The rule is
  :func:`alerts.grouping.reopens`, which replay applies too;
* snooze windows mute every kind but device kinds; away windows mute the
  kinds an absence explains (:mod:`alerts.muting`);
* raise and reopen arm escalation, a rise in severity re-plans it;
  acknowledge and resolve cancel it (:mod:`alerts.escalation`);
* a case the data closed (``use_resumed``, ``cleared``) still takes what a person
  found on their visit, once, within the outcome window after it closed
  (:meth:`Lifecycle.record_outcome`): the cadre often visits anyway;
* the first delivery of an open case marks it ``notified``
  (:func:`mark_notified`, called by the sender).

Rows are read and written through :mod:`alerts.cases`, events through
:func:`alerts.events.emit`, all in the caller's transaction, so a case, its
history and its delivery jobs commit together, or not at all.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, update

from alerts import grouping
from alerts.cases import (
    HUMAN_OUTCOMES,
    OPEN_STATES,
    OUTCOMES,
    SYSTEM_ACTOR,
    SYSTEM_OUTCOMES,
    AlertStateError,
    bump,
    cases_with_unsent_steps,
    describe_state,
    drop_held,
    hold,
    insert_case,
    last_case,
    load_case,
    muting_window,
    open_case,
    open_cases,
    public,
    take_held,
    watched,
    who,
)
from alerts.daily import readdress_queued_notes
from alerts.escalation import Escalator, cancel_timers
from alerts.events import emit, iso, readdress_unsent
from alerts.fanout import withdraw_family_texts
from alerts.messages import CLEARED_BY_DATA, RESOLVED_BY_DATA, compose_both, registry_note_text
from alerts.notifiers import ROBOT_CHANNELS
from alerts.policy import LEVEL_WORK_ORDER, route
from core.domain import DEVICE_KINDS, MAINTENANCE, WITHDRAWN, Finding
from store.ops import ConcurrentWrite
from store.schema import alerts

log = logging.getLogger(__name__)
#: Reads of a case that changed under us (another worker) before the batch is handed back to be run again.
_RACE_ATTEMPTS = 3


class _Changed(Exception):
    """The case changed between our read and our conditional write."""


class Lifecycle:
    """Moves cases through their states; every change is an event to the platform channels."""

    def __init__(
        self,
        escalator: Escalator,
        hold_down_s: float = grouping.FLAP_HOLD_DOWN_S,
        maintenance_hold_down_s: float = grouping.MAINTENANCE_HOLD_DOWN_S,
    ) -> None:
        self.escalator = escalator
        self.fanout = escalator.fanout
        self.hold_downs = grouping.HoldDowns(hold_down_s, maintenance_hold_down_s)

    # -- findings ------------------------------------------------------------------------

    def apply(self, conn: Connection, elder: Mapping[str, Any], finding: Finding, now: float) -> str | None:
        """Raise, join, reopen, clear or resolve for one finding; returns the alert id touched, if any."""
        for _ in range(_RACE_ATTEMPTS):
            try:
                return self._apply(conn, elder, finding, now)
            except _Changed:  # another worker changed the case between our read and our write: read it again
                continue
        raise ConcurrentWrite(f"alert of elder {elder['elder_id']} kept changing under us")

    def _apply(self, conn: Connection, elder: Mapping[str, Any], f: Finding, now: float) -> str | None:
        elder_id = elder["elder_id"]
        if f.resolved:
            drop_held(conn, elder_id, f)  # it ended inside the snooze that muted it: nothing to raise at its end
            case = grouping.clear_order(open_cases(conn, elder_id), f)
            return None if case is None else self._clear(conn, case, f, now)
        key = grouping.case_key(f)
        open_row = open_case(conn, elder_id, key)
        if open_row is not None and grouping.repeats(open_row, f):  # already held: no second work order
            return None
        muted = muting_window(conn, elder_id, f)
        if muted is not None:
            window, until = muted
            log.info("%s for elder %s muted by %s window", f.kind, elder_id, window)
            if until is not None:  # a silence, a running tap: still going on when the snooze ends, it is raised then
                hold(conn, elder_id, f, until, now)
            return None
        if open_row is not None:
            return self._join(conn, open_row, elder, f, now)
        # The newest closed case of this key: flapping (community) or a meter's findings (maintenance)
        # reopen it within their hold-down, in data time (alerts.grouping.reopens: replay's rule too).
        last = last_case(conn, elder_id, key)
        if last is not None and grouping.stale(last, f):
            return None  # a finding the case already counted, applied again
        if last is not None and grouping.reopens(last, f, self.hold_downs):
            return self._reopen(conn, last, elder, f, now)
        return self._raise(conn, elder, f, now)

    def _raise(self, conn: Connection, elder: Mapping[str, Any], f: Finding, now: float) -> str:
        alert = {
            "alert_id": str(uuid.uuid4()),
            "elder_id": elder["elder_id"],
            "meter_id": f.meter_id,
            "community": elder["community"],
            "kind": f.kind,
            "severity": f.severity,
            "state": "open",
            "basis": f.basis,
            "data_ts": f.ts,
            "since_ts": f.since,
            "raised_at": now,
            "score": f.score,
            "message_zh": f.message_zh,
            "message_en": f.message_en,
            "details": grouping.started(f, _details(f)),
            "seq": 1,
            "escalation_level": 0,
            "case_key": grouping.case_key(f),
        }
        insert_case(conn, alert)
        log.info("alert raised: %s %s for elder %s", f.kind, alert["alert_id"], elder["elder_id"])
        person = who(conn, alert["elder_id"], elder)
        extra = {"who": public(person), "text": compose_both(alert, person, route(alert))}
        emit(conn, alert, "raised", SYSTEM_ACTOR, now, extra, self.fanout.platform_for(alert))
        self.escalator.arm(conn, alert, person, now)
        return str(alert["alert_id"])

    def _join(self, conn: Connection, case: Mapping[str, Any], elder: Mapping[str, Any], f: Finding, now: float) -> str:
        """A second finding for an open case: recorded on it; a rise in severity re-notifies and escalates.

        The case's severity is its most severe active kind's (:func:`alerts.grouping.severity`). A rise
        puts an acknowledged case back to ``open``: someone must take it again, at the new severity.
        """
        before = grouping.severity(case)
        details = grouping.joined(case, f)
        severity = grouping.severity({**case, "details": details})
        rose = grouping.rises(before, severity)
        news = grouping.family_news(case, details) if rose and self.escalator.retells(case, severity) else None
        if news is not None:  # texted of a lesser kind: the family hears of this one too, once
            details["family_told"] = [*grouping.family_told(case), news]
        changes: dict[str, Any] = {"severity": severity, "details": details}
        if rose and case["state"] == "acknowledged":
            changes["state"] = "open"
        alert = bump(conn, case["alert_id"], OPEN_STATES, at_seq=int(case["seq"]), **changes)
        if alert is None:
            raise _Changed
        log.info("%s joined alert %s of elder %s (severity %s)", f.kind, alert["alert_id"], alert["elder_id"], severity)
        person = who(conn, alert["elder_id"], elder)
        seen = {**alert, "kind": f.kind, "message_zh": f.message_zh, "message_en": f.message_en, "since_ts": f.since}
        extra = {
            "joined": f.kind,
            "message": {"zh": f.message_zh, "en": f.message_en},
            "data_time": iso(f.ts),
            "severity_raised": rose,
            "who": public(person),
            "text": compose_both(seen, person, route(alert)),
        }
        if news is not None and (texted := self.escalator.retell(conn, alert, person, now)):
            extra["contacts_notified"] = texted  # how many, never who, as level 1's event says
        emit(conn, alert, "joined", SYSTEM_ACTOR, now, extra, self.fanout.platform_for(alert))
        if rose:
            self.escalator.replan(conn, alert, person, now)
        return str(alert["alert_id"])

    def _clear(self, conn: Connection, case: Mapping[str, Any], f: Finding, now: float) -> str:
        """One kind of the case cleared: recorded on it; the last one closes it (resolved by the data)."""
        details = grouping.cleared(case, f.kind, f.ts, withdrawn=bool(f.details.get(WITHDRAWN)))
        outcome = "use_resumed" if f.kind == "no_activity" else "cleared"
        note = f.message_zh + " " + f.message_en
        if not grouping.active_kinds({**case, "details": details}):
            try:
                at = int(case["seq"])
                self.resolve(conn, case, SYSTEM_ACTOR, outcome, note, now, data_ts=f.ts, details=details, at_seq=at)
            except AlertStateError:
                raise _Changed from None
            return str(case["alert_id"])
        severity = grouping.severity({**case, "details": details})  # back to its most severe active kind's
        alert = bump(conn, case["alert_id"], OPEN_STATES, at_seq=int(case["seq"]), details=details, severity=severity)
        if alert is None:
            raise _Changed
        extra = {"cleared": f.kind, "note": note, "data_time": iso(f.ts), "kinds_open": grouping.active_kinds(alert)}
        emit(conn, alert, "cleared", SYSTEM_ACTOR, now, extra, self.fanout.platform_for(alert))
        if grouping.rises(severity, grouping.severity(case)):  # fell: escalation follows what is still open
            self.escalator.ease(conn, alert)
        return str(alert["alert_id"])

    def _reopen(
        self, conn: Connection, old: Mapping[str, Any], elder: Mapping[str, Any], f: Finding, now: float
    ) -> str:
        """A closed case back: flapping within the hold-down, or its meter's maintenance finding (same id)."""
        grouped = {k: v for k, v in grouping.joined(old, f).items() if k in grouping.CASE_FIELDS}
        details = {**_details(f), **grouped, "reopened": int((old.get("details") or {}).get("reopened", 0)) + 1}
        details["message_kind"] = f.kind  # the message below is f's: texts of later levels label it so
        details["family_told"] = [f.kind]  # what the level-1 text its escalation fires again tells
        if old["kind"] not in DEVICE_KINDS and grouping.row_key(old) != grouping.COMMUNITY_CASE:
            details["route"] = MAINTENANCE  # the case stays the slow leak's: the maintenance route
        alert = bump(
            conn,
            old["alert_id"],
            ("resolved",),
            at_seq=int(old["seq"]),
            state="open",
            severity=f.severity,
            data_ts=f.ts,
            since_ts=f.since,
            score=f.score,
            message_zh=f.message_zh,
            message_en=f.message_en,
            details=details,
            acknowledged_at=None,
            acknowledged_by=None,
            resolved_at=None,
            resolved_by=None,
            outcome=None,
            note=None,
            escalation_level=0,
        )
        if alert is None:  # changed under us (a person resolved it again?): look again
            raise _Changed
        log.info("alert reopened (within hold-down): %s for elder %s", alert["alert_id"], alert["elder_id"])
        person = who(conn, alert["elder_id"], elder)
        extra = {
            "who": public(person),
            "text": compose_both({**alert, "kind": f.kind}, person, route(alert)),
            "reopened": details["reopened"],
            "occurrences": details["occurrences"],
        }
        emit(conn, alert, "reopened", SYSTEM_ACTOR, now, extra, self.fanout.platform_for(alert))
        self.escalator.arm(conn, alert, person, now)
        return str(alert["alert_id"])

    def release(self, conn: Connection, held: Mapping[str, Any], now: float) -> str | None:
        """A silence or a running tap a snooze muted (:func:`alerts.cases.hold`), the snooze over and its detector
        not having cleared it: applied as found at the snooze's end, in data time (its start kept); returns the
        alert id touched. A window begun since mutes it again (and holds it again); her meter retired or replaced,
        or her consent withdrawn: it is dropped."""
        f = take_held(conn, held)
        if f is None:
            return None  # cleared, held again or released by a rival meanwhile
        context = watched(conn, str(held["elder_id"]), f.meter_id)
        if context is None:
            return None
        return self.apply(conn, context, dataclasses.replace(f, ts=max(f.ts, float(held["release_at"]))), now)

    # -- people ------------------------------------------------------------------------------

    def acknowledge(self, conn: Connection, alert: Mapping[str, Any], actor: str, note: str, now: float) -> None:
        """Someone took the case: stops escalation. Raises :class:`AlertStateError` unless open or notified."""
        row = bump(
            conn,
            alert["alert_id"],
            ("open", "notified"),
            state="acknowledged",
            acknowledged_at=now,
            acknowledged_by=actor,
        )
        if row is None:
            raise AlertStateError(f"alert {alert['alert_id']} cannot be acknowledged: {describe_state(conn, alert)}")
        cancel_timers(conn, row["alert_id"])
        emit(conn, row, "acknowledged", actor, now, {"note": note}, self.fanout.platform_for(row))

    def resolve(
        self,
        conn: Connection,
        alert: Mapping[str, Any],
        actor: str,
        outcome: str,
        note: str,
        now: float,
        data_ts: float | None = None,
        details: Mapping[str, Any] | None = None,
        at_seq: int | None = None,
    ) -> None:
        """Close the case with an outcome (:data:`alerts.cases.OUTCOMES`) and a note; stops escalation.

        ``details``, when given, are stored with the resolution (the data's last clear, recorded on the case);
        ``at_seq``: only if the case is still as read then (:func:`alerts.cases.bump`).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
        changes = {"state": "resolved", "resolved_at": now, "resolved_by": actor, "outcome": outcome, "note": note}
        if details is not None:
            changes["details"] = dict(details)
        row = bump(conn, alert["alert_id"], OPEN_STATES, at_seq=at_seq, **changes)
        if row is None:
            raise AlertStateError(f"alert {alert['alert_id']} cannot be resolved: {describe_state(conn, alert)}")
        cancel_timers(conn, row["alert_id"])
        withdraw_family_texts(conn, row["alert_id"])  # "call her now" is over once the case is
        extra: dict[str, Any] = {"outcome": outcome, "note": note}
        if data_ts is not None:
            extra["data_time"] = iso(data_ts)
        if actor == SYSTEM_ACTOR and outcome in SYSTEM_OUTCOMES:
            # Resolved by the data: people may already be on their way to the door.
            extra["resolved_by_data"] = True
            extra["visit_may_be_underway"] = int(row["escalation_level"]) >= LEVEL_WORK_ORDER
            extra["text"] = dict(RESOLVED_BY_DATA if outcome == "use_resumed" else CLEARED_BY_DATA)
        elif (said := registry_note_text(note)) is not None:
            extra["text"] = said  # (its note, an English phrase before her reason, stays for who reads it)
        emit(conn, row, "resolved", actor, now, extra, self.fanout.platform_for(row))

    def record_outcome(
        self,
        conn: Connection,
        alert: Mapping[str, Any],
        actor: str,
        outcome: str,
        note: str,
        now: float,
        window_s: float,
    ) -> dict[str, Any]:
        """What a person found on a case the data already closed: its outcome, who, a note; an ``outcome`` event.

        The case keeps its closing time (``resolved_at``); the data's outcome stays in its history
        (the ``resolved`` event). Only once, by a person, and within ``window_s`` of the closing: else
        :class:`AlertStateError` says why. Returns the updated row.
        """
        if outcome not in HUMAN_OUTCOMES:
            raise ValueError(f"a person's outcome is one of {', '.join(HUMAN_OUTCOMES)}, not {outcome!r}")
        row = _closed_by_data_to_person(conn, str(alert["alert_id"]), now - window_s, actor, outcome, note)
        if row is None:
            raise AlertStateError(f"alert {alert['alert_id']}: {_why_no_outcome(conn, alert, now, window_s)}")
        extra = {"outcome": outcome, "note": note, "closed_at": iso(float(row["resolved_at"]))}
        emit(conn, row, "outcome", actor, now, extra, self.fanout.platform_for(row))
        return row

    def move(self, conn: Connection, elder_id: str, community: str, actor: str, now: float) -> None:
        """The elder moved: her open cases follow her to ``community``, whose workers take them; the one she left
        no longer sees them. Each with a ``moved`` event, as every change of a case: the new community's live
        pages and the platform learn it now, not at the case's next change."""
        for case in open_cases(conn, elder_id):
            if case["community"] == community:
                continue
            row = bump(conn, case["alert_id"], OPEN_STATES, community=community)
            if row is None:  # closed meanwhile: a closed case stays where it was worked
                continue
            person = who(conn, elder_id, row)
            readdress_unsent(conn, str(row["alert_id"]), public(person))  # its steps still queued go where she is now
            extra = {
                "moved_from": case["community"],
                "who": public(person),
                "text": compose_both(grouping.told(row), person, route(row)),
            }
            emit(conn, row, "moved", actor, now, extra, self.fanout.platform_for(row))

    def readdress(self, conn: Connection, elder_id: str, was: Mapping[str, Any]) -> None:
        """Her door changed in her community (a new building or room, a wrong one put right), her name was put
        right, or her time zone changed (``was``: her registration before, name and time zone at least): her
        cases' steps still queued name her and the door she lives at now, as a move's do, and say since when in
        her zone now (no event: her case stays where it is); her family's texts still queued (an alert's level-1
        text, the daily note) name her by her name now (they carry no address) and tell their times in her zone now.

        Closed cases' steps too (a work order queued before the data closed the case still sends someone to her
        door), unless the case was closed in a community she has left: it stays as it was worked, and that
        community's group does not learn where she lives now."""
        person = who(conn, elder_id, {})
        zones = (str(was["tz"]), str(person["tz"]))
        for case in cases_with_unsent_steps(conn, elder_id):
            if case["state"] in OPEN_STATES or case["community"] == person["community"]:
                readdress_unsent(conn, str(case["alert_id"]), public(person), zones, was.get("name"))
        readdress_queued_notes(conn, elder_id, was, person)


def closed_by_data(alert: Mapping[str, Any]) -> bool:
    """The case was resolved by tapwatch when the data showed it over, and no person has recorded an outcome."""
    return alert["state"] == "resolved" and alert["resolved_by"] == SYSTEM_ACTOR and alert["outcome"] in SYSTEM_OUTCOMES


def _closed_by_data_to_person(
    conn: Connection, alert_id: str, closed_after: float, actor: str, outcome: str, note: str
) -> dict[str, Any] | None:
    """The one change a person makes to a closed case, conditional on it still being the data's (no race)."""
    row = conn.execute(
        update(alerts)
        .where(
            alerts.c.alert_id == alert_id,
            alerts.c.state == "resolved",
            alerts.c.resolved_by == SYSTEM_ACTOR,
            alerts.c.outcome.in_(SYSTEM_OUTCOMES),
            alerts.c.resolved_at >= closed_after,
        )
        .values(seq=alerts.c.seq + 1, resolved_by=actor, outcome=outcome, note=note)
        .returning(*alerts.c)
    ).first()
    return dict(row._mapping) if row is not None else None


def _why_no_outcome(conn: Connection, alert: Mapping[str, Any], now: float, window_s: float) -> str:
    """Why a person's outcome was refused, from the case as it is now."""
    row = load_case(conn, str(alert["alert_id"]))
    if row is None:
        return "no such alert"
    if row["state"] != "resolved":
        return f"it is {row['state']} again: resolve it"
    if not closed_by_data(row):
        return f"its outcome was already recorded ({row['outcome']}, by {row['resolved_by']})"
    days = window_s / 86400.0
    return (
        f"the data closed it on {iso(float(row['resolved_at']))}, more than {days:g} days ago: "
        "too late to record an outcome (TAPWATCH_OUTCOME_WINDOW_DAYS)"
    )


def mark_notified(conn: Connection, alert_id: str, channel: str, now: float, platform: Sequence[str]) -> bool:
    """First delivery of an open alert: ``open -> notified``, an event to the platform channels."""
    row = bump(conn, alert_id, ("open",), state="notified")
    if row is None:
        return False
    # Not to the group robots: a group shows nothing for it (``alerts.messages.chat_message``).
    emit(conn, row, "notified", channel, now, {"channel": channel}, [c for c in platform if c not in ROBOT_CHANNELS])
    return True


def _details(f: Finding) -> dict[str, Any]:
    """The finding's details, with its route when a kind usually the cadres' goes to maintenance."""
    if f.route == MAINTENANCE and f.kind not in DEVICE_KINDS:
        return {**(f.details or {}), "route": MAINTENANCE}
    return dict(f.details or {})
