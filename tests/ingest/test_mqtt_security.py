"""MQTT with TLS (a self-signed CA) and username/password on a real Mosquitto; wrong credentials refused."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from store.schema import readings
from tests.conftest import MOSQUITTO, Mosquitto, wait_until
from tests.helpers import certificates, message, register

NOW = time.time() // 1800 * 1800


@pytest.fixture
def tls_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    if MOSQUITTO is None or shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs Debian's mosquitto (with mosquitto_passwd) and openssl")
    d = tmp_path / "tls"
    d.mkdir()
    certificates(d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "tapwatch", "s3cret-ingest"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(d / "passwd"), "WM1", "meter-pass"], check=True)
    (d / "passwd").chmod(0o644)
    broker = Mosquitto(
        d,
        extra_config=f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\npassword_file {d}/passwd\n",
    )
    broker.config.write_text(broker.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    broker.start()
    yield broker, d
    broker.stop()


def _service(tmp_path: Path, port: int, ca: Path, password: str):  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from tapwatch.service import Service

    return Service(
        get_settings(
            data_dir=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'tls.db'}",
            mqtt_url=f"mqtts://127.0.0.1:{port}",
            mqtt_ca_file=ca,
            mqtt_username="tapwatch",
            mqtt_password=password,
            mqtt_client_id=f"tls-{password}",
        )
    )


def test_readings_flow_over_tls_with_passwords(tmp_path, tls_broker) -> None:  # type: ignore[no-untyped-def]
    broker, d = tls_broker
    service = _service(tmp_path, broker.port, d / "ca.crt", "s3cret-ingest")
    register(service.engine, "E1", "WM1")
    service.start()
    try:
        assert wait_until(service.consumer.connected.is_set, 15), "tapwatch could not connect over TLS"
        meter = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="WM1")
        meter.username_pw_set("WM1", "meter-pass")
        meter.tls_set(ca_certs=str(d / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        meter.connect("127.0.0.1", broker.port)
        meter.loop_start()
        meter.publish(
            "tapwatch/meters/WM1/readings", message("WM1", [(NOW - 1800, 5.0), (NOW, 9.0)]), qos=1
        ).wait_for_publish(10)
        meter.loop_stop()
        meter.disconnect()

        def stored() -> int:
            with service.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(readings)).scalar_one())

        assert wait_until(lambda: stored() == 2, 15)
    finally:
        service.stop()


def test_wrong_password_is_refused_and_not_hammered(tmp_path, tls_broker, caplog) -> None:  # type: ignore[no-untyped-def]
    broker, d = tls_broker
    service = _service(tmp_path, broker.port, d / "ca.crt", "wrong")
    service.start()
    try:
        assert wait_until(lambda: "broker refused connection" in caplog.text, 15)
        time.sleep(3)
        assert caplog.text.count("broker refused connection") == 1  # gave up instead of retrying every second
        assert service.readiness()["ready"] is False
    finally:
        service.stop()
    assert "wrong" not in caplog.text  # the password never reaches the logs


def test_a_stream_over_tls_arrives_whole_and_every_message_is_acknowledged(tls_broker) -> None:  # type: ignore[no-untyped-def]
    """Many messages per TLS record and records cut mid-packet, read in bulk by ingest.pahofast; all acked."""
    from ingest.consumer import MqttConsumer
    from ingest.mqttclient import BrokerConfig

    broker, d = tls_broker
    config = BrokerConfig(
        url=f"mqtts://127.0.0.1:{broker.port}",
        client_id="tls-stream",
        username="tapwatch",
        password="s3cret-ingest",
        ca_file=str(d / "ca.crt"),
    )

    def session(payloads: list[str]) -> list[str]:
        got: list[str] = []
        consumer = MqttConsumer(config, lambda batch: got.extend(m.payload.decode() for m in batch), batch_max=250)
        consumer.start()
        try:
            assert wait_until(consumer.connected.is_set, 15)  # SUBACK
            meter = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="WM1")
            meter.username_pw_set("WM1", "meter-pass")
            meter.tls_set(ca_certs=str(d / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
            meter.max_inflight_messages_set(1000)
            meter.connect("127.0.0.1", broker.port)
            meter.loop_start()
            for info in [meter.publish("tapwatch/meters/WM1/readings", p, qos=1) for p in payloads]:
                info.wait_for_publish(30)
            assert wait_until(lambda: len(got) >= len(payloads), 30)
            # A marker after the stream, on the same topic: a repeat would arrive before it.
            meter.publish("tapwatch/meters/WM1/readings", "end", qos=1).wait_for_publish(10)
            assert wait_until(lambda: "end" in got, 10)
            meter.disconnect()
            meter.loop_stop()
        finally:
            consumer.stop()
        assert got[-1] == "end"
        return got[:-1]

    # Sizes from a few bytes to past a 16 KiB TLS record, so packets straddle records.
    sent = [f"{k}:" + "x" * (k * 37 % 20000) for k in range(1500)]
    assert session(sent) == sent
    assert session(["last"]) == ["last"]  # nothing left unacknowledged from the first session


@pytest.mark.parametrize(
    ("url_login", "password_setting"),
    [
        ("tapwatch:s3cret-ingest@", None),  # the URL's credentials alone
        ("tapwatch:stale-one@", "s3cret-ingest"),  # TAPWATCH_MQTT_PASSWORD wins over the URL's
    ],
)
def test_the_broker_urls_credentials_are_used_and_never_logged(  # type: ignore[no-untyped-def]
    tmp_path, tls_broker, caplog, url_login: str, password_setting: str | None
) -> None:
    """TAPWATCH_MQTT_URL=mqtts://tapwatch:PASSWORD@host was accepted, but its credentials were dropped: the monitor
    logged in anonymously, was refused, and took no reading at all; and it logged the URL whole, password included."""
    from core.settings import get_settings
    from tapwatch.service import Service

    caplog.set_level(logging.INFO)
    broker, d = tls_broker
    service = Service(
        get_settings(
            data_dir=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'url-login.db'}",
            mqtt_url=f"mqtts://{url_login}127.0.0.1:{broker.port}",
            mqtt_ca_file=d / "ca.crt",
            mqtt_password=password_setting,
            mqtt_client_id="url-login",
        )
    )
    service.start()
    try:
        assert wait_until(service.consumer.connected.is_set, 15), caplog.text
        assert wait_until(lambda: "tapwatch started" in caplog.text and "subscribed to" in caplog.text, 15)
    finally:
        service.stop()
    assert f"mqtts://tapwatch:***@127.0.0.1:{broker.port}" in caplog.text
    assert "s3cret-ingest" not in caplog.text and "stale-one" not in caplog.text
