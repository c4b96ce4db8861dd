"""The consumer is ready (``connected``) only once the broker acknowledged its subscription (SUBACK).

A broker drops what is published before a subscription stands. The demo (and anyone else) starts
publishing when ``connected`` is set; set at CONNACK it let the demo's history burst go out to no
subscriber, and about half of the demo's readings were lost (issue 19).
"""

from __future__ import annotations

import logging

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from engine.pipeline import RawMessage
from ingest.consumer import MqttConsumer
from ingest.mqttclient import BrokerConfig
from tapwatch.broker import EmbeddedBroker
from tests.conftest import wait_until
from tests.processes import free_port


def test_a_refused_subscription_is_not_ready_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    # Anonymous clients may subscribe elsewhere only: the broker answers our SUBSCRIBE with 0x80.
    acl = {"topic-check": {"enabled": True, "plugins": ["topic_acl"], "subscribe-acl": {"anonymous": ["elsewhere/#"]}}}
    broker = EmbeddedBroker("127.0.0.1", free_port(), overrides=acl)
    broker.start()
    consumer = MqttConsumer(BrokerConfig(url=broker.url, client_id="ready-refused"), lambda batch: None)
    caplog.set_level(logging.INFO, logger="ingest.consumer")
    consumer.start()
    try:
        assert wait_until(lambda: "refused the subscription" in caplog.text, 30), caplog.text
        assert not consumer.connected.is_set()
    finally:
        consumer.stop()
        broker.stop()


def test_everything_published_once_ready_arrives_on_the_embedded_broker() -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    got: list[bytes] = []
    consumer = MqttConsumer(
        BrokerConfig(url=broker.url, client_id="ready-embedded"), lambda batch: got.extend(_payloads(batch))
    )
    consumer.start()
    try:
        assert wait_until(consumer.connected.is_set, 30)
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ready-publisher")
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        infos = [publisher.publish(f"tapwatch/meters/M{k % 7}/readings", str(k), qos=1) for k in range(2000)]
        for info in infos:
            info.wait_for_publish(30)
        publisher.disconnect()
        publisher.loop_stop()
        assert wait_until(lambda: len(got) >= 2000, 30), f"{len(got)} of 2000 arrived"
        assert sorted(int(p) for p in got) == list(range(2000))
    finally:
        consumer.stop()
        broker.stop()


def _payloads(batch: list[RawMessage]) -> list[bytes]:
    return [m.payload for m in batch]
