"""Work the outbox: deliver alert events at least once, in order per elder, never silently dropped.

Jobs form *lanes*, one per (elder, notifier): a lane delivers strictly in
outbox order, and a job that fails holds back the rest of its lane (so the
platform never sees "resolved" before "raised"), while other lanes go on.
Lanes are worked in parallel, each channel's by its own small thread pool, and
the service's loop does not wait for lanes still at work: a receiver that hangs
(each request up to its timeout) holds back only its own channel, never the
work orders to the platform. A failed attempt is
retried with exponential backoff and jitter, or after the receiver's
``Retry-After`` if that is longer. A per-notifier circuit breaker stops
attempts while a receiver is down. A job rejected for good, or still
undelivered ``give_up_s`` after it was written, is *parked*: kept, counted
and listed for operators (:mod:`alerts.queries`), never dropped.

Several workers may run a sender against one store: a job is *leased*
(``UPDATE ... WHERE lease expired``) before it is sent, and a lane's next job
only becomes its head once the one before is sent or parked, so two workers
never send one job at once nor a lane out of order.

A crash between "the receiver took it" and "marked sent" re-sends the job on
restart (or, once its lease expires, from another worker) under the same
CloudEvent id: the platform drops it as a duplicate. A sender paused past its
lease in the middle of a send (SIGSTOP, a frozen VM) may so see its job sent
by another meanwhile; back, it leaves the job to that holder if its own send
failed (it only ever records a send that succeeded).

Clock: a job's next attempt, lease and give-up are stored times of the wall
clock. A wall clock stepped back would hold every job in backoff (and with it
its lane, a work order included) for the step on top of its backoff, and put
off its give-up as much. So the sender watches for steps as the escalation
runner does (:mod:`alerts.clock`) and moves the pending jobs
stored before the step by it, in the store (:func:`rebase_jobs`, under the
``outbox-clock`` lease so rival senders move them once); a step forward that
puts right a step back moves them forward again. A job retried between the
step and the sender's next pass is tried early once (early beats late).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, case, func, literal, select, update

from alerts.breaker import CLOSED, HALF_OPEN, OPEN, STATE_CODES, CircuitBreaker
from alerts.clock import ClockSteps, SteadyClock, since_boot, stored_before_step
from alerts.daily import VALID_UNTIL
from alerts.events import expire_jobs
from alerts.grouping import MAINTENANCE_CASE
from alerts.lifecycle import mark_notified
from alerts.notifiers import (
    PLATFORM_CHANNELS,
    Delivery,
    Notifier,
    WebhookNotifier,
    retry_after_s,
)
from core.domain import SEVERITIES
from store.schema import alerts, outbox

__all__ = ["Delivery", "Notifier", "OutboxSender", "WebhookNotifier", "backoff", "retry_after_s"]

log = logging.getLogger(__name__)

#: Taken by the sender that moves the outbox's stored times when the wall clock steps (the escalation runner's
#: ``escalation-clock`` for its timers): rivals that see the same step within its time find it taken.
CLOCK_LEASE = "outbox-clock"


def backoff(attempt: int, rng: random.Random, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with jitter over the upper half of each step.

    >>> r = random.Random(1)
    >>> [round(backoff(a, r), 1) for a in range(1, 5)]
    [1.1, 3.7, 7.1, 10.0]
    >>> 300 <= backoff(5000, r) <= 600
    True
    """
    # A job's attempts go on adding up when it is requeued after each give-up: past 2 ** 1024 the step is no
    # float (OverflowError on every pass, the job re-sent each pass and never rescheduled); the cap is long reached.
    ceiling = min(cap, base * 2 ** min(attempt - 1, 64))
    return ceiling / 2 + rng.random() * ceiling / 2


