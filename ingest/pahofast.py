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
  payload, mid, qos)``; every other packet (CONNACK, SUBACK, PINGRESP, a QoS 2
  PUBLISH) to paho's own handler. A packet cut off at the end of a read waits
  for the rest;
* :meth:`FastPathClient.ack_many`: the PUBACKs of a batch as one buffer,
  which paho writes like any packet of its own (partial writes, TLS).

Both reach into paho's private members, all named in :data:`PAHO_INTERNALS`.
pyproject.toml pins the paho versions this was checked against, the client
refuses to start if one of them is missing, and tests/test_mqtt_fastpath.py
checks them too. The client is driven from a single thread with
``loop_read``/``loop_write``/``loop_misc``: not with ``loop_start()``, whose
thread would share the read buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTTErrorCode

#: Bytes asked of the socket per read: a few hundred small PUBLISHes (TLS hands over one 16 KiB record at most).
READ_SIZE = 1 << 16

PUBLISH = 0x30  # MQTT fixed-header packet types (high nibble)
PUBACK = 0x40
_QOS_BITS = 0x06
_QOS_2 = 0x04

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

OnPublish = Callable[[str, bytes, int, int], None]


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
        self._unread = b""  # the start of a packet whose end has not arrived yet
        self._unread_from: object = None  # ... on this socket; a new connection starts afresh

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
            self._unread, self._unread_from = b"", self._sock
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
        data = self._unread + chunk if self._unread else chunk
        rc, used = self._handle_packets(data)
        self._unread = data[used:]
        return rc

    def _handle_packets(self, data: bytes) -> tuple[MQTTErrorCode, int]:
        """Handle every whole packet at the start of ``data``; the error if any, and the bytes used."""
        start, end = 0, len(data)
        while start < end:
            try:
                framed = _frame(data, start, end)
                if framed is None:
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

    def _deliver(self, header: int, data: bytes, body: int, end: int) -> MQTTErrorCode:
        """A QoS 0 or 1 PUBLISH: topic, [message id], [MQTT 5 properties, skipped], payload."""
        (topic_length,) = struct.unpack_from("!H", data, body)
        cursor = body + 2 + topic_length
        topic = data[body + 2 : cursor]
        qos = (header & _QOS_BITS) >> 1
        mid = 0
        if qos:
            (mid,) = struct.unpack_from("!H", data, cursor)
            cursor += 2
        if self._protocol == mqtt.MQTTv5:
            properties = _variable_int(data, cursor, end)
            if properties is None:
                return MQTTErrorCode.MQTT_ERR_PROTOCOL
            cursor = properties[1] + properties[0]
        if cursor > end or (not topic and self._protocol != mqtt.MQTTv5):
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        if self.on_publish_received is not None:
            self.on_publish_received(topic.decode("utf-8", "replace"), data[cursor:end], mid, qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _paho_handle(self, header: int, body: bytes) -> MQTTErrorCode:
        """Any other packet: put it where paho's own reader would have, and let paho handle it."""
        self._in_packet = _in_packet(header, bytearray(body))
        try:
            return self._packet_handle()
        finally:
            self._in_packet = _in_packet(0, bytearray())


def _frame(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """Where the body of the packet at ``start`` begins and where the packet ends; None if not all here.

    >>> _frame(b"\\x40\\x02\\x00\\x07", 0, 4), _frame(b"\\x40\\x02\\x00", 0, 3), _frame(b"\\x30\\x80", 0, 2)
    ((2, 4), None, None)
    """
    remaining = _variable_int(data, start + 1, end)
    if remaining is None:
        return None
    length, body = remaining
    return (body, body + length) if body + length <= end else None


def _variable_int(data: bytes, cursor: int, end: int) -> tuple[int, int] | None:
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
