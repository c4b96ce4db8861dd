"""Delivery to a real HTTP receiver on loopback that we make fail: down, 500, 429, timeouts, slow, killed sender.

Every test ends with the same audit: every alert event delivered, none
twice under different ids, order kept per elder, signatures verified.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from email.utils import formatdate
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from alerts.manager import AlertManager
from alerts.notifiers import MqttNotifier, SmsGatewayNotifier, WebhookNotifier, WecomRobotNotifier
from alerts.queries import delivery_summary, parked_job, parked_jobs, requeue_parked
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.metrics import Metrics
from store.schema import alerts, outbox
from tests.alert_support import (
    SECRET,
    T0,
    Clock,
    add_elder,
    apply,
    assert_delivered_once_in_order,
    drive,
    finding,
    seed,
)
from tests.conftest import REPO, wait_until
from tests.helpers import this_tree


def test_platform_down_for_an_accelerated_hour_then_back(engine) -> None:  # type: ignore[no-untyped-def]
    receiver = WebhookReceiver(secret=SECRET)
    port = receiver._server.server_address[1]
    receiver._server.server_close()  # the platform is down: connections are refused
    seed(engine, 3)
    clock, metrics = Clock(), Metrics()
    sender = OutboxSender(
        engine,
        {"webhook": WebhookNotifier(f"http://127.0.0.1:{port}/events", SECRET, 2.0)},
        give_up_s=3 * 3600,
        clock=clock,
        seed=3,
        breaker_threshold=3,
        breaker_cooldown_s=120,
        metrics=metrics,
    )
    while clock.now < T0 + 3600:  # an hour of outage, a pass every 10 simulated seconds
        sender.run_once()
        clock.now += 10
    assert sender.delivered == 0 and sender.parked == 0
    assert sender.attempts <= 3 + 3600 / 120 + 3  # the breaker held back all but one probe per cool-down
    opened = metrics.registry.get_sample_value("tapwatch_notifier_circuit_opened_total", {"notifier": "webhook"})
    assert opened is not None and opened >= 2
    receiver = WebhookReceiver(secret=SECRET, port=port).start()
    try:
        drive(sender, clock, engine, step_s=30, max_steps=200)
        assert_delivered_once_in_order(engine, receiver)
        assert metrics.registry.get_sample_value("tapwatch_notifier_circuit_state", {"notifier": "webhook"}) == 0
        sent = metrics.registry.get_sample_value(
            "tapwatch_delivery_attempts_total", {"notifier": "webhook", "result": "sent"}
        )
        assert sent == len(receiver.events)
    finally:
        receiver.stop()


def test_500_429_timeouts_and_slow_responses(engine) -> None:  # type: ignore[no-untyped-def]
    seen: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def respond(event: dict[str, Any]) -> tuple[int, dict[str, str]]:
        with lock:
            seen[event["id"]] += 1
            n = seen[event["id"]]
        who = event["subject"]
        if who == "E0" and n <= 2:
            return 500, {}
        if who == "E1" and n == 1:
            return 429, {"Retry-After": "120"}
        if who == "E2" and n == 1:
            time.sleep(0.6)  # longer than the sender's timeout: it gives up, we keep it, it sends again
        if who == "E3":
            time.sleep(0.1)  # slow but in time
        return 204, {}

    receiver = WebhookReceiver(secret=SECRET, respond=respond).start()
    try:
        seed(engine, 5)
        clock = Clock()
        sender = OutboxSender(
            engine,
            {"webhook": WebhookNotifier(receiver.url, SECRET, 0.3)},
            clock=clock,
            seed=5,
            breaker_threshold=20,
        )
        sender.run_once()
        with engine.connect() as conn:
            e1 = conn.execute(
                select(outbox.c.next_attempt_at, outbox.c.last_error)
                .where(outbox.c.elder_id == "E1", outbox.c.status == "pending")
                .order_by(outbox.c.id)
            ).first()
        assert e1 is not None and e1.last_error == "HTTP 429" and e1.next_attempt_at >= T0 + 120  # Retry-After held
        clock.now += 119
        sender.run_once()
        assert not any(e["subject"] == "E1" for e in receiver.events)
        drive(sender, clock, engine, step_s=5, max_steps=400)
        assert_delivered_once_in_order(engine, receiver)
        assert len(receiver.arrivals) > len(receiver.events)  # the timed-out ones arrived twice, same id
        assert sender.parked == 0
    finally:
        receiver.stop()


@pytest.mark.parametrize("retry_after", ["86400", "inf", "in a day"])
def test_a_receivers_retry_after_of_a_day_does_not_hold_its_alerts_for_a_day(engine, retry_after) -> None:  # type: ignore[no-untyped-def]
    if retry_after == "in a day":  # the HTTP-date form, a day from now
        retry_after = formatdate(time.time() + 86400, usegmt=True)
    answers: dict[str, int] = defaultdict(int)

    def respond(event: dict[str, Any]) -> tuple[int, dict[str, str]]:
        answers[event["id"]] += 1
        return (503, {"Retry-After": retry_after}) if answers[event["id"]] == 1 else (204, {})

    receiver = WebhookReceiver(secret=SECRET, respond=respond).start()
    try:
        seed(engine, 1)
        clock = Clock()
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=clock, seed=1)
        sender.run_once()
        assert receiver.events == []  # the busy answer: the elder's lane waits
        with engine.connect() as conn:
            due = conn.execute(select(func.max(outbox.c.next_attempt_at))).scalar_one()
        assert due <= clock.now + 600  # within the sender's longest backoff, not the receiver's day
        drive(sender, clock, engine, step_s=600, max_steps=8)  # each event: busy once, then taken
        assert_delivered_once_in_order(engine, receiver)
    finally:
        receiver.stop()


class DrippingReceiver:
    """A receiver that answers at once with a status line and headers, then drips its body a byte at a time.

    Each byte comes well within a read timeout, so only a bound on the whole answer ends the wait; after
    ``drip_s`` it hangs up (the body cut short).
    """

    def __init__(self, head: bytes, drip_s: float = 6.0) -> None:
        self.head, self.drip_s = head, drip_s
        self.requests = 0
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/events"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            headers, _, body = request.partition(b"\r\n\r\n")
            length = int(next(h for h in headers.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:])
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            try:
                conn.sendall(self.head)
                ends = time.monotonic() + self.drip_s
                while time.monotonic() < ends and not self._stop.wait(0.1):
                    conn.sendall(b" ")
            except OSError:
                return  # the sender hung up: it has what it needs

    def stop(self) -> None:
        self._stop.set()
        self._server.close()


DRIPPED_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"


@pytest.mark.parametrize("channel", ["webhook", "sms", "wecom"])
def test_a_receiver_dripping_its_answer_does_not_hold_the_sender(channel: str) -> None:
    receiver = DrippingReceiver(DRIPPED_200)
    event: dict[str, Any] = {"id": "a:1", "type": "org.tapwatch.alert.raised", "data": {"kind": "no_activity"}}
    notifier: Any = WebhookNotifier(receiver.url, SECRET, timeout_s=0.5)
    if channel == "sms":
        notifier = SmsGatewayNotifier(receiver.url, timeout_s=0.5)
        event = {"id": "a:2:c0", "data": {"to": "13800000000", "text": "【长时间未用水】王秀兰"}}
    elif channel == "wecom":
        notifier = WecomRobotNotifier(f"{receiver.url}?key=robot-key", timeout_s=0.5)
    try:
        started = time.monotonic()
        result = notifier.send(event)
        took = time.monotonic() - started
        # Before, the send waited on the body for as long as the receiver kept dripping (each byte within
        # the read timeout), holding the elder's lane and one of the sender's few threads.
        assert took < 2.0, (result, took)
        if channel == "wecom":  # a robot's verdict is in the body: one that does not come in time is a retry
            assert not result.ok and not result.permanent and "robot-key" not in result.error
        else:  # the status said it was taken: delivered, not retried (a second text to the family)
            assert result.ok, result
        assert receiver.requests == 1
    finally:
        receiver.stop()


def test_a_short_answer_is_read_so_the_connection_serves_the_next_event() -> None:
    """Judging by the status line alone and closing, every event opened a new connection (in production a TLS
    handshake per event); a short answer is read to its end, as before the dripping receiver's fix."""
    server = socket.create_server(("127.0.0.1", 0))
    connections: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections.append(1)
            threading.Thread(target=answer_each, args=(conn,), daemon=True).start()

    def answer_each(conn: socket.socket) -> None:
        with conn:
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:])
                while len(pending) < length:
                    pending += conn.recv(65536)
                pending = pending[length:]
                conn.sendall(
                    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
                )

    threading.Thread(target=serve, daemon=True).start()
    notifier = WebhookNotifier(f"http://127.0.0.1:{server.getsockname()[1]}/events", SECRET, timeout_s=2.0)
    try:
        for k in range(3):
            assert notifier.send({"id": f"a:{k}", "type": "org.tapwatch.alert.raised", "data": {}}).ok
    finally:
        notifier.close()
        server.close()
    assert len(connections) == 1


