"""The MQTT client side of ingest, run in a process of its own: receive, batch, acknowledge on word.

A paho client cost ~40 us of Python per QoS 1 message; sharing an
interpreter (and its GIL) with the pipeline, it starved and was starved in
turn. Here it runs in a child process that :class:`ingest.consumer.MqttConsumer`
starts: it subscribes (in ``on_connect``, so a reconnect resubscribes),
collects messages into batches, sends them to the parent over a pipe, and
acknowledges a batch's messages only when the parent says the batch is
committed. When the parent says the store failed, it drops the connection
and everything unacknowledged, which the broker then redelivers.

One thread does all of it: paho's socket is driven here (``loop_read``,
``loop_write``) and read a socket's worth of packets at a time by
:mod:`ingest.pahofast`. This module imports paho, ``ingest.pahofast`` and the
standard library only, so the child starts fast.

Several workers share the stream through an MQTT 5 shared subscription
(``$share/<group>/<prefix>/+/readings``): the broker gives each message to
one member of the group. Each worker keeps its own client id and a session
that outlives a restart, so messages in flight to a killed worker come back
to it when it returns.
"""

from __future__ import annotations

import logging
import random
import select
import signal
import ssl
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NamedTuple
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.settings import shown_url
from ingest.pahofast import OVERSIZED_EXCERPT, FastPathClient

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


