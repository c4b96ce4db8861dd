"""Work the outbox: deliver alert events at least once, in order per elder, never silently dropped.

A notifier returns a :class:`Delivery`: delivered, retry later (with an
optional server-given delay), or failed for good. Failed-for-good and
too-old jobs are *parked*: kept, counted and shown to operators.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from sqlalchemy import Engine, select, update

from alerts.events import SIGNATURE_HEADER, dumps, sign
from tapwatch.store.schema import alerts, outbox

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Delivery:
    ok: bool
    retry_after: float | None = None  # seconds the receiver asked us to wait
    permanent: bool = False  # retrying cannot help (e.g. 400: the platform rejects the event)
    error: str = ""


class Notifier(Protocol):
    name: str

    def send(self, event: Mapping[str, Any]) -> Delivery: ...


class WebhookNotifier:
    """POST a CloudEvent (structured JSON) with an HMAC-SHA256 signature header."""

    name = "webhook"

    def __init__(self, url: str, secret: bytes | None, timeout_s: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self._client = httpx.Client(timeout=timeout_s)

    def send(self, event: Mapping[str, Any]) -> Delivery:
        body = dumps(dict(event))
        headers = {"Content-Type": "application/cloudevents+json", "Idempotency-Key": str(event["id"])}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Delivery(False, error=f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            return Delivery(True)
        retry_after = _retry_after(response.headers.get("Retry-After"))
        status = response.status_code
        retryable = status >= 500 or status in (408, 425, 429)
        return Delivery(False, retry_after=retry_after, permanent=not retryable, error=f"HTTP {status}")

    def close(self) -> None:
        self._client.close()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def backoff(attempt: int, rng: random.Random, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with full jitter on the upper half.

    >>> r = random.Random(1)
    >>> [round(backoff(a, r), 1) for a in range(1, 5)]
    [1.1, 3.7, 7.1, 10.0]
    """
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return ceiling / 2 + rng.random() * ceiling / 2


class OutboxSender:
    """Delivers pending outbox jobs; safe to stop at any moment (jobs stay pending)."""

    def __init__(
        self,
        engine: Engine,
        notifiers: Mapping[str, Notifier],
        give_up_s: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.engine = engine
        self.notifiers = dict(notifiers)
        self.give_up_s = give_up_s
        self.clock = clock
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.delivered = 0
        self.parked = 0

    def wake(self) -> None:
        self._wake.set()

    def run_once(self, limit: int = 200) -> int:
        """One pass over due jobs; returns how many were delivered."""
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox).where(outbox.c.status == "pending").order_by(outbox.c.id).limit(limit)
            ).all()
        blocked: set[tuple[str, str]] = set()  # (elder, notifier): an earlier job still waits
        sent = 0
        for row in rows:
            job = row._mapping
            lane = (job["elder_id"], job["notifier"])
            if lane in blocked or job["next_attempt_at"] > now:
                blocked.add(lane)
                continue
            if self._deliver(dict(job), now):
                sent += 1
            else:
                blocked.add(lane)
        return sent

    def _deliver(self, job: Mapping[str, Any], now: float) -> bool:
        notifier = self.notifiers.get(job["notifier"])
        if notifier is None:
            self._park(job, f"no notifier named {job['notifier']!r} is configured")
            return False
        result = notifier.send(job["payload"])
        with self.engine.begin() as conn:
            if result.ok:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == job["id"])
                    .values(status="sent", sent_at=self.clock(), attempts=job["attempts"] + 1)
                )
                conn.execute(
                    update(alerts)
                    .where(alerts.c.alert_id == job["alert_id"], alerts.c.state == "open")
                    .values(state="notified")
                )
                self.delivered += 1
                return True
            attempts = job["attempts"] + 1
            too_old = now - job["created_at"] >= self.give_up_s
            if result.permanent or too_old:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == job["id"])
                    .values(status="parked", attempts=attempts, last_error=result.error[:500])
                )
                self.parked += 1
                log.error(
                    "delivery parked: job %s (%s) after %d attempts: %s",
                    job["id"],
                    job["notifier"],
                    attempts,
                    result.error,
                )
                return False
            delay = max(backoff(attempts, self._rng), result.retry_after or 0.0)
            conn.execute(
                update(outbox)
                .where(outbox.c.id == job["id"])
                .values(attempts=attempts, next_attempt_at=now + delay, last_error=result.error[:500])
            )
        if attempts == 1:  # log a failing receiver once per job, not once per retry
            log.warning("delivery failed, will retry: job %s: %s", job["id"], result.error)
        return False

    def _park(self, job: Mapping[str, Any], reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == job["id"]).values(status="parked", last_error=reason))
        self.parked += 1
        log.error("delivery parked: job %s: %s", job["id"], reason)

    def serve(self, poll_s: float = 1.0) -> None:
        """Loop until :meth:`stop`; a wake-up after each new alert keeps latency low."""
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the sender must outlive a bad pass (store busy, network)
                log.exception("outbox pass failed")
            self._wake.wait(poll_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
