"""The alert store's helpers shared by the alert and delivery tests: an elder, a finding applied, the outbox read back.

``T0`` is the data time every case starts from; ``seed`` raises and clears a leak per elder (three platform events
each), and ``assert_delivered_once_in_order`` is the audit every delivery test ends with: every event delivered,
none twice under different ids, order kept per elder, signatures verified.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from alerts.manager import AlertManager
from alerts.queries import delivery_summary
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.domain import Finding
from store.registry import meter_context, register_elder
from store.schema import alerts, outbox

T0 = 1_790_000_000.0


def add_elder(engine: Any, elder_id: str, meter_id: str, contacts: list[dict[str, str]] | None = None) -> None:
    """Register elder ``elder_id`` (大宁社区) on ``meter_id`` at ``T0``, with ``contacts`` if given."""
    elder = {"elder_id": elder_id, "name": "王秀兰", "community": "大宁社区", "building": "3号楼", "room": "502"}
    with engine.begin() as conn:
        register_elder(conn, {**elder, "contacts": contacts or []}, meter_id, T0)


def finding(meter: str, kind: str = "no_activity", ts: float = T0, resolved: bool = False, **kw: Any) -> Finding:
    """A ``kind`` finding for ``meter`` at data time ``ts`` (high severity unless ``severity=`` says otherwise)."""
    return Finding(
        meter, kind, kw.pop("severity", "high"), ts, "12 小时未用水。", "No use for 12 h.", resolved=resolved, **kw
    )


def apply(engine: Any, manager: AlertManager, f: Finding, now: float) -> str | None:
    """``manager.apply`` in one transaction, as the pipeline does; the alert id when an alert was raised."""
    with engine.begin() as conn:
        ctx = meter_context(conn, f.meter_id)
        assert ctx is not None
        return manager.apply(conn, ctx, f, now)


def alert_row(engine: Any, alert_id: str) -> dict[str, Any]:
    """The stored alert ``alert_id`` as a dict."""
    with engine.connect() as conn:
        return dict(conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()._mapping)


def queued(engine: Any, notifier: str = "webhook") -> list[dict[str, Any]]:
    """The payloads queued in the outbox for ``notifier``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.payload).where(outbox.c.notifier == notifier).order_by(outbox.c.id))
        return [r.payload for r in rows]


SECRET = b"platform-secret"


class Clock:
    """A clock the test moves by hand (``clock.now += step``), for a sender's retries and give-up times."""

    def __init__(self, now: float = T0 + 1) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seed(engine: Any, elders: int, now: float = T0) -> None:
    """Per elder: a leak raised (raised + work order) and cleared (resolved): three platform events."""
    manager = AlertManager(["webhook"])
    for k in range(elders):
        add_elder(engine, f"E{k}", f"M{k}")
        apply(engine, manager, finding(f"M{k}", "continuous_flow"), now)
    for k in range(elders):
        apply(engine, manager, finding(f"M{k}", "continuous_flow", resolved=True), now + 1)


def assert_delivered_once_in_order(engine: Any, receiver: WebhookReceiver, notifier: str = "webhook") -> None:
    """Every ``notifier`` job sent, each event received once per id, in order per elder, every signature good."""
    with engine.connect() as conn:
        jobs = conn.execute(
            select(outbox.c.elder_id, outbox.c.status, outbox.c.payload)
            .where(outbox.c.notifier == notifier)
            .order_by(outbox.c.id)
        ).all()
    assert {j.status for j in jobs} == {"sent"}, delivery_summary(conn, time.time())
    expected: dict[str, list[str]] = defaultdict(list)
    for j in jobs:
        expected[j.elder_id].append(j.payload["id"])
    got: dict[str, list[str]] = defaultdict(list)
    for event in receiver.events:  # first arrival of each id, in arrival order
        got[event["subject"]].append(event["id"])
    assert got == expected  # every event, in order per elder
    assert set(receiver.arrivals) == {j.payload["id"] for j in jobs}  # repeats only ever under a known id
    assert receiver.bad_signatures == 0


def drive(sender: OutboxSender, clock: Clock, engine: Any, step_s: float, max_steps: int) -> int:
    """Advance the fake clock and work the outbox until nothing is pending; returns the steps taken."""
    for step in range(max_steps):
        sender.run_once()
        with engine.connect() as conn:
            if conn.execute(select(outbox.c.id).where(outbox.c.status == "pending").limit(1)).first() is None:
                return step
        clock.now += step_s
    raise AssertionError(f"still pending after {max_steps} steps")
