"""Escalation: chase an unacknowledged alert level by level, with stored timers that fire once.

:class:`Escalator` fires levels (:mod:`alerts.policy`: contact, work order,
supervisor). On raise or reopen it fires the levels due at once (level 1 at
the raise) and stores a timer for the next one; acknowledge and resolve
cancel pending timers; a severity that rises while the case waits re-plans the
levels still to come (:meth:`Escalator.replan`). Level 1 goes to the emergency contacts
(:class:`alerts.fanout.FanOut`); when it reaches nobody, the next level
follows at once rather than waiting for an acknowledgement nobody can give.
Every fired level is an ``escalated`` event (:func:`alerts.events.emit`).

:class:`EscalationRunner` fires the stored timers. Timers are rows in
``escalations`` (written in the transaction that raised the alert), so a
restart loses none. Each due timer is claimed and fired in *one* transaction:
a conditional ``UPDATE ... SET status='fired' WHERE id=:id AND
status='pending' AND (lease_until IS NULL OR lease_until < :now)`` whose
rowcount must be 1, followed by the level's events and delivery jobs. A
second runner's claim matches no row (SQLite serialises writers; PostgreSQL
re-checks the WHERE after the row lock), and a crash before commit rolls back
claim and events together, so the timer fires again later: exactly once in
effect. The claim is preceded by a lock of the timer's case
(:func:`alerts.cases.lock_case`): an acknowledge or a resolve takes the case,
then its timers, and the runner takes them in the same order, so the two never
wait on each other on PostgreSQL (a deadlock); it waits for the acknowledge and
then finds the timer cancelled. A timer (or a held finding) that fails for a reason of its own stays pending,
logged, and the pass goes on to the others; only a store that cannot work ends it.

Clock: timers are timed by the wall clock of whoever wrote them, and fire by
the wall clock. A wall clock stepped back would delay every timer stored
before the step by the step; so the runner also keeps steady time (the later
of the wall clock and its last reading plus the time since, by the clock of the
time since boot, which counts a host's suspend: :func:`since_boot`) and, when
steady time gets ahead of the wall clock, moves the pending timers stored
before the step back by as much, in the store (:func:`rebase_timers`): a
restart keeps them, and timers stored after the step, timed by the stepped
clock, are left as they are. Which were stored before: those up to the last
id the runner saw before the step, and those after it created at a wall time
the stepped clock has not reached yet. One runner moves them (it takes the
``escalation-clock`` lease for five minutes), so rival runners that see the
same step do not move them twice; a lease set before the step (by a runner that
died since) does not look held for the length of the step
(:func:`store.leases.claim`). A step forward that puts right a step back
(steady time was ahead, and the wall clock catches it up) moves them forward
again as much, else every timer would fire that much early. Each timer also
keeps its writer's clock (:func:`clock_stamp`: the boot id and the wall clock's
time at boot, which only a step changes): at its first pass and after each step
it sees, a runner on the same host and boot puts the timers whose clock stepped
since on the current one (:func:`restamp_timers`; the step-seen move above leaves
them to it), a step made while no runner ran included. A step no
runner saw still delays the timers stored on another host or boot (or before
timers kept their clock); any other step forward may fire those early but still
only once (early beats late for an elder on the floor).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, event, false, func, insert, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from alerts.cases import SYSTEM_ACTOR, bump, held_due, load_case, lock_case, public, who
from alerts.clock import ClockSteps, SteadyClock, boot_id, clock_epoch, since_boot, stored_before_step
from alerts.events import emit
from alerts.fanout import FanOut
from alerts.grouping import told
from alerts.messages import compose_both
from alerts.policy import LEVEL_CONTACT, LEVEL_ROUTES, EscalationPolicy, for_maintenance
from core.metrics import Metrics
from store.schema import escalations

log = logging.getLogger(__name__)


class Escalator:
    """Fires escalation levels of one policy and stores the timer for the next one."""

    def __init__(self, policy: EscalationPolicy, fanout: FanOut, metrics: Metrics | None = None) -> None:
        self.policy = policy
        self.fanout = fanout
        self.metrics = metrics

    def arm(self, conn: Connection, alert: Mapping[str, Any], who: Mapping[str, Any], now: float) -> None:
        """Fire the levels due at once (level 1 at the raise), schedule the next one."""
        if for_maintenance(alert):
            return  # maintenance, not cadres
        cancel_timers(conn, alert["alert_id"])
        self._advance(conn, dict(alert), who, 0, now, now)

    def replan(self, conn: Connection, alert: Mapping[str, Any], who: Mapping[str, Any], now: float) -> None:
        """The case's severity rose (a more severe kind joined it): the levels to come follow the new plan.

        The next level after the one the case has reached comes the new severity's delay after the
        rise, as it would after a raise; levels fired are not repeated. (A rise puts an acknowledged
        case back to ``open`` first: :meth:`alerts.lifecycle.Lifecycle.apply`.)
        """
        if for_maintenance(alert) or alert["state"] not in ("open", "notified"):
            return
        cancel_timers(conn, alert["alert_id"])
        self._advance(conn, dict(alert), who, int(alert.get("escalation_level") or 0), now, now)

    def retells(self, case: Mapping[str, Any], severity: str) -> bool:
        """A rise of ``case`` to ``severity`` texts the family again: their level-1 text went out (the case reached
        level 1 or beyond) and ``severity``'s plan texts them. Only for a kind they were not told of
        (:func:`alerts.grouping.family_news`)."""
        if for_maintenance(case) or int(case.get("escalation_level") or 0) < LEVEL_CONTACT:
            return False  # not texted yet: the level-1 text still to come tells the gravest kind
        return any(level == LEVEL_CONTACT for level, _ in self.policy.steps(severity))

    def retell(self, conn: Connection, alert: Mapping[str, Any], who: Mapping[str, Any], now: float) -> int:
        """Text the family the level-1 text of the case as it is now (its gravest open kind), under the case's
        current sequence number (the ``joined`` event's): how many phones."""
        phones = self.fanout.contact_phones(conn, alert["elder_id"])
        self.fanout.text_contacts(conn, alert, who, phones, now)
        return len(phones)

    def ease(self, conn: Connection, alert: Mapping[str, Any]) -> None:
        """The case's severity fell (its gravest kind cleared, another is still open): the level to come waits for
        the plan of the severity still open, counted from when the level the case has reached fired, as it would
        have come without the graver kind; never sooner than it was due. A fall that joined a routine change's case
        and cleared (she used water) must not bring the routine change's work order forward by hours.
        """
        if for_maintenance(alert) or alert["state"] not in ("open", "notified"):
            return
        reached = int(alert.get("escalation_level") or 0)
        step = self.policy.next_step(alert["severity"], reached)
        if step is None:  # the severity still open stops below the pending level (low: no supervisor)
            cancel_timers(conn, alert["alert_id"])
            return
        level, delay = step
        due = _reached_at(conn, alert, reached) + delay
        timers = conn.execute(
            select(escalations.c.id, escalations.c.due_at).where(
                escalations.c.alert_id == alert["alert_id"], escalations.c.status == "pending"
            )
        ).all()
        for timer in timers:
            later = max(float(timer.due_at), due)
            conn.execute(update(escalations).where(escalations.c.id == timer.id).values(level=level, due_at=later))

    def fire_escalation(self, conn: Connection, timer: Mapping[str, Any], now: float) -> bool:
        """Fire a claimed timer (see :class:`EscalationRunner`); False if no longer needed."""
        alert = load_case(conn, timer["alert_id"])
        if alert is None or alert["state"] not in ("open", "notified"):
            return False  # acknowledged or resolved meanwhile: nobody needs chasing
        person = who(conn, alert["elder_id"], {})
        level = int(timer["level"])
        reached = self._fire(conn, alert, person, level, now)
        # The next level counts from now, the time this one fired.
        self._advance(conn, alert, person, level, now, now, skipped=not reached)
        return reached

    def _advance(
        self,
        conn: Connection,
        alert: dict[str, Any],
        who: Mapping[str, Any],
        level: int,
        base: float,
        now: float,
        skipped: bool = False,
    ) -> None:
        """Fire every level due by ``now`` after ``level``; store a timer for the first one not yet due."""
        while (step := self.policy.next_step(alert["severity"], level)) is not None:
            level, delay = step
            if skipped:  # the previous level reached nobody: do not wait for an acknowledgement it cannot bring
                delay = 0.0
            due = base + delay
            if due > now:
                conn.execute(
                    insert(escalations).values(
                        alert_id=alert["alert_id"],
                        level=level,
                        due_at=due,
                        status="pending",
                        created_at=now,
                        **clock_stamp(now),
                    )
                )
                return
            reached = self._fire(conn, alert, who, level, now)
            status = "fired" if reached else "skipped"
            conn.execute(
                insert(escalations).values(
                    alert_id=alert["alert_id"], level=level, due_at=due, status=status, fired_at=now, created_at=now
                )
            )
            skipped, base = not reached, now

    def _fire(self, conn: Connection, alert: dict[str, Any], who: Mapping[str, Any], level: int, now: float) -> bool:
        """One escalation level; False when it could reach nobody (no contact phone or no SMS channel)."""
        route = LEVEL_ROUTES[level]
        phones = self.fanout.contact_phones(conn, alert["elder_id"]) if level == LEVEL_CONTACT else []
        if level == LEVEL_CONTACT and not phones:
            log.info("alert %s: no emergency contact reachable, going on to the work order", alert["alert_id"])
            return False
        row = bump(conn, alert["alert_id"], ("open", "notified"), escalation_level=level)
        if row is None:
            return False
        alert.update(row)
        extra: dict[str, Any] = {"level": level, "route": route}
        if level == LEVEL_CONTACT:
            self.fanout.text_contacts(conn, alert, who, phones, now)
            extra["contacts_notified"] = len(phones)  # how many, never who: the platform needs no numbers
        else:
            extra["who"] = public(who)
            extra["text"] = compose_both(told(alert), who, route)
        emit(conn, alert, "escalated", SYSTEM_ACTOR, now, extra, self.fanout.platform_for(alert))
        if self.metrics is not None:
            # Counted when the level is stored for good: a batch rolled back (and retried) fired nothing.
            counter = self.metrics.escalations_fired.labels(level=str(level))
            event.listen(conn, "commit", lambda _conn: counter.inc(), once=True)
        return True


def _reached_at(conn: Connection, alert: Mapping[str, Any], level: int) -> float:
    """When the case reached ``level``: the newest firing of it (skipped too: it reached nobody), else its raise."""
    fired = conn.execute(
        select(func.max(escalations.c.fired_at)).where(
            escalations.c.alert_id == alert["alert_id"],
            escalations.c.level == level,
            escalations.c.status.in_(("fired", "skipped")),
        )
    ).scalar()
    return float(fired if fired is not None else alert["raised_at"])


def cancel_timers(conn: Connection, alert_id: str) -> None:
    """Someone took the case, or it is closed: no pending level fires any more."""
    conn.execute(
        update(escalations)
        .where(escalations.c.alert_id == alert_id, escalations.c.status == "pending")
        .values(status="cancelled")
    )


class FiresTimers(Protocol):
    """What the runner needs: fire one claimed timer in the claim's transaction (:meth:`Escalator.fire_escalation`),
    and offer again a finding a snooze held once the snooze is over (:meth:`alerts.manager.AlertManager.release`)."""

    def fire_escalation(self, conn: Connection, timer: Mapping[str, Any], now: float) -> bool: ...

    def release(self, conn: Connection, held: Mapping[str, Any], now: float) -> str | None: ...


#: A time further than this from the host's wall clock is not read from it (a simulated or a data clock, or one
#: read before a step): such a timer keeps no clock, and only the steps a running runner sees move it.
STAMP_TOLERANCE_S = 60.0


def clock_stamp(now: float) -> dict[str, Any]:
    """The ``clock_boot`` and ``clock_epoch`` of a timer stored at ``now`` by this host's wall clock (none for a
    time that is not this clock's): a runner on this boot later sees a step of the wall clock made since."""
    boot = boot_id()
    wall = time.time()
    if boot is None or abs(now - wall) > STAMP_TOLERANCE_S:
        return {}
    return {"clock_boot": boot, "clock_epoch": clock_epoch(wall, since_boot())}


def restamp_timers(conn: Connection, boot: str, epoch: float) -> int:
    """Put the pending timers this boot stored on the wall clock whose time at boot is ``epoch`` (now's); how many.

    A timer whose ``clock_epoch`` differs was stored before the wall clock stepped by as much (back: a larger
    epoch), whether or not a runner was up to see it: its times move by the difference, and it takes ``epoch``,
    so rival runners that do the same move it once.
    """
    drift = escalations.c.clock_epoch - epoch
    stepped = (escalations.c.status == "pending", escalations.c.clock_boot == boot, (drift > 1.0) | (drift < -1.0))
    if not conn.execute(select(escalations.c.id).where(*stepped).limit(1)).first():
        return 0  # nearly always: a read, no write (on SQLite a write waits for the pipeline's)
    return conn.execute(
        update(escalations)
        .where(*stepped)
        .values(due_at=escalations.c.due_at - drift, created_at=escalations.c.created_at - drift, clock_epoch=epoch)
    ).rowcount


#: Taken by the runner that moves the timers when the wall clock steps back: rivals that see the same step
#: within its time find it taken, so the timers move once.
CLOCK_LEASE = "escalation-clock"


def rebase_timers(conn: Connection, step_s: float, seen_id: int, wall: float, boot: str | None = None) -> int:
    """Move the pending timers stored before the wall clock stepped back ``step_s`` back by as much; how many.

    A negative ``step_s`` is a step forward putting right a step back: the timers move forward. Stored before:
    up to ``seen_id``, the last id before the step, or after it but created on the clock before the step: at a
    wall time later than ``wall`` (now, on the stepped clock) after a step back, earlier than ``wall + step_s``
    after a step forward. Their ``created_at`` and ``clock_epoch`` move too, so they stay on the clock of their
    ``due_at``. Timers of this runner's ``boot`` are left to :func:`restamp_timers`, which knows their own step.
    """
    before_step = stored_before_step(escalations, step_s, seen_id, wall)
    mine = escalations.c.clock_boot == boot if boot else false()
    return conn.execute(
        update(escalations)
        .where(escalations.c.status == "pending", before_step, escalations.c.clock_boot.is_(None) | ~mine)
        .values(
            due_at=escalations.c.due_at - step_s,
            created_at=escalations.c.created_at - step_s,
            clock_epoch=escalations.c.clock_epoch - step_s,  # (kept with its times: on the clock they are now)
        )
    ).rowcount


def _unless_store_down(exc: Exception) -> None:
    """Raise ``exc`` again if it says the store cannot work now (the pass fails, logged once, and the next one
    retries); return if it is the one row's own failure."""
    if isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        raise exc


class EscalationRunner:
    """``run_once(now)`` fires due timers; ``serve()`` loops until ``stop()`` (a thread in the service)."""

    def __init__(
        self,
        engine: Engine,
        manager: FiresTimers,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        batch: int = 100,
        on_fired: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.manager = manager
        self.clock = SteadyClock(clock)
        self.steps = ClockSteps(engine, escalations.c.id, CLOCK_LEASE, self._rebase, "pending escalation timers")
        self._epoch: float | None = None  # the wall clock's time at boot at the last pass (None: none yet)
        self.owner = owner or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.batch = batch
        self.on_fired = on_fired  # e.g. wake the outbox sender
        self.fired = 0
        self._stop = threading.Event()

    def run_once(self, now: float | None = None) -> int:
        """Fire every timer due by ``now`` (default: the wall clock, see :meth:`_now`); returns how many fired."""
        if now is None:
            now = self._now()
        released = self._release_held(now)  # first: a silence raised at its snooze's end fires its level 1 at once
        is_due = escalations.c.due_at <= now
        fired, tried = 0, set[int]()
        while True:  # a batch at a time, until none is left: a surge must not wait a poll per batch
            with self.engine.connect() as conn:
                due = conn.execute(
                    select(escalations)
                    .where(escalations.c.status == "pending", is_due)
                    .order_by(escalations.c.due_at, escalations.c.id)
                    .limit(self.batch)
                ).all()
            fresh = [dict(row._mapping) for row in due if row.id not in tried]
            tried.update(timer["id"] for timer in fresh)
            fired += sum(self._fire_or_skip(timer, now) for timer in fresh)
            if len(due) < self.batch or not fresh or self._stop.is_set():
                break
        if (fired or released) and self.on_fired is not None:
            self.on_fired()
        return fired

    def _release_held(self, now: float) -> int:
        """Offer again the findings a snooze held whose windows have ended by ``now``; how many raised or joined."""
        with self.engine.connect() as conn:
            due = held_due(conn, now, self.batch)
        released = 0
        for held in due:
            try:
                with self.engine.begin() as conn:
                    released += self.manager.release(conn, held, now) is not None
            except Exception as exc:
                _unless_store_down(exc)
                log.exception(
                    "finding %s held for elder %s could not be offered again; the others go on",
                    held["kind"],
                    held["elder_id"],
                )
        if released:
            log.info("%d finding(s) muted by a snooze still going on at its end: raised", released)
        return released

    def _now(self) -> float:
        """The wall clock's time, as the writers of timers use it, after moving the timers a step back delayed."""
        wall = self.steps.read(self.clock, self.owner)
        boot = self._boot()
        if boot is not None:
            # Read together: the wall time above may be a moment old (a lease claim, a move, a SQLite writer).
            self._restamp(boot, clock_epoch(self.clock.wall(), since_boot()))
        return wall

    def _boot(self) -> str | None:
        """This host's boot, if the runner reads the host's clocks (a test's or a demo's clock is its own)."""
        return boot_id() if self.clock.mono is since_boot else None

    def _rebase(self, conn: Connection, step_s: float, seen_id: int, wall: float) -> int:
        return rebase_timers(conn, step_s, seen_id, wall, self._boot())

    def _restamp(self, boot: str, epoch: float) -> None:
        """Move the timers this boot stored whose clock stepped since: on the first pass (a step may have come while
        no runner ran), and whenever the wall clock stepped since the last (else nothing has)."""
        if self._epoch is not None and abs(epoch - self._epoch) <= 1.0:
            return
        with self.engine.begin() as conn:
            moved = restamp_timers(conn, boot, epoch)
        self._epoch = epoch
        if moved:
            log.warning("wall clock stepped since %d pending escalation timers were stored: moved by the step", moved)

    def _fire_or_skip(self, timer: dict[str, Any], now: float) -> bool:
        """:meth:`_fire`; a timer that fails for a reason of its own (one this version cannot read: a level a newer
        release added) stays pending and is logged, and the pass goes on to the other cases' timers."""
        try:
            return self._fire(timer, now)
        except Exception as exc:
            _unless_store_down(exc)
            log.exception("escalation timer %s of alert %s failed; the others go on", timer["id"], timer["alert_id"])
            return False

    def _fire(self, timer: dict[str, Any], now: float) -> bool:
        with self.engine.begin() as conn:
            lock_case(conn, timer["alert_id"])  # the case, then its timer: the order an acknowledge takes them in
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
