"""Escalation: contact, then work order, then supervisor; stored timers fire once, whatever happens."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from alerts.cases import bump
from alerts.clock import CLOCK_LEASE_TTL_S, SteadyClock
from alerts.escalation import CLOCK_LEASE, EscalationRunner, cancel_timers
from alerts.manager import AlertManager
from alerts.notifiers import SmsGatewayNotifier
from alerts.policy import EscalationPolicy
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.metrics import Metrics
from core.settings import get_settings
from store import leases, open_store
from store.registry import meter_context
from store.schema import alert_events, alerts, escalations, held_findings, outbox
from tests.alert_support import T0, add_elder, alert_row, apply, finding, queued
from tests.api_fixtures import waiting_on_a_lock
from tests.conftest import wait_until

CONTACTS = [
    {"name": "王强", "relation": "儿子", "phone": "13900000001"},
    {"name": "王丽", "relation": "女儿", "phone": "13900000002"},
]


def escalated_levels(engine: Any) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(alert_events.c.alert_id, alert_events.c.data)
            .where(alert_events.c.type == "escalated")
            .order_by(alert_events.c.id)
        ).all()
    return [(r.alert_id, int(r.data["level"])) for r in rows]


def test_contact_then_work_order_then_supervisor_each_once(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook", "sms"])  # high: work order after 15 min, supervisor 45 min later
    alert_id = apply(engine, manager, finding("M1"), T0)
    sms = queued(engine, "sms")
    assert sorted(e["data"]["to"] for e in sms) == ["13900000001", "13900000002"]
    assert sms[0]["data"]["text"].startswith("【长时间未用水】王秀兰：") and "大宁社区" not in sms[0]["data"]["text"]
    assert len({e["id"] for e in sms}) == 2
    level1 = queued(engine)[-1]
    assert level1["data"]["level"] == 1 and level1["data"]["contacts_notified"] == 2 and "who" not in level1["data"]
    runner, rival = EscalationRunner(engine, manager), EscalationRunner(engine, manager)
    assert runner.run_once(T0 + 14 * 60) == 0
    assert runner.run_once(T0 + 15 * 60) == 1 and rival.run_once(T0 + 15 * 60) == 0
    work_order = queued(engine)[-1]
    assert work_order["data"]["level"] == 2 and work_order["data"]["route"] == "community"
    assert work_order["data"]["who"]["room"] == "502" and "13900000001" not in str(work_order)
    assert runner.run_once(T0 + 59 * 60) == 0 and runner.run_once(T0 + 60 * 60) == 1
    street = queued(engine)[-1]
    assert (
        street["data"]["level"] == 3 and street["data"]["route"] == "street" and "街道" in street["data"]["text"]["zh"]
    )
    assert runner.run_once(T0 + 99 * 3600) == 0 and rival.run_once(T0 + 99 * 3600) == 0
    assert escalated_levels(engine) == [(alert_id, 1), (alert_id, 2), (alert_id, 3)]


def test_acknowledging_stops_escalation(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook", "sms"])
    alert_id = apply(engine, manager, finding("M1", severity="critical"), T0)
    with engine.begin() as conn:
        manager.acknowledge(conn, alert_row(engine, alert_id or ""), "contact:王强", "she is fine", T0 + 60)
    assert EscalationRunner(engine, manager).run_once(T0 + 86400) == 0
    assert escalated_levels(engine) == [(alert_id, 1)]
    with engine.connect() as conn:
        states = conn.execute(select(escalations.c.level, escalations.c.status).order_by(escalations.c.id)).all()
    assert [tuple(s) for s in states] == [(1, "fired"), (2, "cancelled")]


def test_timers_survive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    engine = open_store(url)
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    alert_id = apply(engine, manager, finding("M1"), T0)
    engine.dispose()  # the monitor stops; a new process opens the same store
    engine = open_store(url)
    assert EscalationRunner(engine, AlertManager(["webhook"])).run_once(T0 + 15 * 60) == 1
    assert escalated_levels(engine) == [(alert_id, 2)]
    engine.dispose()


def test_every_due_work_order_fires_in_one_pass_however_many_are_due(engine) -> None:  # type: ignore[no-untyped-def]
    # A surge (a street's water shut off for works, a monitor back after an outage): more timers due at once
    # than the runner reads in one query. Before, one query's worth fired per pass and the rest waited for
    # the next pass, escalation_check_s later, and the next: the last work orders went out minutes late.
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    for k in range(25):
        add_elder(engine, f"E{k}", f"M{k}")
        apply(engine, manager, finding(f"M{k}"), T0)
    runner = EscalationRunner(engine, manager, batch=10)
    assert runner.run_once(T0 + 15 * 60) == 25
    assert sorted(level for _, level in escalated_levels(engine)) == [2] * 25


def test_rival_runners_fire_each_timer_exactly_once(any_engine) -> None:  # type: ignore[no-untyped-def]
    engine = any_engine
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    for k in range(20):
        add_elder(engine, f"E{k}", f"M{k}")
        apply(engine, manager, finding(f"M{k}"), T0)
    runners = [EscalationRunner(engine, manager, owner=f"r{i}") for i in range(4)]
    barrier = threading.Barrier(len(runners))
    fired: list[int] = []

    def race(r: EscalationRunner) -> None:
        barrier.wait()
        fired.append(r.run_once(T0 + 15 * 60))

    threads = [threading.Thread(target=race, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(fired) == 20
    levels = escalated_levels(engine)
    assert len(levels) == 20 and len(set(levels)) == 20 and {lv for _, lv in levels} == {2}
    with engine.connect() as conn:
        keys = conn.execute(select(func.count(), func.count(outbox.c.idempotency_key.distinct()))).one()
    assert keys[0] == keys[1]


def test_wall_clock_jumps_neither_skip_nor_repeat_a_timer(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    alert_id = apply(engine, manager, finding("M1"), T0)
    wall, mono = [T0 + 15 * 60 + 1], [0.0]
    runner = EscalationRunner(engine, manager)
    runner.clock = SteadyClock(lambda: wall[0], lambda: mono[0])
    assert runner.run_once() == 1  # level 2 fired; level 3 is due 45 min from now
    wall[0] -= 3600  # NTP steps the clock back an hour
    mono[0] += 45 * 60
    assert runner.run_once() == 1  # still fires on time: the runner's time never runs backwards
    wall[0] += 10 * 3600  # and then far forward
    assert runner.run_once() == 0 and runner.run_once() == 0
    assert escalated_levels(engine) == [(alert_id, 2), (alert_id, 3)]


def test_timers_stored_after_the_wall_clock_stepped_back_fire_on_time(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    add_elder(engine, "E2", "M2")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    first = apply(engine, manager, finding("M1"), T0)
    wall, mono = [T0 + 15 * 60 + 1], [0.0]
    runner = EscalationRunner(engine, manager)
    runner.clock = SteadyClock(lambda: wall[0], lambda: mono[0])
    assert runner.run_once() == 1  # level 2 of the first alert; its level 3 is due 45 min from now
    wall[0] -= 3600  # NTP steps the clock back an hour
    mono[0] += 1
    assert runner.run_once() == 0
    # The pipeline raises a second alert by the (stepped) wall clock: its work order is due 15 min later.
    second = apply(engine, manager, finding("M2", ts=wall[0]), wall[0])
    wall[0] += 60
    mono[0] += 60
    assert runner.run_once() == 0  # was 1: the work order went out 14 min early, before anyone could acknowledge
    wall[0] += 14 * 60
    mono[0] += 14 * 60
    assert runner.run_once() == 1
    wall[0] += 30 * 60
    mono[0] += 30 * 60
    assert runner.run_once() == 1  # the first alert's level 3, 45 min after its level 2: the step delayed it not
    assert escalated_levels(engine) == [(first, 2), (second, 2), (first, 3)]


def stepped_back_runner(engine: Any, manager: AlertManager, owner: str = "r1") -> tuple[EscalationRunner, Any]:
    """A runner that fired the first alert's level 2 at T0 + 15 min 1 s; then NTP steps the clock back an hour.

    Returns the runner and its clock as ``[wall], [mono]`` lists the test moves.
    """
    wall, mono = [T0 + 15 * 60 + 1], [0.0]
    runner = EscalationRunner(engine, manager, owner=owner)
    runner.clock = SteadyClock(lambda: wall[0], lambda: mono[0])
    assert runner.run_once() == 1  # level 2 of the first alert; its level 3 is due 45 min from now
    wall[0] -= 3600
    mono[0] += 1
    return runner, (wall, mono)


def test_timers_stored_between_a_step_back_and_the_runners_next_pass_fire_on_time(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    add_elder(engine, "E2", "M2")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    first = apply(engine, manager, finding("M1"), T0)
    runner, (wall, mono) = stepped_back_runner(engine, manager)
    # The pipeline raises a second alert by the stepped wall clock before the runner looks again.
    second = apply(engine, manager, finding("M2", ts=wall[0]), wall[0])
    wall[0] += 60
    mono[0] += 60
    assert runner.run_once() == 0  # was 1: its work order went out 14 min early (timed by steady time)
    wall[0] += 14 * 60
    mono[0] += 14 * 60
    assert runner.run_once() == 1
    wall[0] += 30 * 60
    mono[0] += 30 * 60
    assert runner.run_once() == 1  # the first alert's level 3, 45 min after its level 2: the step delayed it not
    assert escalated_levels(engine) == [(first, 2), (second, 2), (first, 3)]


def test_a_step_back_delays_no_timer_across_a_restart(any_engine) -> None:  # type: ignore[no-untyped-def]
    engine = any_engine
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    first = apply(engine, manager, finding("M1"), T0)
    runner, (wall, _mono) = stepped_back_runner(engine, manager)
    assert runner.run_once() == 0  # the runner sees the step
    # The monitor restarts: a new runner, whose clock knows nothing of the step.
    restarted = EscalationRunner(engine, manager, owner="r1")
    restarted.clock = SteadyClock(lambda: wall[0], lambda: 0.0)
    wall[0] += 44 * 60 + 58
    assert restarted.run_once() == 0
    wall[0] += 2
    assert restarted.run_once() == 1  # was 0 until an hour later: the step delayed level 3 after the restart
    assert escalated_levels(engine) == [(first, 2), (first, 3)]


def test_a_step_back_put_right_fires_no_timer_early(any_engine) -> None:  # type: ignore[no-untyped-def]
    """NTP steps the clock back an hour by mistake and puts it right five minutes later: the timers moved back with
    the step, and those stored meanwhile by the wrong clock, must move forward again, or each fires the step early."""
    engine = any_engine
    add_elder(engine, "E1", "M1")
    add_elder(engine, "E2", "M2")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    first = apply(engine, manager, finding("M1"), T0)
    runner, (wall, mono) = stepped_back_runner(engine, manager)
    assert runner.run_once() == 0  # the runner sees the step: level 3 moves back with it
    second = apply(engine, manager, finding("M2", ts=wall[0]), wall[0])  # raised by the wrong clock
    wall[0] += 3600 + 5 * 60  # put right, five minutes on
    mono[0] += 5 * 60
    assert runner.run_once() == 0  # was 2: the second's level 2 (due in 10 min) and the first's level 3 (40 min)
    for wait_s, fired in ((9 * 60 + 58, 0), (2, 1), (29 * 60 + 57, 0), (2, 1)):
        wall[0] += wait_s
        mono[0] += wait_s
        assert runner.run_once() == fired
    # Each 15 and 45 min after it was due, by the clock put right (which lags a second).
    assert escalated_levels(engine) == [(first, 2), (second, 2), (first, 3)]


def test_rival_runners_that_both_see_a_step_back_fire_no_timer_early(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    first = apply(engine, manager, finding("M1"), T0)
    wall, mono = [T0 + 15 * 60 + 1], [0.0]
    runners = [EscalationRunner(engine, manager, owner=f"r{k}") for k in range(2)]  # two workers, one machine
    for r in runners:
        r.clock = SteadyClock(lambda: wall[0], lambda: mono[0])
    assert sum(r.run_once() for r in runners) == 1  # level 2; level 3 is due 45 min from now
    wall[0] -= 3600  # NTP steps the clock back an hour
    mono[0] += 1
    assert sum(r.run_once() for r in runners) == 0  # each sees the step: the timer must move by it once
    wall[0] += 44 * 60 + 58
    mono[0] += 44 * 60 + 58
    assert sum(r.run_once() for r in runners) == 0
    wall[0] += 2
    mono[0] += 2
    assert sum(r.run_once() for r in runners) == 1
    assert escalated_levels(engine) == [(first, 2), (first, 3)]


def test_a_clock_lease_left_by_a_dead_runner_does_not_keep_a_step_back_from_moving_the_timers(any_engine) -> None:  # type: ignore[no-untyped-def]
    engine = any_engine
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    first = apply(engine, manager, finding("M1"), T0)
    # A rival runner took the clock lease for a step it saw, for five minutes, and died just after.
    with engine.begin() as conn:
        assert leases.claim(conn, CLOCK_LEASE, "r0", T0 + 15 * 60 + 1, CLOCK_LEASE_TTL_S)
    runner, (wall, mono) = stepped_back_runner(engine, manager)
    assert runner.run_once() == 0  # the runner sees the step an hour back: the lease, judged by now, is no bar
    for wait_s, fired in ((44 * 60 + 58, 0), (2, 1)):
        wall[0] += wait_s
        mono[0] += wait_s
        assert runner.run_once() == fired  # was 0: the lease looked held for an hour, level 3 an hour late
    assert escalated_levels(engine) == [(first, 2), (first, 3)]


def test_a_host_suspend_with_a_step_back_outstanding_moves_no_timer(engine) -> None:  # type: ignore[no-untyped-def]
    """While the host sleeps the monotonic clock stops and the wall clock goes on: with steady time ahead of the
    wall clock (a step back not put right) the runner took that for a correction and moved the timers forward."""
    from alerts.clock import since_boot

    assert SteadyClock().mono is since_boot  # was time.monotonic, which does not count a suspend
    boot_clock = getattr(time, "CLOCK_BOOTTIME", None)
    if boot_clock is not None:
        before = time.clock_gettime(boot_clock)
        assert before <= since_boot() <= time.clock_gettime(boot_clock)
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    first = apply(engine, manager, finding("M1"), T0)
    runner, (wall, boot) = stepped_back_runner(engine, manager)  # its second clock: the time since boot
    assert runner.run_once() == 0  # the runner sees the step: level 3 moves back with it
    wall[0] += 20 * 60  # the host sleeps 20 min: the wall clock and the time since boot go on
    boot[0] += 20 * 60
    assert runner.run_once() == 0
    for wait_s, fired in ((24 * 60 + 58, 0), (2, 1)):
        wall[0] += wait_s
        boot[0] += wait_s
        assert runner.run_once() == fired  # 45 min after level 2, the sleep counted
    assert escalated_levels(engine) == [(first, 2), (first, 3)]


def test_a_step_back_while_no_runner_ran_delays_no_timer(any_engine) -> None:  # type: ignore[no-untyped-def]
    """The monitor is down, the wall clock steps back an hour, the monitor starts: its runner never saw the step.
    The timers keep their writer's clock (boot id, wall time at boot), which tells the runner how far it stepped."""
    if not (hasattr(time, "CLOCK_BOOTTIME") and Path("/proc/sys/kernel/random/boot_id").exists()):
        pytest.skip("no boot id and time since boot on this host: nothing tells a step the runner did not see")
    engine = any_engine
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    stored_at = time.time()  # by this host's wall clock: the pipeline's
    first = apply(engine, manager, finding("M1", ts=stored_at), stored_at)  # its work order due 15 min later
    restarted = EscalationRunner(engine, manager, clock=lambda: time.time() - 3600)  # the wall clock an hour back
    assert restarted.run_once() == 0
    due = stored_at + 15 * 60 - 3600  # by the stepped clock
    assert restarted.run_once(due - 1) == 0
    assert restarted.run_once(due + 1) == 1  # was 0 until an hour later: the work order an hour late
    assert escalated_levels(engine) == [(first, 2)]