def test_rejected_or_too_old_jobs_are_parked_listed_and_can_be_requeued(engine) -> None:  # type: ignore[no-untyped-def]
    verdict = {"status": 400}
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _e: (verdict["status"], {})).start()
    try:
        seed(engine, 1)
        clock = Clock()
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, give_up_s=3600, clock=clock)
        sender.run_once()
        with engine.connect() as conn:
            parked = parked_jobs(conn)
            summary = delivery_summary(conn, clock.now)
        assert {p["last_error"] for p in parked} == {"HTTP 400"} and len(parked) == 3  # the lane goes on
        assert parked[-1]["event_type"] == "raised" and parked[0]["community"] == "大宁社区"
        assert summary["webhook"]["parked"] == 3
        with engine.connect() as conn:  # what the routes ask: filtered lists, one job within the caller's scope
            assert parked_jobs(conn, notifier="webhook", community="大宁社区") == parked
            assert parked_jobs(conn, notifier="sms") == [] and parked_jobs(conn, community="elsewhere") == []
            assert parked_job(conn, parked[0]["id"]) == parked[0]
            assert parked_job(conn, parked[0]["id"], alerts.c.community.in_(["elsewhere"])) is None
        verdict["status"] = 204
        with engine.begin() as conn:
            for p in reversed(parked):
                assert requeue_parked(conn, p["id"], actor="op:zhang", reason="platform fixed", now=clock.now)
            assert parked_job(conn, parked[0]["id"]) is None  # back in its lane: no longer parked
        drive(sender, clock, engine, step_s=1, max_steps=5)
        assert_delivered_once_in_order(engine, receiver)
    finally:
        receiver.stop()


