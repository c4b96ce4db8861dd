"""End to end over a real Mosquitto: simulated meters -> ingest -> detect -> alerts -> a real HTTP receiver.

Five elders, three days; one stops using water on day 3. The receiver must get
a ``no_activity`` work order for that elder and none for the others. The same
run with the broker restarted in the middle must lose nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from store.schema import readings
from tests.conftest import Mosquitto, wait_until

DAYS = 3


def _scenario() -> Any:
    from simulator import IncidentSpec, SimConfig, simulate

    return simulate(
        SimConfig(
            elders=5,
            days=DAYS,
            seed=7,
            start="2026-11-01",
            random_incidents=False,
            random_events=False,
            faults=False,
            incidents=[IncidentSpec(elder=2, kind="fall", start_day=2.3)],
        )
    )


def _service(tmp_path: Path, broker: Mosquitto, receiver: Any, client_id: str) -> Any:
    from core.settings import get_settings
    from tapwatch.service import Service

    settings = get_settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'e2e.db'}",
        mqtt_url=broker.url,
        mqtt_client_id=client_id,
        webhook_url=receiver.url,
        webhook_secret="test-secret",
        late_window_hours=24 * 365 * 5,  # the scenario is historical data
    )
    return Service(settings)


def _register(service: Any, sim: Any) -> None:
    from store.registry import register_elder

    with service.engine.begin() as conn:
        for elder in sim.elders:
            register_elder(conn, elder, elder["meter_id"], 0.0)


def _stored(service: Any) -> int:
    with service.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(readings)).scalar_one())


def _expected_readings(sim: Any) -> int:
    return len({(int(m), float(t)) for m, t in zip(sim.meter_idx, sim.ts, strict=True)})


def _no_activity_elders(receiver: Any) -> list[str]:
    return sorted(
        e["subject"] for e in receiver.events if e["type"].endswith(".raised") and e["data"]["kind"] == "no_activity"
    )


def _fall_reported(sim: Any, receiver: Any) -> bool:
    """A ``no_activity`` case whose silence began within 6 h before the fall reached the platform."""
    fall = next(lab for lab in sim.labels if lab.kind == "fall")
    since = [
        datetime.fromisoformat(e["data"]["since"]).timestamp()
        for e in receiver.events
        if e["type"].endswith(".raised") and e["data"]["kind"] == "no_activity"
    ]
    return any(fall.start - 6 * 3600 <= t <= fall.start for t in since)


def _assert_only_the_fall_flagged(sim: Any, receiver: Any) -> None:
    # On day one, with a day of data, the cold-start net may also have flagged the same elder once (the data
    # closed it). Since session 8 the flapping hold-down counts data time, so the fall a day and a half later
    # is a case of its own, not a reopening of that one: no other elder is flagged.
    fallen = next(e for e in sim.elders if e["meter_id"] == sim.meter_ids[2])
    assert set(_no_activity_elders(receiver)) == {fallen["elder_id"]}
    assert _fall_reported(sim, receiver)


def _run(tmp_path: Path, mosquitto: Mosquitto, receiver: Any, fault: str | None = None) -> Any:
    from simulator.publisher import publish

    sim = _scenario()
    service = _service(tmp_path, mosquitto, receiver, client_id=f"e2e-{fault}")
    _register(service, sim)
    service.start()
    try:
        assert wait_until(service.consumer.connected.is_set, 10), "tapwatch did not connect to mosquitto"
        # Spread publishing over ~6 s so a fault lands in the middle of the stream.
        speed = DAYS * 86400 / 6 if fault else None
        publisher = threading.Thread(
            target=publish, kwargs={"res": sim, "url": mosquitto.url, "speed": speed, "history_days": 0.0}
        )
        publisher.start()
        if fault:
            assert wait_until(lambda: _stored(service) > 200, 20)
        if fault == "broker":
            mosquitto.restart(down_s=1.0)
        elif fault == "mqtt-client":  # the consumer's child process, holding unacknowledged batches
            os.kill(service.consumer._child.pid, signal.SIGKILL)
        publisher.join(120)
        assert not publisher.is_alive(), "the simulator did not finish publishing"
        expected = _expected_readings(sim)
        assert wait_until(lambda: _stored(service) == expected, 60), f"stored {_stored(service)} of {expected}"
        assert wait_until(lambda: _fall_reported(sim, receiver), 20), "no case for the fall reached the platform"
        return sim
    finally:
        service.stop()


@pytest.mark.slow
def test_fall_on_day_three_reaches_the_platform_and_nobody_else_is_flagged(tmp_path, mosquitto, receiver) -> None:  # type: ignore[no-untyped-def]
    sim = _run(tmp_path, mosquitto, receiver)
    fallen = next(e for e in sim.elders if e["meter_id"] == sim.meter_ids[2])
    _assert_only_the_fall_flagged(sim, receiver)
    event = next(e for e in receiver.events if e["data"]["kind"] == "no_activity")
    assert event["data"]["who"]["name"] == fallen["name"]
    assert receiver.bad_signatures == 0


@pytest.mark.slow
def test_broker_restart_in_the_middle_loses_nothing(tmp_path, mosquitto, receiver) -> None:  # type: ignore[no-untyped-def]
    sim = _run(tmp_path, mosquitto, receiver, fault="broker")
    _assert_only_the_fall_flagged(sim, receiver)


def test_mqtt_client_process_killed_in_the_middle_loses_nothing(tmp_path, mosquitto, receiver) -> None:  # type: ignore[no-untyped-def]
    """The consumer starts its MQTT process again; the broker redelivers what that process had not acknowledged."""
    sim = _run(tmp_path, mosquitto, receiver, fault="mqtt-client")
    _assert_only_the_fall_flagged(sim, receiver)
