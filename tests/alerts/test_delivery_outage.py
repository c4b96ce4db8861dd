"""The grid platform down for a whole (accelerated) day while alerts keep coming, then back.

A real :class:`WebhookReceiver` on loopback answers 503 for the length of the
outage; the sender runs with the service's settings on an injected clock, one
pass per simulated minute, while several elders' leaks are raised and cleared
around the clock. A simulated day takes a few seconds.

- Give-up longer than the outage: nothing parked, every event delivered once
  after the platform returns, in order per elder.
- Outage longer than the give-up (the default 24 h): the events older than the
  give-up time when they were last tried are parked, the newer ones are
  delivered on return; the parked ones are listed and requeued by an operator,
  then delivered, each once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from alerts.manager import AlertManager
from alerts.notifiers import WebhookNotifier
from alerts.queries import delivery_summary, parked_jobs, requeue_parked
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.settings import Settings, get_settings
from store.schema import outbox
from tests.alert_support import SECRET, T0, Clock, add_elder, apply, assert_delivered_once_in_order, drive, finding

HOUR = 3600.0
ELDERS = 6
LEAKS_PER_ELDER = 6  # one every 4 hours, each cleared an hour later
EVENTS_PER_LEAK = 3  # raised, escalated (the work order: no SMS channel), resolved
PASS_S = 60.0  # the sender works the outbox once a simulated minute


class Platform:
    """A real receiver that answers 503 while ``down``; counts the refused attempts."""

    def __init__(self) -> None:
        self.down = True
        self.refused = 0
        self._lock = threading.Lock()
        self.receiver = WebhookReceiver(secret=SECRET, respond=self._respond).start()

    def _respond(self, _event: dict[str, Any]) -> tuple[int, dict[str, str]]:
        if not self.down:
            return 204, {}
        with self._lock:
            self.refused += 1
        return 503, {}

    def stop(self) -> None:
        self.receiver.stop()


@dataclass(frozen=True)
class Change:
    at: float
    meter: str
    resolved: bool


def leak_schedule(hours: float) -> list[Change]:
    """Per elder, a leak every 4 hours of the first ``hours``, cleared an hour later; staggered by elder."""
    changes = []
    for k in range(ELDERS):
        for n in range(LEAKS_PER_ELDER):
            raised_at = T0 + n * 4 * HOUR + k * 600
            if raised_at + HOUR < T0 + hours * HOUR:
                changes += [Change(raised_at, f"M{k}", False), Change(raised_at + HOUR, f"M{k}", True)]
    return sorted(changes, key=lambda c: c.at)


def sender_like_the_service(engine: Any, settings: Settings, url: str, clock: Clock) -> OutboxSender:
    return OutboxSender(
        engine,
        {"webhook": WebhookNotifier(url, SECRET, 2.0)},
        give_up_s=settings.delivery_give_up_hours * 3600,
        clock=clock,
        seed=24,
        breaker_threshold=settings.circuit_failures,
        breaker_cooldown_s=settings.circuit_cooldown_s,
        concurrency=settings.delivery_concurrency,
        max_backoff_s=settings.delivery_max_backoff_s,
    )


def run_outage(engine: Any, sender: OutboxSender, clock: Clock, hours: float) -> None:
    """Raise and clear leaks on schedule while the sender works the outbox against the down platform."""
    manager = AlertManager(["webhook"])
    for k in range(ELDERS):
        add_elder(engine, f"E{k}", f"M{k}")
    changes = leak_schedule(hours)
    end = T0 + hours * HOUR
    while clock.now < end:
        while changes and changes[0].at <= clock.now:
            change = changes.pop(0)
            apply(engine, manager, finding(change.meter, "continuous_flow", change.at, change.resolved), change.at)
        sender.run_once()
        clock.now += PASS_S
    assert not changes


def jobs(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def arrival_order(receiver: WebhookReceiver) -> dict[str, list[str]]:
    order: dict[str, list[str]] = defaultdict(list)
    for event in receiver.events:
        order[event["subject"]].append(event["id"])
    return order


def test_platform_down_a_whole_day_while_alerts_keep_coming_delivers_everything_once_in_order(engine) -> None:  # type: ignore[no-untyped-def]
    assert get_settings().delivery_give_up_hours == 24  # the default: an outage of a full day is at its edge
    settings = get_settings(delivery_give_up_hours=26)  # longer than the outage
    platform = Platform()
    clock = Clock(T0)
    sender = sender_like_the_service(engine, settings, platform.receiver.url, clock)
    try:
        run_outage(engine, sender, clock, hours=24)
        queued = jobs(engine)
        assert len(queued) == ELDERS * LEAKS_PER_ELDER * EVENTS_PER_LEAK
        assert {j.status for j in queued} == {"pending"} and not platform.receiver.events
        # The circuit breaker let about one probe a minute through, not one per job and retry.
        assert 0 < platform.refused <= 24 * 60 + settings.circuit_failures * ELDERS
        platform.down = False
        drive(sender, clock, engine, step_s=30, max_steps=100)
        assert_delivered_once_in_order(engine, platform.receiver)
        arrivals = platform.receiver.arrivals
        assert len(arrivals) == len(set(arrivals)) == len(queued)  # each idempotency key exactly once
        assert sender.parked == 0 and sender.delivered == len(queued)
    finally:
        sender.stop()
        platform.stop()


def test_outage_longer_than_the_give_up_parks_the_old_events_which_are_requeued_and_delivered(engine) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()  # the default give-up: 24 h
    give_up = settings.delivery_give_up_hours * HOUR
    platform = Platform()
    clock = Clock(T0)
    sender = sender_like_the_service(engine, settings, platform.receiver.url, clock)
    try:
        run_outage(engine, sender, clock, hours=30)  # leaks raised and cleared through the first 24 h
        back_at = clock.now
        queued = jobs(engine)
        too_old = {j.payload["id"] for j in queued if j.created_at + give_up < back_at}
        assert 0 < len(too_old) < len(queued)
        assert {j.payload["id"] for j in queued if j.status == "parked"} == too_old  # parked: exactly the old ones
        platform.down = False
        drive(sender, clock, engine, step_s=30, max_steps=100)
        newer = {e["id"] for e in platform.receiver.events}
        assert newer == {j.payload["id"] for j in queued} - too_old  # the newer events went out on return
        with engine.connect() as conn:
            parked = parked_jobs(conn, notifier="webhook", limit=1000)
            assert delivery_summary(conn, clock.now)["webhook"]["parked"] == len(too_old)
        assert {p["event_id"] for p in parked} == too_old
        assert all(p["last_error"].startswith(f"gave up after {give_up:.0f} s") for p in parked)
        with engine.begin() as conn:
            for p in reversed(parked):  # oldest first, so each elder's requeued events keep their order
                assert requeue_parked(conn, p["id"], actor="op:zhang", reason="platform back", now=clock.now)
        drive(sender, clock, engine, step_s=30, max_steps=100)
        assert {j.status for j in jobs(engine)} == {"sent"}
        arrivals = platform.receiver.arrivals
        assert len(arrivals) == len(set(arrivals)) == len(queued)  # each idempotency key exactly once
        # Per elder, the events delivered on return came in order, and so did the requeued ones after them.
        expected: dict[str, list[str]] = defaultdict(list)
        for j in queued:
            expected[j.elder_id].append(j.payload["id"])
        for elder, got in arrival_order(platform.receiver).items():
            assert [i for i in got if i not in too_old] == [i for i in expected[elder] if i not in too_old]
            assert [i for i in got if i in too_old] == [i for i in expected[elder] if i in too_old]
    finally:
        sender.stop()
        platform.stop()


def test_a_store_error_during_the_half_open_probe_does_not_leave_the_channel_shut(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    """The platform comes back while the store is busy at the very moment of the probe: the next pass probes again.

    Before, the probe was taken and never made (the claim failed), and the circuit stayed half-open with its one
    probe "out" for good: no event went to the platform again until the service was restarted.
    """
    add_elder(engine, "E1", "M1")
    apply(engine, AlertManager(["webhook"]), finding("M1"), T0)
    platform = Platform()
    clock = Clock()
    notifier = WebhookNotifier(platform.receiver.url, SECRET)
    sender = OutboxSender(engine, {"webhook": notifier}, clock=clock, breaker_threshold=1, breaker_cooldown_s=60)
    try:
        sender.run_once()  # refused: the circuit opens
        assert platform.refused == 1 and sender.breakers["webhook"].state == "open"
        platform.down = False
        clock.now += 61  # the cool-down is over: the next attempt is the probe
        writer = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another writer holds the store (a long ingest batch, say)
        try:
            with pytest.raises(OperationalError):
                sender.run_once()
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        clock.now += 1
        assert sender.run_once() == 3  # raised, the work order and notified, once the store is free again
        assert_delivered_once_in_order(engine, platform.receiver)
    finally:
        notifier.close()
        platform.stop()
