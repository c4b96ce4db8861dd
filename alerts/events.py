"""CloudEvents 1.0 envelopes for alert events, and their HMAC-SHA256 signature."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson

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
    return hmac.compare_digest(expected, given)


def dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)