def test_a_wrong_credential_pauses_delivery_until_it_is_fixed_and_parks_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    # The district's platform refuses us, not an event: 401 to a secret it no longer knows (the receiver's own
    # signature check). Before, each job was parked at once as "refused for good", at full speed, with the
    # circuit closed: every alert needed a manual requeue.
    receiver = WebhookReceiver(secret=SECRET).start()
    try:
        seed(engine, 4)
        clock, metrics = Clock(), Metrics()
        secret = b"rotated-away"
        sender = OutboxSender(
            engine, {"webhook": WebhookNotifier(receiver.url, secret)}, clock=clock, seed=1, metrics=metrics
        )
        for _ in range(30):  # half an hour of the wrong credential
            sender.run_once()
            clock.now += 60
        with engine.connect() as conn:
            summary = delivery_summary(conn, clock.now)["webhook"]
        assert summary["parked"] == 0 and summary["pending"] == 12 and receiver.events == []
        assert sender.breakers["webhook"].state != "closed"  # the receiver is what fails: its circuit shows it
        assert metrics.registry.get_sample_value("tapwatch_notifier_circuit_opened_total", {"notifier": "webhook"})
        assert sender.attempts <= 5 + 4 + 30  # the failures that opened it (four lanes at once), a probe a minute
        # The operator fixes the credential (a restart with the right secret).
        receiver.bad_signatures = 0
        fixed = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=clock, seed=1)
        drive(fixed, clock, engine, step_s=60, max_steps=15)  # within the longest backoff: no requeue needed
        assert_delivered_once_in_order(engine, receiver)
    finally:
        receiver.stop()


def test_a_403_for_one_elders_events_parks_them_and_her_lane_goes_on(engine) -> None:  # type: ignore[no-untyped-def]
    # A receiver may forbid one event (an elder of a community it does not serve): retried as a credential
    # failure, it held her lane, a later alert of hers included, until the give-up time.
    receiver = WebhookReceiver(
        secret=SECRET,
        respond=lambda e: (403, {}) if e["type"].endswith(".raised") and e["subject"] == "E0" else (204, {}),
    ).start()
    try:
        seed(engine, 3)
        clock = Clock()
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=clock, seed=1)
        drive(sender, clock, engine, step_s=1, max_steps=10)
        with engine.connect() as conn:
            summary = delivery_summary(conn, clock.now)["webhook"]
        assert summary["parked"] == 1 and summary["pending"] == 0  # her refused event parked, the rest delivered
        assert sender.breakers["webhook"].state == "closed"
        assert len(receiver.events) == 3 * 3 - 1
    finally:
        receiver.stop()


def test_one_elders_rejected_events_do_not_hold_back_every_other_elders_alerts(engine) -> None:  # type: ignore[no-untyped-def]
    # The platform is up and answers every request; it refuses E0's events (say its validation trips on
    # that elder's record) and takes everyone else's.
    receiver = WebhookReceiver(secret=SECRET, respond=lambda e: (422, {}) if e["subject"] == "E0" else (204, {}))
    receiver.start()
    try:
        manager = AlertManager(["webhook"])
        add_elder(engine, "E0", "M0")
        for n in range(3):  # three leaks hours apart: nine events, more than the circuit's threshold
            at = T0 + n * 7 * 3600
            apply(engine, manager, finding("M0", "continuous_flow", at), at)
            apply(engine, manager, finding("M0", "continuous_flow", at + 3600, resolved=True), at + 3600)
        add_elder(engine, "E1", "M1")
        apply(engine, manager, finding("M1", ts=T0 + 21 * 3600), T0 + 21 * 3600)  # another elder's fall
        clock = Clock(T0 + 21 * 3600 + 1)
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=clock, concurrency=1)
        sender.run_once()
        assert [e["subject"] for e in receiver.events][:2] == ["E1", "E1"]  # raised and the work order, now
        assert sender.breakers["webhook"].state == "closed"  # a refusal is an answer: the platform is up
        with engine.connect() as conn:
            assert {p["elder_id"] for p in parked_jobs(conn)} == {"E0"} and len(parked_jobs(conn)) == 9
    finally:
        receiver.stop()


