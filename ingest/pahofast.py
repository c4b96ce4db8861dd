"""A paho client that reads a socket's worth of packets at a time and acknowledges a batch in one write.

paho 2.x reads every packet with three or more ``recv`` calls, wraps each
PUBLISH in an ``MQTTMessage`` (with a ``threading.Condition``) passed through
callback locks and topic matching, and queues each PUBACK as a packet of its
own with a send of its own. For a stream of small QoS 1 messages that was
most of the ingest process's CPU. :class:`FastPathClient` replaces exactly
that and leaves the rest (connecting, TLS, MQTT 5, keep-alive, subscribing,
writing) to paho:

* reading: one ``recv`` of up to :data:`READ_SIZE` bytes, then every whole
  packet in it. QoS 0 and 1 PUBLISHes go to ``on_publish_received(topic,
  payload, mid, qos, retained)``; every other packet (CONNACK, SUBACK, PINGRESP, a QoS 2
  PUBLISH) to paho's own handler. A packet cut off at the end of a read waits
  for the rest in a buffer that grows by appending (never copied whole per read:
  a 100 MB message once cost a copy of everything unread on every 64 KiB read);
* a PUBLISH whose payload is over ``max_payload`` bytes is never held: its
  first :data:`OVERSIZED_EXCERPT` bytes go to ``on_oversized(topic, excerpt,
  mid, qos, retained, size)`` and the rest is skipped as it arrives;
* :meth:`FastPathClient.ack_many`: the PUBACKs of a batch as one buffer,
  which paho writes like any packet of its own (partial writes, TLS).

Both reach into paho's private members, all named in :data:`PAHO_INTERNALS`.
pyproject.toml pins the paho versions this was checked against, the client
refuses to start if one of them is missing, and tests/ingest/test_mqtt_fastpath.py
checks them too. The client is driven from a single thread with
``loop_read``/``loop_write``/``loop_misc``: not with ``loop_start()``, whose
thread would share the read buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTTErrorCode

#: Bytes asked of the socket per read: a few hundred small PUBLISHes (TLS hands over one 16 KiB record at most).
READ_SIZE = 1 << 16
#: What is kept of an oversized payload, for its dead letter.
OVERSIZED_EXCERPT = 1024

PUBLISH = 0x30  # MQTT fixed-header packet types (high nibble)
PUBACK = 0x40
_QOS_BITS = 0x06
_QOS_2 = 0x04
_RETAIN = 0x01

#: The private members of ``paho.mqtt.client.Client`` this module relies on, checked at construction.
PAHO_INTERNALS = (
    "_packet_read",  # overridden: paho calls it from loop_read()
    "_packet_handle",  # dispatches one packet held in _in_packet
    "_packet_queue",  # queues bytes for loop_write()
    "_sock_recv",  # recv that maps TLS want-read/want-write to BlockingIOError
    "_sock",
    "_protocol",
    "_in_packet",
    "_msgtime_mutex",
    "_last_bytes_received",  # read by the keep-alive check
)

OnPublish = Callable[[str, bytes, int, int, bool], None]
#: (topic, payload excerpt, mid, qos, retained, payload size in bytes)
OnOversized = Callable[[str, bytes, int, int, bool, int], None]


class PahoInternalsChanged(RuntimeError):
    """The installed paho lacks a private member the fast path relies on."""


def missing_paho_internals(client: mqtt.Client) -> list[str]:
    """The names of :data:`PAHO_INTERNALS` that ``client`` lacks (none for the pinned paho versions)."""
    return [name for name in PAHO_INTERNALS if not hasattr(client, name)]


class FastPathClient(mqtt.Client):
    """A paho client with bulk reads and batched PUBACKs; set ``on_publish_received`` to receive QoS 0/1 messages.

    It acknowledges no QoS 1 message by itself, whatever ``manual_ack`` says: the owner calls
    :meth:`ack_many` once the messages are safe (create it with ``manual_ack=True`` so paho agrees).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if missing := missing_paho_internals(self):
            raise PahoInternalsChanged(
                f"paho-mqtt {getattr(mqtt, '__version__', '?')} lacks {', '.join(missing)}: "
                "ingest.pahofast needs the paho versions pinned in pyproject.toml"
            )
        self.on_publish_received: OnPublish | None = None
        self.on_oversized: OnOversized | None = None
        self.max_payload: int | None = None  # bytes; larger payloads go to on_oversized, unread
        self._unread = bytearray()  # the start of a packet whose end has not arrived yet
        self._unread_from: object = None  # ... on this socket; a new connection starts afresh
        self._skipping: _Skipping | None = None  # an oversized PUBLISH whose rest is being read past

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK the QoS 1 messages ``mids``, all in one write (``ack()`` costs a packet and a send each)."""
        mids = list(mids)
        if not mids or self._sock is None:
            return  # as with ack(): after a reconnect the broker resends whatever was not acknowledged
        # A PUBACK is 0x40, remaining length 2, the 16-bit message id: one big-endian 32-bit word.
        acks = struct.pack(f"!{len(mids)}I", *[0x4002_0000 | mid for mid in mids])
        self._packet_queue(PUBACK, acks, 0, 0)

    # -- paho's read path, replaced ------------------------------------------------

    def _packet_read(self) -> MQTTErrorCode:
        if self._sock is not self._unread_from:
            self._unread, self._unread_from, self._skipping = bytearray(), self._sock, None
        try:
            chunk = self._sock_recv(READ_SIZE)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError:  # reset, timeout, TLS failure: paho closes the socket and reports the disconnect
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not chunk:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        if self._skipping is not None:
            chunk = self._skip(chunk)
            if not chunk:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        if not self._unread:  # the common case: whole packets, nothing left over from the last read
            rc, used = self._handle_packets(chunk)
            self._unread += memoryview(chunk)[used:]
            return rc
        # Appending and deleting from the front are cheap on a bytearray (no copy of the whole).
        self._unread += chunk
        rc, used = self._handle_packets(self._unread)
        del self._unread[:used]
        return rc

    def _skip(self, chunk: bytes) -> bytes:
        """Read past the oversized PUBLISH being skipped; hand it on once it ended. Returns what follows it."""
        skipping = self._skipping
        assert skipping is not None
        taken = min(len(chunk), skipping.left)
        if len(skipping.excerpt) < OVERSIZED_EXCERPT:
            skipping.excerpt += chunk[: min(taken, OVERSIZED_EXCERPT - len(skipping.excerpt))]
        skipping.left -= taken
        if not skipping.left:
            self._skipping = None
            self._hand_oversized(skipping)
        return chunk[taken:]

    def _hand_oversized(self, skipping: _Skipping) -> None:
        if self.on_oversized is not None:
            self.on_oversized(
                skipping.topic, bytes(skipping.excerpt), skipping.mid, skipping.qos, skipping.retained, skipping.size
            )

    def _handle_packets(self, data: bytes | bytearray) -> tuple[MQTTErrorCode, int]:
        """Handle every whole packet at the start of ``data``; the error if any, and the bytes used."""
        start, end = 0, len(data)
        while start < end:
            try:
                framed = _frame(data, start, end)
                if framed is None:
                    if self._start_skipping(data, start, end):
                        return MQTTErrorCode.MQTT_ERR_SUCCESS, end
                    break  # the rest of this packet is still on its way
                body, after = framed
                header = data[start]
                if header & 0xF0 == PUBLISH and header & _QOS_BITS != _QOS_2:
                    rc = self._deliver(header, data, body, after)
                else:
                    rc = self._paho_handle(header, data[body:after])
            except (mqtt.MalformedPacket, struct.error):
                return MQTTErrorCode.MQTT_ERR_PROTOCOL, start
            start = after
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc, start
        return MQTTErrorCode.MQTT_ERR_SUCCESS, start

    def _deliver(self, header: int, data: bytes | bytearray, body: int, end: int) -> MQTTErrorCode:
        """A QoS 0 or 1 PUBLISH: topic, [message id], [MQTT 5 properties, skipped], payload."""
        head = self._publish_head(header, data, body, end)
        if head is None:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        topic, mid, cursor = head
        qos, retained = (header & _QOS_BITS) >> 1, bool(header & _RETAIN)
        if self.max_payload is not None and end - cursor > self.max_payload:
            excerpt = bytes(data[cursor : min(end, cursor + OVERSIZED_EXCERPT)])
            self._hand_oversized(_Skipping(0, topic, mid, qos, retained, end - cursor, bytearray(excerpt)))
        elif self.on_publish_received is not None:
            self.on_publish_received(topic, bytes(memoryview(data)[cursor:end]), mid, qos, retained)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _publish_head(self, header: int, data: bytes | bytearray, body: int, end: int) -> tuple[str, int, int] | None:
        """A PUBLISH's topic, message id and where its payload starts; None if that is not all within ``end``."""
        if body + 2 > end:
            return None
        (topic_length,) = struct.unpack_from("!H", data, body)
        cursor = body + 2 + topic_length
        topic = bytes(data[body + 2 : cursor])
        mid = 0
        if header & _QOS_BITS:
            if cursor + 2 > end:
                return None
            (mid,) = struct.unpack_from("!H", data, cursor)
            cursor += 2
        if self._protocol == mqtt.MQTTv5:
            properties = _variable_int(data, cursor, end)
            if properties is None:
                return None
            cursor = properties[1] + properties[0]
        if cursor > end or (not topic and self._protocol != mqtt.MQTTv5):
            return None
        return topic.decode("utf-8", "replace"), mid, cursor

    def _start_skipping(self, data: bytes | bytearray, start: int, end: int) -> bool:
        """Whether the unfinished packet at ``start`` is a PUBLISH too large to hold: if so, skip its rest."""
        header = data[start]
        if self.max_payload is None or header & 0xF0 != PUBLISH or header & _QOS_BITS == _QOS_2:
            return False
        remaining = _variable_int(data, start + 1, end)
        if remaining is None or remaining[0] <= self.max_payload:
            return False
        length, body = remaining
        head = self._publish_head(header, data, body, end)
        if head is None:
            return False  # the topic is not all here yet
        topic, mid, cursor = head
        size = body + length - cursor
        if size <= self.max_payload:
            return False
        excerpt = bytearray(data[cursor : min(end, cursor + OVERSIZED_EXCERPT)])
        qos, retained = (header & _QOS_BITS) >> 1, bool(header & _RETAIN)
        self._skipping = _Skipping(body + length - end, topic, mid, qos, retained, size, excerpt)
        return True

    def _paho_handle(self, header: int, body: bytes | bytearray) -> MQTTErrorCode:
        """Any other packet: put it where paho's own reader would have, and let paho handle it."""
        self._in_packet = _in_packet(header, bytearray(body))
        try:
            return self._packet_handle()
        finally:
            self._in_packet = _in_packet(0, bytearray())


