"""Turn findings into alerts: one open alert per elder and kind, every change an outbox event.

Everything here runs inside the caller's transaction, so an alert, its event
history and its delivery jobs are committed together with the readings that
caused them, or not at all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from alerts.events import cloud_event, iso
from tapwatch.domain import DEVICE_KINDS, Finding
from tapwatch.store.schema import alert_events, alerts, outbox

log = logging.getLogger(__name__)

OPEN_STATES = ("open", "notified", "acknowledged")
OUTCOMES = ("ok", "needed_help", "hospital", "away", "false_alarm", "device_fault", "use_resumed", "cleared")
SYSTEM_ACTOR = "tapwatch"

_KIND_ZH = {
    "no_activity": "长时间未用水",
    "continuous_flow": "持续用水",
    "high_usage": "用水量异常偏高",
    "low_usage": "用水量异常偏低",
    "routine_change": "生活规律变化",
    "meter_offline": "水表离线",
    "meter_fault": "水表故障",
}
_KIND_EN = {
    "no_activity": "No water use",
    "continuous_flow": "Continuous water flow",
    "high_usage": "Unusually high use",
    "low_usage": "Unusually low use",
    "routine_change": "Change in routine",
    "meter_offline": "Meter offline",
    "meter_fault": "Meter fault",
}


def kind_label(kind: str, language: str = "zh") -> str:
    return (_KIND_ZH if language == "zh" else _KIND_EN).get(kind, kind)


class AlertManager:
    """Applies findings to the alert table and queues their delivery.

    ``notifiers`` names the outbox channels every event goes to (for example
    ``("webhook",)``); device alerts carry ``route: maintenance`` so the
    platform sends them to the water utility, not to community cadres.
    """

    def __init__(self, notifiers: Sequence[str] = ()) -> None:
        self.notifiers = tuple(notifiers)

    def apply(self, conn: Connection, elder: Mapping[str, Any], finding: Finding, now: float) -> str | None:
        """Raise or resolve for one finding; returns the alert id touched, if any."""
        open_row = self._open_alert(conn, elder["elder_id"], finding.kind)
        if finding.resolved:
            if open_row is None:
                return None
            outcome = "use_resumed" if finding.kind == "no_activity" else "cleared"
            note = finding.message_zh + " " + finding.message_en
            self.resolve(conn, open_row, SYSTEM_ACTOR, outcome, note, now, data_ts=finding.ts)
            return str(open_row["alert_id"])
        if open_row is not None:  # one open alert per elder and kind: no new work order
            return None
        return self._raise(conn, elder, finding, now)

    def _open_alert(self, conn: Connection, elder_id: str, kind: str) -> dict[str, Any] | None:
        row = conn.execute(
            select(alerts).where(alerts.c.elder_id == elder_id, alerts.c.kind == kind, alerts.c.state.in_(OPEN_STATES))
        ).first()
        return dict(row._mapping) if row is not None else None

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
            "details": f.details,
            "seq": 1,
        }
        conn.execute(insert(alerts).values(**alert))
        log.info("alert raised: %s %s for elder %s", f.kind, alert["alert_id"], elder["elder_id"])
        self._event(conn, alert, elder, 1, "raised", SYSTEM_ACTOR, now, {})
        return str(alert["alert_id"])

    def resolve(
        self,
        conn: Connection,
        alert: dict[str, Any],
        actor: str,
        outcome: str,
        note: str,
        now: float,
        data_ts: float | None = None,
    ) -> None:
        seq = int(alert["seq"]) + 1
        changes = {
            "state": "resolved",
            "resolved_at": now,
            "resolved_by": actor,
            "outcome": outcome,
            "note": note,
        }
        conn.execute(update(alerts).where(alerts.c.alert_id == alert["alert_id"]).values(seq=seq, **changes))
        alert = {**alert, **changes, "seq": seq}
        extra = {"outcome": outcome, "note": note}
        if data_ts is not None:
            extra["data_time"] = iso(data_ts)
        self._event(conn, alert, None, seq, "resolved", actor, now, extra)

    def acknowledge(self, conn: Connection, alert: dict[str, Any], actor: str, note: str, now: float) -> None:
        seq = int(alert["seq"]) + 1
        changes = {"state": "acknowledged", "acknowledged_at": now, "acknowledged_by": actor}
        conn.execute(update(alerts).where(alerts.c.alert_id == alert["alert_id"]).values(seq=seq, **changes))
        self._event(conn, {**alert, **changes, "seq": seq}, None, seq, "acknowledged", actor, now, {"note": note})

    def _event(
        self,
        conn: Connection,
        alert: Mapping[str, Any],
        elder: Mapping[str, Any] | None,
        seq: int,
        event_type: str,
        actor: str,
        now: float,
        extra: dict[str, Any],
    ) -> None:
        conn.execute(
            insert(alert_events).values(
                alert_id=alert["alert_id"], seq=seq, type=event_type, at=now, actor=actor, data=extra
            )
        )
        data = {**event_data(alert, elder), **extra, "state": alert["state"], "event": event_type}
        event = cloud_event(dict(alert), seq, event_type, now, data)
        for notifier in self.notifiers:
            conn.execute(
                insert(outbox).values(
                    alert_id=alert["alert_id"],
                    event_seq=seq,
                    elder_id=alert["elder_id"],
                    notifier=notifier,
                    idempotency_key=f"{event['id']}:{notifier}",
                    payload=event,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )


def event_data(alert: Mapping[str, Any], elder: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the platform needs to act, and no more (privacy: no contacts, no history)."""
    data: dict[str, Any] = {
        "alert_id": alert["alert_id"],
        "elder_id": alert["elder_id"],
        "meter_id": alert["meter_id"],
        "community": alert["community"],
        "kind": alert["kind"],
        "kind_label": {"zh": kind_label(alert["kind"], "zh"), "en": kind_label(alert["kind"], "en")},
        "severity": alert["severity"],
        "basis": alert["basis"],
        "route": "maintenance" if alert["kind"] in DEVICE_KINDS else "community",
        "data_time": iso(alert["data_ts"]),
        "message": {"zh": alert["message_zh"], "en": alert["message_en"]},
    }
    if alert.get("since_ts") is not None:
        data["since"] = iso(alert["since_ts"])
    if elder is not None:
        data["who"] = {
            "name": elder.get("name", ""),
            "community": elder.get("community", ""),
            "building": elder.get("building", ""),
            "room": elder.get("room", ""),
        }
    return data
