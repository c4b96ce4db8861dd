"""The MQTT client process against a real Mosquitto: what is acknowledged stays acknowledged, nothing else does.

Acknowledgements go out a batch at a time in one write (ingest.pahofast); if one of them
were wrong the broker would hand the message out again to the next session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.consumer import MqttConsumer
from ingest.mqttclient import BrokerConfig
from tapwatch.pipeline import RawMessage
from tests.conftest import Mosquitto, wait_until


def _publish(broker: Mosquitto, payloads: list[str]) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="receiver-pub")
    publisher.max_inflight_messages_set(1000)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    infos = [publisher.publish(f"tapwatch/meters/M{int(p) % 13}/readings", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    publisher.disconnect()
    publisher.loop_stop()


def _consumer(broker: Mosquitto, protocol: str, handle: Callable[[list[RawMessage]], object]) -> MqttConsumer:
    config = BrokerConfig(url=broker.url, client_id=f"receiver-{protocol}", protocol=protocol)
    consumer = MqttConsumer(config, handle, batch_max=300, batch_wait_s=0.02)
    consumer.start()
    assert wait_until(consumer.connected.is_set, 10)
    time.sleep(0.3)  # the subscription settles
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

    # The same session again: a message the broker still held unacknowledged would come first.
    again: list[str] = []
    second = _consumer(mosquitto, protocol, lambda batch: again.extend(m.payload.decode() for m in batch))
    try:
        _publish(mosquitto, ["-1"])
        assert wait_until(lambda: "-1" in again, 10)
        time.sleep(0.3)
    finally:
        second.stop()
    assert again == ["-1"]


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
