"""Several workers on one store: no lost update, no job sent twice, one sweeper, one shared stream.

These run the pieces in one process against real SQLite, PostgreSQL and
Mosquitto; tests/app/test_workers.py runs whole worker processes.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from alerts.manager import AlertManager
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender, WebhookNotifier
from engine.meterstate import StaleState
from engine.pipeline import Pipeline
from ingest.consumer import MqttConsumer
from ingest.mqttclient import BrokerConfig
from ingest.payload import RawMessage
from store import create_store_engine, leases
from store.ops import ConcurrentWrite
from store.schema import meters, outbox, readings
from tests.alert_support import T0, Clock, assert_delivered_once_in_order, seed
from tests.conftest import wait_until
from tests.helpers import message, register

NOW = time.time() // 1800 * 1800
METERS = [f"M{i}" for i in range(12)]


def _stream(steps: int, seed: int = 5, meter_ids: list[str] = METERS) -> list[RawMessage]:
    """Half-hourly readings of every meter, in time order, as a broker would hand them out."""
    rng = random.Random(seed)
    totals = dict.fromkeys(meter_ids, 1000.0)
    out = []
    for k in range(steps):
        ts = NOW - (steps - k) * 1800
        for meter_id in meter_ids:
            totals[meter_id] += rng.choice([0.0, 0.0, 3.0, 12.0])
            out.append(RawMessage("t", message(meter_id, [(ts, totals[meter_id])]), meter_id))
    return out


def _usage_per_meter(engine: Any) -> dict[str, tuple[float, float, float]]:
    """Per meter: (sum of counted use, the register it started from, last register).

    It started from its first reading applied (status ``first``): a meter's earliest reading applied after it
    (the other worker's, late) has no reading before it, so its water is no interval's.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(readings.c.meter_id, readings.c.total_l, readings.c.usage_l, readings.c.status).order_by(
                readings.c.meter_id, readings.c.ts
            )
        ).all()
    out: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        out[row.meter_id].append(row)
    return {
        m: (sum(r.usage_l or 0.0 for r in rs), next(r.total_l for r in rs if r.status == "first"), rs[-1].total_l)
        for m, rs in out.items()
        if rs
    }


def test_two_workers_racing_on_the_same_meters_never_lose_or_double_an_update(any_engine) -> None:  # type: ignore[no-untyped-def]
    meter_ids = METERS[:11]  # an odd number: round robin hands both workers every meter (12 gave each its own six)
    for i, meter_id in enumerate(meter_ids):
        register(any_engine, f"E{i}", meter_id)
    stream = _stream(steps=40, meter_ids=meter_ids)
    workers = [Pipeline(any_engine, AlertManager(["webhook"]), checkpoint_interval_s=0.0) for _ in range(2)]
    # Round robin, as Mosquitto shares a subscription: consecutive readings of one meter go to different workers.
    shares = [stream[i::2] for i in range(2)]
    errors: list[BaseException] = []

    def work(pipeline: Pipeline, share: list[RawMessage]) -> None:
        try:
            for start in range(0, len(share), 6):
                _deliver(pipeline, share[start : start + 6])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w, s)) for w, s in zip(workers, shares, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with any_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readings)).scalar_one() == len(stream)
    # Whatever order the readings were applied in, each litre is counted once: use sums to the register's rise.
    for meter_id, (used, first, last) in _usage_per_meter(any_engine).items():
        assert used == pytest.approx(last - first), meter_id
    # They raced: a worker found meters the other had moved on and reran its batch; every meter changed hands.
    assert sum(w.races for w in workers) > 0
    with any_engine.connect() as conn:
        versions = dict(conn.execute(select(meters.c.meter_id, meters.c.state_version)).all())
    assert set(versions) == set(meter_ids) and min(versions.values()) > 1


def _deliver(pipeline: Pipeline, batch: list[RawMessage], deliveries: int = 5) -> None:
    """Process ``batch``; a batch that lost its race on every try is delivered again, as the broker does."""
    for _delivery in range(deliveries - 1):
        try:
            pipeline.process(batch)
            return
        except (StaleState, ConcurrentWrite):
            continue
    pipeline.process(batch)


