"""The escalation runner: fire stored timers once, across restarts, clock jumps and rival runners.

Timers are rows in ``escalations`` (written by :class:`alerts.manager.AlertManager`
in the transaction that raised the alert), so a restart loses none. Each due
timer is claimed and fired in *one* transaction: a conditional ``UPDATE ...
SET status='fired' WHERE id=:id AND status='pending' AND (lease_until IS NULL
OR lease_until < :now)`` whose rowcount must be 1, followed by the level's
events and delivery jobs. A second runner's claim matches no row (SQLite
serialises writers; PostgreSQL re-checks the WHERE after the row lock), and
a crash before commit rolls back claim and events together, so the timer
fires again later: exactly once in effect.

Clock: the runner never lets time go backwards. It takes the later of the
wall clock and its own last reading plus the monotonic time since, so a
wall clock stepped back an hour delays nothing, and a step forward may fire
timers early but still only once (early beats late for an elder on the floor).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select, update

from alerts.manager import AlertManager
from store.schema import escalations

log = logging.getLogger(__name__)


class SteadyClock:
    """Wall time that never runs backwards within a process.

    >>> wall, mono = [1000.0], [0.0]
    >>> c = SteadyClock(lambda: wall[0], lambda: mono[0])
    >>> c()
    1000.0
    >>> wall[0], mono[0] = 400.0, 5.0  # wall clock stepped back ten minutes, five seconds passed
    >>> c()
    1005.0
    """

    def __init__(self, wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> None:
        self.wall = wall
        self.mono = mono
        self._last: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            wall, mono = self.wall(), self.mono()
            if self._last is not None:
                wall = max(wall, self._last[0] + (mono - self._last[1]))
            self._last = (wall, mono)
            return wall


class EscalationRunner:
    """``run_once(now)`` fires due timers; ``serve()`` loops until ``stop()`` (a thread in the service)."""

    def __init__(
        self,
        engine: Engine,
        manager: AlertManager,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        batch: int = 100,
        on_fired: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.manager = manager
        self.clock = SteadyClock(clock)
        self.owner = owner or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.batch = batch
        self.on_fired = on_fired  # e.g. wake the outbox sender
        self.fired = 0
        self._stop = threading.Event()

    def run_once(self, now: float | None = None) -> int:
        """Fire every timer due by ``now`` (default: the steady clock); returns how many fired."""
        now = self.clock() if now is None else now
        with self.engine.connect() as conn:
            due = conn.execute(
                select(escalations)
                .where(escalations.c.status == "pending", escalations.c.due_at <= now)
                .order_by(escalations.c.due_at, escalations.c.id)
                .limit(self.batch)
            ).all()
        fired = sum(self._fire(dict(row._mapping), now) for row in due)
        if fired and self.on_fired is not None:
            self.on_fired()
        return fired

    def _fire(self, timer: dict[str, Any], now: float) -> bool:
        with self.engine.begin() as conn:
            claimed = conn.execute(
                update(escalations)
                .where(
                    escalations.c.id == timer["id"],
                    escalations.c.status == "pending",
                    escalations.c.lease_until.is_(None) | (escalations.c.lease_until < now),
                )
                .values(status="fired", fired_at=now, lease_owner=self.owner, lease_until=now)
            )
            if claimed.rowcount != 1:
                return False  # another runner fired it, or it was cancelled meanwhile
            if not self.manager.fire_escalation(conn, timer, now):
                conn.execute(update(escalations).where(escalations.c.id == timer["id"]).values(status="cancelled"))
                return False
        self.fired += 1
        log.info("escalation fired: alert %s level %d", timer["alert_id"], timer["level"])
        return True

    def serve(self, poll_s: float = 15.0) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # one bad pass (store busy) must not end escalation; the next pass retries
                log.exception("escalation pass failed")
            self._stop.wait(poll_s)

    def stop(self) -> None:
        self._stop.set()
