"""MQTT consumer: subscribe to meter readings, hand batches to the pipeline, ack only after commit.

Follows paho's and Home Assistant's advice: subscribe in ``on_connect`` (so a
reconnect resubscribes), isolate each message, stop hammering a broker that
refuses our credentials. Messages are acknowledged manually, after the batch
they belong to is committed; if the store fails, the connection is recycled
so the broker redelivers everything unacknowledged.

Several workers share the stream through an MQTT 5 shared subscription
(``$share/<group>/<prefix>/+/readings``): the broker gives each message to
one member of the group. Each worker keeps its own client id and a session
that outlives a restart, so messages in flight to a killed worker come back
to it when it returns.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tapwatch.pipeline import RawMessage

log = logging.getLogger(__name__)

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


class MqttConsumer:
    """Receives readings and feeds ``handle`` in batches; thread-based, stoppable."""

    def __init__(
        self,
        config: BrokerConfig,
        handle: Callable[[list[RawMessage]], object],
        prefix: str = "tapwatch/meters",
        batch_max: int = 500,
        batch_wait_s: float = 0.05,
    ) -> None:
        self.config = config
        self.handle = handle
        self.prefix = prefix.rstrip("/")
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.connected = threading.Event()
        self.store_ok = True
        self.last_error = ""
        self.received = 0
        self.batches = 0
        self._queue: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.client = make_client(config, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho callbacks (network thread) -------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            if reason.value in AUTH_FAILURES:
                client.disconnect()  # wrong credentials will not fix themselves
            return
        topic = subscription(self.prefix, self.config.shared_group)
        client.subscribe(topic, qos=1)
        self.connected.set()
        log.info("connected to %s, subscribed to %s", self.config.url, topic)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.received += 1
        self._queue.put(message)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        connect(self.client, self.config)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand (and ack it), then disconnect; unacked messages stay with the broker."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    # -- worker thread ------------------------------------------------------------

    def _next_batch(self) -> list[mqtt.MQTTMessage]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_max:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        failures = 0
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            raw = [
                RawMessage(m.topic, bytes(m.payload), topic_meter_id(m.topic, self.prefix), time.time()) for m in batch
            ]
            try:
                self.handle(raw)
            except Exception as exc:  # store down, disk full: keep the messages with the broker
                failures += 1
                self.store_ok = False
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.error("batch of %d messages not stored (%s); broker will redeliver", len(batch), self.last_error)
                self._recycle(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            failures = 0
            self.store_ok = True
            self.batches += 1
            for m in batch:
                self.client.ack(m.mid, m.qos)

    def _recycle(self, delay: float) -> None:
        """Drop what we hold and reconnect: the broker resends every unacknowledged message."""
        self.client.disconnect()
        self.client.loop_stop()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._stop.wait(delay)
        if not self._stop.is_set():
            connect(self.client, self.config)
            self.client.loop_start()