@dataclass(slots=True)
class _Skipping:
    """An oversized PUBLISH: what is known of it, and how many of its bytes are still to come."""

    left: int
    topic: str
    mid: int
    qos: int
    retained: bool
    size: int
    excerpt: bytearray


def _frame(data: bytes | bytearray, start: int, end: int) -> tuple[int, int] | None:
    """Where the body of the packet at ``start`` begins and where the packet ends; None if not all here.

    >>> _frame(b"\\x40\\x02\\x00\\x07", 0, 4), _frame(b"\\x40\\x02\\x00", 0, 3), _frame(b"\\x30\\x80", 0, 2)
    ((2, 4), None, None)
    """
    remaining = _variable_int(data, start + 1, end)
    if remaining is None:
        return None
    length, body = remaining
    return (body, body + length) if body + length <= end else None


def _variable_int(data: bytes | bytearray, cursor: int, end: int) -> tuple[int, int] | None:
    """MQTT's variable byte integer at ``cursor`` and where it ends; None if it runs past ``end``.

    >>> _variable_int(b"\\x00", 0, 1), _variable_int(b"\\xc1\\x02", 0, 2), _variable_int(b"\\xc1", 0, 1)
    ((0, 1), (321, 2), None)
    """
    value = 0
    for shift in (0, 7, 14, 21):
        if cursor >= end:
            return None
        byte = data[cursor]
        cursor += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, cursor
    raise mqtt.MalformedPacket("a variable byte integer longer than four bytes")


def encode_variable_int(n: int) -> bytes:
    """MQTT's variable byte integer for ``n`` (a remaining length, a properties length): the inverse of reading one.

    >>> encode_variable_int(2), encode_variable_int(321), _variable_int(encode_variable_int(321), 0, 2)
    (b'\\x02', b'\\xc1\\x02', (321, 2))
    """
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _in_packet(command: int, body: bytearray) -> Any:
    """paho's record of a packet being read (its ``_InPacket``), holding a whole packet."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": body,
        "to_process": 0,
        "pos": 0,
    }
