"""Large messages from one meter vs another meter's reading: how long does the good reading wait? (issue 20 item 2)

A real Mosquitto (no size limit of its own unless ``--broker-limits``) and a
running monitor (``tapwatch.service.Service`` over SQLite in a temporary
directory). One meter publishes ``--count`` messages of ``--mb`` MB each at
QoS 1; right after, another meter publishes one good reading. Printed: how
long the good reading took from its publish to the store, and the monitor's
peak memory. docs/reliability.md quotes the figures, before and after the fix.

Run: ``.venv/bin/python bench/bench_large_messages.py`` (``--count 3 --mb 100``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import get_settings
from store.schema import readings
from tapwatch.service import Service
from tests.helpers import message, register
from tests.processes import Mosquitto, wait_until

HOSTILE, GOOD = "M1", "M2"


def _stored(service: Service, ts: float) -> bool:
    with service.engine.connect() as conn:
        return (
            conn.execute(select(readings.c.ts).where(readings.c.meter_id == GOOD, readings.c.ts == ts)).first()
            is not None
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--broker-limits", action="store_true", help="the shipped deploy/mosquitto limits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extra = "message_size_limit 1048576\nmax_packet_size 1049600\n" if args.broker_limits else ""
        broker = Mosquitto(Path(tmp), extra)
        broker.start()
        service = Service(
            get_settings(
                data_dir=tmp, database_url=f"sqlite:///{tmp}/bench.db", mqtt_url=broker.url, mqtt_client_id="b"
            )
        )
        register(service.engine, "E1", HOSTILE)
        register(service.engine, "E2", GOOD, name="张伟")
        service.start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-large")
        try:
            assert wait_until(service.consumer.connected.is_set, 15)
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            assert wait_until(pub.is_connected, 15)
            now = time.time() // 60 * 60
            pub.publish(f"tapwatch/meters/{GOOD}/readings", message(GOOD, [(now - 600, 1.0)]), qos=1).wait_for_publish()
            assert wait_until(lambda: _stored(service, now - 600), 15), "warm-up reading not stored"
            big = b'{"meter_id": "M1", "pad": "' + b"x" * int(args.mb * 1e6) + b'"}'
            started = time.monotonic()
            for _ in range(args.count):
                pub.publish(f"tapwatch/meters/{HOSTILE}/readings", big, qos=1)
            info = pub.publish(f"tapwatch/meters/{GOOD}/readings", message(GOOD, [(now - 300, 2.0)]), qos=1)
            info.wait_for_publish(600)
            published = time.monotonic()
            assert wait_until(lambda: _stored(service, now - 300), 1200, interval=0.1), "good reading never stored"
            stored = time.monotonic()
        finally:
            pub.loop_stop()
            pub.disconnect()
            service.stop()
            broker.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{args.count} x {args.mb:g} MB on {HOSTILE}'s topic, broker limits {'on' if args.broker_limits else 'off'}")
    print(f"good reading of {GOOD}: {stored - published:.2f} s from its PUBACK to the store")
    print(f"  ({stored - started:.2f} s from the first large publish; publishing took {published - started:.2f} s)")
    print(f"peak RSS: publisher + monitor {peak_mb:.0f} MB; largest child (MQTT reader or broker) {children_mb:.0f} MB")


if __name__ == "__main__":
    main()
