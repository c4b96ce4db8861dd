"""A circuit breaker per notifier: stop hammering a platform that is down.

``closed`` lets every attempt through. After ``threshold`` consecutive
failures it turns ``open`` for ``cooldown_s``: no attempts, jobs stay pending.
Then ``half_open``: exactly one probe goes out; success closes the circuit,
failure opens it again. The clock is injected, so tests run an hour of
outage in microseconds. It is the wall clock: one stepped back since the
circuit opened says nothing of the time gone, and the probe goes out then (else
the channel, every work order on it, would wait as long as the step).

>>> now = [0.0]
>>> b = CircuitBreaker(threshold=2, cooldown_s=60, clock=lambda: now[0])
>>> b.record(False); b.record(False); b.state, b.allow()
('open', False)
>>> now[0] = 61; b.allow(), b.state, b.allow()
(True, 'half_open', False)
>>> b.record(True); b.state
'closed'
>>> b.record(False); b.record(False); now[0] = 0; b.allow()  # open, and the clock stepped back: probe at once
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_CODES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        if threshold < 1 or cooldown_s < 0:
            raise ValueError("circuit breaker: threshold >= 1 and cooldown_s >= 0 required")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = CLOSED
        self.failures = 0
        self.opened = 0  # times the circuit opened, for metrics
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """May an attempt go out now? In half-open state only one probe at a time."""
        with self._lock:
            elapsed = self.clock() - self._opened_at
            if self.state == OPEN and (elapsed >= self.cooldown_s or elapsed < 0):
                self.state = HALF_OPEN
                self._probing = False
            if self.state == CLOSED:
                return True
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def release(self) -> None:
        """An attempt :meth:`allow` let through did not go out after all: a half-open circuit may probe again."""
        with self._lock:
            self._probing = False

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.state, self.failures, self._probing = CLOSED, 0, False
                return
            self.failures += 1
            if self.state == HALF_OPEN or self.failures >= self.threshold:
                if self.state != OPEN:
                    self.opened += 1
                self.state, self._opened_at, self._probing = OPEN, self.clock(), False
