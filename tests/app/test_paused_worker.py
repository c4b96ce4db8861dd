"""A worker paused in the middle of a batch (SIGSTOP, a VM frozen, a host cut off) must not stall the others.

Two `tapwatch run` workers share one Mosquitto subscription and one PostgreSQL. One of them is stopped with
SIGSTOP while its batch's transaction holds a meter's row (the test holds the row first, so the worker is
caught waiting for it, then lets it go: the worker's update is done and its transaction stays open, idle).
The other worker's next batch with that meter waits for the row; before the fix it waited for as long as the
paused worker stayed paused (PostgreSQL keeps an idle transaction's locks for good), and with it every other
meter of its batches: the whole city's intake stopped. Now a transaction idle that long is ended by
PostgreSQL (``TAPWATCH_DATABASE_IDLE_IN_TRANSACTION_S``), the healthy worker goes on, and the paused one, once
resumed, has its batch fail and redelivered by the broker: every reading stored once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from store import open_store
from store.schema import dead_letters, readings
from tests.conftest import Mosquitto, wait_until
from tests.helpers import Worker, message, monitor_env, mqtt_publisher, register

HELD, OTHER = "WM-HELD", "WM-OTHER"
BASE = time.time() - 5 * 86400


def _url(db_url: str, name: str) -> str:
    """The store's URL naming the worker's connections (``pg_stat_activity.application_name``)."""
    return f"{db_url}?application_name={name}"


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[mqtt.Client]:
    with mqtt_publisher(mosquitto, "pub-paused") as client:
        yield client


class Stream:
    """Readings of the test's meters, half an hour apart each, published one message each at QoS 1."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.sent: dict[str, int] = {HELD: 0, OTHER: 0}

    def send(self, meter_id: str) -> None:
        k = self.sent[meter_id]
        payload = message(meter_id, [(BASE + k * 1800, 100.0 + k)])
        self.client.publish(f"tapwatch/meters/{meter_id}/readings", payload, qos=1).wait_for_publish(10)
        self.sent[meter_id] = k + 1


def _stored(url: str, meter_id: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(readings.c.meter_id == meter_id)).scalar_one())
    finally:
        engine.dispose()


def _waiting_for_a_lock(engine: Engine, name: str) -> bool:
    """A connection of worker ``name`` waits for a lock another transaction holds."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND wait_event_type = 'Lock'")
    with engine.connect() as conn:
        return bool(conn.execute(query, {"name": name}).scalar())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_worker_paused_inside_its_transaction_does_not_stall_the_other_workers(
    tmp_path: Path, mosquitto: Mosquitto, postgres_server, receiver, publisher
) -> None:
    db_url = postgres_server.new_database()
    engine = open_store(db_url)
    register(engine, "E-HELD", HELD)
    register(engine, "E-OTHER", OTHER)
    workers = {}
    for name in ("wa", "wb"):
        env = monitor_env(tmp_path, mosquitto, f"{name}-{tmp_path.name}", receiver.url) | {
            "TAPWATCH_DATABASE_URL": _url(db_url, name),
            "TAPWATCH_MQTT_PROTOCOL": "5",
            "TAPWATCH_MQTT_SHARED_GROUP": "paused",
            "TAPWATCH_DATABASE_IDLE_IN_TRANSACTION_S": "5",
        }
        workers[name] = Worker(env, tmp_path / f"{name}.log")
    stream = Stream(publisher)
    paused: Worker | None = None
    try:
        assert wait_until(lambda: all(w.subscribed() for w in workers.values()), 60), "workers did not subscribe"
        for _ in range(2):  # both meters known and stored, whichever worker got them
            stream.send(HELD)
            stream.send(OTHER)
        assert wait_until(lambda: _stored(db_url, HELD) == 2 and _stored(db_url, OTHER) == 2, 30)

        # The test holds the meter's row: the worker handed the next reading of it waits there, inside its batch.
        with engine.connect() as holder:
            holder.execute(text("SELECT 1 FROM meters WHERE meter_id = :m FOR UPDATE"), {"m": HELD})
            stream.send(HELD)
            assert wait_until(lambda: any(_waiting_for_a_lock(engine, n) for n in workers), 30)
            name = next(n for n in workers if _waiting_for_a_lock(engine, n))
            paused = workers[name]
            paused.proc.send_signal(signal.SIGSTOP)
            holder.rollback()  # its update goes through, and its transaction stays open while it is stopped
        healthy = next(n for n in workers if n != name)

        # The healthy worker is handed a reading of that meter too (the broker shares messages out in turn) ...
        def healthy_reached_the_meter() -> bool:
            stream.send(HELD)
            return wait_until(lambda: _waiting_for_a_lock(engine, healthy), 2) or _stored(db_url, HELD) > 2

        assert wait_until(healthy_reached_the_meter, 60)
        # ... and goes on: its later batches, another meter's readings included, are stored.
        before = _stored(db_url, OTHER)
        for _ in range(6):
            stream.send(OTHER)
        assert wait_until(lambda: _stored(db_url, OTHER) > before, 60), (
            f"the healthy worker stored nothing while {name} was paused inside its transaction"
        )

        paused.proc.send_signal(signal.SIGCONT)
        paused = None
        # The paused worker's batch failed when it resumed and came back from the broker: every reading once.
        assert wait_until(
            lambda: _stored(db_url, HELD) == stream.sent[HELD] and _stored(db_url, OTHER) == stream.sent[OTHER], 90
        ), (_stored(db_url, HELD), stream.sent[HELD], _stored(db_url, OTHER), stream.sent[OTHER])
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 0
    finally:
        if paused is not None:
            paused.proc.send_signal(signal.SIGCONT)
        for worker in workers.values():
            worker.stop()
        engine.dispose()