def test_an_event_retried_for_days_and_requeued_each_day_keeps_its_backoff(engine) -> None:  # type: ignore[no-untyped-def]
    # The platform refuses this elder's events with 503 for days (say its record is being migrated); each
    # day an operator puts the parked events back. The attempts add up across requeues.
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _e: (503, {})).start()
    try:
        add_elder(engine, "E0", "M0")
        apply(engine, AlertManager(["webhook"]), finding("M0", "continuous_flow"), T0)
        clock = Clock()
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=clock, seed=4)
        attempts = 0
        while attempts < 1100:
            sender.run_once()  # before: OverflowError at the 1025th attempt (2 ** 1024 is no float), every pass
            with engine.begin() as conn:
                for job in parked_jobs(conn):
                    assert requeue_parked(conn, job["id"], actor="op:zhang", reason="platform fixing", now=clock.now)
                head = conn.execute(
                    select(outbox.c.attempts, outbox.c.next_attempt_at)
                    .where(outbox.c.status == "pending")
                    .order_by(outbox.c.id)
                ).first()
            assert head is not None and head.next_attempt_at <= clock.now + 600
            attempts = head.attempts
            clock.now = max(clock.now + 60, head.next_attempt_at)  # the breaker's cool-down, or the backoff
    finally:
        receiver.stop()


def test_unreachable_platform_parks_after_the_give_up_time(engine) -> None:  # type: ignore[no-untyped-def]
    seed(engine, 1)
    clock = Clock()
    sender = OutboxSender(
        engine, {"webhook": WebhookNotifier("http://127.0.0.1:9/none", None, 1.0)}, give_up_s=3600, clock=clock, seed=2
    )
    while clock.now <= T0 + 3700:
        sender.run_once()
        clock.now += 60
    with engine.connect() as conn:
        statuses = conn.execute(select(outbox.c.status)).scalars().all()
        parked = parked_jobs(conn)
    assert set(statuses) == {"parked"} and len(parked) == 3
    assert all(p["last_error"].startswith("gave up after 3600 s") for p in parked)


SENDER_PROCESS = """
import sys
from alerts.notifiers import WebhookNotifier
from alerts.sender import OutboxSender
from store import open_store

engine = open_store(sys.argv[1])
# One worker identity across the restart (tapwatch run uses its MQTT client id): it resumes its own leased job.
sender = OutboxSender(engine, {"webhook": WebhookNotifier(sys.argv[2], b"platform-secret", 10.0)}, owner="worker-1")
sender.serve(poll_s=0.05)
"""


@pytest.mark.slow
def test_sender_killed_mid_delivery_and_restarted(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    hung = threading.Event()
    count = [0]
    lock = threading.Lock()

    def respond(_event: dict[str, Any]) -> tuple[int, dict[str, str]]:
        with lock:
            count[0] += 1
            n = count[0]
        if n == 15:
            hung.set()
            time.sleep(1.0)  # the sender is killed while we hold its request; we still take the event
        time.sleep(0.01)
        return 204, {}

    receiver = WebhookReceiver(secret=SECRET, respond=respond).start()
    seed(engine, 10, now=time.time())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen([sys.executable, "-c", SENDER_PROCESS, db_url, receiver.url], cwd=REPO, env=this_tree())
        )
        assert hung.wait(30), "the sender process never reached the 15th event"
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        time.sleep(1.2)  # let the held request finish on our side
        procs.append(
            subprocess.Popen([sys.executable, "-c", SENDER_PROCESS, db_url, receiver.url], cwd=REPO, env=this_tree())
        )

        def all_sent() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(outbox.c.id).where(outbox.c.status != "sent").limit(1)).first() is None

        assert wait_until(all_sent, 30)
        assert_delivered_once_in_order(engine, receiver)
        assert len(receiver.arrivals) > len(receiver.events)  # the held event came twice, under its one id
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        receiver.stop()


def test_mqtt_carries_the_same_events_qos1_per_community(engine, mosquitto, receiver) -> None:  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[tuple[str, dict[str, Any]]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="platform-sub", clean_session=True)
    sub.on_connect = lambda c, *_a: c.subscribe("tapwatch/alerts/#", qos=1)
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = lambda _c, _u, m: got.append((m.topic, orjson.loads(m.payload)))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    notifier = MqttNotifier(mosquitto.url, client_id="tapwatch-alerts-test", timeout_s=5)
    try:
        assert subscribed.wait(10) and notifier.wait_connected(10)
        seed(engine, 2)
        manager = AlertManager(["webhook", "mqtt"])
        with engine.begin() as conn:  # a second community
            from store.registry import meter_context, register_elder

            register_elder(conn, {"elder_id": "F1", "name": "赵华", "community": "临汾社区"}, "N1", T0)
            manager.apply(conn, meter_context(conn, "N1") or {}, finding("N1"), T0)
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, b"test-secret"), "mqtt": notifier})
        sender.run_once()
        assert wait_until(lambda: len(got) >= 3, 10)
        mqtt_ids = {e["id"] for _t, e in got}
        webhook_ids = {e["id"] for e in receiver.events if e["subject"] == "F1"}
        assert webhook_ids and webhook_ids <= mqtt_ids
        topics = {t for t, e in got if e["subject"] == "F1"}
        assert topics == {"tapwatch/alerts/临汾社区"}
    finally:
        notifier.close()
        sub.loop_stop()
        sub.disconnect()


