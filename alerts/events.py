"""Alert events: what each says, emitting it (history and outbox), its CloudEvents envelope and signature.

:func:`emit` is the one place an alert event is written: a row in
``alert_events`` (the history, without personal data) and one delivery job
per platform channel in ``outbox``, in the caller's transaction, so the event
commits with the change it reports. :func:`event_data` is what the platform
gets: enough to act, no more (no contacts, no history, no model internals).

The signature header ``X-Tapwatch-Signature: t=<unix seconds>,v1=<hex>``
carries both the timestamp and ``HMAC-SHA256(secret, "<t>." + body)``. A
receiver recomputes it over the raw body, compares in constant time and
refuses anything signed more than 5 minutes from its own clock;
:class:`ReplayGuard` also refuses a second copy of the same signed request
inside that window (what tapwatch does with anything it receives).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update

from alerts.grouping import active_kinds, kinds_of, occurrences
from alerts.messages import kind_label, readdress, renamed, retime
from alerts.policy import action, route
from store.schema import OUTBOX_UNSENT, alert_events, outbox

EVENT_SOURCE = "urn:tapwatch"
SIGNATURE_HEADER = "X-Tapwatch-Signature"
MAX_SIGNATURE_AGE_S = 300


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def cloud_event(alert: dict[str, Any], seq: int, event_type: str, at: float, data: dict[str, Any]) -> dict[str, Any]:
    """A structured-mode CloudEvent; ``id`` doubles as the idempotency key."""
    return {
        "specversion": "1.0",
        "id": f"{alert['alert_id']}:{seq}",
        "source": EVENT_SOURCE,
        "type": f"org.tapwatch.alert.{event_type}",
        "subject": alert["elder_id"],
        "time": iso(at),
        "datacontenttype": "application/json",
        "data": data,
    }


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
        queue(conn, alert, event, channel, now)


def queue(conn: Connection, alert: Mapping[str, Any], event: Mapping[str, Any], channel: str, now: float) -> None:
    """One delivery job: ``event`` to ``channel``, idempotency key ``<event id>:<channel>``."""
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


def readdress_unsent(
    conn: Connection,
    alert_id: str,
    who: Mapping[str, Any],
    zones: tuple[str, str] | None = None,
    name_was: str | None = None,
) -> None:
    """The case's events not sent yet (pending, parked) now name where ``who`` (what the platform gets of her:
    :func:`alerts.cases.public`) lives: her community, which routes
    them (a community's group robot, an MQTT topic), and her address in their texts. For a move: queued before it,
    they went to the group of the community she left, which no longer works her case, with her old door.
    ``zones``, her time zone before and now: their texts (her family's too) say since when in the new one.
    ``name_was``, her name before it was put right: her family's texts name her by the name she has now."""
    jobs = conn.execute(
        select(outbox.c.id, outbox.c.payload).where(outbox.c.alert_id == alert_id, outbox.c.status.in_(OUTBOX_UNSENT))
    ).all()
    for job in jobs:
        payload = readdressed(job.payload, who, name_was)
        if zones is not None and zones[0] != zones[1]:
            payload = retimed(payload, *zones)
        if payload != job.payload:
            conn.execute(update(outbox).where(outbox.c.id == job.id).values(payload=payload))


def expire_jobs(conn: Connection, *where: Any, reason: str) -> int:
    """The outbox jobs matching ``where`` are no longer to be sent by anyone (a day's note after its day, a family's
    "call her now" once the case closed): ``expired``, final as sent, with ``reason``; how many. Not parked: a parked
    job asks a person to pass it on and raises the operators' alarm."""
    final = {"status": "expired", "last_error": reason[:500], "lease_owner": None, "lease_until": None}
    return int(conn.execute(update(outbox).where(*where).values(**final)).rowcount)


def readdressed(event: Mapping[str, Any], who: Mapping[str, Any], name_was: str | None = None) -> dict[str, Any]:
    """``event`` as it would read for ``who`` (:func:`alerts.cases.public`) where she lives now. An event naming no
    community (a text to her family: it carries her name and no address) gets her name now in place of
    ``name_was``, and nothing more.

    >>> was = {"name": "王秀兰", "community": "A", "building": "3号楼", "room": "502"}
    >>> event = {"id": "x:1", "data": {"community": "A", "who": was, "text": {"zh": "王秀兰（A 3号楼 502）：…"}}}
    >>> data = readdressed(event, {**was, "community": "B", "room": "101"})["data"]
    >>> data["community"], data["who"]["room"], data["text"]["zh"]
    ('B', '101', '王秀兰（B 3号楼 101）：…')
    >>> sms = {"id": "x:1:c0", "data": {"to": "139", "text": "【长时间未用水】王秀兰：12 小时未用水。"}}
    >>> readdressed(sms, {**was, "name": "王秀英", "room": "101"}, "王秀兰")["data"]
    {'to': '139', 'text': '【长时间未用水】王秀英：12 小时未用水。'}
    """
    data = event.get("data")
    if not isinstance(data, Mapping):
        return dict(event)
    if "community" not in data:
        return family_text_renamed(event, name_was, who.get("name"))
    data = {**data, "community": who["community"]}
    was = data.get("who")
    if isinstance(was, Mapping):
        data["who"] = dict(who)
        text = data.get("text")
        if isinstance(text, Mapping):
            data["text"] = {lang: readdress(str(t), was, who, lang) for lang, t in text.items()}
    return {**event, "data": data}


def family_text_renamed(event: Mapping[str, Any], was: str | None, now: str | None) -> dict[str, Any]:
    """``event``, a text to her family (``{"to", "text"}``: a level-1 SMS, a daily note), naming her ``now`` where
    it named her ``was``: only the name, it carries no address."""
    data = event.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("text"), str) or not was or was == now:
        return dict(event)
    return {**event, "data": {**data, "text": renamed(data["text"], was, now)}}


def retimed(event: Mapping[str, Any], was: str, now: str) -> dict[str, Any]:
    """``event`` with its text (a platform event's ``{lang: text}``, a family's SMS) saying since when in time zone
    ``now``, not ``was``.

    >>> event = {"time": "2023-11-14T22:13:20Z", "data": {"to": "139", "text": "王秀兰：…自 11-15 06:13 起。请…"}}
    >>> retimed(event, "Asia/Shanghai", "Asia/Urumqi")["data"]["text"]
    '王秀兰：…自 11-15 04:13 起。请…'
    """
    data = event.get("data")
    text = data.get("text") if isinstance(data, Mapping) else None
    if not isinstance(data, Mapping) or text is None:
        return dict(event)
    written = datetime.fromisoformat(str(event["time"])).timestamp()
    if isinstance(text, Mapping):
        text = {lang: retime(str(t), was, now, written) for lang, t in text.items()}
    else:
        text = retime(str(text), was, now, written)
    return {**event, "data": {**data, "text": text}}


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
        "route": route(alert),
        "action": action(alert),
        "escalation_level": int(alert.get("escalation_level") or 0),
        "data_time": iso(alert["data_ts"]),
        "message": {"zh": alert["message_zh"], "en": alert["message_en"]},
        # The case's kinds (the first is ``kind``; alerts.grouping), and how many findings it grouped.
        "kinds": kinds_of(alert),
        "kinds_open": active_kinds(alert),
        "occurrences": occurrences(alert),
    }
    if alert.get("since_ts") is not None:
        data["since"] = iso(alert["since_ts"])
    return data


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """Header value ``t=<unix>,v1=<hex>`` over ``"<t>." + body``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, now: float, max_age_s: float = MAX_SIGNATURE_AGE_S) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse replays.

    >>> h = sign(b"k", b"{}", 1_000)
    >>> verify(b"k", b"{}", h, now=1_100), verify(b"k", b"{}", h, now=1_400), verify(b"x", b"{}", h, now=1_100)
    (True, False, False)
    """
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > max_age_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    # Compared as bytes: header bytes above 127 arrive as latin-1 text, and compare_digest raises on such a str.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


class ReplayGuard:
    """Refuses a signed request seen before within the signature's lifetime (5 min).

    >>> guard, h = ReplayGuard(), sign(b"k", b"{}", 1_000)
    >>> guard.check(b"k", b"{}", h, now=1_010), guard.check(b"k", b"{}", h, now=1_020)
    (True, False)
    >>> guard.check(b"k", b"{}", h, now=1_400)  # stale: refused by age whatever the memory holds
    False
    """

    def __init__(self, max_age_s: float = MAX_SIGNATURE_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, secret: bytes, body: bytes, header: str, now: float) -> bool:
        """True once for a valid, fresh signature; False for bad, stale or repeated ones."""
        if not verify(secret, body, header, now, self.max_age_s):
            return False
        with self._lock:
            # Forget signatures old enough to be refused by age anyway: memory stays bounded by the window.
            for key in [k for k, t in self._seen.items() if now - t > 2 * self.max_age_s]:
                del self._seen[key]
            if header in self._seen:
                return False
            self._seen[header] = now
        return True
