"""Turn findings into alerts and move alerts through their lifecycle; every change is an outbox event.

States: ``open -> notified -> acknowledged -> resolved`` (who and when on
each, in ``alert_events``). Rules kept here:

* one open alert per elder and kind (also a unique index in the store);
* flapping: a condition that comes back within ``hold_down_s`` of being
  resolved *by the data* reopens the same alert (same id, so the same work
  order on the platform) instead of raising a new one;
* snooze windows mute every kind but device kinds; away windows mute the
  kinds an absence explains (no use, low use, routine change);
* device kinds, and findings the detectors route to maintenance (``Finding.route``: a slow
  leak), go to maintenance and never escalate to cadres;
* escalation (contact, work order, supervisor) is armed on raise and
  cancelled on acknowledge or resolve (:mod:`alerts.escalation`).

Everything runs inside the caller's transaction, so an alert, its history
and its delivery jobs commit together, or not at all. Concurrent changes are
safe: every event takes its sequence number with ``UPDATE ... SET seq = seq
+ 1 ... RETURNING``, conditional on the state it starts from.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from alerts.events import cloud_event, iso
from alerts.messages import RESOLVED_BY_DATA, compose_both, kind_label
from alerts.muting import muted_by
from alerts.notifiers import CONTACT_CHANNELS, channel_names
from alerts.policy import LEVEL_CONTACT, LEVEL_ROUTES, LEVEL_SUPERVISOR, LEVEL_WORK_ORDER, EscalationPolicy
from core.domain import DEVICE_KINDS, MAINTENANCE, Finding
from core.metrics import Metrics
from core.settings import Settings
from store.schema import alert_events, alerts, away_windows, elders, escalations, outbox

log = logging.getLogger(__name__)

OPEN_STATES = ("open", "notified", "acknowledged")
#: Outcomes a person records on resolve.
HUMAN_OUTCOMES = ("ok", "needed_help", "hospital", "away", "false_alarm", "device_fault")
#: Outcomes the system records: use resumed after ``no_activity``; any other condition cleared by the data.
SYSTEM_OUTCOMES = ("use_resumed", "cleared")
OUTCOMES = HUMAN_OUTCOMES + SYSTEM_OUTCOMES
SYSTEM_ACTOR = "tapwatch"
_ACTIONS = {0: "inform", LEVEL_CONTACT: "inform", LEVEL_WORK_ORDER: "dispatch", LEVEL_SUPERVISOR: "supervise"}

__all__ = [
    "OUTCOMES",
    "AlertManager",
    "AlertStateError",
    "event_data",
    "kind_label",
    "mark_notified",
]


class AlertStateError(ValueError):
    """The change does not apply to the alert's current state (e.g. acknowledging a resolved alert)."""


