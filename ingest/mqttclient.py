"""The MQTT client side of ingest, run in a process of its own: receive, batch, acknowledge on word.

A paho client costs ~40 us of Python per QoS 1 message; sharing an
interpreter (and its GIL) with the pipeline, it starved and was starved in
turn. Here it runs in a child process that :class:`ingest.consumer.MqttConsumer`
starts: it subscribes (in ``on_connect``, so a reconnect resubscribes),
collects messages into batches, sends them to the parent over a pipe, and
acknowledges a batch's messages only when the parent says the batch is
committed. When the parent says the store failed, it drops the connection
and everything unacknowledged, which the broker then redelivers.

This module imports paho and the standard library only, so the child starts fast.

Several workers share the stream through an MQTT 5 shared subscription
(``$share/<group>/<prefix>/+/readings``): the broker gives each message to
one member of the group. Each worker keeps its own client id and a session
that outlives a restart, so messages in flight to a killed worker come back
to it when it returns.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

AUTH_FAILURES = {4, 5, 134, 135}  # bad credentials / not authorised (MQTT 3.1.1 and 5)


@dataclass(slots=True)
class BrokerConfig:
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "tapwatch-ingest"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive: int = 30
    protocol: str = "3.1.1"  # or "5" (needed for shared subscriptions)
    shared_group: str | None = None  # several workers, one stream: $share/<group>/...
    session_expiry_s: int = 7 * 86400  # MQTT 5: how long the broker keeps our session while we are away

    @property
    def mqtt5(self) -> bool:
        return self.protocol == "5"

    @property
    def host_port_tls(self) -> tuple[str, int, bool]:
        parsed = urlparse(self.url)
        tls = parsed.scheme in ("mqtts", "ssl")
        return parsed.hostname or "127.0.0.1", parsed.port or (8883 if tls else 1883), tls


def make_client(config: BrokerConfig, *, manual_ack: bool = False, clean: bool = False) -> mqtt.Client:
    """A paho client configured for ``config``: credentials, TLS, reconnect backoff."""
    # MQTT 5 has no clean_session: a session's life is set when connecting (connect()).
    session: dict[str, Any] = {"protocol": mqtt.MQTTv5} if config.mqtt5 else {"clean_session": clean}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id, manual_ack=manual_ack, **session)
    if config.username:
        client.username_pw_set(config.username, config.password)
    _host, _port, tls = config.host_port_tls
    if tls:
        client.tls_set(ca_certs=config.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(min_delay=1, max_delay=60)
    return client


def connect(client: mqtt.Client, config: BrokerConfig) -> None:
    """Start connecting ``client`` in the background; MQTT 5 sessions outlive ``session_expiry_s`` of absence."""
    host, port, _tls = config.host_port_tls
    if not config.mqtt5:
        client.connect_async(host, port, keepalive=config.keepalive)
        return
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = config.session_expiry_s
    client.connect_async(host, port, keepalive=config.keepalive, clean_start=False, properties=properties)


def subscription(prefix: str, shared_group: str | None) -> str:
    """The readings filter, shared by a group of workers when ``shared_group`` is set.

    >>> subscription("tapwatch/meters", None), subscription("tapwatch/meters", "tapwatch")
    ('tapwatch/meters/+/readings', '$share/tapwatch/tapwatch/meters/+/readings')
    """
    readings = f"{prefix.rstrip('/')}/+/readings"
    return f"$share/{shared_group}/{readings}" if shared_group else readings


def topic_meter_id(topic: str, prefix: str) -> str | None:
    """``tapwatch/meters/M1/readings`` -> ``M1``; None when the topic is not a readings topic.

    >>> topic_meter_id("tapwatch/meters/M1/readings", "tapwatch/meters"), topic_meter_id("x/y", "tapwatch/meters")
    ('M1', None)
    """
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head) or not topic.endswith("/readings"):
        return None
    meter_id = topic[len(head) : -len("/readings")]
    return meter_id if meter_id and "/" not in meter_id else None


#: Batches sent to the parent and not yet answered: one in the pipeline, one waiting, the next being filled.
IN_FLIGHT_BATCHES = 2


@dataclass(slots=True)
class ReceiverOptions:
    prefix: str = "tapwatch/meters"
    batch_max: int = 2000
    batch_wait_s: float = 0.05


def receive(config: BrokerConfig, options: ReceiverOptions, pipe: Connection) -> None:
    """The child process's body: run until the parent says stop or goes away."""
    # Ctrl-C reaches the whole process group: the parent decides when this process stops (after
    # acknowledging the batch in hand). SIGTERM (a service manager, multiprocessing at exit) ends it
    # cleanly; whatever it had not acknowledged stays with the broker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    receiver = _Receiver(config, options, pipe)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: receiver.stop())
    receiver.run()