def test_a_step_back_a_runner_sees_moves_a_timer_that_keeps_its_clock_once(engine) -> None:  # type: ignore[no-untyped-def]
    if not (hasattr(time, "CLOCK_BOOTTIME") and Path("/proc/sys/kernel/random/boot_id").exists()):
        pytest.skip("no boot id and time since boot on this host")
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    stored_at = time.time()
    first = apply(engine, manager, finding("M1", ts=stored_at), stored_at)
    back = [0.0]
    runner = EscalationRunner(engine, manager, clock=lambda: time.time() - back[0])
    assert runner.run_once() == 0
    back[0] = 3600.0  # NTP steps the clock back an hour: the runner sees it, and the timer's own clock says so too
    assert runner.run_once() == 0 and runner.run_once() == 0
    due = stored_at + 15 * 60 - 3600
    assert runner.run_once(due - 1) == 0 and runner.run_once(due + 1) == 1  # moved by the step, not twice
    assert escalated_levels(engine) == [(first, 2)]


def test_sms_gateway_gets_one_text_per_contact_over_real_http(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1", CONTACTS)
    fails: list[str] = []

    def respond(body: dict[str, Any]) -> tuple[int, dict[str, str]]:
        if body["to"].endswith("2") and not fails:  # the gateway refuses the second number once
            fails.append(body["to"])
            return 503, {}
        return 200, {}

    gateway = WebhookReceiver(secret=b"k", respond=respond).start()
    try:
        apply(engine, AlertManager(["sms"]), finding("M1"), T0)
        now = [T0]
        sender = OutboxSender(engine, {"sms": SmsGatewayNotifier(gateway.url, "tok", b"k")}, clock=lambda: now[0])
        sender.run_once()
        now[0] += 3600  # past any backoff
        sender.run_once()
        assert sorted(e["to"] for e in gateway.events) == ["13900000001", "13900000002"]
        assert all(e["text"].startswith("【长时间未用水】王秀兰") for e in gateway.events)
        assert gateway.bad_signatures == 0 and len(gateway.arrivals) == 2
    finally:
        gateway.stop()


def test_policy_is_configuration_and_is_validated() -> None:
    settings = get_settings(escalation_policy={"medium": {"work_order_after_min": 5, "supervisor_after_min": None}})
    policy = EscalationPolicy.from_config(settings.escalation_policy)
    assert policy.steps("medium") == [(1, 0.0), (2, 300.0)]
    with pytest.raises(ValueError, match="supervisor level without a work order"):
        EscalationPolicy.from_config({"low": {"work_order_after_min": None, "supervisor_after_min": 10}})
    with pytest.raises(ValueError, match="unknown field"):
        EscalationPolicy.from_config({"low": {"visit_after_min": 10}})
    with pytest.raises(ValueError, match=r"0\.\.10080"):
        EscalationPolicy.from_config({"high": {"work_order_after_min": -1}})


def test_a_batch_rolled_back_and_retried_counts_its_escalation_once(engine) -> None:  # type: ignore[no-untyped-def]
    def fired(level: int) -> float:
        return metrics.registry.get_sample_value("tapwatch_escalations_fired_total", {"level": str(level)}) or 0.0

    add_elder(engine, "E1", "M1", CONTACTS)
    metrics = Metrics()
    manager = AlertManager(["webhook", "sms"], metrics=metrics)
    # The pipeline's batch loses a race to another worker after the alert fired level 1: rolled back, retried.
    with pytest.raises(RuntimeError), engine.begin() as conn:
        apply_in(conn, manager, finding("M1"), T0)
        raise RuntimeError("lost a race")
    assert fired(1) == 0 and escalated_levels(engine) == []
    alert_id = apply(engine, manager, finding("M1"), T0)
    assert escalated_levels(engine) == [(alert_id, 1)]
    assert fired(1) == 1  # one level fired, one counted (was 2: the rolled-back one counted too)
    assert EscalationRunner(engine, manager).run_once(T0 + 15 * 60) == 1
    assert fired(2) == 1


def apply_in(conn: Any, manager: AlertManager, f: Any, now: float) -> None:
    ctx = meter_context(conn, f.meter_id)
    assert ctx is not None
    manager.apply(conn, ctx, f, now)


def test_the_runner_and_an_acknowledge_on_postgresql_lock_in_one_order(postgres_server: Any) -> None:
    """An acknowledge locks the case, then its timers; the runner locked the timer, then the case: the two met head
    on (a deadlock: the cadre's acknowledge answered 503, or the runner's pass failed). The runner now takes the case
    first: it waits for the acknowledge, then finds the timer cancelled, and nobody is chased."""
    engine = open_store(postgres_server.new_database())
    try:
        add_elder(engine, "E1", "M1")  # no contact: the work order is the next level, 15 min after the raise
        manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
        alert_id = apply(engine, manager, finding("M1"), T0)
        assert alert_id is not None
        runner, failures, fired = EscalationRunner(engine, manager), list[BaseException](), list[int]()

        def run() -> None:
            try:
                fired.append(runner.run_once(T0 + 3600))
            except BaseException as exc:  # reported below: the thread's failure is the test's
                failures.append(exc)

        with engine.connect() as conn:
            acknowledging = conn.begin()
            case = dict(conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()._mapping)
            locked = bump(conn, alert_id, ("open", "notified"), state="acknowledged", acknowledged_by="cadre.a")
            assert locked is not None  # the acknowledge holds the case's row, as Lifecycle.acknowledge does first
            pass_ = threading.Thread(target=run)
            pass_.start()
            assert wait_until(lambda: waiting_on_a_lock(engine) >= 1, 10)  # the runner waits on a row we hold
            cancel_timers(conn, case["alert_id"])  # then its timers: before, the runner held the timer
            acknowledging.commit()
        pass_.join(30)
        assert not failures, failures  # before: psycopg DeadlockDetected, in the runner or in the acknowledge
        assert fired == [0] and alert_row(engine, alert_id)["state"] == "acknowledged"
        with engine.connect() as conn:
            statuses = conn.execute(select(escalations.c.status).where(escalations.c.alert_id == alert_id)).scalars()
            assert list(statuses) == ["cancelled"]
    finally:
        engine.dispose()


@pytest.mark.allow_log_exceptions  # the rows this version cannot read are logged, pass after pass
def test_a_timer_or_held_finding_this_version_cannot_read_holds_up_no_other_case(any_engine) -> None:  # type: ignore[no-untyped-def]
    # Rolled back from a release that wrote what this one does not know (a finding with a field it added, held by a
    # snooze; a timer of a level it added). Each pass stopped at the first of them: the held finding is offered
    # before any timer fires, and a timer that raised ended the pass, so no work order of any case, in any worker,
    # fired again.
    engine = any_engine
    manager = AlertManager(["webhook"], policy=EscalationPolicy.from_config({"high": {"contact": False}}))
    for k in range(3):
        add_elder(engine, f"E{k}", f"M{k}")
    unknown, behind, waiting = (apply(engine, manager, finding(f"M{k}"), T0 + k) for k in range(3))
    assert unknown and behind and waiting
    newer = {**dataclasses.asdict(finding("M0", kind="flow")), "confidence": 0.9}  # a field this version lacks
    with engine.begin() as conn:
        conn.execute(
            insert(held_findings).values(
                elder_id="E0", meter_id="M0", kind="flow", finding=newer, release_at=T0, created_at=T0
            )
        )
        conn.execute(update(escalations).where(escalations.c.alert_id == unknown).values(level=7))  # a newer level
    runner = EscalationRunner(engine, manager)
    assert runner.run_once(T0 + 15 * 60 + 5) == 2
    assert sorted(alert_id for alert_id, level in escalated_levels(engine) if level == 2) == sorted([behind, waiting])
    with engine.connect() as conn:  # kept for the release that can read them (or an operator)
        assert conn.execute(select(func.count()).select_from(held_findings)).scalar_one() == 1
        pending = escalations.c.alert_id == unknown, escalations.c.status == "pending"
        assert conn.execute(select(escalations.c.level).where(*pending)).scalar_one() == 7