class OutboxSender:
    """Delivers pending outbox jobs; safe to stop or kill at any moment (jobs stay pending).

    ``clock`` drives due times, backoff, give-up and the circuit breakers, so
    tests can run an hour-long outage instantly; ``mono`` (monotonic time) tells
    a step of it from time gone. ``metrics`` is an optional
    :class:`core.metrics.Metrics`.
    """

    def __init__(
        self,
        engine: Engine,
        notifiers: Mapping[str, Notifier],
        give_up_s: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        *,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 60.0,
        concurrency: int = 4,
        max_backoff_s: float = 600.0,
        metrics: Any = None,
        lease_s: float = 60.0,
        owner: str | None = None,
        mono: Callable[[], float] = since_boot,
    ) -> None:
        self.engine = engine
        self.notifiers = dict(notifiers)
        self.give_up_s = give_up_s
        self.clock = clock
        self._steady = SteadyClock(clock, mono)
        self._steps = ClockSteps(engine, outbox.c.id, CLOCK_LEASE, rebase_jobs, "pending outbox jobs")
        self.max_backoff_s = max_backoff_s
        self.metrics = metrics
        self.lease_s = lease_s  # longer than any send takes (notifier timeouts are seconds)
        # Who holds leases: a worker's stable id, so a restarted worker resumes its own jobs at once;
        # another worker takes them over when the lease runs out.
        self.owner = (owner or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}")[:64]
        self.concurrency = max(1, concurrency)
        self.breakers = {name: CircuitBreaker(breaker_threshold, breaker_cooldown_s, clock) for name in self.notifiers}
        self._breaker_args = (breaker_threshold, breaker_cooldown_s, clock)
        self._breaker_lock = threading.Lock()
        self.platform_channels = tuple(n for n in self.notifiers if n in PLATFORM_CHANNELS)
        self._circuits = _circuit_columns([n for n, x in self.notifiers.items() if hasattr(x, "circuit")])
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lanes_lock = threading.Lock()
        self._lanes_at_work: set[tuple[str, str]] = set()
        self._lanes_asked: set[tuple[str, str]] = set()  # due again while at work: look once more when done
        self._count_lock = threading.Lock()
        self._opened_seen: dict[str, int] = {}
        self.delivered = 0
        self.parked = 0
        self.attempts = 0

    def wake(self) -> None:
        self._wake.set()

    # -- one pass --------------------------------------------------------------------

    def run_once(self, limit: int = 200) -> int:
        """Work every lane whose first pending job is due; returns how many jobs were delivered."""
        heads = self._due_heads(limit)
        if not heads:
            return 0
        if self.concurrency == 1 or len(heads) == 1:
            return sum(self._work_lane(h, limit) for h in heads)
        return sum(lane.result() for lane in self._start_lanes(heads, limit))

    def _due_heads(self, limit: int) -> list[dict[str, Any]]:
        now = self._now()
        with self.engine.connect() as conn:
            return self._lane_heads(conn, now, limit, self.owner)

    def _now(self) -> float:
        """The wall clock's time, after moving the jobs a step of it stored on the other side."""
        return self._steps.read(self._steady, self.owner)

    def _start_lanes(self, heads: list[dict[str, Any]], budget: int) -> list[Future[int]]:
        """Each lane not already at work goes to its channel's pool: one slow channel fills only its own threads."""
        started = []
        for head in heads:
            lane = (head["elder_id"], head["notifier"])
            with self._lanes_lock:
                if self._stop.is_set():  # the pools are shutting down
                    break
                if lane in self._lanes_at_work:
                    self._lanes_asked.add(lane)
                    continue
                self._lanes_at_work.add(lane)
                channel = head["notifier"] if head["notifier"] in self.notifiers else ""
                pool = self._pools.get(channel)
                if pool is None:
                    pool = self._pools[channel] = ThreadPoolExecutor(
                        self.concurrency, thread_name_prefix=f"outbox-{channel or 'unknown'}"
                    )
                started.append(pool.submit(self._run_lane, lane, head, budget))
        return started

    def _run_lane(self, lane: tuple[str, str], head: dict[str, Any], budget: int) -> int:
        sent = 0
        try:
            sent = self._work_lane(head, budget)
            return sent
        except Exception:  # nobody may wait for this lane: say so here (the next pass retries it)
            log.exception("outbox lane %s/%s failed", *lane)
            raise
        finally:
            with self._lanes_lock:
                self._lanes_at_work.discard(lane)
                asked = lane in self._lanes_asked
                self._lanes_asked.discard(lane)
            if sent or asked:  # a backlog, or a job that came while the lane was at work: go on at once
                self._wake.set()

    def _lane_heads(self, conn: Any, now: float, limit: int, owner: str) -> list[dict[str, Any]]:
        # The first pending job of each lane: a lane is blocked by its head, never by other lanes,
        # so one elder's failing jobs cannot starve the others however many there are.
        first = (
            select(func.min(outbox.c.id))
            .where(outbox.c.status == "pending")
            .group_by(outbox.c.elder_id, outbox.c.notifier)
        )
        # Up to ``limit`` per circuit: the heads an open circuit holds back stay due (they are not rescheduled),
        # and the oldest ``limit`` of a channel could be one broken receiver's for as long as it is down.
        # The most urgent lanes first (:func:`_urgency`), then the oldest.
        urgency = _urgency().label("urgency")
        rank = func.row_number().over(partition_by=self._circuits, order_by=(urgency, outbox.c.id)).label("rank")
        heads = (
            select(outbox, urgency, rank)
            .select_from(outbox.outerjoin(alerts, alerts.c.alert_id == outbox.c.alert_id))
            .where(outbox.c.id.in_(first), outbox.c.next_attempt_at <= now, _lease_free(now, owner))
            .subquery()
        )
        rows = conn.execute(
            select(*[heads.c[c.name] for c in outbox.c])
            .where(heads.c.rank <= limit)
            .order_by(heads.c.urgency, heads.c.id)
        ).all()
        return [dict(r._mapping) for r in rows]

    def _work_lane(self, head: dict[str, Any], budget: int) -> int:
        """Deliver a lane in order until it is empty, blocked, or the budget is spent."""
        sent = 0
        jobs = [head]
        while jobs and budget > 0 and not self._stop.is_set():
            for job in jobs:
                if budget <= 0 or self._stop.is_set() or job["next_attempt_at"] > self.clock():
                    return sent
                budget -= 1
                outcome = self._attempt(job)
                if outcome == "blocked":
                    return sent
                sent += outcome == "sent"
            jobs = self._rest_of_lane(jobs[-1], min(budget, 50))
        return sent

    def _rest_of_lane(self, last: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
        """The next pending jobs of ``last``'s lane, in order (several per query: fewer round trips)."""
        if n <= 0:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox)
                .where(
                    outbox.c.elder_id == last["elder_id"],
                    outbox.c.notifier == last["notifier"],
                    outbox.c.status == "pending",
                    outbox.c.id > last["id"],
                )
                .order_by(outbox.c.id)
                .limit(n)
            ).all()
        return [dict(r._mapping) for r in rows]

    # -- one job -----------------------------------------------------------------------

    def _attempt(self, job: Mapping[str, Any]) -> str:
        """``sent``, ``parked`` (lane goes on) or ``blocked`` (lane waits)."""
        name = job["notifier"]
        notifier = self.notifiers.get(name)
        if notifier is None:
            # Leased first, as every job parked is: one another sender holds is its to settle.
            claimed = self._claim(job["id"], self.clock())
            if claimed is None:
                return "blocked"
            self._park(claimed, claimed["attempts"], f"no notifier named {name!r} is configured")
            return "parked"
        now = self.clock()
        breaker = self._breaker(name, notifier, job)
        allowed = breaker.allow()
        too_old = now - job["created_at"] >= self.give_up_s
        if not allowed:
            self._gauge_breaker(name)
            if not too_old:
                return "blocked"  # nothing to do with the job while the receiver is down: no need to lease it
        claimed = None
        try:
            claimed = self._claim(job["id"], now)
        finally:
            if claimed is None and allowed:  # no attempt after all (held elsewhere, or the store failed)
                breaker.release()  # else a half-open circuit waits for this probe's result for ever
        if claimed is None:
            return "blocked"  # another worker holds this job (and so its lane)
        job = claimed
        until = job["payload"].get(VALID_UNTIL)
        if until is not None and now >= float(until):
            if allowed:
                breaker.release()
            self._expire(job, "not sent: the day it was about is over (it would say 'today')")
            return "expired"
        if not allowed:
            why = job["last_error"] or f"circuit open after {breaker.failures} failures of {name}"
            self._park(job, job["attempts"], f"gave up after {self.give_up_s:.0f} s: {why}")
            return "parked"
        result = self._send(notifier, job)
        if result.asked:
            # A refusal for good is the receiver's verdict on this event, given by a receiver that is up: counted
            # as a failure, one elder's rejected events would shut the channel for every other elder's alerts.
            breaker.record(result.ok or result.permanent)
        else:  # nothing went out (a bookkeeping event, no group to send to): no word on the receiver
            breaker.release()
        self._gauge_breaker(name)
        with self._count_lock:
            self.attempts += 1
        if result.ok:
            self._mark_sent(job, result.reached)
            return "sent"
        attempts = job["attempts"] + 1
        # The retry is timed by the clock as the send ended: had the wall clock stepped back while it took (up to
        # the notifier's timeout), a pass has moved the stored jobs by the step, and a time read before the send
        # would hold the job, and its lane, for the step on top of its backoff.
        now = self.clock()
        if result.permanent or now - job["created_at"] >= self.give_up_s:
            why = result.error if result.permanent else f"gave up after {self.give_up_s:.0f} s: {result.error}"
            self._park(job, attempts, why)
            return "parked"
        self._retry_later(job, attempts, result, now)
        return "blocked"

    def _breaker(self, name: str, notifier: Notifier, job: Mapping[str, Any]) -> CircuitBreaker:
        """The job's circuit: its notifier's, or its receiver's where a notifier posts to several (community robots)."""
        circuit = getattr(notifier, "circuit", None)
        key = circuit(job["payload"]) if circuit is not None else ""
        if not key:
            return self.breakers[name]
        with self._breaker_lock:
            breaker = self.breakers.get(f"{name}/{key}")
            if breaker is None:
                breaker = self.breakers[f"{name}/{key}"] = CircuitBreaker(*self._breaker_args)
            return breaker

    def _claim(self, job_id: int, now: float) -> dict[str, Any] | None:
        """Lease a pending, due job for this sender; its current row, or None if another sender holds it.

        Due as it is now: a lane started from a pass's older reading of its head must not send a job that
        was meanwhile tried and rescheduled before its backoff is over.
        """
        with self.engine.begin() as conn:
            row = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == job_id,
                    outbox.c.status == "pending",
                    outbox.c.next_attempt_at <= now,
                    _lease_free(now, self.owner),
                )
                .values(lease_owner=self.owner, lease_until=now + self.lease_s)
                .returning(*outbox.c)
            ).first()
        return dict(row._mapping) if row is not None else None

    def _send(self, notifier: Notifier, job: Mapping[str, Any]) -> Delivery:
        try:
            return notifier.send(job["payload"])
        except Exception as exc:  # a notifier bug must not kill the lane; the job is retried and counted
            log.warning("notifier %s raised on job %s: %r", job["notifier"], job["id"], exc)
            return Delivery(False, error=f"{type(exc).__name__}: {exc}"[:500])

    def _mark_sent(self, job: Mapping[str, Any], reached: bool = True) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            # The alert's row first, then its job's: the order a case's close takes them (it expires the family's
            # texts still queued), so the two never wait for each other (a deadlock on PostgreSQL).
            if reached:  # a job nobody could take (no group for the community) tells nobody about the alert
                mark_notified(conn, job["alert_id"], job["notifier"], now, self.platform_channels)
            conn.execute(
                update(outbox)
                .where(outbox.c.id == job["id"])
                .values(status="sent", sent_at=now, attempts=job["attempts"] + 1, lease_owner=None, lease_until=None)
            )
        with self._count_lock:
            self.delivered += 1
        if self.metrics is not None:
            self.metrics.delivery_attempts.labels(notifier=job["notifier"], result="sent").inc()
            self.metrics.delivery_latency.labels(notifier=job["notifier"]).observe(max(0.0, now - job["created_at"]))

    def _retry_later(self, job: Mapping[str, Any], attempts: int, result: Delivery, now: float) -> None:
        with self._rng_lock:
            delay = backoff(attempts, self._rng, cap=self.max_backoff_s)
        delay = max(delay, result.retry_after or 0.0)
        # Never wait past the give-up time: the last attempt happens then, and parks if it fails.
        delay = min(delay, max(1.0, job["created_at"] + self.give_up_s - now))
        with self.engine.begin() as conn:
            # Only while this sender still holds it: one back from a pause past its lease (SIGSTOP, a frozen VM) finds
            # another sending the job meanwhile, whose lease it must not clear (a third would send it at once).
            conn.execute(
                update(outbox)
                .where(outbox.c.id == job["id"], outbox.c.lease_owner == self.owner)
                .values(
                    attempts=attempts,
                    next_attempt_at=now + delay,
                    last_error=result.error[:500],
                    lease_owner=None,
                    lease_until=None,
                )
            )
        if self.metrics is not None:
            self.metrics.delivery_attempts.labels(notifier=job["notifier"], result="retry").inc()
        if attempts == 1:  # log a failing receiver once per job, not once per retry
            log.warning("delivery failed, will retry: job %s (%s): %s", job["id"], job["notifier"], result.error)

    def _expire(self, job: Mapping[str, Any], reason: str) -> None:
        """No longer to be sent by anyone (a day's note after the day): final, not parked. A parked job asks a person
        to pass it on and raises the operators' alarm; a family's "平安" of yesterday is nobody's work."""
        with self.engine.begin() as conn:
            expire_jobs(conn, outbox.c.id == job["id"], outbox.c.status == "pending", reason=reason)
        if self.metrics is not None:
            self.metrics.delivery_attempts.labels(notifier=job["notifier"], result="expired").inc()
        log.info("delivery expired: job %s (%s): %s", job["id"], job["notifier"], reason)

    def _park(self, job: Mapping[str, Any], attempts: int, reason: str) -> None:
        with self.engine.begin() as conn:
            # Only while this sender still holds it, as _retry_later: one back from a pause past its lease finds
            # another sending the job meanwhile, whose job it must not park (nor count or log a park).
            parked = conn.execute(
                update(outbox)
                .where(outbox.c.id == job["id"], outbox.c.status == "pending", outbox.c.lease_owner == self.owner)
                .values(status="parked", attempts=attempts, last_error=reason[:500], lease_owner=None, lease_until=None)
            ).rowcount
        if not parked:
            log.info(
                "not parked: job %s (%s) is another sender's since this one's lease ran out", job["id"], job["notifier"]
            )
            return
        with self._count_lock:
            self.parked += 1
        if self.metrics is not None:
            self.metrics.delivery_attempts.labels(notifier=job["notifier"], result="parked").inc()
        log.error("delivery parked: job %s (%s) after %d attempts: %s", job["id"], job["notifier"], attempts, reason)

    def _gauge_breaker(self, name: str) -> None:
        if self.metrics is None:
            return
        with self._breaker_lock:  # lanes report from several threads: each opening is counted once
            group = [b for key, b in self.breakers.items() if key == name or key.startswith(f"{name}/")]
            states = {b.state for b in group}
            state = OPEN if OPEN in states else HALF_OPEN if HALF_OPEN in states else CLOSED
            self.metrics.circuit_state.labels(notifier=name).set(STATE_CODES[state])
            opened = sum(b.opened for b in group)
            new = opened - self._opened_seen.get(name, 0)
            if new > 0:
                self._opened_seen[name] = opened
                self.metrics.circuit_opened.labels(notifier=name).inc(new)

    def open_circuits(self) -> list[str]:
        """The channels with a receiver whose circuit is not closed: its jobs wait (readiness shows it)."""
        with self._breaker_lock:
            return sorted({key.split("/", 1)[0] for key, b in self.breakers.items() if b.state != CLOSED})

    # -- loop ------------------------------------------------------------------------------

    def serve(self, poll_s: float = 1.0) -> None:
        """Loop until :meth:`stop`; a wake-up after each new alert keeps latency low."""
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: a wake-up during it triggers the next one
            try:
                # Lanes at work go on in their pools; the next pass starts the lanes that became due meanwhile.
                self._start_lanes(self._due_heads(200), 200)
            except Exception:  # the sender must outlive a bad pass (store busy, network)
                log.exception("outbox pass failed")
            self._wake.wait(poll_s)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lanes_lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.shutdown(wait=True)