def test_which_notifiers_run_is_configuration() -> None:
    from alerts.notifiers import SmsGatewayNotifier, build_notifiers, channel_names
    from core.settings import get_settings

    auto = build_notifiers(
        get_settings(webhook_url="http://127.0.0.1:9/e", webhook_secret="k", sms_gateway_url="https://sms.example/send")
    )
    assert isinstance(auto["webhook"], WebhookNotifier) and isinstance(auto["sms"], SmsGatewayNotifier)
    assert build_notifiers(get_settings(webhook_url=None, sms_gateway_url=None)) == {}
    only = build_notifiers(
        get_settings(alert_notifiers=["webhook"], webhook_url="https://grid.example/e", webhook_secret="k")
    )
    assert list(only) == ["webhook"]
    assert channel_names(get_settings(alert_notifiers=["webhook", "mqtt"])) == ["webhook", "mqtt"]
    with pytest.raises(ValueError, match="needs sms_gateway_url"):
        build_notifiers(get_settings(alert_notifiers=["sms"], sms_gateway_url=None))
    with pytest.raises(ValueError, match="https"):
        build_notifiers(get_settings(webhook_url="http://grid.example/e"))


def test_a_retry_after_date_that_names_no_zone_is_read_as_gmt(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP dates are GMT; one saying "-0000" or nothing was read in this machine's zone (8 h off in Shanghai)."""
    from core.retry import retry_after_s

    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        assert retry_after_s("Tue, 14 Nov 2023 22:13:40 -0000", now=1_699_999_990.0) == 30.0
        assert retry_after_s("Tue, 14 Nov 2023 22:13:40", now=1_699_999_990.0) == 30.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_job_that_sends_nothing_does_not_close_an_open_circuit(engine) -> None:  # type: ignore[no-untyped-def]
    """An SMS job without a phone (or a robot's bookkeeping event) sends no request, yet its "result" closed a
    half-open circuit: every lane then tried the gateway that was still down, a timeout each."""
    from sqlalchemy import insert

    requests: list[dict[str, Any]] = []
    gateway = WebhookReceiver(respond=lambda body: (requests.append(body), (503, {}))[1]).start()
    text = {"text": "【长时间未用水】王秀兰"}
    jobs = [  # the one without a phone first in line, due once the circuit is open
        (f"S{k}", T0 + 1.5 if k == 0 else T0, {} if k == 0 else {"to": f"1390000000{k}", **text}) for k in range(6)
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(outbox),
            [
                {
                    "alert_id": f"a{elder}", "event_seq": 1, "elder_id": elder, "notifier": "sms",
                    "idempotency_key": f"a{elder}:1:sms", "payload": {"id": f"a{elder}:1:c0", "data": data},
                    "status": "pending", "attempts": 0, "next_attempt_at": due, "created_at": T0,
                }
                for elder, due, data in jobs
            ],
        )  # fmt: skip
    try:
        clock = Clock(T0 + 1)
        sender = OutboxSender(engine, {"sms": SmsGatewayNotifier(gateway.url)}, clock=clock, concurrency=1, seed=1)
        sender.run_once()
        assert len(requests) == 5 and sender.breakers["sms"].state == "open"  # five 503s: the circuit opens
        clock.now += 3600  # past the cool-down and every backoff
        sender.run_once()
    finally:
        gateway.stop()
    assert len(requests) == 6  # one probe went to the gateway, found it down, and the circuit opened again
    assert sender.breakers["sms"].state == "open"


class HangingGateway:
    """A gateway that takes every request and never answers (each request costs the sender its whole timeout)."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self._conns: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/sms"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._take, args=(conn,), daemon=True).start()

    def _take(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                self.asked.set()
        except OSError:
            return

    def stop(self) -> None:
        self._server.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def test_a_hanging_sms_gateway_does_not_hold_back_the_work_orders_to_the_platform(engine) -> None:  # type: ignore[no-untyped-def]
    gateway, receiver = HangingGateway(), WebhookReceiver(secret=SECRET).start()
    notifiers = {
        "webhook": WebhookNotifier(receiver.url, SECRET),
        "sms": SmsGatewayNotifier(gateway.url, timeout_s=60.0),
    }
    manager = AlertManager(["webhook", "sms"])
    sender = OutboxSender(engine, notifiers, concurrency=2)
    thread = threading.Thread(target=sender.serve, kwargs={"poll_s": 0.05}, daemon=True)
    try:
        add_elder(engine, "E1", "M1", [{"name": "王强", "phone": "13900000001"}])
        add_elder(engine, "E2", "M2")  # no contact: the work order goes to the platform at once
        apply(engine, manager, finding("M1"), time.time())
        thread.start()
        assert gateway.asked.wait(10), "the SMS gateway never got the text"
        work_order = apply(engine, manager, finding("M2"), time.time())
        sender.wake()

        def arrived() -> bool:
            return any(e["subject"] == "E2" and e["data"].get("level") == 2 for e in receiver.events)

        # Before, the service's pass waited for every lane, the SMS one for its whole timeout (a minute here).
        assert wait_until(arrived, 10), f"work order of {work_order} held back by the SMS gateway"
    finally:
        gateway.stop()
        sender.stop()
        thread.join(10)
        receiver.stop()


def test_an_sms_gateway_down_for_many_families_does_not_hold_back_the_platforms_alerts(any_engine) -> None:  # type: ignore[no-untyped-def]
    engine = any_engine
    gateway = WebhookReceiver(respond=lambda _event: (503, {})).start()
    receiver = WebhookReceiver(secret=SECRET).start()
    manager = AlertManager(["webhook", "sms"])
    clock = Clock(T0 + 1)
    notifiers = {"webhook": WebhookNotifier(receiver.url, SECRET), "sms": SmsGatewayNotifier(gateway.url)}
    sender = OutboxSender(engine, notifiers, clock=clock, seed=1)
    try:
        for k in range(210):  # more families waiting for a text than one pass looks at (200 lanes)
            add_elder(engine, f"E{k}", f"M{k}", [{"name": "王强", "phone": f"139{k:08d}"}])
            apply(engine, manager, finding(f"M{k}"), T0)
        for _ in range(5):
            sender.run_once()
        assert sender.breakers["sms"].state == "open"  # the gateway's 503s opened its circuit: texts wait
        raised = {e["subject"] for e in receiver.events if e["data"]["event"] == "raised"}
        # Before, once the circuit was open, the 200 oldest lanes a pass looks at were texts it holds back, the
        # same each pass: the alerts of the elders after them never reached the platform while the gateway was down.
        assert raised == {f"E{k}" for k in range(210)}
    finally:
        gateway.stop()
        receiver.stop()


def test_a_wall_clock_stepped_back_while_a_circuit_is_open_holds_no_new_job_for_the_step(engine) -> None:  # type: ignore[no-untyped-def]
    """The circuit's cool-down was timed by the wall clock: stepped back an hour while the platform's circuit was
    open, it let nothing through for an hour, though the platform was back, a new elder's work order included."""
    down = [True]
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _body: (503 if down[0] else 200, {})).start()
    manager = AlertManager(["webhook"])
    add_elder(engine, "E1", "M1")
    apply(engine, manager, finding("M1"), T0)
    clock = Clock(T0 + 1)
    try:
        sender = OutboxSender(
            engine,
            {"webhook": WebhookNotifier(receiver.url, SECRET, 2.0)},
            clock=clock,
            seed=1,
            concurrency=1,
            breaker_threshold=1,
            breaker_cooldown_s=60,
        )
        assert sender.run_once() == 0 and sender.breakers["webhook"].state == "open"  # a 503: the circuit opens
        clock.now -= 3600  # NTP steps the clock back an hour; the platform is back
        down[0] = False
        add_elder(engine, "E2", "M2")
        apply(engine, manager, finding("M2", ts=clock.now), clock.now)  # a new case: its jobs are due now
        clock.now += 61  # past the cool-down
        assert sender.run_once() >= 1  # was 0 (until an hour later): the circuit let no probe through
        assert sender.breakers["webhook"].state == "closed"
    finally:
        receiver.stop()


