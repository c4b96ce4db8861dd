"""Three `tapwatch run` workers on one Mosquitto and one PostgreSQL give the alerts one worker gives.

The simulator's stream (100 elders by default, 500 with
TAPWATCH_WORKERS_TEST_ELDERS=500; 30 days; incidents, life events, meter
faults; one message per meter and day, as NB-IoT meters send) goes through an
MQTT 5 shared subscription to three worker processes. One worker is killed
with SIGKILL in the middle and started again under its own client id. The
same stream through one worker with the default configuration is the
reference: same readings, same use, same alert set; every work order fired
once.

The stream is published day by day and a day is published once the one
before is stored, as real meters report: a half-hourly (or daily) burst is
drained long before the next one, so readings of one meter are applied in
order even though the broker hands consecutive ones to different workers.
(Out-of-order application is covered too: tests/app/test_scaleout.py shows it
never loses or doubles an update; it can only coarsen an interval.)
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left, insort
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

from ingest.register import DEFAULT_LIMITS
from store.schema import escalations, meters, outbox, readings
from tests.conftest import Mosquitto, wait_until
from tests.helpers import Worker, alert_set, monitor_env, register_simulated, total_usage

#: 100 elders keep the suite within its time budget; TAPWATCH_WORKERS_TEST_ELDERS=500 runs the full scenario.
ELDERS, DAYS = int(os.environ.get("TAPWATCH_WORKERS_TEST_ELDERS", "100")), 30
WORKERS = 3
#: Escalate at once, so work orders fire while the stream runs and the runners of all workers race for them.
FAST_ESCALATION = json.dumps(
    {s: {"work_order_after_min": 0, "supervisor_after_min": None} for s in ("critical", "high", "medium", "low")}
)


def _scenario() -> Any:
    from simulator import SimConfig, simulate

    return simulate(SimConfig(elders=ELDERS, days=DAYS, seed=23, start="2026-09-01", daily_batches=True, faults=True))


@dataclass
class Round:
    """One day's messages (each meter at most once), and how to tell from the store that it is all in."""

    messages: list[Any]
    since_ts: float  # the oldest reading in the round
    stored_since: int  # readings with ts >= since_ts stored once this round and all before it are in
    stored_total: int


