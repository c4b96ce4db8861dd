"""An endless simulation on the wall clock (``tapwatch simulate --follow``): history up to now, then real time.

A demo that ends stops looking live: the monitor judges silence by the wall clock, so meters whose data end
are reported offline a few hours later. Here the simulation starts at ``--start`` and never ends: it runs in
stretches of :data:`STRETCH_DAYS`, each one a :func:`simulator.simulate` of the same elders whose lives, use
and meter faults are drawn anew (``SimConfig.stretch``), each register going on from where the previous
stretch left it. What the meters delivered before now goes out at once, packed as history is; every later
message goes out when its meter sends it, each meter on its own minute of the half hour.

Stretch boundaries lie at fixed days from the start, so a restarted publisher (same start) sends the same
readings again, which the monitor drops as duplicates.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, timedelta
from typing import Protocol

from simulator.config import SimConfig
from simulator.core import simulate, start_epoch
from simulator.publisher import Message, PublisherSession, PublishStats, plan_messages
from simulator.result import SimResult

STRETCH_DAYS = 7
DAY_S = 86400.0
#: The longest a wait trusts the wall clock not to jump (NTP steps it, a suspended host wakes up).
LONGEST_WAIT_S = 60.0


class Clock(Protocol):
    """What following needs of time: the present (epoch seconds), and a wait that a stop ends early."""

    def now(self) -> float: ...

    def wait_until(self, when: float, stop: threading.Event) -> None: ...


class WallClock:
    """The real clock: readings go out when their meters send them."""

    def now(self) -> float:
        return time.time()

    def wait_until(self, when: float, stop: threading.Event) -> None:
        stop.wait(min(max(when - time.time(), 0.0), LONGEST_WAIT_S))


def stretches(cfg: SimConfig) -> Iterator[SimResult]:
    """The simulation from ``cfg.start`` on, one stretch of :data:`STRETCH_DAYS` after another, without end.

    ``cfg.incidents`` are placed in the first stretch only (their days count from the start).
    """
    registers = cfg.start_registers_l
    first = date.fromisoformat(cfg.start)
    for k in itertools.count():
        part = replace(
            cfg,
            start=(first + timedelta(days=k * STRETCH_DAYS)).isoformat(),
            days=STRETCH_DAYS,
            stretch=cfg.stretch + k,
            start_registers_l=registers,
            incidents=cfg.incidents if k == 0 else [],
        )
        res = simulate(part)
        registers = res.end_registers_l
        yield res


class _Queue:
    """Live messages of every stretch simulated so far, by due time (a late message of one stretch may be due
    after the next has begun)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, SimResult, Message]] = []
        self._order = itertools.count()

    def add(self, res: SimResult, msgs: list[Message]) -> None:
        for msg in msgs:
            heapq.heappush(self._heap, (msg.due, next(self._order), res, msg))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[tuple[SimResult, list[Message]]]:
        """The messages due by ``now``, in due order, in runs of one stretch each."""
        runs: list[tuple[SimResult, list[Message]]] = []
        while self._heap and self._heap[0][0] <= now:
            _due, _n, res, msg = heapq.heappop(self._heap)
            if runs and runs[-1][0] is res:
                runs[-1][1].append(msg)
            else:
                runs.append((res, [msg]))
        return runs


def follow(
    cfg: SimConfig,
    url: str,
    prefix: str = "tapwatch/meters",
    clock: Clock | None = None,
    stop_event: threading.Event | None = None,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
    ca_file: str | None = None,
    on_history: Callable[[PublishStats], None] | None = None,
) -> PublishStats:
    """Publish what the meters delivered from ``cfg.start`` until now at once, then every message when it is
    due on ``clock``, until ``stop_event`` is set; returns the counts. ``on_history`` is told once the history
    is acknowledged. A broker restart is ridden out as in :func:`simulator.publisher.publish`.
    """
    clock = clock or WallClock()
    stop = stop_event or threading.Event()
    now = clock.now()
    if start_epoch(cfg) > now:
        raise ValueError(f"the simulation starts on {cfg.start}, after today: give an earlier start")
    # A unique id by default: two publishers with one id would keep disconnecting each other.
    session = PublisherSession(
        url, client_id or f"tapwatch-simulator-{os.getpid()}", prefix, username, password, ca_file
    )
    parts = stretches(cfg)
    queue = _Queue()
    try:
        horizon = _send_history(parts, queue, now, session.send)
        session.stats.history_messages = session.stats.messages
        if on_history is not None:
            on_history(session.stats)
        while not stop.is_set():
            due = queue.next_due()
            # Every message due before the horizon is queued; one past it may belong to the next stretch.
            if due is None or due >= horizon:
                res = next(parts)
                queue.add(res, plan_messages(res)[1])
                horizon = res.end_ts
                continue
            if clock.now() < due:
                clock.wait_until(due, stop)
                continue
            for res, msgs in queue.pop_due(clock.now()):
                session.send(res, msgs)
    finally:
        session.close()
        session.stats.connects = session.acks.connects
    return session.stats


def _send_history(
    parts: Iterator[SimResult],
    queue: _Queue,
    now: float,
    send: Callable[[SimResult, list[Message]], None],
) -> float:
    """Send every stretch's messages delivered before ``now``, queue the rest; returns the simulated horizon."""
    while True:
        res = next(parts)
        history, live = plan_messages(res, history_days=(now - res.start_ts) / DAY_S)
        send(res, history)
        queue.add(res, live)
        if res.end_ts > now:
            return res.end_ts