def test_a_job_in_backoff_when_the_wall_clock_steps_back_holds_its_lane_no_longer_than_its_backoff(any_engine) -> None:  # type: ignore[no-untyped-def]
    """A job in backoff kept its next attempt on the clock before the step: stepped back an hour, the platform back,
    the elder's lane (her work order behind the raise) waited the hour on top of the backoff."""
    engine = any_engine
    down = [True]
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _body: (503 if down[0] else 200, {})).start()
    add_elder(engine, "E1", "M1")
    apply(engine, AlertManager(["webhook"]), finding("M1"), T0)  # raised, and the work order at once (no SMS)
    wall, mono = [T0 + 1], [0.0]
    try:
        sender = OutboxSender(
            engine,
            {"webhook": WebhookNotifier(receiver.url, SECRET, 2.0)},
            clock=lambda: wall[0],
            mono=lambda: mono[0],
            seed=1,
            concurrency=1,
        )
        assert sender.run_once() == 0  # a 503: the raise waits a backoff of a second or two
        wall[0] -= 3600  # NTP steps the clock back an hour; the platform is back
        mono[0] += 1
        down[0] = False
        assert sender.run_once() == 0  # within the backoff still
        wall[0] += 5
        mono[0] += 5
        assert sender.run_once() == 3  # was 0 (until an hour later): the raise, the work order, "notified"
        assert [e["data"]["event"] for e in receiver.events] == ["raised", "escalated", "notified"]
        assert receiver.events[1]["data"]["action"] == "dispatch"
        with engine.connect() as conn:  # its give-up counts from when it was written, on the clock as it is now
            created = conn.execute(select(func.min(outbox.c.created_at))).scalar()
        assert created is not None and created <= wall[0]
    finally:
        receiver.stop()


