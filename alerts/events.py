"""CloudEvents 1.0 envelopes for alert events, and their HMAC-SHA256 signature.

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