class _Receiver:
    """paho's network thread fills ``inbox``; this process's main thread batches, sends and acknowledges."""

    def __init__(self, config: BrokerConfig, options: ReceiverOptions, pipe: Connection) -> None:
        self.config = config
        self.options = options
        self.pipe = pipe
        self.topic = subscription(options.prefix, config.shared_group)
        # A plain deque and a flag, not a Queue: a Queue's lock and condition per message cost more than
        # the batching they serve. Bounded by pausing paho's thread (_on_message).
        self.inbox: deque[mqtt.MQTTMessage] = deque()
        self.arrived = threading.Event()
        self.inbox_limit = 4 * options.batch_max
        self.sent: dict[int, list[tuple[int, int]]] = {}  # batch number -> (mid, qos) to acknowledge
        self.next_batch = 0
        self.stopping = False
        self.send_lock = threading.Lock()  # paho's thread reports connection changes on the same pipe
        self.client = make_client(config, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def stop(self) -> None:
        self.stopping = True

    def _send(self, *message: Any) -> None:
        with self.send_lock:
            try:
                self.pipe.send(message)
            except OSError:  # the parent is gone (paho's thread may notice first): wind down
                self.stopping = True

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self._send("log", logging.ERROR, f"broker refused connection: {reason}")
            if reason.value in AUTH_FAILURES:
                client.disconnect()  # wrong credentials will not fix themselves
            return
        client.subscribe(self.topic, qos=1)
        self._send("connected", True)
        self._send("log", logging.INFO, f"connected to {self.config.url}, subscribed to {self.topic}")

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        self._send("connected", False)
        if not self.stopping:
            self._send("log", logging.WARNING, f"disconnected from broker ({reason}); reconnecting")

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.inbox.append(message)
        if len(self.inbox) == 1:
            self.arrived.set()
        elif len(self.inbox) > self.inbox_limit:
            # In a burst: let the batches drain while the broker keeps the rest (the TCP window fills)
            # instead of this process holding a whole backlog in memory.
            time.sleep(0.005)

    def run(self) -> None:
        connect(self.client, self.config)
        self.client.loop_start()
        try:
            while not self.stopping:
                self._obey(wait_s=0.0 if len(self.sent) < IN_FLIGHT_BATCHES else 0.2)
                if len(self.sent) < IN_FLIGHT_BATCHES and not self.stopping:
                    self._send_batch()
        except (EOFError, OSError):
            pass  # the parent is gone: unacknowledged messages stay with the broker
        finally:
            self.stopping = True
            self.client.disconnect()
            self.client.loop_stop()

    def _obey(self, wait_s: float) -> None:
        """Carry out what the parent said: acknowledge a batch, recycle the connection, or stop."""
        while self.pipe.poll(wait_s):
            command, *args = self.pipe.recv()
            if command == "ack":
                for mid, qos in self.sent.pop(args[0], []):
                    self.client.ack(mid, qos)
            elif command == "recycle":
                self._recycle(delay_s=args[0])
            elif command == "stop":
                self.stop()
                return
            wait_s = 0.0

    def _send_batch(self) -> None:
        if not self.inbox:
            self.arrived.clear()
            if not self.inbox and not self.arrived.wait(0.2):
                return
        batch: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + self.options.batch_wait_s
        while True:
            while self.inbox and len(batch) < self.options.batch_max:
                batch.append(self.inbox.popleft())
            if len(batch) >= self.options.batch_max or time.monotonic() >= deadline:
                break
            time.sleep(0.002)  # polling a deque beats waking on every message
        number, self.next_batch = self.next_batch, self.next_batch + 1
        self.sent[number] = [(m.mid, m.qos) for m in batch]
        now = time.time()
        self._send("batch", number, [(m.topic, bytes(m.payload), now) for m in batch])

    def _recycle(self, delay_s: float) -> None:
        """Drop the connection and all we hold: the broker resends every unacknowledged message."""
        self.client.disconnect()
        self.client.loop_stop()
        self.sent.clear()
        self.inbox.clear()
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline and not self.stopping:
            if self.pipe.poll(min(0.2, deadline - time.monotonic())) and self.pipe.recv()[0] == "stop":
                self.stopping = True
        self._send("recycled")
        if not self.stopping:
            connect(self.client, self.config)
            self.client.loop_start()