def test_a_job_written_while_the_clock_was_an_hour_behind_is_not_given_up_an_hour_early(engine) -> None:  # type: ignore[no-untyped-def]
    """NTP steps the clock back an hour by mistake and puts it right five minutes later: a job written meanwhile by
    the wrong clock looked an hour older than it is, and its give-up came an hour early (parked at its first try)."""
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _body: (503, {})).start()
    wall, mono = [T0 + 1], [0.0]
    try:
        sender = OutboxSender(
            engine,
            {"webhook": WebhookNotifier(receiver.url, SECRET, 2.0)},
            give_up_s=1800,
            clock=lambda: wall[0],
            mono=lambda: mono[0],
            seed=1,
            concurrency=1,
        )
        sender.run_once()
        wall[0] -= 3600  # stepped back an hour by mistake
        mono[0] += 1
        sender.run_once()
        add_elder(engine, "E1", "M1")
        apply(engine, AlertManager(["webhook"]), finding("M1", ts=wall[0]), wall[0])  # written by the wrong clock
        wall[0] += 3600 + 300  # put right five minutes later
        mono[0] += 300
        sender.run_once()  # the platform still down: a retry, not a give-up after five minutes
        with engine.connect() as conn:
            statuses = conn.execute(select(outbox.c.status)).scalars().all()
        assert statuses and set(statuses) == {"pending"}
    finally:
        receiver.stop()


def test_a_webhook_url_answering_404_to_every_event_waits_for_the_fix_and_parks_nothing(engine, caplog) -> None:  # type: ignore[no-untyped-def]
    # The operator typed the platform's URL wrong (/event for /events): every event gets the server's 404 page.
    # Before, each job was parked at once as a bad event, at full speed: every alert needed a manual requeue.
    receiver = WebhookReceiver(secret=SECRET).start()
    try:
        seed(engine, 4)
        clock, metrics = Clock(), Metrics()
        wrong = WebhookNotifier(receiver.url.removesuffix("s"), SECRET)
        sender = OutboxSender(engine, {"webhook": wrong}, clock=clock, seed=1, metrics=metrics)
        for _ in range(30):  # half an hour of the wrong URL
            sender.run_once()
            clock.now += 60
        with engine.connect() as conn:
            summary = delivery_summary(conn, clock.now)["webhook"]
        assert summary["parked"] == 0 and summary["pending"] == 12 and receiver.events == []
        assert sender.open_circuits() == ["webhook"]  # what /readyz shows as delivery.circuits_open
        assert metrics.registry.get_sample_value("tapwatch_notifier_circuit_state", {"notifier": "webhook"}) != 0
        assert "HTTP 404: nothing at the receiver's URL" in caplog.text  # the WARNING an operator reads
        fixed = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=clock, seed=1)
        drive(fixed, clock, engine, step_s=60, max_steps=15)  # no requeue: the jobs waited in their lanes
        assert_delivered_once_in_order(engine, receiver)
    finally:
        receiver.stop()


def test_a_404_that_names_the_event_parks_it_and_her_lane_goes_on(engine) -> None:  # type: ignore[no-untyped-def]
    # The platform does not know this alert (its record of the elder was removed) and says so about the event.
    def respond(event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if event["type"].endswith(".raised") and event["subject"] == "E0":
            return 404, {"Content-Type": "application/json"}, orjson.dumps({"error": "unknown", "id": event["id"]})
        return 204, {}, b""

    receiver = WebhookReceiver(secret=SECRET, respond=respond).start()
    try:
        seed(engine, 3)
        clock = Clock()
        sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, clock=clock, seed=1)
        drive(sender, clock, engine, step_s=1, max_steps=10)
        with engine.connect() as conn:
            summary = delivery_summary(conn, clock.now)["webhook"]
            parked = parked_jobs(conn)
        assert summary["parked"] == 1 and summary["pending"] == 0 and len(receiver.events) == 3 * 3 - 1
        assert parked[0]["last_error"] == "HTTP 404: the receiver refuses this event"
        assert sender.breakers["webhook"].state == "closed"
    finally:
        receiver.stop()


