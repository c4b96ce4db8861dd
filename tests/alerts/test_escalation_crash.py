"""SIGKILL in the middle of escalation: every level still fires once, and the platform gets each once by its id.

The escalation runner and the outbox sender run in a real process of their own (as in the service) on a real
SQLite store, sending signed webhooks to a real receiver on 127.0.0.1; the process is killed without warning
while the cases' supervisor levels are firing, then started again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from alerts.manager import AlertManager
from alerts.policy import EscalationPolicy
from store.schema import alert_events, outbox
from tests.alert_support import add_elder, apply, finding
from tests.conftest import wait_until

ELDERS = 100
#: Seconds, not minutes: the work order at the raise (no contact to text), the supervisor 3 s after it.
POLICY = {"high": {"work_order_after_min": 0.0, "supervisor_after_min": 0.05}}
WORKER = f"""
import sys, threading
from alerts.escalation import EscalationRunner
from alerts.manager import AlertManager
from alerts.notifiers import WebhookNotifier
from alerts.policy import EscalationPolicy
from alerts.sender import OutboxSender
from store import open_store

engine = open_store(sys.argv[1])
manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({POLICY!r}))
sender = OutboxSender(engine, {{"webhook": WebhookNotifier(sys.argv[2], b"test-secret")}}, owner="worker")
threading.Thread(target=sender.serve, args=(0.05,), daemon=True).start()
EscalationRunner(engine, manager, owner="worker", batch=5, on_fired=sender.wake).serve(0.05)
"""


def _start(db_url: str, receiver_url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, receiver_url], stdout=out, stderr=subprocess.STDOUT
        )


def _supervisor_levels(receiver: Any) -> list[str]:
    return [e["id"] for e in list(receiver.events) if (e.get("data") or {}).get("level") == 3]


@pytest.mark.slow
def test_sigkill_while_levels_fire_loses_none_and_repeats_none(engine, db_url, receiver, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config(POLICY))
    start = time.time()
    for k in range(ELDERS):  # raised a few hundredths of a second apart: their supervisor levels fall due in turn
        add_elder(engine, f"E{k}", f"M{k}")
        apply(engine, manager, finding(f"M{k}", ts=start), start + k * 0.05)
    log = tmp_path / "worker.log"
    proc = _start(db_url, receiver.url, log)
    try:
        assert wait_until(lambda: len(_supervisor_levels(receiver)) >= ELDERS // 3, 60), log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = _start(db_url, receiver.url, log)
        assert wait_until(lambda: len(_supervisor_levels(receiver)) >= ELDERS, 120), log.read_text()
        assert wait_until(lambda: _pending(engine) == 0, 60)
    finally:
        proc.terminate()
        proc.wait(20)
    with engine.connect() as conn:
        fired = Counter(
            (r.alert_id, r.data.get("level"))
            for r in conn.execute(
                select(alert_events.c.alert_id, alert_events.c.data).where(alert_events.c.type == "escalated")
            )
        )
    assert len(fired) == 2 * ELDERS and set(fired.values()) == {1}, "each level of each case fired once"
    by_case = Counter(event_id.rsplit(":", 1)[0] for event_id in _supervisor_levels(receiver))
    assert len(by_case) == ELDERS and set(by_case.values()) == {1}, "one supervisor event id per case"
    assert receiver.bad_signatures == 0


def _pending(engine: Any) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(outbox.c.id).where(outbox.c.status == "pending")).all())
