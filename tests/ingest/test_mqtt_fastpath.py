"""ingest.pahofast: many packets per read, packets cut across reads, batched PUBACKs, paho's internals present.

The client's socket is one end of a real socketpair; the test plays the broker on the
other end, so every byte goes through paho's own ``loop_read``/``loop_write``.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.pahofast import (
    OVERSIZED_EXCERPT,
    READ_SIZE,
    FastPathClient,
    PahoInternalsChanged,
    encode_variable_int,
    missing_paho_internals,
)


def publish(topic: str, payload: bytes, mid: int, properties: bytes | None = None, qos: int = 1) -> bytes:
    """A PUBLISH packet as a broker sends it; ``properties`` (MQTT 5) without their length prefix."""
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + (struct.pack("!H", mid) if qos else b"")
    if properties is not None:
        body += encode_variable_int(len(properties)) + properties
    body += payload
    return bytes([0x30 | qos << 1]) + encode_variable_int(len(body)) + body


class CountingSocket:
    """A socket that counts recv and send calls; ``send_at_most`` makes writes partial, every other one refused."""

    def __init__(self, sock: socket.socket, send_at_most: int | None = None) -> None:
        self.sock = sock
        self.recvs = 0
        self.sends = 0
        self.send_at_most = send_at_most

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)

    def send(self, data: bytes) -> int:
        self.sends += 1
        if self.send_at_most is None:
            return self.sock.send(data)
        if self.sends % 2 == 0:
            raise BlockingIOError
        return self.sock.send(bytes(data[: self.send_at_most]))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Wired:
    """A FastPathClient wired to a socketpair: ``broker`` is the far end; ``received`` what the client delivered."""

    def __init__(self, protocol: int = mqtt.MQTTv311, send_at_most: int | None = None) -> None:
        self.client = FastPathClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol, manual_ack=True)
        self.received: list[tuple[str, bytes, int, int]] = []
        self.retained: list[bool] = []
        self.oversized: list[tuple[str, bytes, int, int, bool, int]] = []
        self.client.on_publish_received = self._received
        self.client.on_oversized = lambda *message: self.oversized.append(message)
        self.broker = self.plug(send_at_most)

    def _received(self, topic: str, payload: bytes, mid: int, qos: int, retained: bool) -> None:
        self.received.append((topic, payload, mid, qos))
        self.retained.append(retained)

    def plug(self, send_at_most: int | None = None) -> socket.socket:
        """A fresh connection, as after a reconnect."""
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.sock = CountingSocket(ours, send_at_most)
        self.client._sock = self.sock  # type: ignore[assignment]
        return theirs

    def feed(self, data: bytes) -> None:
        self.broker.sendall(data)
        assert self.client.loop_read() == mqtt.MQTT_ERR_SUCCESS


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = Wired()
    yield w
    w.broker.close()


def test_the_installed_paho_has_every_internal_the_fast_path_relies_on() -> None:
    assert missing_paho_internals(mqtt.Client(CallbackAPIVersion.VERSION2)) == []


def test_a_paho_without_one_of_them_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(mqtt.Client, "_packet_handle")
    with pytest.raises(PahoInternalsChanged, match="_packet_handle"):
        FastPathClient(CallbackAPIVersion.VERSION2)


def test_one_read_delivers_every_whole_packet_in_it(wired: Wired) -> None:
    packets = [publish(f"tapwatch/meters/M{k}/readings", b"x" * (k % 200), k + 1) for k in range(300)]
    assert sum(map(len, packets)) < READ_SIZE
    wired.feed(b"".join(packets))
    assert wired.sock.recvs == 1
    assert wired.received == [(f"tapwatch/meters/M{k}/readings", b"x" * (k % 200), k + 1, 1) for k in range(300)]


def test_a_packet_cut_anywhere_is_completed_by_the_next_read(wired: Wired) -> None:
    # The middle one has a two-byte remaining length, so the cut also falls inside a length.
    stream = publish("a/1", b"one", 1) + publish("a/2", b"y" * 300, 2) + publish("a/3", b"", 3, qos=0)
    expected = [("a/1", b"one", 1, 1), ("a/2", b"y" * 300, 2, 1), ("a/3", b"", 0, 0)]
    for cut in range(1, len(stream)):
        wired.received.clear()
        wired.feed(stream[:cut])
        wired.feed(stream[cut:])
        assert wired.received == expected, f"cut at byte {cut}"


def test_a_new_connection_forgets_the_half_packet_of_the_old_one(wired: Wired) -> None:
    wired.feed(publish("a/1", b"lost", 1)[:6])
    wired.broker.close()
    wired.broker = wired.plug()
    wired.feed(publish("a/2", b"kept", 2))
    assert wired.received == [("a/2", b"kept", 2, 1)]


def test_mqtt5_properties_are_skipped_and_the_payload_kept() -> None:
    w = Wired(protocol=mqtt.MQTTv5)
    user_property = b"\x26" + struct.pack("!H", 1) + b"k" + struct.pack("!H", 1) + b"v"
    payload_format = b"\x01\x01"
    w.feed(publish("a/1", b"body", 9, properties=payload_format + user_property) + publish("a/2", b"z", 10, b""))
    assert w.received == [("a/1", b"body", 9, 1), ("a/2", b"z", 10, 1)]


def test_other_packets_go_to_paho_in_order(wired: Wired) -> None:
    subscribed: list[int] = []
    wired.client.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.append(mid)
    suback = b"\x90\x03\x00\x05\x01"
    wired.feed(publish("a/1", b"before", 1) + suback + publish("a/2", b"after", 2))
    assert subscribed == [5]
    assert [m[1] for m in wired.received] == [b"before", b"after"]


def test_a_remaining_length_over_four_bytes_drops_the_connection(wired: Wired) -> None:
    wired.broker.sendall(b"\x30\xff\xff\xff\xff\x01")
    assert wired.client.loop_read() == mqtt.MQTT_ERR_PROTOCOL
    assert wired.client.socket() is None


def test_ack_many_writes_every_puback_at_once(wired: Wired) -> None:
    wired.client.ack_many([1, 2, 258, 65535])
    assert wired.sock.sends == 1
    pubacks = b"\x40\x02\x00\x01" + b"\x40\x02\x00\x02" + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff"
    assert wired.broker.recv(100) == pubacks


def test_ack_many_survives_partial_and_refused_writes() -> None:
    w = Wired(send_at_most=3)
    mids = list(range(1, 101))
    w.client.ack_many(mids)
    while w.client.want_write():
        w.client.loop_write()
    assert w.broker.recv(1000) == b"".join(struct.pack("!BBH", 0x40, 2, mid) for mid in mids)


def test_the_retain_flag_is_passed_on(wired: Wired) -> None:
    retained = bytearray(publish("a/1", b"old", 1))
    retained[0] |= 0x01  # the broker replays it from its retained store
    wired.feed(bytes(retained) + publish("a/2", b"live", 2))
    assert wired.received == [("a/1", b"old", 1, 1), ("a/2", b"live", 2, 1)]
    assert wired.retained == [True, False]


def test_a_whole_message_over_the_limit_goes_on_as_an_excerpt(wired: Wired) -> None:
    wired.client.max_payload = 2000
    wired.feed(publish("a/1", b"y" * 2001, 1) + publish("a/2", b"x" * 2000, 2))
    assert wired.oversized == [("a/1", b"y" * OVERSIZED_EXCERPT, 1, 1, False, 2001)]
    assert wired.received == [("a/2", b"x" * 2000, 2, 1)]


def test_a_huge_message_is_read_past_as_it_arrives_never_held(wired: Wired) -> None:
    """Issue 20 item 2: 100 MB messages once cost a copy of the whole unread buffer per 64 KiB read."""
    wired.client.max_payload = 256 * 1024
    huge = b"{" + bytes(range(256)) * (20 * 4096)  # 20 MiB
    stream = publish("tapwatch/meters/M1/readings", huge, 7) + publish("tapwatch/meters/M2/readings", b"next", 8)
    sender = threading.Thread(target=wired.broker.sendall, args=(stream,))
    sender.start()
    held = 0
    while not wired.received:
        select.select([wired.sock.sock], [], [], 5.0)
        assert wired.client.loop_read() == mqtt.MQTT_ERR_SUCCESS
        held = max(held, len(wired.client._unread))
    sender.join()
    assert wired.oversized == [("tapwatch/meters/M1/readings", huge[:OVERSIZED_EXCERPT], 7, 1, False, len(huge))]
    assert wired.received == [("tapwatch/meters/M2/readings", b"next", 8, 1)]
    assert held <= READ_SIZE  # at most one read's worth: the rest was skipped, not buffered
