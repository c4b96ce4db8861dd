"""A lean MQTT 3.1.1 QoS 1 publisher for the benchmarks: pre-encoded packets on a plain socket.

The benchmarks' publisher stands in for thousands of meters, which in the field
are separate devices: it must not take the CPU the monitor is being measured on.
paho spends 50-100 us of Python per QoS 1 publish; this client builds each
PUBLISH packet with a few byte operations, writes them in large chunks and
counts PUBACKs, keeping at most ``window`` messages unacknowledged.

    >>> encode_publish("t/1", b"x", 7)
    b'2\\x08\\x00\\x03t/1\\x00\\x07x'
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.pahofast import encode_variable_int

PUBACK_LEN = 4  # the broker sends us nothing but PUBACKs (no subscriptions, no keep-alive pings)


def encode_publish(topic: str, payload: bytes, mid: int) -> bytes:
    """A QoS 1 PUBLISH packet."""
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + struct.pack("!H", mid) + payload
    return b"\x32" + encode_variable_int(len(body)) + body


class LeanPublisher:
    """QoS 1 publishes over one connection; ``published`` counts those the broker acknowledged."""

    def __init__(self, url: str, client_id: str, window: int = 5000) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id.encode()
        # protocol "MQTT" level 4, clean session, keep-alive 0 (no pings to tell apart from PUBACKs)
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack("!H", len(cid)) + cid
        self.sock.sendall(b"\x10" + encode_variable_int(len(body)) + body)
        connack = self._recv_exactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: {connack!r}")
        self.window = window
        self.sent = 0
        self.published = 0
        self._pending = b""
        self._mid = 0

    def _recv_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self, block: bool) -> None:
        self.sock.setblocking(block)
        try:
            data = self._pending + self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        finally:
            self.sock.setblocking(True)
        if not data:
            raise ConnectionError("broker closed the connection")
        whole = len(data) // PUBACK_LEN * PUBACK_LEN
        self._pending = data[whole:]
        self.published += whole // PUBACK_LEN

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> float:
        """Send each (topic, payload); returns the time.time() when the last one was written."""
        chunk: list[bytes] = []
        for topic, payload in messages:
            self._mid = self._mid % 65535 + 1
            chunk.append(encode_publish(topic, payload, self._mid))
        while self.sent - self.published + len(chunk) > self.window and self.sent > self.published:
            self._read_acks(block=True)
        self.sock.sendall(b"".join(chunk))
        self.sent += len(chunk)
        self._read_acks(block=False)
        return time.time()

    def wait_all(self, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while self.published < self.sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.sent - self.published} messages not acknowledged")
            self._read_acks(block=True)

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()
