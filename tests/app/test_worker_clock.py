"""A worker whose host clock is wrong must not join the others: it would judge their readings and leases by it.

Workers time everything by their host's wall clock: a reading's "from the future" check, the outbox's leases,
the escalation timers they write. Two `tapwatch run` workers share one Mosquitto subscription and one
PostgreSQL; one runs an hour behind (libfaketime, Debian's ``faketime``). Before the fix it started, and every
reading the broker handed it (half of them) was dead-lettered as "timestamp in the future (meter clock
wrong?)", blaming the meters. Now a worker of a shared group whose clock is further from PostgreSQL's than
``TAPWATCH_MAX_CLOCK_SKEW_S`` (60 s) refuses to start (exit 2, naming both and the cure); the other stores
every reading.
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
from tests.helpers import Worker, message, monitor_env, mqtt_publisher, register

#: Debian's libfaketime, under the machine's multiarch directory.
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)
METER = "WM-CLOCK"
READINGS = 10


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[mqtt.Client]:
    with mqtt_publisher(mosquitto, "pub-clock") as client:
        yield client


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_worker_whose_clock_is_an_hour_behind_refuses_to_start_and_dead_letters_nothing(
    tmp_path: Path, mosquitto: Mosquitto, postgres_server, receiver, publisher
) -> None:
    if LIBFAKETIME is None:
        pytest.skip("libfaketime is not installed (Debian's faketime; make test installs it)")
    db_url = postgres_server.new_database()
    engine = open_store(db_url)
    register(engine, "E-CLOCK", METER)
    workers = {}
    for name in ("right", "behind"):
        env = monitor_env(tmp_path, mosquitto, f"{name}-{tmp_path.name}", receiver.url) | {
            "TAPWATCH_DATABASE_URL": db_url,
            "TAPWATCH_MQTT_PROTOCOL": "5",
            "TAPWATCH_MQTT_SHARED_GROUP": "clock",
        }
        if name == "behind":
            env |= {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "-1h", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        workers[name] = Worker(env, tmp_path / f"{name}.log")
    right, behind = workers["right"], workers["behind"]
    try:
        assert wait_until(right.subscribed, 60), "the worker with the right clock did not subscribe"
        # Either it joins the group (and takes its share of the readings) or it has refused to start.
        assert wait_until(lambda: behind.subscribed() or behind.proc.poll() is not None, 60)
        now = time.time()
        for k in range(READINGS):  # a meter with a right clock: readings of the last minutes
            payload = message(METER, [(now - (READINGS - k) * 120, 10.0 * k)])
            publisher.publish(f"tapwatch/meters/{METER}/readings", payload, qos=1).wait_for_publish(10)
        assert wait_until(lambda: _count(engine, readings) + _count(engine, dead_letters) >= READINGS, 60), (
            "not every reading was handled"
        )
        assert _count(engine, dead_letters) == 0, "readings of a meter with a right clock were dead-lettered"
        assert _count(engine, readings) == READINGS
        assert behind.proc.wait(30) == 2
        said = behind.log.read_text(errors="replace")
        assert "TAPWATCH_MAX_CLOCK_SKEW_S" in said and "PostgreSQL" in said, said[-2000:]
    finally:
        for worker in workers.values():
            worker.stop()
        engine.dispose()