def _sqlite_worker(url: str, share: list[RawMessage], go: Any, out: Any) -> None:
    """A worker process of its own on the SQLite file, with its own engine. A batch that lost its races on every
    try is delivered again, as the broker does; any other error is kept for the test."""
    engine = create_store_engine(url)
    pipeline = Pipeline(engine, AlertManager(["webhook"]), checkpoint_interval_s=0.0)  # a state written per batch
    errors, redelivered = [], 0
    go.wait()
    for start in range(0, len(share), 6):
        for _delivery in range(5):
            try:
                pipeline.process(share[start : start + 6])
                break
            except (StaleState, ConcurrentWrite):
                redelivered += 1
            except Exception as exc:  # reported to the test
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                break
    out.put((pipeline.races, redelivered, errors))
    engine.dispose()


def test_two_worker_processes_on_one_sqlite_file_wait_for_each_other_never_fail(engine) -> None:  # type: ignore[no-untyped-def]
    """docs/scaling.md says SQLite serialises writers on one host: two processes racing on the same meters
    through one WAL file wait for each other's write (busy_timeout, 10 s) and rerun a lost race; no batch fails
    with "database is locked" (OperationalError, which would hold the whole stream back as a store outage)."""
    meter_ids = [f"M{i}" for i in range(11)]  # an odd number: round robin hands both workers every meter
    for i, meter_id in enumerate(meter_ids):
        register(engine, f"E{i}", meter_id)
    stream = _stream(steps=40, meter_ids=meter_ids)
    engine.dispose()  # no SQLite connection of this process goes into the children
    fork = multiprocessing.get_context("fork")
    go, out = fork.Event(), fork.Queue()
    workers = [fork.Process(target=_sqlite_worker, args=(str(engine.url), stream[i::2], go, out)) for i in range(2)]
    for worker in workers:
        worker.start()
    go.set()
    results = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert [errors for _races, _redelivered, errors in results] == [[], []], results
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readings)).scalar_one() == len(stream)
    for meter_id, (used, first, last) in _usage_per_meter(engine).items():
        assert used == pytest.approx(last - first), meter_id


