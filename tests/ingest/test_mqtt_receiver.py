"""The MQTT client process against a real Mosquitto: what is acknowledged stays acknowledged, nothing else does.

Acknowledgements go out a batch at a time in one write (ingest.pahofast); if one of them
were wrong the broker would hand the message out again to the next session.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes

from ingest.consumer import MqttConsumer
from ingest.mqttclient import POLL_S, BrokerConfig, ReceiverOptions, _Receiver
from ingest.payload import RawMessage
from tapwatch.broker import EmbeddedBroker
from tests.conftest import Mosquitto, wait_until
from tests.processes import free_port


def _publish(broker: Mosquitto | EmbeddedBroker, payloads: list[str]) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="receiver-pub")
    publisher.max_inflight_messages_set(1000)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    infos = [publisher.publish(f"tapwatch/meters/M{int(p) % 13}/readings", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    publisher.disconnect()
    publisher.loop_stop()


def _consumer(
    broker: Mosquitto | EmbeddedBroker, protocol: str, handle: Callable[[list[RawMessage]], object]
) -> MqttConsumer:
    config = BrokerConfig(url=broker.url, client_id=f"receiver-{protocol}", protocol=protocol)
    consumer = MqttConsumer(config, handle, batch_max=300, batch_wait_s=0.02)
    consumer.start()
    assert wait_until(consumer.connected.is_set, 10)  # SUBACK: the broker routes readings to it from here
    return consumer


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_committed_batches_are_acknowledged_and_never_come_back(mosquitto: Mosquitto, protocol: str) -> None:
    got: list[str] = []
    first = _consumer(mosquitto, protocol, lambda batch: got.extend(m.payload.decode() for m in batch))
    sent = [str(k) for k in range(3000)]
    try:
        _publish(mosquitto, sent)
        assert wait_until(lambda: len(got) >= len(sent), 30)
    finally:
        first.stop()
    assert sorted(got, key=int) == sent
    assert first.batches > 1  # several batches, so several coalesced acknowledgements

    # The same session again: a message the broker still held unacknowledged would come first,
    # and a repeat of "-1" before the marker "-2" that follows it.
    again: list[str] = []
    second = _consumer(mosquitto, protocol, lambda batch: again.extend(m.payload.decode() for m in batch))
    try:
        _publish(mosquitto, ["-1"])
        assert wait_until(lambda: "-1" in again, 10)
        _publish(mosquitto, ["-2"])
        assert wait_until(lambda: "-2" in again, 10)
    finally:
        second.stop()
    assert again == ["-1", "-2"]


def test_the_demo_brokers_stream_arrives_whole() -> None:
    """``make demo``'s in-process broker (amqtt) frames its packets its own way; the bulk reader takes them all."""
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    got: list[str] = []
    try:
        consumer = _consumer(broker, "3.1.1", lambda batch: got.extend(m.payload.decode() for m in batch))
        sent = [str(k) for k in range(1000)]
        try:
            _publish(broker, sent)
            assert wait_until(lambda: len(got) >= len(sent), 30)
            _publish(broker, ["1000"])  # a marker after the stream: a repeat would arrive before it
            assert wait_until(lambda: "1000" in got, 10)
        finally:
            consumer.stop()
    finally:
        broker.stop()
    assert sorted(got, key=int) == [*sent, "1000"] and consumer.batches > 1


@pytest.mark.allow_log_exceptions
def test_a_batch_not_committed_comes_back_and_then_everything_is_there_once(mosquitto: Mosquitto) -> None:
    stored: list[str] = []
    failed = threading.Event()

    def handle(batch: list[RawMessage]) -> Any:
        if not failed.is_set():
            failed.set()
            raise OSError("store down")  # the child drops its connection; the broker keeps the messages
        stored.extend(m.payload.decode() for m in batch)

    consumer = _consumer(mosquitto, "3.1.1", handle)
    sent = [str(k) for k in range(1000)]
    try:
        _publish(mosquitto, sent)
        assert wait_until(lambda: len(set(stored)) >= len(sent), 30)
    finally:
        consumer.stop()
    assert failed.is_set()
    assert set(stored) == set(sent)


class _DecryptedAhead:
    """A TLS socket as select sees it: nothing on the wire, yet ``pending`` decrypted bytes to read."""

    def __init__(self, sock: socket.socket, pending: int) -> None:
        self.sock = sock
        self._pending = pending

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> int:
        return self._pending


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    ours, _theirs = multiprocessing.Pipe()
    yield _Receiver(BrokerConfig(), ReceiverOptions(batch_max=10), ours)
    ours.close()


