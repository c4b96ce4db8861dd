"""A rolling upgrade: a worker of the older release still runs while a newer release migrates the store.

docs/deploy.md, Upgrade, migrates the schema while the old container still runs, and a district with several
workers replaces them one by one. A real `tapwatch run` on PostgreSQL and Mosquitto takes readings; the store is
then migrated as a newer release would (a column this release writes renamed, the revision moved on). Before the
fix the worker dead-lettered every reading the broker handed it ("the store refused this message
(ProgrammingError)"), acknowledged them, and they never reached detection. Now it keeps them with the broker, its
log names the schema's revision and the way out, and once the store is back at its revision (the backup restored)
it stores every one of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine, func, select

from store import open_store
from store.schema import dead_letters, readings
from tests.conftest import Mosquitto, wait_until
from tests.helpers import (
    NEWER_REVISION,
    Worker,
    message,
    migrate_as_a_newer_release,
    monitor_env,
    mqtt_publisher,
    register,
)

METER = "WM-UPGRADE"
TOPIC = f"tapwatch/meters/{METER}/readings"


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[mqtt.Client]:
    with mqtt_publisher(mosquitto, "pub-upgrade") as client:
        yield client


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_worker_of_the_older_release_keeps_readings_with_the_broker_once_a_newer_one_migrated(
    tmp_path: Path, mosquitto: Mosquitto, postgres_server, receiver, publisher
) -> None:
    db_url = postgres_server.new_database()
    engine = open_store(db_url)
    register(engine, "E-UPGRADE", METER)
    env = monitor_env(tmp_path, mosquitto, f"old-{tmp_path.name}", receiver.url) | {"TAPWATCH_DATABASE_URL": db_url}
    worker = Worker(env, tmp_path / "old.log")
    now = time.time()

    def publish(k: int) -> None:
        payload = message(METER, [(now - 3600 + k * 300, 10.0 * k)], rssi=-90)
        publisher.publish(TOPIC, payload, qos=1).wait_for_publish(10)

    try:
        assert wait_until(worker.subscribed, 60), "the worker did not subscribe"
        publish(0)
        assert wait_until(lambda: _count(engine, readings) == 1, 60), "the worker stored nothing before the upgrade"
        migrate_as_a_newer_release(engine, migrated=True)
        for k in range(1, 4):
            publish(k)
        said = lambda: worker.log.read_text(errors="replace")  # noqa: E731
        assert wait_until(lambda: _count(engine, dead_letters) > 0 or f"revision {NEWER_REVISION}" in said(), 60), (
            said()[-3000:]
        )
        assert _count(engine, dead_letters) == 0, "good readings were dead-lettered after the newer migration"
        assert "newer than this tapwatch knows" in said()
        migrate_as_a_newer_release(engine, migrated=False)
        assert wait_until(lambda: _count(engine, readings) == 4, 90), "the readings held back were not stored"
        assert _count(engine, dead_letters) == 0
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        engine.dispose()