class AlertManager:
    """Applies findings to the alert table and queues their delivery.

    ``notifiers`` names the outbox channels: platform channels (``webhook``,
    ``mqtt``, or any other name) get every lifecycle event; ``sms`` gets
    level-1 messages to the elder's emergency contacts only.
    """

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None = None) -> AlertManager:
        """The manager a monitor or an API process runs, from :class:`core.settings.Settings`.

        Channel names come from configuration without building (or connecting) the channels,
        so every process queues events to the same channels the sender works.
        """
        return cls(
            notifiers=channel_names(settings),
            policy=EscalationPolicy.from_config(settings.escalation_policy),
            hold_down_s=settings.flap_hold_down_hours * 3600,
            language=settings.language,
            metrics=metrics,
        )

    def __init__(
        self,
        notifiers: Sequence[str] = (),
        *,
        policy: EscalationPolicy | None = None,
        hold_down_s: float = 6 * 3600,
        language: str = "zh",
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.notifiers = tuple(notifiers)
        self.platform = tuple(n for n in self.notifiers if n not in CONTACT_CHANNELS)
        self.contact = tuple(n for n in self.notifiers if n in CONTACT_CHANNELS)
        self.policy = policy or EscalationPolicy.default()
        self.hold_down_s = hold_down_s
        self.language = language

    # -- findings ------------------------------------------------------------------------

    def apply(self, conn: Connection, elder: Mapping[str, Any], finding: Finding, now: float) -> str | None:
        """Raise, reopen or resolve for one finding; returns the alert id touched, if any."""
        open_row = _open_alert(conn, elder["elder_id"], finding.kind)
        if finding.resolved:
            if open_row is None:
                return None
            outcome = "use_resumed" if finding.kind == "no_activity" else "cleared"
            note = finding.message_zh + " " + finding.message_en
            self.resolve(conn, open_row, SYSTEM_ACTOR, outcome, note, now, data_ts=finding.ts)
            return str(open_row["alert_id"])
        if open_row is not None:  # one open alert per elder and kind: no new work order
            return None
        muted = _muted_by(conn, elder["elder_id"], finding)
        if muted is not None:
            log.info("%s for elder %s muted by %s window", finding.kind, elder["elder_id"], muted)
            return None
        recent = _recently_auto_resolved(conn, elder["elder_id"], finding.kind, now - self.hold_down_s)
        if recent is not None:
            return self._reopen(conn, recent, elder, finding, now)
        return self._raise(conn, elder, finding, now)

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
            "details": _details(f),
            "seq": 1,
            "escalation_level": 0,
        }
        conn.execute(insert(alerts).values(**alert))
        log.info("alert raised: %s %s for elder %s", f.kind, alert["alert_id"], elder["elder_id"])
        who = _who(conn, alert["elder_id"], elder)
        extra = {"who": _public(who), "text": compose_both(alert, who, _route(alert))}
        self._event(conn, alert, "raised", SYSTEM_ACTOR, now, extra)
        self._arm(conn, alert, who, now)
        return str(alert["alert_id"])

    def _reopen(
        self, conn: Connection, old: Mapping[str, Any], elder: Mapping[str, Any], f: Finding, now: float
    ) -> str:
        details = {**_details(f), "reopened": int((old.get("details") or {}).get("reopened", 0)) + 1}
        alert = _bump(
            conn,
            old["alert_id"],
            ("resolved",),
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
        if alert is None:  # changed under us (a person resolved it again?): a fresh alert is the safe answer
            return self._raise(conn, elder, f, now)
        log.info("alert reopened (flapping within hold-down): %s for elder %s", alert["alert_id"], alert["elder_id"])
        who = _who(conn, alert["elder_id"], elder)
        extra = {"who": _public(who), "text": compose_both(alert, who, _route(alert)), "reopened": details["reopened"]}
        self._event(conn, alert, "reopened", SYSTEM_ACTOR, now, extra)
        self._arm(conn, alert, who, now)
        return str(alert["alert_id"])

    # -- people ------------------------------------------------------------------------------

    def acknowledge(self, conn: Connection, alert: Mapping[str, Any], actor: str, note: str, now: float) -> None:
        """Someone took the case: stops escalation. Raises :class:`AlertStateError` unless open or notified."""
        row = _bump(
            conn,
            alert["alert_id"],
            ("open", "notified"),
            state="acknowledged",
            acknowledged_at=now,
            acknowledged_by=actor,
        )
        if row is None:
            raise AlertStateError(f"alert {alert['alert_id']} cannot be acknowledged: {_state(conn, alert)}")
        _cancel_escalations(conn, row["alert_id"])
        self._event(conn, row, "acknowledged", actor, now, {"note": note})

    def resolve(
        self,
        conn: Connection,
        alert: Mapping[str, Any],
        actor: str,
        outcome: str,
        note: str,
        now: float,
        data_ts: float | None = None,
    ) -> None:
        """Close the case with an outcome (:data:`OUTCOMES`) and a note; stops escalation."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
        changes = {"state": "resolved", "resolved_at": now, "resolved_by": actor, "outcome": outcome, "note": note}
        row = _bump(conn, alert["alert_id"], OPEN_STATES, **changes)
        if row is None:
            raise AlertStateError(f"alert {alert['alert_id']} cannot be resolved: {_state(conn, alert)}")
        _cancel_escalations(conn, row["alert_id"])
        extra: dict[str, Any] = {"outcome": outcome, "note": note}
        if data_ts is not None:
            extra["data_time"] = iso(data_ts)
        if actor == SYSTEM_ACTOR and outcome in SYSTEM_OUTCOMES:
            # Resolved by the data: people may already be on their way to the door.
            extra["resolved_by_data"] = True
            extra["visit_may_be_underway"] = int(row["escalation_level"]) >= LEVEL_WORK_ORDER
            extra["text"] = dict(RESOLVED_BY_DATA)
        self._event(conn, row, "resolved", actor, now, extra)

    # -- escalation --------------------------------------------------------------------------

    def _arm(self, conn: Connection, alert: Mapping[str, Any], who: Mapping[str, Any], now: float) -> None:
        """Fire the levels due at once (level 1 at the raise), schedule the next one."""
        if _maintenance(alert):
            return  # maintenance, not cadres
        _cancel_escalations(conn, alert["alert_id"])
        self._advance(conn, dict(alert), who, 0, now, now)

    def _advance(
        self,
        conn: Connection,
        alert: dict[str, Any],
        who: Mapping[str, Any],
        level: int,
        base: float,
        now: float,
        skipped: bool = False,
    ) -> None:
        """Fire every level due by ``now`` after ``level``; store a timer for the first one not yet due."""
        while (step := self.policy.next_step(alert["severity"], level)) is not None:
            level, delay = step
            if skipped:  # the previous level reached nobody: do not wait for an acknowledgement it cannot bring
                delay = 0.0
            due = base + delay
            if due > now:
                conn.execute(
                    insert(escalations).values(
                        alert_id=alert["alert_id"], level=level, due_at=due, status="pending", created_at=now
                    )
                )
                return
            reached = self._fire(conn, alert, who, level, now)
            status = "fired" if reached else "skipped"
            conn.execute(
                insert(escalations).values(
                    alert_id=alert["alert_id"], level=level, due_at=due, status=status, fired_at=now, created_at=now
                )
            )
            skipped, base = not reached, now

    def fire_escalation(self, conn: Connection, timer: Mapping[str, Any], now: float) -> bool:
        """Fire a claimed timer (see :class:`alerts.escalation.EscalationRunner`); False if no longer needed."""
        row = conn.execute(select(alerts).where(alerts.c.alert_id == timer["alert_id"])).first()
        if row is None or row.state not in ("open", "notified"):
            return False  # acknowledged or resolved meanwhile: nobody needs chasing
        alert = dict(row._mapping)
        who = _who(conn, alert["elder_id"], {})
        level = int(timer["level"])
        reached = self._fire(conn, alert, who, level, now)
        # The next level counts from now, the time this one fired.
        self._advance(conn, alert, who, level, now, now, skipped=not reached)
        return reached

    def _fire(self, conn: Connection, alert: dict[str, Any], who: Mapping[str, Any], level: int, now: float) -> bool:
        """One escalation level; False when it could reach nobody (no contact phone or no SMS channel)."""
        route = LEVEL_ROUTES[level]
        phones = self._contact_phones(conn, alert["elder_id"]) if level == LEVEL_CONTACT else []
        if level == LEVEL_CONTACT and not phones:
            log.info("alert %s: no emergency contact reachable, going on to the work order", alert["alert_id"])
            return False
        row = _bump(conn, alert["alert_id"], ("open", "notified"), escalation_level=level)
        if row is None:
            return False
        alert.update(row)
        extra: dict[str, Any] = {"level": level, "route": route}
        if level == LEVEL_CONTACT:
            self._text_contacts(conn, alert, who, phones, now)
            extra["contacts_notified"] = len(phones)  # how many, never who: the platform needs no numbers
        else:
            extra["who"] = _public(who)
            extra["text"] = compose_both(alert, who, route)
        self._event(conn, alert, "escalated", SYSTEM_ACTOR, now, extra)
        if self.metrics is not None:
            self.metrics.escalations_fired.labels(level=str(level)).inc()
        return True

    def _contact_phones(self, conn: Connection, elder_id: str) -> list[str]:
        if not self.contact:
            return []
        contacts = conn.execute(select(elders.c.contacts).where(elders.c.elder_id == elder_id)).scalar() or []
        phones = [str(c["phone"]) for c in contacts if isinstance(c, Mapping) and c.get("phone")]
        return list(dict.fromkeys(phones))

    def _text_contacts(
        self, conn: Connection, alert: Mapping[str, Any], who: Mapping[str, Any], phones: list[str], now: float
    ) -> None:
        text = compose_both(alert, who, "contact")[self.language]
        for i, phone in enumerate(phones):
            event = cloud_event(dict(alert), int(alert["seq"]), "contact", now, {"to": phone, "text": text})
            event["id"] = f"{event['id']}:c{i}"  # one message per contact, each with its own idempotency key
            for channel in self.contact:
                _queue(conn, alert, event, channel, now)

    # -- events ------------------------------------------------------------------------------

    def _event(
        self,
        conn: Connection,
        alert: Mapping[str, Any],
        event_type: str,
        actor: str,
        now: float,
        extra: dict[str, Any],
    ) -> None:
        emit(conn, alert, event_type, actor, now, extra, self.platform)


def emit(
    conn: Connection,
    alert: Mapping[str, Any],
    event_type: str,
    actor: str,
    now: float,
    extra: Mapping[str, Any],
    channels: Sequence[str],
) -> None:
    """Record one alert event (history) and queue it to every platform channel (outbox), same transaction."""
    seq = int(alert["seq"])
    history = {k: v for k, v in extra.items() if k not in ("who", "text")}  # history keeps no personal data
    conn.execute(
        insert(alert_events).values(
            alert_id=alert["alert_id"], seq=seq, type=event_type, at=now, actor=actor, data=history
        )
    )
    data = {**event_data(alert), **extra, "state": alert["state"], "event": event_type, "actor": actor}
    event = cloud_event(dict(alert), seq, event_type, now, data)
    for channel in channels:
        _queue(conn, alert, event, channel, now)


def _queue(conn: Connection, alert: Mapping[str, Any], event: Mapping[str, Any], channel: str, now: float) -> None:
    conn.execute(
        insert(outbox).values(
            alert_id=alert["alert_id"],
            event_seq=int(alert["seq"]),
            elder_id=alert["elder_id"],
            notifier=channel,
            idempotency_key=f"{event['id']}:{channel}",
            payload=dict(event),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def mark_notified(conn: Connection, alert_id: str, channel: str, now: float, platform: Sequence[str]) -> bool:
    """First delivery of an open alert: ``open -> notified``, an event to the platform channels."""
    row = _bump(conn, alert_id, ("open",), state="notified")
    if row is None:
        return False
    emit(conn, row, "notified", channel, now, {"channel": channel}, platform)
    return True


def event_data(alert: Mapping[str, Any]) -> dict[str, Any]:
    """What the platform needs to act, and no more (privacy: no contacts, no history, no model internals)."""
    data: dict[str, Any] = {
        "alert_id": alert["alert_id"],
        "elder_id": alert["elder_id"],
        "meter_id": alert["meter_id"],
        "community": alert["community"],
        "kind": alert["kind"],
        "kind_label": {"zh": kind_label(alert["kind"], "zh"), "en": kind_label(alert["kind"], "en")},
        "severity": alert["severity"],
        "basis": alert["basis"],
        "route": _route(alert),
        "action": "maintenance" if _maintenance(alert) else _ACTIONS[int(alert.get("escalation_level") or 0)],
        "escalation_level": int(alert.get("escalation_level") or 0),
        "data_time": iso(alert["data_ts"]),
        "message": {"zh": alert["message_zh"], "en": alert["message_en"]},
    }
    if alert.get("since_ts") is not None:
        data["since"] = iso(alert["since_ts"])
    return data


# -- store helpers --------------------------------------------------------------------------


def _details(f: Finding) -> dict[str, Any]:
    """The finding's details, with its route when a kind usually the cadres' goes to maintenance."""
    if f.route == MAINTENANCE and f.kind not in DEVICE_KINDS:
        return {**(f.details or {}), "route": MAINTENANCE}
    return dict(f.details or {})


def _maintenance(alert: Mapping[str, Any]) -> bool:
    """A device kind, or a finding the detectors routed to maintenance (a slow leak)."""
    return alert["kind"] in DEVICE_KINDS or (alert.get("details") or {}).get("route") == MAINTENANCE


def _route(alert: Mapping[str, Any]) -> str:
    """maintenance for device kinds and slow leaks; else community, or street once the supervisor level fired."""
    if _maintenance(alert):
        return "maintenance"
    return "street" if int(alert.get("escalation_level") or 0) >= LEVEL_SUPERVISOR else "community"


def _bump(conn: Connection, alert_id: str, from_states: Sequence[str], **changes: Any) -> dict[str, Any] | None:
    """Apply ``changes`` and take the next sequence number, if the alert is in ``from_states``."""
    row = conn.execute(
        update(alerts)
        .where(alerts.c.alert_id == alert_id, alerts.c.state.in_(from_states))
        .values(seq=alerts.c.seq + 1, **changes)
        .returning(*alerts.c)
    ).first()
    return dict(row._mapping) if row is not None else None


def _state(conn: Connection, alert: Mapping[str, Any]) -> str:
    state = conn.execute(select(alerts.c.state).where(alerts.c.alert_id == alert["alert_id"])).scalar()
    return f"it is {state}" if state else "no such alert"


def _open_alert(conn: Connection, elder_id: str, kind: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(alerts).where(alerts.c.elder_id == elder_id, alerts.c.kind == kind, alerts.c.state.in_(OPEN_STATES))
    ).first()
    return dict(row._mapping) if row is not None else None


def _recently_auto_resolved(conn: Connection, elder_id: str, kind: str, after: float) -> dict[str, Any] | None:
    row = conn.execute(
        select(alerts)
        .where(
            alerts.c.elder_id == elder_id,
            alerts.c.kind == kind,
            alerts.c.state == "resolved",
            alerts.c.resolved_by == SYSTEM_ACTOR,
            alerts.c.outcome.in_(SYSTEM_OUTCOMES),
            alerts.c.resolved_at >= after,
        )
        .order_by(alerts.c.resolved_at.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row is not None else None


def _muted_by(conn: Connection, elder_id: str, f: Finding) -> str | None:
    """:func:`alerts.muting.muted_by` over the elder's stored windows that cover the finding's data time."""
    covering = conn.execute(
        select(away_windows.c.start_ts, away_windows.c.end_ts, away_windows.c.kind).where(
            away_windows.c.elder_id == elder_id, away_windows.c.start_ts <= f.ts, away_windows.c.end_ts > f.ts
        )
    )
    return muted_by(f, [(row.start_ts, row.end_ts, row.kind) for row in covering])


def _who(conn: Connection, elder_id: str, known: Mapping[str, Any]) -> dict[str, Any]:
    """Who the alert is about, as registered now (name, community, building, room, time zone)."""
    row = conn.execute(
        select(elders.c.name, elders.c.community, elders.c.building, elders.c.room, elders.c.tz).where(
            elders.c.elder_id == elder_id
        )
    ).first()
    if row is None:
        return {k: known.get(k, "") for k in ("name", "community", "building", "room", "tz")}
    return dict(row._mapping)


def _public(who: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``who`` the platform receives."""
    return {k: who.get(k, "") for k in ("name", "community", "building", "room")}


def _cancel_escalations(conn: Connection, alert_id: str) -> None:
    conn.execute(
        update(escalations)
        .where(escalations.c.alert_id == alert_id, escalations.c.status == "pending")
        .values(status="cancelled")
    )
