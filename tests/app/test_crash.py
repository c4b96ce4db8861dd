"""SIGKILL in the middle of a stream: nothing lost, nothing counted twice, the same alerts as an unbroken run.

The monitor runs as a real `tapwatch run` process against a real Mosquitto;
it is killed without warning while meters publish, then started again. The
broker keeps the persistent session's unacknowledged messages, and the store's
detector checkpoints commit with the readings, so the second process picks up
exactly where the first one's last commit left off.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from store.schema import readings
from tests.conftest import Mosquitto, wait_until
from tests.helpers import alert_set, monitor_env, register_simulated, total_usage

ELDERS, DAYS = 20, 10


def _scenario() -> Any:
    from simulator import SimConfig, simulate

    return simulate(
        SimConfig(
            elders=ELDERS,
            days=DAYS,
            seed=11,
            start="2026-09-01",
            random_incidents=True,
            random_events=True,
            faults=True,
        )
    )


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "tapwatch.cli", "run"], env=env, stdout=handle, stderr=handle)


def _count(url: str, table: Any) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    except Exception:  # the database may not exist yet while the process starts
        return 0
    finally:
        engine.dispose()


def _expected(sim: Any) -> int:
    # Distinct (meter, ts) pairs with a plausible register value (malformed rows are dead-lettered).
    return len({(int(m), float(t)) for m, t, v in zip(sim.meter_idx, sim.ts, sim.total_l, strict=True) if v == v})


def _run_once(tmp: Path, broker: Mosquitto, receiver: Any, sim: Any, kill_at: float | None) -> str:
    from simulator.publisher import publish

    tmp.mkdir()
    env = monitor_env(tmp, broker, f"crash-{tmp.name}", receiver.url)
    url = env["TAPWATCH_DATABASE_URL"]
    register_simulated(url, sim)
    proc = _start(env, tmp / "tapwatch.log")
    try:
        assert wait_until(lambda: "connected to" in (tmp / "tapwatch.log").read_text(errors="replace"), 30)
        publisher = threading.Thread(
            target=publish,
            kwargs={"res": sim, "url": broker.url, "speed": None, "history_days": 0.0, "client_id": f"pub-{tmp.name}"},
        )
        publisher.start()
        if kill_at is not None:
            target = int(_expected(sim) * kill_at)
            assert wait_until(lambda: _count(url, readings) >= target, 120), "the stream did not get going"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc = _start(env, tmp / "tapwatch.log")
        publisher.join(300)
        assert not publisher.is_alive()
        assert wait_until(lambda: _count(url, readings) >= _expected(sim), 180), (
            f"stored {_count(url, readings)} of {_expected(sim)} readings"
        )
    finally:
        proc.terminate()
        proc.wait(20)
    return url


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_and_repeats_no_alert(tmp_path, mosquitto, receiver) -> None:  # type: ignore[no-untyped-def]
    sim = _scenario()
    steady = _run_once(tmp_path / "steady", mosquitto, receiver, sim, kill_at=None)
    steady_events = len(receiver.events)
    crashed = _run_once(tmp_path / "crashed", mosquitto, receiver, sim, kill_at=0.4)
    assert _count(crashed, readings) == _count(steady, readings) == _expected(sim)
    assert total_usage(crashed) == pytest.approx(total_usage(steady))
    assert alert_set(crashed) == alert_set(steady)
    assert len(alert_set(steady)) > 0
    assert len(receiver.events) > steady_events
    _assert_no_personal_data_in_logs(tmp_path, sim)


def _assert_no_personal_data_in_logs(tmp_path: Path, sim: Any) -> None:
    """Privacy: two full runs' logs carry no secret, no elder's name and no phone number."""
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*/tapwatch.log"))
    assert "alert raised" in logs  # the logs are real and cover alerting
    assert "test-secret" not in logs
    for elder in sim.elders:
        assert elder["name"] not in logs, "an elder's name reached the logs"
        for contact in elder.get("contacts", []):
            assert contact["phone"] not in logs, "a phone number reached the logs"
            assert contact["name"] not in logs, "a contact's name reached the logs"


@pytest.mark.slow
def test_sigterm_shuts_down_gracefully_and_checkpoints(tmp_path, mosquitto, receiver) -> None:  # type: ignore[no-untyped-def]
    from simulator import SimConfig, simulate
    from simulator.publisher import publish
    from store.schema import detector_state

    sim = simulate(
        SimConfig(
            elders=5, days=2, seed=3, start="2026-09-01", random_incidents=False, random_events=False, faults=False
        )
    )
    env = monitor_env(tmp_path, mosquitto, "sigterm", receiver.url)
    url = env["TAPWATCH_DATABASE_URL"]
    register_simulated(url, sim)
    proc = _start(env, tmp_path / "tapwatch.log")
    try:
        assert wait_until(lambda: "connected to" in (tmp_path / "tapwatch.log").read_text(errors="replace"), 30)
        publish(sim, url=mosquitto.url, speed=None, history_days=0.0, client_id="pub-sigterm")
        assert wait_until(lambda: _count(url, readings) >= _expected(sim), 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # Every meter's state was saved on the way out: a restart starts warm, with nothing to replay.
    assert _count(url, detector_state) == len(sim.elders)