def test_a_job_whose_attempt_spans_a_step_back_waits_its_backoff_not_the_step(engine) -> None:  # type: ignore[no-untyped-def]
    """The wall clock steps back an hour while a job is being sent (a slow platform): the sender's next pass sees
    the step and moves the stored jobs, then the attempt fails. Its retry was timed by the clock read before the
    send, an hour ahead of the clock now: the elder's lane (her work order behind it) waited the hour on top of the
    backoff."""
    wall, mono = [T0 + 1], [0.0]
    moved = threading.Event()

    def jobs_moved() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(select(func.max(outbox.c.created_at))).scalar() < T0 - 3000)

    def respond(event: dict[str, Any]) -> tuple[int, dict[str, str]]:
        if moved.is_set():
            return 204, {}
        wall[0] -= 3600  # NTP steps the clock back an hour while the platform is still answering the raise
        assert wait_until(jobs_moved, 10)  # the sender's next pass saw the step and moved the stored jobs
        moved.set()
        return 503, {}

    def retry_timed() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(select(func.max(outbox.c.attempts))).scalar())

    receiver = WebhookReceiver(secret=SECRET, respond=respond).start()
    add_elder(engine, "E1", "M1")
    apply(engine, AlertManager(["webhook"]), finding("M1"), T0)  # raised, and the work order at once (no SMS)
    sender = OutboxSender(
        engine,
        {"webhook": WebhookNotifier(receiver.url, SECRET, 30.0)},
        clock=lambda: wall[0],
        mono=lambda: mono[0],
        seed=1,
    )
    serving = threading.Thread(target=sender.serve, kwargs={"poll_s": 0.05}, daemon=True)
    serving.start()
    try:
        assert wait_until(moved.is_set, 20)  # the raise was tried across the step, and refused
        # The sender has recorded the 503 and timed its retry (else the clock moved on below would time it, and the
        # retry would wait on a clock the test no longer moves).
        assert wait_until(retry_timed, 20)
        wall[0] += 5  # the backoff (a second or two) is over
        mono[0] += 5
        sender.wake()
        # Was 0 events for an hour: the retry stood at the clock before the step.
        assert wait_until(lambda: len(receiver.events) == 3, 20)
        assert [e["data"]["event"] for e in receiver.events] == ["raised", "escalated", "notified"]
    finally:
        sender.stop()
        serving.join(10)
        receiver.stop()


def test_a_familys_text_still_queued_when_the_data_closes_the_case_is_not_sent(any_engine) -> None:  # type: ignore[no-untyped-def]
    """The SMS gateway was down when a silence's case raised its family text ("call her now"); by the time it is
    back the data has closed the case (she used water): the family is not sent to the phone over a silence that has
    ended. The platform still gets every event of the case."""
    engine = any_engine
    down = [True]
    gateway = WebhookReceiver(respond=lambda _event: (503 if down[0] else 200, {})).start()
    receiver = WebhookReceiver(secret=SECRET).start()
    manager = AlertManager(["webhook", "sms"])
    clock = Clock(T0 + 1)
    notifiers = {"webhook": WebhookNotifier(receiver.url, SECRET), "sms": SmsGatewayNotifier(gateway.url)}
    sender = OutboxSender(engine, notifiers, clock=clock, seed=1, concurrency=1)
    try:
        add_elder(engine, "E1", "M1", [{"name": "王强", "phone": "13900000001"}])
        case = apply(engine, manager, finding("M1"), T0)
        sender.run_once()
        assert gateway.events == [] and gateway.deliveries == 0  # the gateway is down: the text waits
        apply(engine, manager, finding("M1", ts=T0 + 1800, resolved=True), T0 + 1800)  # water used again
        clock.now, down[0] = T0 + 1800, False
        drive(sender, clock, engine, 60.0, 30)
        assert gateway.events == []  # before: the text went out, half an hour after the silence had ended
        with engine.connect() as conn:
            texts = conn.execute(select(outbox.c.status, outbox.c.last_error).where(outbox.c.notifier == "sms")).all()
        assert [t.status for t in texts] == ["expired"] and "closed" in (texts[0].last_error or ""), texts
        events = [e["data"]["event"] for e in receiver.events if e["data"]["alert_id"] == case]
        assert events == ["raised", "escalated", "notified", "resolved"], events
        assert_delivered_once_in_order(engine, receiver)
    finally:
        gateway.stop()
        receiver.stop()


def test_a_familys_text_parked_when_the_case_closes_is_withdrawn_too(any_engine) -> None:  # type: ignore[no-untyped-def]
    """The SMS gateway refused a silence's family text for good (400: parked); the data then closes the case (she
    used water). The text is withdrawn as a queued one is: an operator requeueing what was parked once the gateway
    is fixed must not send the family to the phone over a silence that has ended."""
    engine = any_engine
    gateway = WebhookReceiver(respond=lambda _event: (400, {})).start()
    manager = AlertManager(["sms"])
    clock = Clock(T0 + 1)
    sender = OutboxSender(engine, {"sms": SmsGatewayNotifier(gateway.url)}, clock=clock, seed=1, concurrency=1)
    try:
        add_elder(engine, "E1", "M1", [{"name": "王强", "phone": "13900000001"}])
        apply(engine, manager, finding("M1"), T0)
        sender.run_once()
        with engine.connect() as conn:
            assert [j["notifier"] for j in parked_jobs(conn)] == ["sms"]  # refused for good: parked
        apply(engine, manager, finding("M1", ts=T0 + 1800, resolved=True), T0 + 1800)  # water used again
        with engine.connect() as conn:
            texts = conn.execute(select(outbox.c.id, outbox.c.status, outbox.c.last_error)).all()
        assert [t.status for t in texts] == ["expired"] and "closed" in (texts[0].last_error or ""), texts
        with engine.begin() as conn:
            assert not requeue_parked(conn, texts[0].id, actor="op", reason="gateway fixed", now=T0 + 3600)
    finally:
        gateway.stop()