def _rounds(sim: Any) -> list[Round]:
    """The stream as days of messages, each meter at most once a round."""
    from simulator.publisher import plan_messages

    _history, live = plan_messages(sim, history_days=0.0)
    rounds: list[list[Any]] = []
    last_round: dict[int, int] = {}
    for msg in live:
        day = int((msg.due - sim.start_ts) // 86400)
        r = max(day, last_round.get(msg.meter_idx, -1) + 1)  # keep each meter's messages in order
        last_round[msg.meter_idx] = r
        while len(rounds) <= r:
            rounds.append([])
        rounds[r].append(msg)
    kept: dict[int, list[float]] = {}  # per meter, the reading times the store keeps
    out = []
    for msgs in rounds:
        valid = [row for m in msgs for row in m.rows if sim.total_l[row] == sim.total_l[row]]  # NaN: malformed
        for row in valid:
            _keep(kept.setdefault(int(sim.meter_idx[row]), []), float(sim.ts[row]))
        since = min((float(sim.ts[row]) for row in valid), default=float("inf"))
        stored_ts = np.fromiter((ts for times in kept.values() for ts in times), float)
        out.append(Round(msgs, since, int(np.count_nonzero(stored_ts >= since)), len(stored_ts)))
    return out


def _keep(times: list[float], ts: float) -> None:
    """Keep ``ts`` as the store does: not a repeat, nor within a minute of another reading (a drifting clock's)."""
    k = bisect_left(times, ts)
    spacing = DEFAULT_LIMITS.min_spacing_s
    if (k < len(times) and times[k] - ts < spacing) or (k and ts - times[k - 1] < spacing):
        return
    insort(times, ts)


def _env(tmp: Path, broker: Mosquitto, db_url: str, webhook: str, client_id: str, shared: bool) -> dict[str, str]:
    """The crash test's worker environment, on PostgreSQL, with work orders escalated at once."""
    env = monitor_env(tmp, broker, client_id, webhook) | {
        "TAPWATCH_DATABASE_URL": db_url,
        "TAPWATCH_ESCALATION_POLICY": FAST_ESCALATION,
        "TAPWATCH_ESCALATION_CHECK_S": "0.5",
    }
    if shared:
        env |= {"TAPWATCH_MQTT_PROTOCOL": "5", "TAPWATCH_MQTT_SHARED_GROUP": f"g{tmp.name}"}
    return env


def _stored(url: str, since_ts: float = float("-inf")) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            meter_ids = select(meters.c.meter_id).scalar_subquery()
            # Counting only recent readings, per meter, walks the primary key: cheap enough to poll.
            query = select(func.count()).where(readings.c.meter_id.in_(meter_ids), readings.c.ts >= since_ts)
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def _run(
    tmp: Path, broker: Mosquitto, db_url: str, receiver: Any, sim: Any, workers: int, kill_round: int | None
) -> dict[str, Any]:
    from simulator.publisher import PublisherSession

    tmp.mkdir()
    register_simulated(db_url, sim)
    procs = [
        Worker(_env(tmp, broker, db_url, receiver.url, f"w{i}-{tmp.name}", shared=workers > 1), tmp / f"w{i}.log")
        for i in range(workers)
    ]
    started = time.monotonic()
    try:
        # Every member's subscription in place (SUBACK) before the first message.
        assert wait_until(lambda: all(w.subscribed() for w in procs), 60), "workers did not subscribe"
        with PublisherSession(broker.url, f"pub-{tmp.name}") as publisher:
            for k, day in enumerate(_rounds(sim)):
                publisher.send(sim, day.messages)
                if k == kill_round:
                    _wait_stored(db_url, day.since_ts, day.stored_since // 3, k)
                    procs[1].kill_and_restart()  # in the middle of a day's burst
                _wait_stored(db_url, day.since_ts, day.stored_since, k)
        elapsed = time.monotonic() - started
        assert wait_until(lambda: _settled(db_url), 120, interval=0.5), "escalations or deliveries still pending"
    finally:
        for w in procs:
            w.stop()
    logs = "".join(p.read_text(errors="replace") for p in tmp.glob("*.log"))
    return {"url": db_url, "elapsed": elapsed, "logs": logs}


def _settled(url: str) -> bool:
    """No escalation due and no delivery pending: every work order has fired and reached the platform."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            due = select(escalations.c.id).where(escalations.c.status == "pending", escalations.c.due_at <= time.time())
            waiting = select(outbox.c.id).where(outbox.c.status == "pending")
            return conn.execute(due.limit(1)).first() is None and conn.execute(waiting.limit(1)).first() is None
    finally:
        engine.dispose()


def _wait_stored(db_url: str, since_ts: float, count: int, round_no: int) -> None:
    assert wait_until(lambda: _stored(db_url, since_ts) >= count, 120, interval=0.2), (
        f"round {round_no}: stored {_stored(db_url, since_ts)} of {count}"
    )


def _work_orders(url: str) -> Counter[str]:
    """Fired work-order (level 2) timers per alert."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(escalations.c.alert_id).where(escalations.c.status == "fired", escalations.c.level == 2)
        ).all()
    engine.dispose()
    return Counter(r.alert_id for r in rows)


@pytest.mark.slow
@pytest.mark.timeout(300 + 4 * ELDERS)  # the 500-elder run takes about ten minutes
def test_three_workers_with_one_killed_give_the_alerts_of_one(  # type: ignore[no-untyped-def]
    tmp_path, mosquitto, postgres_server, receiver
) -> None:
    sim = _scenario()
    expected = _rounds(sim)[-1].stored_total
    single = _run(tmp_path / "single", mosquitto, postgres_server.new_database(), receiver, sim, 1, None)
    single_events = len(receiver.events)
    multi = _run(tmp_path / "multi", mosquitto, postgres_server.new_database(), receiver, sim, WORKERS, DAYS // 2)
    print(f"\n{expected} readings: one worker {single['elapsed']:.1f} s, {WORKERS} workers {multi['elapsed']:.1f} s")

    # No reading lost or counted twice.
    assert _stored(single["url"]) == _stored(multi["url"]) == expected
    assert total_usage(multi["url"]) == pytest.approx(total_usage(single["url"]))
    # The same alerts, raised on the same data.
    alerts_single, alerts_multi = alert_set(single["url"]), alert_set(multi["url"])
    assert len(alerts_single) > 20
    assert alerts_multi == alerts_single, (alerts_multi - alerts_single, alerts_single - alerts_multi)
    # The workers really shared the stream and raced: all three processed batches, and lost races were rerun.
    assert multi["logs"].count("connected to") >= WORKERS + 1  # the killed worker came back
    # Every work order fired once, whichever worker's escalation runner got to it: the platform received one
    # work-order event per fired level-2 timer (a race would fire one timer twice: two events, one row).
    # (A flapping alert that reopens is escalated afresh, so one alert may have several timers.)
    fired = _work_orders(multi["url"])
    escalated = [e for e in receiver.events[single_events:] if e["type"].endswith(".escalated")]
    received = Counter(e["data"]["alert_id"] for e in escalated if _level(e) == 2)
    assert fired and received == fired


def _level(event: dict[str, Any]) -> int:
    return int(event.get("data", {}).get("level") or 0)