def test_a_stale_worker_reloads_and_a_lost_race_is_retried(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    a, b = Pipeline(engine, AlertManager()), Pipeline(engine, AlertManager())
    a.process([RawMessage("t", message("M1", [(NOW - 5400, 100.0)]), "M1")])
    b.process([RawMessage("t", message("M1", [(NOW - 3600, 110.0)]), "M1")])  # b loads a's work
    a.process([RawMessage("t", message("M1", [(NOW - 1800, 125.0)]), "M1")])  # a's cache is stale: it reloads
    used, first, last = _usage_per_meter(engine)["M1"]
    assert (used, first, last) == (25.0, 100.0, 125.0)
    # A commit against a version someone else moved on is refused, not applied.
    state = a.states.get("M1")
    assert state is not None
    state.version -= 1
    with pytest.raises(StaleState, match="M1"), engine.begin() as conn:
        a.states.commit(conn, [state])


def test_named_lease_one_holder_until_it_lapses(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        assert leases.claim(conn, "silent-meters", "w1", now=100.0, ttl_s=30)
        assert not leases.claim(conn, "silent-meters", "w2", now=110.0, ttl_s=30)
        assert leases.claim(conn, "silent-meters", "w1", now=120.0, ttl_s=30)  # renewal
        assert not leases.claim(conn, "silent-meters", "w2", now=149.0, ttl_s=30)
        assert leases.claim(conn, "silent-meters", "w2", now=151.0, ttl_s=30)  # w1 stopped renewing


def test_racing_senders_deliver_each_event_once_in_order(any_engine, receiver) -> None:  # type: ignore[no-untyped-def]
    seed(any_engine, 8, now=time.time())
    senders = [
        OutboxSender(
            any_engine, {"webhook": WebhookNotifier(receiver.url, b"test-secret")}, owner=f"w{i}", concurrency=2
        )
        for i in range(3)
    ]
    threads = [threading.Thread(target=s.serve, kwargs={"poll_s": 0.02}) for s in senders]
    for t in threads:
        t.start()
    try:

        def all_sent() -> bool:
            with any_engine.connect() as conn:
                return conn.execute(select(outbox.c.id).where(outbox.c.status != "sent").limit(1)).first() is None

        assert wait_until(all_sent, 60)
    finally:
        for s in senders:
            s.stop()
        for t in threads:
            t.join(10)
    assert_delivered_once_in_order(any_engine, receiver)
    assert len(receiver.arrivals) == len(receiver.events)  # no event was sent twice, even under its one id
    assert sum(s.delivered for s in senders) == len(receiver.events)


def test_a_lease_set_before_a_step_back_is_free_only_to_a_claimant_that_saw_the_step(engine) -> None:  # type: ignore[no-untyped-def]
    """A holder's lease set an hour ahead of a claimant's clock: a host whose clock merely runs behind must not
    take it (the two would hold it in turn, each pass); one whose clock has just stepped back may (the holder
    set it on the clock before the step, and may be dead)."""
    with engine.begin() as conn:
        assert leases.claim(conn, "silent-meters", "w1", now=3700.0, ttl_s=30)
        assert not leases.claim(conn, "silent-meters", "w2", now=100.0, ttl_s=30)  # only behind
        assert leases.claim(conn, "silent-meters", "w1", now=3710.0, ttl_s=30)  # the holder renews as before
        assert leases.claim(conn, "silent-meters", "w2", now=110.0, ttl_s=30, after_step_back=True)


def test_a_dead_senders_job_is_taken_over_when_its_lease_lapses(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    seed(engine, 1, now=1000.0)
    clock = [1000.0]
    dead = OutboxSender(
        engine, {"webhook": WebhookNotifier(receiver.url, b"test-secret")}, owner="dead", clock=lambda: clock[0]
    )
    with engine.connect() as conn:
        first = conn.execute(select(func.min(outbox.c.id))).scalar_one()
    assert dead._claim(first, clock[0]) is not None  # it took the job, then died before sending
    other = OutboxSender(
        engine, {"webhook": WebhookNotifier(receiver.url, b"test-secret")}, owner="other", clock=lambda: clock[0]
    )
    assert other.run_once() == 0  # the lane's head is held
    clock[0] += dead.lease_s + 1
    assert other.run_once() > 0
    assert_delivered_once_in_order(engine, receiver)


@contextmanager
def _taken_over_while_paused(engine: Any, first_answer: int) -> Iterator[tuple[OutboxSender, Clock, str, list[str]]]:
    """Sender a sends the one job and is paused past its lease; b takes the job over and is sending it; a comes
    back to ``first_answer`` for its send. Yields (a, the clock, the platform's URL, the ids sent) while b's send
    still waits for its answer (204 once the block ends)."""
    seed(engine, 1, now=T0)
    clock = Clock(T0)
    lock = threading.Lock()
    sends: list[str] = []  # the id of every event the platform was sent, in order
    arrived = [threading.Event(), threading.Event()]  # the first two sends reached the platform ...
    answer = [threading.Event(), threading.Event()]  # ... and wait to be answered (first_answer, then 204)

    def respond(event: dict[str, Any]) -> tuple[int, dict[str, str]]:
        with lock:
            k = len(sends)
            sends.append(str(event["id"]))
        if k < 2:
            arrived[k].set()
            answer[k].wait(30)
        return (first_answer, {}) if k == 0 else (204, {})

    platform = WebhookReceiver(secret=b"test-secret", respond=respond).start()
    second: threading.Thread | None = None
    try:
        a, b = (_sender(engine, platform.url, owner, clock) for owner in ("a", "b"))
        first = threading.Thread(target=a.run_once)
        first.start()
        assert arrived[0].wait(10)
        clock.now += a.lease_s + 1  # a is paused past its lease ...
        second = threading.Thread(target=b.run_once)
        second.start()
        assert arrived[1].wait(10)  # ... b took the job over and is sending it
        answer[0].set()  # a is back to its answer
        first.join(10)
        yield a, clock, platform.url, sends
    finally:
        answer[1].set()
        if second is not None:
            second.join(10)
        platform.stop()


def _sender(engine: Any, url: str, owner: str, clock: Clock) -> OutboxSender:
    return OutboxSender(engine, {"webhook": WebhookNotifier(url, b"test-secret", 30.0)}, owner=owner, clock=clock)


def test_a_sender_back_from_a_pause_past_its_lease_leaves_the_job_to_its_new_holder(engine) -> None:  # type: ignore[no-untyped-def]
    """A sender paused in the middle of a send past its lease (SIGSTOP, a frozen VM) finds, back, that the send
    failed: meanwhile another sender took the job over and is sending it. The first's "retry later" cleared the new
    holder's lease, so a third sender's pass sent the same job again while that send was under way (a family's
    text, a group robot's message: three times). It now leaves a job it no longer holds to its holder."""
    with _taken_over_while_paused(engine, 503) as (_, clock, url, sends):
        clock.now += 5  # past a's backoff, well inside b's lease
        _sender(engine, url, "c", clock).run_once()
    assert sends.count(sends[0]) == 2, sends  # a's send and b's: never a third while b's was under way


def test_a_sender_back_from_a_pause_past_its_lease_does_not_park_its_new_holders_job(engine) -> None:  # type: ignore[no-untyped-def]
    """As above, but the paused sender comes back to a refusal for good (HTTP 400): it parked the job another sender
    had taken over and was sending, counted and logged a park that was not its to make. It now leaves the job to
    its holder, as its retry-later does."""
    with _taken_over_while_paused(engine, 400) as (a, _, _, _), engine.connect() as conn:
        first_job = select(outbox.c.status, outbox.c.lease_owner).order_by(outbox.c.id).limit(1)
        held_while_b_sends = conn.execute(first_job).all()
    assert held_while_b_sends == [("pending", "b")], held_while_b_sends
    assert a.parked == 0, a.parked


def test_shared_subscription_hands_each_message_to_one_worker(mosquitto) -> None:  # type: ignore[no-untyped-def]
    got: list[list[str]] = [[], []]
    consumers = [
        MqttConsumer(
            BrokerConfig(url=mosquitto.url, client_id=f"share-{i}", protocol="5", shared_group="tapwatch"),
            handle=lambda batch, i=i: got[i].extend(m.payload.decode() for m in batch),
        )
        for i in range(2)
    ]
    for c in consumers:
        c.start()
    try:
        assert wait_until(lambda: all(c.connected.is_set() for c in consumers), 10)  # both SUBACKs
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="share-pub")
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        sent = [f"{k}" for k in range(200)]
        for k in sent:
            publisher.publish(f"tapwatch/meters/M{int(k) % 7}/readings", k, qos=1).wait_for_publish(5)
        assert wait_until(lambda: len(got[0]) + len(got[1]) >= len(sent), 20)
        # Markers after the stream until each worker has had one: a repeat to either would arrive before it.
        markers: list[str] = []

        def each_has_a_marker() -> bool:
            if all(any(int(p) >= len(sent) for p in g) for g in got):
                return True
            markers.append(str(len(sent) + len(markers)))
            publisher.publish(f"tapwatch/meters/M{int(markers[-1]) % 7}/readings", markers[-1], qos=1)
            return False

        assert wait_until(each_has_a_marker, 20)
        assert wait_until(lambda: len(got[0]) + len(got[1]) >= len(sent) + len(markers), 20)
        publisher.disconnect()
        publisher.loop_stop()
    finally:
        for c in consumers:
            c.stop()
    assert sorted(got[0] + got[1], key=int) == sent + markers  # every message once, none twice
    assert got[0] and got[1]  # and both workers got a share


@pytest.mark.parametrize("checkpoint_interval_s", [0.0, 1e9], ids=["state-each-batch", "replay-from-readings"])
def test_a_meter_handed_between_workers_every_message_alerts_as_if_it_stayed(engine, checkpoint_interval_s) -> None:  # type: ignore[no-untyped-def]
    """Reloading a meter (from its checkpoint, or by replaying its readings) must not change what it detects."""
    from simulator import SimConfig, simulate
    from simulator.publisher import payload, plan_messages
    from store import open_store
    from store.registry import register_elder
    from store.schema import alerts

    sim = simulate(SimConfig(elders=20, days=20, seed=23, start="2026-09-01", daily_batches=True, faults=True))
    _history, live = plan_messages(sim, 0.0)
    stream = [RawMessage("t", payload(sim, m), sim.meter_ids[m.meter_idx]) for m in live]

    def alert_set(workers: int, url: str, interval: float) -> set[tuple[str, str, float]]:
        store = open_store(url)
        with store.begin() as conn:
            for elder in sim.elders:
                register_elder(conn, elder, elder["meter_id"], 0.0)
        pipelines = [
            Pipeline(store, AlertManager(["webhook"]), late_window_s=1e9, checkpoint_interval_s=interval)
            for _ in range(workers)
        ]
        for k, raw in enumerate(stream):
            pipelines[k % workers].process([raw])
        with store.connect() as conn:
            found = {(r.elder_id, r.kind, r.data_ts) for r in conn.execute(select(alerts))}
        store.dispose()
        return found

    url = str(engine.url)
    stayed = alert_set(1, url.replace(".db", "-one.db"), 300.0)
    handed = alert_set(2, url.replace(".db", "-two.db"), checkpoint_interval_s)
    assert len(stayed) > 10
    assert handed == stayed
