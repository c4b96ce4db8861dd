"""Alert lifecycle and delivery through the outbox to a real HTTP receiver on loopback."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from alerts.events import sign, verify
from alerts.manager import AlertManager
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender, WebhookNotifier
from tapwatch.domain import Finding
from tapwatch.registry import meter_context
from tapwatch.store.schema import alerts, outbox
from tests.helpers import register


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _raise(engine: Any, meter: str, kind: str, resolved: bool = False) -> None:
    with engine.begin() as conn:
        elder = meter_context(conn, meter)
        assert elder is not None
        AlertManager(["webhook"]).apply(
            conn,
            elder,
            Finding(meter, kind, "high", time.time(), "中文", "english", resolved=resolved),
            time.time(),
        )


def test_signature_round_trip_and_replay_window() -> None:
    header = sign(b"s", b'{"a":1}', 1_700_000_000)
    assert verify(b"s", b'{"a":1}', header, now=1_700_000_100)
    assert not verify(b"s", b'{"a":2}', header, now=1_700_000_100)  # body changed
    assert not verify(b"s", b'{"a":1}', header, now=1_700_000_301)  # older than 5 minutes
    assert not verify(b"s", b'{"a":1}', "garbage", now=1_700_000_100)


def test_raise_then_auto_resolve_sends_two_signed_cloudevents(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    _raise(engine, "M1", "no_activity")
    _raise(engine, "M1", "no_activity")  # still open: no second work order
    _raise(engine, "M1", "no_activity", resolved=True)
    sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, b"test-secret")})
    assert sender.run_once() == 2
    types = [e["type"] for e in receiver.events]
    assert types == ["org.tapwatch.alert.raised", "org.tapwatch.alert.resolved"]
    raised = receiver.events[0]
    assert raised["specversion"] == "1.0" and raised["id"].endswith(":1")
    assert raised["data"]["who"]["name"] == "王秀兰" and raised["data"]["route"] == "community"
    assert "contacts" not in raised["data"]["who"]
    assert receiver.events[1]["data"]["outcome"] == "use_resumed"
    assert receiver.bad_signatures == 0
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.state)).scalar_one() == "resolved"


def test_failures_are_retried_in_order_and_never_duplicated(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    register(engine, "E2", "M2")
    script = {"fail": 3}

    def flaky(event: dict[str, Any]) -> tuple[int, dict[str, str]]:
        if event["subject"] == "E1" and script["fail"] > 0:
            script["fail"] -= 1
            return (429, {"Retry-After": "30"}) if script["fail"] == 0 else (503, {})
        return 204, {}

    receiver = WebhookReceiver(secret=b"k", respond=flaky).start()
    try:
        _raise(engine, "M1", "no_activity")
        _raise(engine, "M1", "no_activity", resolved=True)
        _raise(engine, "M2", "continuous_flow")
        clock = Clock()
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, b"k")}, clock=clock, seed=1)
        assert sender.run_once() == 1  # E2 goes through; E1 waits, and its resolve waits behind it
        assert [e["subject"] for e in receiver.events] == ["E2"]
        for _ in range(6):
            clock.now += 31  # past every backoff, and past the receiver's Retry-After
            sender.run_once()
        subjects = [(e["subject"], e["type"].rsplit(".", 1)[1]) for e in receiver.events]
        assert subjects == [("E2", "raised"), ("E1", "raised"), ("E1", "resolved")]
        assert len({e["id"] for e in receiver.events}) == len(receiver.events)
    finally:
        receiver.stop()


def test_rejected_and_too_old_events_are_parked_not_dropped(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    receiver = WebhookReceiver(respond=lambda _e: (400, {})).start()
    try:
        _raise(engine, "M1", "no_activity")
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, None)})
        sender.run_once()
        with engine.connect() as conn:
            row = conn.execute(select(outbox.c.status, outbox.c.last_error)).one()
        assert row.status == "parked" and row.last_error == "HTTP 400"
    finally:
        receiver.stop()


def test_unreachable_platform_parks_after_give_up_time(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    _raise(engine, "M1", "no_activity")
    clock = Clock()
    sender = OutboxSender(
        engine,
        {"webhook": WebhookNotifier("http://127.0.0.1:9/none", None, 1.0)},
        give_up_s=3600,
        clock=clock,
        seed=2,
    )
    sender.run_once()
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.status)).scalar_one() == "pending"
    clock.now += 3601
    sender.run_once()
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.status)).scalar_one() == "parked"