def make_client(config: BrokerConfig) -> FastPathClient:
    """The receiving client for ``config``: credentials, TLS, a session that outlives a restart, acks on word."""
    # MQTT 5 has no clean_session: a session's life is set when connecting (connect()).
    session: dict[str, Any] = {"protocol": mqtt.MQTTv5} if config.mqtt5 else {"clean_session": False}
    # manual_ack: the fast path acknowledges nothing by itself (ack_many does), and paho must not either.
    client = FastPathClient(CallbackAPIVersion.VERSION2, client_id=config.client_id, manual_ack=True, **session)
    if config.username:
        client.username_pw_set(config.username, config.password)
    _host, _port, tls = config.host_port_tls
    if tls:
        client.tls_set(ca_certs=config.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    return client


def connect(client: mqtt.Client, config: BrokerConfig) -> None:
    """Tell ``client`` where to connect (``reconnect()`` connects); MQTT 5 sessions outlive ``session_expiry_s``."""
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
#: The pause before connecting again after a failed attempt: doubling from the least to the most.
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 60.0
#: A session that lasted this long (s) was a connection that worked: the pause starts again from the least.
STABLE_SESSION_S = 30.0
#: Payload bytes held unsent before the socket is left unread, and at most in one batch (one message more
#: at most): with messages up to TAPWATCH_MQTT_MAX_MESSAGE_BYTES, a count limit alone would let one meter's
#: large messages fill gigabytes here and in the parent.
INBOX_BYTES_LIMIT = 64 << 20
BATCH_BYTES_LIMIT = 16 << 20
#: The longest the loop sleeps: keep-alive and a reconnect due are checked at least this often.
POLL_S = 0.2


#: The product's limit on a message's payload (TAPWATCH_MQTT_MAX_MESSAGE_BYTES): 256 KiB.
MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(slots=True)
class ReceiverOptions:
    prefix: str = "tapwatch/meters"
    batch_max: int = 2000
    batch_wait_s: float = 0.05
    max_message_bytes: int = MAX_MESSAGE_BYTES  # larger payloads are dead-lettered from an excerpt, never parsed


class Received(NamedTuple):
    """One message as the child sends it to the parent; ``size`` > len(payload) when only an excerpt came."""

    topic: str
    payload: bytes
    received_at: float
    qos: int
    retained: bool
    size: int


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
    """One thread drives paho's socket, batches what arrives, sends batches to the parent and acknowledges on word.

    No paho network thread: handing each message from that thread to this one (and each
    acknowledgement back, waking paho's select through its socketpair) cost more CPU than the
    messages' own decoding. One ``select`` waits on the broker's socket and the parent's pipe.
    """

    def __init__(self, config: BrokerConfig, options: ReceiverOptions, pipe: Connection) -> None:
        self.config = config
        self.options = options
        self.pipe = pipe
        self.topic = subscription(options.prefix, config.shared_group)
        # What arrived and is not yet sent to the parent: (topic, payload, qos, retained, size) and,
        # in step, (mid, qos).
        self.inbox: list[tuple[str, bytes, int, bool, int]] = []
        self.inbox_acks: list[tuple[int, int]] = []
        self.oldest_at = 0.0  # monotonic time the oldest message in the inbox arrived (or earlier)
        # Past this the socket is not read: the broker keeps the rest (the TCP window fills) instead of
        # this process holding a whole backlog in memory while the pipeline catches up.
        self.inbox_limit = 4 * options.batch_max
        self.inbox_bytes = 0  # payload bytes in the inbox (INBOX_BYTES_LIMIT)
        self.sent: dict[int, list[tuple[int, int]]] = {}  # batch number -> (mid, qos) to acknowledge
        self.next_batch = 0
        self.stopping = False
        self.refused = False  # bad credentials: no point trying again
        self.recycling = False  # after a failed batch, until the parent's pause (reconnect_at) is over
        self.reconnect_at = 0.0
        self.reconnect_delay_s = RECONNECT_MIN_S
        self.subscribed_at: float | None = None  # monotonic time of this session's SUBACK
        self.client = make_client(config)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish_received = self._on_publish_received
        self.client.on_oversized = self._on_oversized
        self.client.max_payload = options.max_message_bytes
        self.client.on_message = self._on_qos2_message

    def stop(self) -> None:
        self.stopping = True

    def _send(self, *message: Any) -> None:
        try:
            self.pipe.send(message)
        except OSError:  # the parent is gone: wind down
            self.stopping = True

    # -- paho callbacks (called from loop_read, on this thread) ---------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self._send("log", logging.ERROR, f"broker refused connection: {reason}")
            if reason.value in AUTH_FAILURES:
                self.refused = True  # wrong credentials will not fix themselves
                client.disconnect()
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, codes: list[mqtt.ReasonCode], _p: object) -> None:
        # Ready only now (SUBACK): a broker drops what is published before it (no subscription, no session
        # queue yet), so whoever waits on "connected" to start publishing (the demo, tests) must wait for this.
        refused = [str(code) for code in codes if code.is_failure]
        if refused:
            self._send("log", logging.ERROR, f"broker refused the subscription to {self.topic}: {', '.join(refused)}")
            return
        self.subscribed_at = time.monotonic()
        self._send("connected", True)
        self._send("log", logging.INFO, f"connected to {shown_url(self.config.url)}, subscribed to {self.topic}")

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        self._send("connected", False)
        # A broker that takes the connection and drops it (server busy, at max_connections, another worker
        # with this client id taking the session over) is no better than one that refuses it: the pause
        # doubles as after a refusal, and starts again from the least only after a session that lasted.
        now = time.monotonic()
        if self.subscribed_at is not None and now - self.subscribed_at >= STABLE_SESSION_S:
            self.reconnect_delay_s = RECONNECT_MIN_S
        self.subscribed_at = None
        if not self.recycling:
            self._disown_packet_ids()
        # max: a recycle's pause may be the longer one.
        self.reconnect_at = max(self.reconnect_at, now + self._pause())
        if not (self.stopping or self.refused or self.recycling):
            self._send("log", logging.WARNING, f"disconnected from broker ({reason}); reconnecting")

    def _disown_packet_ids(self) -> None:
        """What arrived on a connection now lost is still passed on, but never acknowledged on the next one.

        Its packet ids were that connection's: the broker sends what it still holds again under the same ids,
        and once those copies are acknowledged it may give the ids to new messages. An acknowledgement from the
        old connection's batch would then confirm a message nobody has stored yet, lost if this worker stops.
        The copies sent again are acknowledged when their own batch is committed; readings are deduplicated.
        """
        self.inbox_acks = [(mid, 0) for mid, _qos in self.inbox_acks]  # QoS 0: nothing to acknowledge
        for number in self.sent:
            self.sent[number] = []

    def _on_publish_received(self, topic: str, payload: bytes, mid: int, qos: int, retained: bool) -> None:
        self._on_oversized(topic, payload, mid, qos, retained, len(payload))

    def _on_oversized(self, topic: str, excerpt: bytes, mid: int, qos: int, retained: bool, size: int) -> None:
        """Any message; an oversized one (size > len(excerpt)) goes on as its excerpt, to be dead-lettered."""
        if not self.inbox:
            self.oldest_at = time.monotonic()
        self.inbox.append((topic, excerpt, qos, retained, size))
        self.inbox_acks.append((mid, qos))
        self.inbox_bytes += len(excerpt)

    def _on_qos2_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        # Only if a broker delivers above the QoS 1 subscribed; paho did the QoS 2 handshake up to here.
        payload = bytes(message.payload)
        excerpt = payload[:OVERSIZED_EXCERPT] if len(payload) > self.options.max_message_bytes else payload
        self._on_oversized(message.topic, excerpt, message.mid, message.qos, bool(message.retain), len(payload))

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        connect(self.client, self.config)
        try:
            while not self.stopping:
                self._keep_connected()
                self._exchange(self._wait())
                if self._batch_due():
                    self._send_batch()
        except (EOFError, OSError):
            pass  # the parent is gone: unacknowledged messages stay with the broker
        finally:
            self.stopping = True
            self._disconnect()

    def _keep_connected(self) -> None:
        """(Re)connect when due, with a doubling pause after each failure; end a recycle's pause."""
        if self.refused or time.monotonic() < self.reconnect_at:
            return
        if self.recycling:
            # Whatever was sent before this word, the parent has discarded: forget it too.
            self._forget_unacknowledged()
            self.recycling = False
            self._send("recycled")
        elif self.client.socket() is not None:
            return
        try:
            self.client.reconnect()  # closes the old socket first, should a recycle's goodbye be stuck
        except OSError as exc:  # refused, unreachable, TLS handshake failed: try again later
            pause = self._pause()
            self.reconnect_at = time.monotonic() + pause
            # Said each time (at most once a minute once the pause is long): a wrong URL or CA file would
            # otherwise leave a monitor that says it started, and never why no reading comes.
            where = shown_url(self.config.url)
            self._send(
                "log", logging.WARNING, f"cannot reach the broker at {where}: {exc}; trying again in {pause:.0f} s"
            )

    def _pause(self) -> float:
        """The pause before the next attempt, and the next one doubled. Jittered: a city's workers that lost
        the broker together must not come back in step at every attempt."""
        pause = self.reconnect_delay_s * random.uniform(0.75, 1.25)
        self.reconnect_delay_s = min(RECONNECT_MAX_S, 2 * self.reconnect_delay_s)
        return pause

    def _wait(self) -> list[Any]:
        """Wait until the parent or the broker has something for us, or a batch or a reconnect is due."""
        sock = self.client.socket()
        readers: list[Any] = [self.pipe]
        writers: list[Any] = []
        if sock is not None and self._reading():
            readers.append(sock)
        if sock is not None and self.client.want_write():
            writers.append(sock)
        # TLS may hold decrypted bytes already, where select cannot see them: look, but do not wait.
        decrypted = sock in readers and _tls_bytes_pending(sock)
        readable = select.select(readers, writers, [], 0.0 if decrypted else self._idle_timeout())[0]
        return [*readable, sock] if decrypted and sock not in readable else readable

    def _idle_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + POLL_S]
        if self.inbox and len(self.sent) < IN_FLIGHT_BATCHES:
            deadlines.append(self.oldest_at + self.options.batch_wait_s)
        if self.client.socket() is None and not self.refused:
            deadlines.append(self.reconnect_at)
        return max(0.0, min(deadlines) - now)

    def _reading(self) -> bool:
        return len(self.inbox) < self.inbox_limit and self.inbox_bytes < INBOX_BYTES_LIMIT and not self.recycling

    def _exchange(self, readable: list[Any]) -> None:
        if self.pipe in readable:
            self._obey()
        if self.client.socket() in readable and self._reading():  # not if _obey just began a recycle
            self.client.loop_read()
        if self.client.socket() is not None and self.client.want_write():
            self.client.loop_write()
        if self.client.socket() is not None:
            self.client.loop_misc()  # keep-alive pings, and noticing a broker that stopped answering

    def _obey(self) -> None:
        """Carry out what the parent said: acknowledge a batch, recycle the connection, or stop."""
        while not self.stopping and self.pipe.poll(0):
            command, *args = self.pipe.recv()
            if command == "ack":
                self._acknowledge(self.sent.pop(args[0], []))
            elif command == "recycle":
                self._recycle(delay_s=args[0])
            elif command == "stop":
                self.stop()

    def _acknowledge(self, acks: list[tuple[int, int]]) -> None:
        self.client.ack_many(mid for mid, qos in acks if qos == 1)
        for mid, qos in acks:
            if qos == 2:
                self.client.ack(mid, qos)

    def _batch_due(self) -> bool:
        if not self.inbox or len(self.sent) >= IN_FLIGHT_BATCHES or self.stopping:
            return False
        full = len(self.inbox) >= self.options.batch_max or self.inbox_bytes >= BATCH_BYTES_LIMIT
        return full or time.monotonic() >= self.oldest_at + self.options.batch_wait_s

    def _send_batch(self) -> None:
        size, held = 0, 0
        for _topic, payload, *_ in self.inbox[: self.options.batch_max]:
            if size and held + len(payload) > BATCH_BYTES_LIMIT:
                break
            size, held = size + 1, held + len(payload)
        self.inbox_bytes -= held
        items, acks = self.inbox[:size], self.inbox_acks[:size]
        del self.inbox[:size], self.inbox_acks[:size]
        # oldest_at stays: what is left arrived no earlier, and goes as soon as a slot is free and its time is up.
        number, self.next_batch = self.next_batch, self.next_batch + 1
        self.sent[number] = acks
        now = time.time()
        self._send("batch", number, [Received(t, p, now, q, r, n) for t, p, q, r, n in items])

    def _recycle(self, delay_s: float) -> None:
        """Drop the connection and all we hold: the broker resends every unacknowledged message."""
        self.recycling = True
        self.reconnect_at = time.monotonic() + delay_s
        self.client.disconnect()
        self._forget_unacknowledged()

    def _forget_unacknowledged(self) -> None:
        self.sent.clear()
        self.inbox.clear()
        self.inbox_acks.clear()
        self.inbox_bytes = 0

    def _disconnect(self) -> None:
        """Say goodbye to the broker if it listens; what was not acknowledged stays with it either way."""
        if self.client.socket() is None:
            return
        self.client.disconnect()
        deadline = time.monotonic() + 1.0
        while (sock := self.client.socket()) is not None and self.client.want_write() and time.monotonic() < deadline:
            select.select([], [sock], [], 0.1)
            self.client.loop_write()


def _tls_bytes_pending(sock: Any) -> bool:
    """Whether a TLS socket holds decrypted bytes not yet read (plain sockets have no ``pending``)."""
    pending = getattr(sock, "pending", None)
    return pending is not None and pending() > 0
