"""MQTT consumer: hand batches of meter readings to the pipeline, acknowledge only after commit.

The MQTT client itself runs in a child process (:mod:`ingest.mqttclient`),
so the network work and the pipeline run on two cores instead of taking
turns on one interpreter lock. This side starts and watches that process,
feeds each batch it sends to ``handle`` in order, and tells it to
acknowledge the batch's messages once ``handle`` returned (the batch is
committed). If ``handle`` raises (store down, disk full), the child drops
its connection and every unacknowledged message, which the broker
redelivers once it reconnects after a growing pause; batches already on
their way are discarded here. A child that dies is started again.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ingest.mqttclient import MAX_MESSAGE_BYTES, BrokerConfig, Received, ReceiverOptions, receive, topic_meter_id
from ingest.payload import RawMessage

log = logging.getLogger(__name__)


class MqttConsumer:
    """Receives readings through a child MQTT process and feeds ``handle`` in batches; stoppable."""

    def __init__(
        self,
        config: BrokerConfig,
        handle: Callable[[list[RawMessage]], object],
        prefix: str = "tapwatch/meters",
        batch_max: int = 2000,
        batch_wait_s: float = 0.05,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.config = config
        self.handle = handle
        self.prefix = prefix.rstrip("/")
        self.options = ReceiverOptions(self.prefix, batch_max, batch_wait_s, max_message_bytes)
        self.connected = threading.Event()  # set once the broker acknowledged our subscription (SUBACK)
        self.store_ok = True
        self.last_error = ""  # the class of the last store error only: /readyz shows it to anyone
        self.received = 0
        self.batches = 0
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._child: Any = None  # multiprocessing.Process of the spawn context
        self._pipe: Connection | None = None
        self._failures = 0
        self._discarding = False  # after a failed batch, until the child says it has dropped its connection

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._spawn()
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand (and ack it), then disconnect; unacked messages stay with the broker."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self._end_child(timeout)

    def _spawn(self) -> None:
        # spawn, not fork: the parent runs threads (and a database pool) that a fork would copy half-way.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._child = context.Process(
            target=receive, args=(self.config, self.options, theirs), name="tapwatch-mqtt", daemon=True
        )
        self._child.start()
        theirs.close()
        self._pipe = ours
        self._discarding = False

    def _end_child(self, timeout: float) -> None:
        if self._pipe is not None:
            with contextlib.suppress(OSError):  # the child may be gone already
                self._pipe.send(("stop",))
        if self._child is not None:
            deadline = time.monotonic() + timeout
            while self._child.is_alive() and time.monotonic() < deadline:
                self._drain_pipe()  # a child blocked sending a batch must get through to read "stop"
                self._child.join(0.05)
            if self._child.is_alive():
                self._child.kill()
                self._child.join(timeout)
        if self._pipe is not None:
            self._pipe.close()
        self.connected.clear()

    def _drain_pipe(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            while self._pipe is not None and self._pipe.poll(0):
                self._pipe.recv()  # unacknowledged: the broker redelivers these after a restart

    # -- worker thread ------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                if self._pipe is None or not self._pipe.poll(0.2):
                    continue
                message = self._pipe.recv()
            except (EOFError, OSError):
                # A SIGTERM to the whole process group ends the child first: give our own stop a moment.
                if self._stop.wait(0.5):
                    return
                log.error("the MQTT client process ended unexpectedly; starting it again")
                self._end_child(5.0)
                self._spawn()
                continue
            self._dispatch(message)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind, *args = message
        if kind == "batch":
            self._batch(*args)
        elif kind == "connected":
            (self.connected.set if args[0] else self.connected.clear)()
        elif kind == "recycled":
            self._discarding = False
        elif kind == "log":
            log.log(args[0], "%s", args[1])

    def _batch(self, number: int, items: list[Received]) -> None:
        if self._discarding:
            return  # sent before the child dropped its connection: the broker redelivers these
        self.received += len(items)
        raw = [self._raw(m) for m in items]
        try:
            self.handle(raw)
        except Exception as exc:  # store down, disk full: keep the messages with the broker
            self._failures += 1
            self.store_ok = False
            # The error's text (SQL, parameters) goes to the log only, never to /readyz.
            self.last_error = type(exc).__name__
            log.error("batch of %d messages not stored (%s); broker will redeliver", len(raw), f"{exc}"[:300])
            self._discarding = True
            self._tell("recycle", min(30.0, 0.5 * 2 ** min(self._failures, 6)))
            return
        self._failures = 0
        self.store_ok = True
        self.batches += 1
        self._tell("ack", number)

    def _raw(self, m: Received) -> RawMessage:
        meter_id = topic_meter_id(m.topic, self.prefix)
        return RawMessage(m.topic, m.payload, meter_id, m.received_at, qos=m.qos, retained=m.retained, size=m.size)

    def _tell(self, *command: Any) -> None:
        with contextlib.suppress(OSError):  # the child is gone: _work notices and starts it again
            if self._pipe is not None:
                self._pipe.send(command)