def rebase_jobs(conn: Any, step_s: float, seen_id: int, wall: float) -> int:
    """Move the pending jobs stored before the wall clock stepped back ``step_s`` back by as much; how many.

    The rule of :func:`alerts.escalation.rebase_timers`: negative ``step_s`` is a step forward putting right a
    step back; stored before the step are the jobs up to ``seen_id``, and those after it created on the clock
    before the step. Their next attempt, lease and creation (their give-up counts from it) move together.
    """
    before_step = stored_before_step(outbox, step_s, seen_id, wall)
    return int(
        conn.execute(
            update(outbox)
            .where(outbox.c.status == "pending", before_step)
            .values(
                next_attempt_at=outbox.c.next_attempt_at - step_s,
                lease_until=outbox.c.lease_until - step_s,
                created_at=outbox.c.created_at - step_s,
            )
        ).rowcount
    )


def _circuit_columns(per_community: list[str]) -> list[Any]:
    """What tells a job's circuit apart in SQL: its channel, and its community on channels with a circuit per
    community's group robot (:meth:`alerts.notifiers.CommunityRobots.circuit`; finer than the circuits where a
    community has no robot of its own, which only splits that robot's heads more)."""
    if not per_community:
        return [outbox.c.notifier]
    community = outbox.c.payload[("data", "community")].as_string()
    return [outbox.c.notifier, case((outbox.c.notifier.in_(per_community), community), else_=literal(""))]


def _urgency() -> Any:
    """A lane head's rank in a pass, 0 first: its case's severity on the community route, then maintenance cases
    and jobs of no case (a day's note). A street's power cut takes hundreds of meters offline at once, a raise
    each; a receiver that takes a few a minute (a group robot, a platform's rate limit) would pass on a fall
    found meanwhile only after all of them, oldest first. The order within a lane is untouched."""
    ranks = [(alerts.c.severity == severity, rank) for rank, severity in enumerate(SEVERITIES)]
    last = len(SEVERITIES)
    maintenance = alerts.c.case_key.startswith(MAINTENANCE_CASE)
    return case((alerts.c.alert_id.is_(None), last), (maintenance, last), *ranks, else_=last)


def _lease_free(now: float, owner: str | None = None) -> Any:
    """A job nobody holds: never leased, lease expired (its sender died), or already ours."""
    free = outbox.c.lease_until.is_(None) | (outbox.c.lease_until < now)
    return free | (outbox.c.lease_owner == owner) if owner is not None else free