def test_bytes_tls_has_decrypted_already_are_read_without_waiting(receiver: _Receiver) -> None:
    quiet, _peer = socket.socketpair()  # nothing arrives: select alone would sleep POLL_S
    tls = _DecryptedAhead(quiet, pending=100)
    receiver.client.socket = lambda: tls  # type: ignore[method-assign,assignment,return-value]
    began = time.monotonic()
    assert tls in receiver._wait()
    assert time.monotonic() - began < POLL_S / 2


def test_a_full_inbox_leaves_the_rest_with_the_broker(receiver: _Receiver) -> None:
    busy, peer = socket.socketpair()
    peer.sendall(b"\x30")  # something to read
    receiver.client.socket = lambda: busy  # type: ignore[method-assign]
    assert busy in receiver._wait()
    receiver.inbox = [("t", b"")] * receiver.inbox_limit
    receiver.sent = {0: [], 1: []}  # the parent has its hands full
    assert receiver._wait() == []  # not read until a batch is through: the TCP window holds the rest


def test_a_broker_that_takes_the_connection_and_drops_it_is_retried_less_and_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker at its connection limit, or busy, accepts the TCP connection and closes it. Such a connection
    did not fail to open, so the pause never doubled: every worker of a city came back every second, in step."""
    import ingest.mqttclient as mqttclient

    monkeypatch.setattr(mqttclient, "RECONNECT_MIN_S", 0.4)
    server = socket.create_server(("127.0.0.1", 0))
    attempts: list[float] = []

    def take_and_drop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            attempts.append(time.monotonic())
            conn.close()

    threading.Thread(target=take_and_drop, daemon=True).start()
    ours, theirs = multiprocessing.Pipe()
    config = BrokerConfig(url=f"mqtt://127.0.0.1:{server.getsockname()[1]}", client_id="dropped")
    receiver = _Receiver(config, ReceiverOptions(), theirs)
    runner = threading.Thread(target=receiver.run, daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: len(attempts) >= 5, 30), attempts
    finally:
        receiver.stop()
        server.close()
        runner.join(10)
        ours.close()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # 0.4, 0.8, 1.6, 3.2 s, each within a quarter either way (and the loop's POLL_S): not 0.4 s each time.
    assert gaps[3] > 2.5 * gaps[0], gaps


def test_what_came_on_a_lost_connection_is_never_acknowledged_on_the_next(receiver: _Receiver) -> None:
    """The broker sends unacknowledged messages again under their old packet ids, then may reuse those ids: an
    acknowledgement of the old connection's batch, sent on the new one, could confirm a message not yet stored."""
    receiver.sent = {0: [(1, 1), (2, 1)]}
    receiver.inbox, receiver.inbox_acks = [("t", b"x", 1, False, 1)], [(3, 1)]
    receiver._on_disconnect(
        receiver.client, None, None, mqtt.ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"), None
    )
    assert receiver.sent == {0: []}  # the batch is still answered (flow control), with nothing to acknowledge
    assert receiver.inbox == [("t", b"x", 1, False, 1)]  # still passed on: the session may not have survived
    assert all(qos == 0 for _mid, qos in receiver.inbox_acks)
    receiver._send_batch()
    assert [qos for acks in receiver.sent.values() for _mid, qos in acks] == [0]  # passed on, not to acknowledge


def test_a_broker_that_cannot_be_reached_is_named_in_the_log_at_each_attempt() -> None:
    """A broker nobody listens for (a mistyped TAPWATCH_MQTT_URL, a firewall, a TLS handshake the CA file fails)
    was tried again and again without a word: `tapwatch run` said it had started and where the API was, and
    nothing more, while /readyz said `"broker": false`. Each failed attempt is a WARNING naming the broker (its
    password masked), the reason and when it tries again."""
    ours, theirs = multiprocessing.Pipe()
    port = free_port()  # nothing listens there
    config = BrokerConfig(url=f"mqtt://meter-admin:s3cret@127.0.0.1:{port}", client_id="unreachable")
    receiver = _Receiver(config, ReceiverOptions(), theirs)
    runner = threading.Thread(target=receiver.run, daemon=True)
    runner.start()
    said: list[tuple[Any, ...]] = []

    def warned() -> bool:
        while ours.poll():
            said.append(ours.recv())
        return any(m[0] == "log" and m[1] == logging.WARNING for m in said)

    try:
        assert wait_until(warned, 10), said
    finally:
        receiver.stop()
        runner.join(10)
        ours.close()
    (warning, *_) = [m[2] for m in said if m[0] == "log" and m[1] == logging.WARNING]
    assert f"cannot reach the broker at mqtt://meter-admin:***@127.0.0.1:{port}" in warning, warning
    assert "refused" in warning and "trying again in" in warning, warning
    assert "s3cret" not in warning
