"""Wall-clock steps: steady time that never runs backwards, and the stored times a step would shift.

The escalation runner's timers and the sender's jobs are stored as times of the
wall clock. NTP may step that clock; a step back would delay each of them by
the step, a step forward fire them early. :class:`SteadyClock` tells a step
from time gone (it counts the time since boot, a host's suspend included);
:class:`ClockSteps` moves what one table stored on the old side of a step, in
the store, under a lease, so rival processes that see the same step move it
once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from store import leases

log = logging.getLogger(__name__)

#: The clock of the time since boot that counts a suspend (Linux); None: the monotonic clock stands in for it.
_BOOT_CLOCK: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def since_boot() -> float:
    """Seconds since the host booted, time asleep included (``CLOCK_BOOTTIME``; elsewhere the monotonic clock).

    Steady time runs on it: the monotonic clock stops while the host is suspended and the wall clock does not,
    so with a step back outstanding the wall clock caught steady time up on resume, as a correction does, and
    the pending timers were moved forward by the sleep.
    """
    return time.monotonic() if _BOOT_CLOCK is None else time.clock_gettime(_BOOT_CLOCK)


@functools.cache
def boot_id() -> str | None:
    """This host's boot (Linux: a new random id at each boot); None where unknown or without :func:`since_boot`."""
    if _BOOT_CLOCK is None:
        return None
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()[:36] or None
    except OSError:
        return None


def clock_epoch(wall: float, boot_s: float) -> float:
    """The wall clock's time at boot: only a step of the wall clock changes it (a suspend, NTP slewing do not)."""
    return wall - boot_s


class SteadyClock:
    """Wall time that never runs backwards within a process (nor while the host sleeps: :func:`since_boot`).

    >>> wall, mono = [1000.0], [0.0]
    >>> c = SteadyClock(lambda: wall[0], lambda: mono[0])
    >>> c()
    1000.0
    >>> wall[0], mono[0] = 400.0, 5.0  # wall clock stepped back ten minutes, five seconds passed
    >>> c()
    1005.0
    """

    def __init__(self, wall: Callable[[], float] = time.time, mono: Callable[[], float] = since_boot) -> None:
        self.wall = wall
        self.mono = mono
        self._last: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.read()[1]

    def read(self) -> tuple[float, float]:
        """The wall clock's time and the steady time, the later of it and the last steady time plus the time since."""
        with self._lock:
            wall, mono = self.wall(), self.mono()
            steady = wall if self._last is None else max(wall, self._last[0] + (mono - self._last[1]))
            self._last = (steady, mono)
            return wall, steady


#: How long the process that moves the stored times after a step holds its lease: rivals that see the same step
#: within it find it taken.
CLOCK_LEASE_TTL_S = 300.0

#: Moves the rows one table stored before a step: (conn, step_s, seen_id, wall) -> how many moved.
Rebase = Callable[[Connection, float, int, float], int]


def stored_before_step(table: Any, step_s: float, seen_id: int, wall: float) -> Any:
    """The rows of ``table`` (its ``id`` and ``created_at``) stored on the clock before a step of ``step_s``.

    Up to ``seen_id``, the last id before the step, or after it but created on the old clock: at a wall time
    later than ``wall`` (now, on the stepped clock) after a step back, earlier than ``wall + step_s`` after a step
    forward (negative ``step_s``, putting right a step back).
    """
    created = table.c.created_at
    return (table.c.id <= seen_id) | (created > wall if step_s > 0 else created < wall + step_s)


class ClockSteps:
    """Sees the wall clock step between two passes and moves what ``table_id``'s table stored before it.

    ``rebase(conn, step_s, seen_id, wall)`` moves the rows stored before a step of ``step_s`` (positive: back;
    negative: forward, putting right a step back), those up to ``seen_id`` or created on the old clock
    (:func:`alerts.escalation.rebase_timers` states the rule). ``lease`` names the lease one process takes to move
    them; ``what`` names the rows in the warning.
    """

    def __init__(self, engine: Engine, table_id: Any, lease: str, rebase: Rebase, what: str) -> None:
        self.engine, self.table_id, self.lease, self.rebase, self.what = engine, table_id, lease, rebase, what
        self._ahead = 0.0  # seconds steady time is ahead of the wall clock: the steps back seen so far
        self._seen_id = 0  # the last row id before the last pass's reading of the clock

    def read(self, clock: SteadyClock, owner: str) -> float:
        """The wall clock's time, as the writers of the rows use it, after moving the rows a step stored before it."""
        with self.engine.connect() as conn:
            seen_id = conn.execute(select(func.max(self.table_id))).scalar() or 0  # read before the clock
        wall, steady = clock.read()
        # Positive: the wall clock stepped back (again) since the last pass. Negative: it stepped forward, putting
        # right as much of the steps back seen before (steady time never falls behind the wall clock).
        step = steady - wall - self._ahead
        if abs(step) > 1.0:
            with self.engine.begin() as conn:
                # One process moves the rows: a rival that saw the same step finds the lease taken.
                if leases.claim(conn, self.lease, owner, wall, CLOCK_LEASE_TTL_S, after_step_back=step > 0):
                    moved = self.rebase(conn, step, self._seen_id, wall)
                    way = "back" if step > 0 else "forward"
                    log.warning("wall clock stepped %s %.0f s: %d %s moved %s", way, abs(step), moved, self.what, way)
        self._ahead, self._seen_id = steady - wall, seen_id
        return wall
