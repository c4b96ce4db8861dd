"""Delivery channels: WeCom and DingTalk robots, unsigned webhooks refused, no channel said aloud, secret rotation.

The robots are real HTTP peers on 127.0.0.1 (alerts.receiver.RobotReceiver) that check the documented
message formats and DingTalk's signature the way the real robots do.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from alerts.events import verify
from alerts.manager import AlertManager
from alerts.messages import RETIRED, local_time
from alerts.notifiers import (
    CommunityRobots,
    DingtalkRobotNotifier,
    UnsignedWebhookError,
    WebhookNotifier,
    WecomRobotNotifier,
    build_notifiers,
    channel_names,
)
from alerts.receiver import RobotReceiver, WebhookReceiver
from alerts.sender import OutboxSender
from core.settings import get_settings
from store.registry import register_elder
from store.schema import elders, outbox
from tests.alert_support import T0, add_elder, alert_row, apply, finding

ROBOT_KEY = "6f1c2a9e-robot-key-never-logged"
DING_SECRET = "SEC0123456789abcdef-never-logged"
#: Her registration before a change (tests.alert_support.add_elder): what AlertManager.elder_changed is told.
WAS = {"name": "王秀兰", "tz": "Asia/Shanghai"}


@pytest.fixture
def wecom() -> Any:
    robot = RobotReceiver("wecom", key=ROBOT_KEY).start()
    yield robot
    robot.stop()


@pytest.fixture
def dingtalk() -> Any:
    robot = RobotReceiver("dingtalk", key=ROBOT_KEY, secret=DING_SECRET).start()
    yield robot
    robot.stop()


def _jobs(engine: Any, notifier: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(outbox).where(outbox.c.notifier == notifier).order_by(outbox.c.id))
        return [dict(r._mapping) for r in rows]


# -- group robots ------------------------------------------------------------------------------


def test_wecom_and_dingtalk_robots_get_each_alert_step_as_markdown(engine, wecom, dingtalk) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["wecom", "dingtalk"])
    apply(engine, manager, finding("M1"), T0)
    notifiers = {
        "wecom": WecomRobotNotifier(wecom.url),
        "dingtalk": DingtalkRobotNotifier(dingtalk.url, DING_SECRET),
    }
    sender = OutboxSender(engine, notifiers, clock=lambda: T0 + 1)
    sender.run_once()
    apply(engine, manager, finding("M1", ts=T0 + 3600, resolved=True), T0 + 3600)
    OutboxSender(engine, notifiers, clock=lambda: T0 + 3601).run_once()

    assert wecom.refused == [] and dingtalk.refused == []  # format, key and signature all accepted
    # raised, escalated (no contact reachable: the work order at once), resolved; "notified" is not posted.
    assert len(wecom.messages) == len(dingtalk.messages) == 3
    raised = wecom.messages[0]
    assert raised["msgtype"] == "markdown"
    assert raised["markdown"]["content"].startswith("**【长时间未用水】大宁社区**")
    assert "王秀兰（大宁社区 3号楼 502）：12 小时未用水。" in raised["markdown"]["content"]
    ding = dingtalk.messages[0]["markdown"]
    assert ding["title"] == "【长时间未用水】大宁社区" and "王秀兰" in ding["text"]
    assert "用水已恢复" in wecom.messages[-1]["markdown"]["content"]
    assert all(j["status"] == "sent" for j in _jobs(engine, "wecom") + _jobs(engine, "dingtalk"))


def test_each_community_group_reads_only_its_own_elders_alerts(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Per-community robots: one community's chat group never reads another community's elders."""
    robots = {c: RobotReceiver("wecom", key=f"{ROBOT_KEY}-{k}").start() for k, c in enumerate(("大宁社区", "延长新村"))}
    ding = RobotReceiver("dingtalk", key=ROBOT_KEY, secret=DING_SECRET).start()
    try:
        monkeypatch.setenv(
            "TAPWATCH_WECOM_COMMUNITY_ROBOTS", orjson.dumps({c: r.url for c, r in robots.items()}).decode()
        )
        monkeypatch.setenv(
            "TAPWATCH_DINGTALK_COMMUNITY_ROBOTS", orjson.dumps({"延长新村": f"{ding.url} {DING_SECRET}"}).decode()
        )
        settings = get_settings()
        assert channel_names(settings) == ["wecom", "dingtalk"]
        notifiers = build_notifiers(settings)
        assert isinstance(notifiers["wecom"], CommunityRobots) and ROBOT_KEY not in repr(notifiers)
        for k, community in enumerate(("大宁社区", "延长新村", "彭浦新村")):  # the third has no group at all
            elder = {
                "elder_id": f"E{k}",
                "name": f"老人{k}",
                "community": community,
                "building": "1号楼",
                "room": "101",
            }
            with engine.begin() as conn:
                register_elder(conn, {**elder, "contacts": []}, f"M{k}", T0)
            apply(engine, AlertManager(["wecom", "dingtalk"]), finding(f"M{k}"), T0)
        sender = OutboxSender(engine, notifiers, clock=lambda: T0 + 1)
        # Two passes: a "notified" step one lane queues may land in another lane already worked in the first.
        sender.run_once()
        sender.run_once()

        for community, robot in robots.items():
            texts = [m["markdown"]["content"] for m in robot.messages]
            assert texts and all(community in t for t in texts), community  # its own elders' steps reach it...
            others = {"大宁社区": "老人1", "延长新村": "老人0"}[community]
            assert not any(others in t or "老人2" in t for t in texts)  # ...and nobody else's
        assert ding.refused == [] and ding.messages and all("老人1" in m["markdown"]["text"] for m in ding.messages)
        assert {j["status"] for j in _jobs(engine, "wecom") + _jobs(engine, "dingtalk")} == {"sent"}  # none parked
    finally:
        for robot in [*robots.values(), ding]:
            robot.stop()


def test_one_communitys_unreachable_group_robot_does_not_hold_back_the_other_groups(engine, wecom) -> None:  # type: ignore[no-untyped-def]
    # 延长新村's robot URL points nowhere (a typo in its host, say); 大宁社区's group works. The channel's
    # circuit opens on the broken group's failures: before, every community's group waited with it, and each
    # cool-down's one probe went to the broken group's jobs again.
    robots = CommunityRobots(
        "wecom",
        {
            "延长新村": WecomRobotNotifier(f"http://127.0.0.1:9/cgi-bin/webhook/send?key={ROBOT_KEY}", timeout_s=1.0),
            "大宁社区": WecomRobotNotifier(wecom.url),
        },
    )
    manager = AlertManager(["wecom"])
    for k in range(6):  # six elders of the broken group's community first, then one of 大宁社区
        elder = {"elder_id": f"Y{k}", "name": f"老人{k}", "community": "延长新村", "building": "1号楼", "room": "101"}
        with engine.begin() as conn:
            register_elder(conn, {**elder, "contacts": []}, f"MY{k}", T0)
        apply(engine, manager, finding(f"MY{k}"), T0)
    add_elder(engine, "E1", "M1")
    apply(engine, manager, finding("M1"), T0)
    now = [T0 + 1]
    sender = OutboxSender(engine, {"wecom": robots}, clock=lambda: now[0], concurrency=1, seed=1)
    sender.run_once()
    assert len(wecom.messages) == 2  # 大宁社区's raise and work order, in the same pass
    for _ in range(10):  # ten minutes more: the broken group's jobs retry; the working group loses nothing
        now[0] += 60
        sender.run_once()
    assert {j["status"] for j in _jobs(engine, "wecom") if j["elder_id"] == "E1"} == {"sent"}


def test_a_broken_group_robot_with_more_lanes_than_a_pass_reads_does_not_starve_the_other_groups(  # type: ignore[no-untyped-def]
    any_engine, wecom
) -> None:
    # 延长新村's robot is broken and more of its elders wait for it than one pass reads (200 lanes a channel):
    # its open circuit keeps their heads due. Before, those 200 oldest heads were all a pass saw of the channel,
    # every pass: 大宁社区's group never got its alert while 延长新村's robot stayed broken.
    engine = any_engine
    robots = CommunityRobots(
        "wecom",
        {
            "延长新村": WecomRobotNotifier(f"http://127.0.0.1:9/cgi-bin/webhook/send?key={ROBOT_KEY}", timeout_s=1.0),
            "大宁社区": WecomRobotNotifier(wecom.url),
        },
    )
    manager = AlertManager(["wecom"])
    for k in range(230):  # more than a pass reads, even without the few whose failures opened the circuit
        elder = {"elder_id": f"Y{k}", "name": f"老人{k}", "community": "延长新村", "building": "1号楼", "room": "101"}
        with engine.begin() as conn:
            register_elder(conn, {**elder, "contacts": []}, f"MY{k}", T0)
        apply(engine, manager, finding(f"MY{k}"), T0)
    add_elder(engine, "E1", "M1")  # 大宁社区, after all of them
    apply(engine, manager, finding("M1"), T0)
    now = [T0 + 1]
    sender = OutboxSender(engine, {"wecom": robots}, clock=lambda: now[0], seed=1)
    for _ in range(3):
        sender.run_once()
        now[0] += 1
    assert sender.breakers["wecom/延长新村"].state == "open"
    assert {j["status"] for j in _jobs(engine, "wecom") if j["elder_id"] == "E1"} == {"sent"}
    assert len(wecom.messages) == 2  # 大宁社区's raise and work order


def test_an_alert_no_group_could_read_is_not_marked_notified(engine, wecom) -> None:  # type: ignore[no-untyped-def]
    # A district whose cadres read WeCom groups, without a platform link yet; 大宁社区 has no group. Its alert
    # reached nobody: before, the group channel's "delivered" made it "notified" (and told the history so).
    robots = CommunityRobots("wecom", {"延长新村": WecomRobotNotifier(wecom.url)})
    add_elder(engine, "E1", "M1")  # 大宁社区
    alert_id = apply(engine, AlertManager(["wecom"]), finding("M1"), T0)
    assert alert_id is not None
    OutboxSender(engine, {"wecom": robots}, clock=lambda: T0 + 1).run_once()
    assert wecom.messages == [] and {j["status"] for j in _jobs(engine, "wecom")} == {"sent"}  # nothing to retry
    assert alert_row(engine, alert_id)["state"] == "open"


def test_a_dingtalk_signing_secret_the_robot_refuses_waits_for_the_fix_and_no_key_reaches_the_log(  # type: ignore[no-untyped-def]
    engine, dingtalk, caplog
) -> None:
    # A signing secret copied wrong: DingTalk answers 310000 "sign not match" to every message. Before, each job
    # was parked at once, the circuit closed: every alert needed a manual requeue once the secret was fixed.
    add_elder(engine, "E1", "M1")
    apply(engine, AlertManager(["dingtalk"]), finding("M1"), T0)
    caplog.set_level(logging.DEBUG)
    now = [T0 + 1]
    wrong = DingtalkRobotNotifier(dingtalk.url, "SECwrong")
    sender = OutboxSender(engine, {"dingtalk": wrong}, clock=lambda: now[0], seed=1, breaker_threshold=2)
    for _ in range(10):
        sender.run_once()
        now[0] += 60
    jobs = _jobs(engine, "dingtalk")
    assert dingtalk.messages == [] and dingtalk.refused[0] == (310000, "sign not match")
    assert {j["status"] for j in jobs} == {"pending"} and "errcode 310000" in jobs[0]["last_error"]
    assert sender.open_circuits() == ["dingtalk"]
    unsigned = DingtalkRobotNotifier(dingtalk.url)  # a signed robot also refuses a request without a sign
    assert not unsigned.send({"data": {"kind": "no_activity", "event": "raised"}}).permanent
    fixed = OutboxSender(
        engine, {"dingtalk": DingtalkRobotNotifier(dingtalk.url, DING_SECRET)}, clock=lambda: now[0] + 600
    )
    fixed.run_once()  # no requeue: the jobs waited in their lane
    assert {j["status"] for j in _jobs(engine, "dingtalk")} == {"sent"} and len(dingtalk.messages) == 2
    assert ROBOT_KEY not in caplog.text and DING_SECRET not in caplog.text and "SECwrong" not in caplog.text
    assert "***" in repr(wrong) and ROBOT_KEY not in repr(wrong)


def test_a_message_without_the_dingtalk_robots_keyword_is_parked_and_the_lane_goes_on(engine) -> None:  # type: ignore[no-untyped-def]
    # The group's robot takes only messages holding its keyword (自定义关键词 "持续用水"): a fall's message lacks
    # it and will never pass (parked, listed), the leak's after it go out.
    robot = RobotReceiver("dingtalk", key=ROBOT_KEY, keyword="持续用水").start()
    try:
        add_elder(engine, "E1", "M1")
        manager = AlertManager(["dingtalk"])
        apply(engine, manager, finding("M1"), T0)  # no_activity: raised and the work order, without the keyword
        apply(engine, manager, finding("M1", "continuous_flow", T0 + 60), T0 + 60)  # joins the case: it has it
        OutboxSender(engine, {"dingtalk": DingtalkRobotNotifier(robot.url)}, clock=lambda: T0 + 61).run_once()
        statuses = [j["status"] for j in _jobs(engine, "dingtalk")]
        assert statuses[:2] == ["parked", "parked"] and statuses[-1] == "sent" and len(robot.messages) >= 1
        assert robot.refused[0] == (310000, "keywords not in content")
    finally:
        robot.stop()


def test_a_robot_key_the_robot_does_not_know_waits_for_the_fix_and_parks_nothing(engine, wecom) -> None:  # type: ignore[no-untyped-def]
    # A key copied wrong into the settings: the robot answers 93000 to every message. Before, each job was
    # parked at once, the circuit closed: every alert needed a manual requeue once the key was fixed.
    add_elder(engine, "E1", "M1")
    apply(engine, AlertManager(["wecom"]), finding("M1"), T0)
    now = [T0 + 1]
    wrong = WecomRobotNotifier(wecom.url.replace(ROBOT_KEY, "mistyped-key"))
    sender = OutboxSender(engine, {"wecom": wrong}, clock=lambda: now[0], seed=1, breaker_threshold=2)
    for _ in range(10):
        sender.run_once()
        now[0] += 60
    jobs = _jobs(engine, "wecom")
    assert {j["status"] for j in jobs} == {"pending"} and "93000" in jobs[0]["last_error"]
    assert sender.breakers["wecom"].state != "closed" and wecom.refused[0] == (93000, "invalid webhook url")
    fixed = OutboxSender(engine, {"wecom": WecomRobotNotifier(wecom.url)}, clock=lambda: now[0] + 600, seed=1)
    fixed.run_once()  # no requeue: the jobs waited in their lane
    assert {j["status"] for j in _jobs(engine, "wecom")} == {"sent"} and len(wecom.messages) == 2


def test_a_robot_rate_limit_is_retried_after_a_minute_then_delivered(engine, wecom) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    apply(engine, AlertManager(["wecom"]), finding("M1"), T0)
    wecom.errcodes = [45009]  # "api freq out of limit"
    now = [T0 + 1]
    sender = OutboxSender(engine, {"wecom": WecomRobotNotifier(wecom.url)}, clock=lambda: now[0], seed=1)
    sender.run_once()
    head = _jobs(engine, "wecom")[0]
    assert head["status"] == "pending" and "45009" in head["last_error"]
    assert head["next_attempt_at"] >= now[0] + 60  # robots count per minute: no sooner
    now[0] = head["next_attempt_at"]
    sender.run_once()
    assert {j["status"] for j in _jobs(engine, "wecom")} == {"sent"}
    assert len(wecom.messages) == 2  # raised and escalated; the "notified" step is not posted to a group


def test_an_unreachable_robot_is_retried_and_its_key_is_not_in_the_error() -> None:
    notifier = WecomRobotNotifier(f"http://127.0.0.1:9/cgi-bin/webhook/send?key={ROBOT_KEY}", timeout_s=1.0)
    result = notifier.send({"data": {"kind": "no_activity", "event": "raised"}})
    assert not result.ok and not result.permanent
    assert ROBOT_KEY not in result.error and "wecom" in result.error


def test_robots_run_when_their_url_is_set_and_the_url_stays_secret() -> None:
    settings = get_settings(
        wecom_robot_url=f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={ROBOT_KEY}",
        dingtalk_robot_url=f"https://oapi.dingtalk.com/robot/send?access_token={ROBOT_KEY}",
        dingtalk_robot_secret=DING_SECRET,
    )
    assert channel_names(settings) == ["wecom", "dingtalk"]
    assert ROBOT_KEY not in repr(settings) and DING_SECRET not in repr(settings)
    built = build_notifiers(settings)
    assert isinstance(built["wecom"], WecomRobotNotifier) and isinstance(built["dingtalk"], DingtalkRobotNotifier)
    with pytest.raises(ValueError, match="wecom_robot_url must use https") as info:
        build_notifiers(get_settings(wecom_robot_url=f"http://robot.example/send?key={ROBOT_KEY}"))
    assert ROBOT_KEY not in str(info.value)
    with pytest.raises(ValueError, match="needs dingtalk_robot_url"):
        build_notifiers(get_settings(alert_notifiers=["dingtalk"]))


# -- unsigned webhooks ----------------------------------------------------------------------------


def test_an_unsigned_webhook_is_refused_unless_allowed(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    url = "http://127.0.0.1:9/events"
    for secret in (None, ""):  # compose passes an unset variable as an empty string
        with pytest.raises(UnsignedWebhookError, match="TAPWATCH_WEBHOOK_SECRET 未设置") as info:
            build_notifiers(get_settings(webhook_url=url, webhook_secret=secret))
        assert "TAPWATCH_ALLOW_UNSIGNED_WEBHOOK=true" in str(info.value)
    with pytest.raises(UnsignedWebhookError, match="TAPWATCH_WEBHOOK_SECRET is not set"):
        build_notifiers(get_settings(webhook_url=url, language="en"))
    allowed = build_notifiers(get_settings(webhook_url=url, allow_unsigned_webhook=True))["webhook"]
    assert isinstance(allowed, WebhookNotifier) and allowed.secret is None

    from tapwatch.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAPWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAPWATCH_WEBHOOK_URL", url)
    monkeypatch.setenv("TAPWATCH_WEBHOOK_SECRET", "")
    assert main(["run"]) == 2  # refuses before connecting anything
    err = capsys.readouterr().err
    assert "TAPWATCH_WEBHOOK_SECRET" in err and "TAPWATCH_ALLOW_UNSIGNED_WEBHOOK" in err


class _RecordingReceiver(WebhookReceiver):
    """A receiver that keeps each request's body and signature header as they came."""

    def __init__(self, secret: bytes | None) -> None:
        super().__init__(secret=secret)
        self.signed: list[tuple[bytes, str]] = []

    def take(self, body: bytes, signature: str, idempotency_key: str = "") -> tuple[int, dict[str, str], bytes]:
        self.signed.append((body, signature))
        return super().take(body, signature, idempotency_key)


@pytest.mark.parametrize("gateway_secret", [b"the-sms-gateways-own-key", None])
def test_the_sms_gateway_gets_no_signature_the_platform_would_take(gateway_secret: bytes | None) -> None:
    """The SMS gateway, an SMS company and not the grid platform, was sent requests signed with
    TAPWATCH_WEBHOOK_SECRET, the key the platform takes events by: to verify them it had to hold that key, and
    with it could sign a fall, or a case closed, that the platform would take as tapwatch's. The gateway's
    requests are signed with TAPWATCH_SMS_GATEWAY_SECRET, its own, or not at all."""
    platform_secret = b"the-platforms-key"
    gateway = _RecordingReceiver(secret=gateway_secret).start()
    try:
        settings = get_settings(
            alert_notifiers=["sms"],
            webhook_secret=platform_secret.decode(),
            sms_gateway_url=gateway.url,
            sms_gateway_secret=gateway_secret.decode() if gateway_secret else None,
        )
        sms = build_notifiers(settings)["sms"]
        event = {"id": "A1:1:c0", "data": {"to": "13800000000", "text": "请给王秀兰打电话"}}
        assert sms.send(event).ok
    finally:
        gateway.stop()
    (body, signature), *_ = gateway.signed
    assert not verify(platform_secret, body, signature, time.time()), "signed with the platform's key"
    assert bool(signature) == (gateway_secret is not None)
    assert [e["to"] for e in gateway.events] == ["13800000000"]


# -- no channel at all ---------------------------------------------------------------------------


def test_a_monitor_without_any_channel_says_so_at_start_and_on_readyz(tmp_path: Path, mosquitto, caplog) -> None:  # type: ignore[no-untyped-def]
    from tapwatch.service import Service

    caplog.set_level(logging.INFO, logger="tapwatch.service")
    service = Service(get_settings(data_dir=tmp_path, mqtt_url=mosquitto.url))
    service.start()
    try:
        warned = [r for r in caplog.records if r.levelno == logging.WARNING and "告警发送渠道" in r.getMessage()]
        assert warned, "no warning at start"
        delivery = service.readiness()["delivery"]
        assert delivery["channels"] == [] and "TAPWATCH_WEBHOOK_URL" in delivery["warning"]
    finally:
        service.stop()
    with_channel = Service(
        get_settings(data_dir=tmp_path, mqtt_url=mosquitto.url, webhook_url="http://127.0.0.1:9/e", webhook_secret="k")
    )
    try:
        delivery = with_channel.readiness()["delivery"]
        assert delivery["channels"] == ["webhook"] and "warning" not in delivery
    finally:
        with_channel.engine.dispose()


def test_readyz_names_a_channel_whose_receiver_refuses_our_credentials(tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    # The platform was given another secret: its 401s open the webhook's circuit and the jobs wait.
    from tapwatch.service import Service

    platform = WebhookReceiver(secret=b"the-platforms-secret").start()
    settings = get_settings(
        data_dir=tmp_path, mqtt_url=mosquitto.url, webhook_url=platform.url, webhook_secret="our-old-secret"
    )
    service = Service(settings)
    try:
        assert service.readiness()["delivery"]["circuits_open"] == []
        manager, now = AlertManager(["webhook"]), time.time()  # the service's sender runs on the real clock
        for k in range(settings.circuit_failures):
            add_elder(service.engine, f"E{k}", f"M{k}")
            apply(service.engine, manager, finding(f"M{k}", ts=now), now)
        service.sender.run_once()
        delivery = service.readiness()["delivery"]
        assert delivery["circuits_open"] == ["webhook"] and delivery["parked"] == 0 and delivery["pending"] > 0
    finally:
        platform.stop()
        service.engine.dispose()


# -- rotating the webhook secret -------------------------------------------------------------------


def test_rotating_the_webhook_secret_loses_no_event(engine) -> None:  # type: ignore[no-untyped-def]
    """The procedure of docs/deploy.md: the platform accepts old and new, tapwatch switches, the platform drops old."""
    manager = AlertManager(["webhook"])
    for i in range(4):
        add_elder(engine, f"E{i}", f"M{i}")
    platform = WebhookReceiver(secret=[b"new-secret", b"old-secret"]).start()  # step 1: both accepted
    try:
        apply(engine, manager, finding("M0"), T0)
        apply(engine, manager, finding("M1"), T0)
        old = OutboxSender(engine, {"webhook": WebhookNotifier(platform.url, b"old-secret")}, clock=lambda: T0 + 1)
        old.run_once()
        before = len(platform.events)
        # Alerts raised while the monitor restarts with the new secret wait in the outbox ...
        apply(engine, manager, finding("M2"), T0 + 2)
        apply(engine, manager, finding("M3"), T0 + 2)
        # ... and go out signed with the new one (step 2): signatures are made at send time.
        new = OutboxSender(engine, {"webhook": WebhookNotifier(platform.url, b"new-secret")}, clock=lambda: T0 + 3)
        new.run_once()
        assert platform.bad_signatures == 0
        # raised, escalated (the work order) and notified for each elder: two before the switch, two after
        assert before == 6 and len(platform.events) == 12
        assert sorted(e["subject"] for e in platform.events if e["type"].endswith(".raised")) == [
            "E0",
            "E1",
            "E2",
            "E3",
        ]
        assert all(j["status"] == "sent" for j in _jobs(engine, "webhook"))
    finally:
        platform.stop()
    # Step 3, the old secret dropped: a sender still on it is refused; its jobs wait for the new secret (the
    # refusal is about the credential, not the event: counted against the circuit, never parked for it).
    strict = WebhookReceiver(secret=b"new-secret").start()
    try:
        stale = WebhookNotifier(strict.url, b"old-secret")
        refused = stale.send({"id": "x:1", "data": {}})
        assert not refused.ok and not refused.permanent and strict.bad_signatures == 1
    finally:
        strict.stop()


def test_steps_queued_before_her_move_go_to_the_group_of_the_community_she_moved_to(engine) -> None:  # type: ignore[no-untyped-def]
    """Her case's steps still waiting in the outbox when she moved (the group's robot was down, or her lane held
    back) went to the group of the community she left, with her old address: a group that no longer works her
    case, and may not read who lives alone where. They go to her new community's group, at her new address."""
    old, new = "大宁社区", "延长新村"
    robots = {c: RobotReceiver("wecom", key=f"{ROBOT_KEY}-{k}").start() for k, c in enumerate((old, new))}
    try:
        add_elder(engine, "E1", "M1")  # 大宁社区 3号楼 502
        manager = AlertManager(["wecom"])
        alert_id = apply(engine, manager, finding("M1"), T0)
        assert alert_id is not None
        with engine.begin() as conn:  # she moves before the group robot took her case's steps
            conn.execute(
                update(elders).where(elders.c.elder_id == "E1").values(community=new, building="5号楼", room="101")
            )
            manager.move(conn, "E1", new, "admin", T0 + 60)
        notifiers = {"wecom": CommunityRobots("wecom", {c: WecomRobotNotifier(r.url) for c, r in robots.items()})}
        sender = OutboxSender(engine, notifiers, clock=lambda: T0 + 61)
        sender.run_once()
        sender.run_once()

        assert robots[old].messages == []
        texts = [m["markdown"]["content"] for m in robots[new].messages]
        assert len(texts) == 3  # raised, the work order, moved
        assert all(t.startswith(f"**【长时间未用水】{new}**") for t in texts)
        assert all("王秀兰（延长新村 5号楼 101）" in t and old not in t for t in texts[:2])
        assert {j["status"] for j in _jobs(engine, "wecom")} == {"sent"}
    finally:
        for robot in robots.values():
            robot.stop()


def test_steps_queued_before_a_move_to_another_zone_say_since_when_in_it_once(engine) -> None:  # type: ignore[no-untyped-def]
    """Moved to another community and time zone at once: every step queued, the move's own among them, says since
    when in her new zone (the move's text, written in it, is not shifted a second time)."""
    add_elder(engine, "E1", "M1")  # 大宁社区, Asia/Shanghai
    manager = AlertManager(["webhook"])
    assert apply(engine, manager, finding("M1", since=T0 - 12 * 3600), T0) is not None
    with engine.begin() as conn:
        changed = {"community": "延长新村", "tz": "Asia/Urumqi"}
        conn.execute(update(elders).where(elders.c.elder_id == "E1").values(**changed))
        manager.elder_changed(conn, "E1", WAS, changed, "admin", T0 + 60)
    steps = [job["payload"]["data"] for job in _jobs(engine, "webhook")]
    assert [s["event"] for s in steps] == ["raised", "escalated", "moved"]
    since = local_time(T0 - 12 * 3600, "Asia/Urumqi")
    assert all(f"自 {since} 起。" in s["text"]["zh"] and s["community"] == "延长新村" for s in steps), steps


def test_steps_of_a_case_closed_while_they_waited_name_her_new_door_zone_and_name(engine) -> None:  # type: ignore[no-untyped-def]
    """Her case closed by the data while its steps waited for the platform (the work order among them), then her
    room, zone and name were put right: the queued work order still sent a cadre to the old door, with the old
    name, and said since when in the old zone's hours, as if the case were closed to the registry too."""
    add_elder(engine, "E1", "M1")  # 王秀兰, 大宁社区 3号楼 502, Asia/Shanghai
    manager = AlertManager(["webhook"])
    assert apply(engine, manager, finding("M1", since=T0 - 12 * 3600), T0) is not None
    apply(engine, manager, finding("M1", ts=T0 + 600, resolved=True), T0 + 600)  # use resumed: closed
    with engine.begin() as conn:
        changed = {"room": "601", "tz": "Asia/Urumqi", "name": "王秀英"}
        conn.execute(update(elders).where(elders.c.elder_id == "E1").values(**changed))
        manager.elder_changed(conn, "E1", WAS, changed, "admin", T0 + 660)
    steps = [job["payload"]["data"] for job in _jobs(engine, "webhook")]
    named = [s for s in steps if "who" in s]
    assert [s["event"] for s in named] == ["raised", "escalated"] and steps[-1]["event"] == "resolved"
    since = local_time(T0 - 12 * 3600, "Asia/Urumqi")
    for step in named:
        assert step["who"]["room"] == "601" and step["who"]["name"] == "王秀英", step
        assert (
            step["text"]["zh"].startswith("【长时间未用水】王秀英（大宁社区 3号楼 601）：")
            and f"自 {since} 起。" in step["text"]["zh"]
        )
        assert step["text"]["en"].startswith("[No water use] 王秀英 (大宁社区 3号楼 601): ")


def test_steps_of_a_case_closed_in_the_community_she_left_stay_with_it(engine) -> None:  # type: ignore[no-untyped-def]
    """A case closed before she moved was worked by the community she left: its steps still queued go to that
    community's group as they were, and do not tell it where she lives now."""
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"])
    assert apply(engine, manager, finding("M1"), T0) is not None
    apply(engine, manager, finding("M1", ts=T0 + 600, resolved=True), T0 + 600)
    with engine.begin() as conn:
        changed = {"community": "延长新村", "building": "5号楼", "room": "101"}
        conn.execute(update(elders).where(elders.c.elder_id == "E1").values(**changed))
        manager.elder_changed(conn, "E1", WAS, changed, "admin", T0 + 660)
    steps = [job["payload"]["data"] for job in _jobs(engine, "webhook")]
    assert {s["community"] for s in steps} == {"大宁社区"}
    assert all(s["who"]["building"] == "3号楼" for s in steps if "who" in s)


def test_a_name_put_right_is_the_name_her_queued_steps_give(engine) -> None:  # type: ignore[no-untyped-def]
    """Her name registered wrong (王秀兰 for 王秀英) and put right while her case's steps waited: the work order
    still named her wrongly, to a cadre asking for her at the door."""
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"])
    assert apply(engine, manager, finding("M1"), T0) is not None
    with engine.begin() as conn:
        conn.execute(update(elders).where(elders.c.elder_id == "E1").values(name="王秀英"))
        manager.elder_changed(conn, "E1", WAS, {"name": "王秀英"}, "admin", T0 + 60)
    steps = [job["payload"]["data"] for job in _jobs(engine, "webhook")]
    assert [s["event"] for s in steps] == ["raised", "escalated"]
    assert all(s["who"]["name"] == "王秀英" and "王秀兰" not in s["text"]["zh"] + s["text"]["en"] for s in steps)


def test_a_fall_found_during_a_streets_outage_is_not_queued_behind_its_meters_in_a_rate_limited_group(  # type: ignore[no-untyped-def]
    any_engine, wecom
) -> None:
    engine = any_engine
    # A power cut in a street: 300 elders' meters go offline together, 300 maintenance cases (one per meter, as
    # grouping rules), each a raise to the group robot, which takes about 20 messages a minute (then 45009).
    # A fall found meanwhile waited behind all of them (the lanes were worked oldest first): the cadres' group
    # read it only once the robot had passed on every meter's, 15 minutes and more.
    manager = AlertManager(["wecom"], robots_maintenance=True)  # a district whose group is the utility's too
    for k in range(300):
        elder = {"elder_id": f"S{k}", "name": f"老人{k}", "community": "大宁社区", "building": "9号楼", "room": f"{k}"}
        with engine.begin() as conn:
            register_elder(conn, {**elder, "contacts": []}, f"MS{k}", T0)
        apply(engine, manager, finding(f"MS{k}", "meter_offline", severity="low"), T0)
    add_elder(engine, "E1", "M1")
    apply(engine, manager, finding("M1", severity="critical"), T0 + 60)
    assert len(_jobs(engine, "wecom")) == 300 + 2  # one raise per meter; her raise and her work order
    wecom.errcodes = [0] * 20 + [45009] * 1000  # the robot's minute: 20 messages, then its rate limit
    now = [T0 + 61]
    sender = OutboxSender(engine, {"wecom": WecomRobotNotifier(wecom.url)}, clock=lambda: now[0], concurrency=1)
    sender.run_once()
    assert sum("长时间未用水" in m["markdown"]["content"] for m in wecom.messages) == 2, "her raise and work order"


def test_a_long_closing_reason_cut_to_the_wecom_limit_keeps_the_alert_reference(engine, wecom) -> None:  # type: ignore[no-untyped-def]
    # An admin retires her with a long reason (notes take 2,000 characters: 6,000 bytes of Chinese); the
    # group's message is cut to WeCom's 4,096 bytes. Before, the cut fell in the reason and took the
    # footer with it: the group read a closing without the 警报 reference that says which case it closes.
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["wecom"])
    alert_id = apply(engine, manager, finding("M1"), T0) or ""
    reason = "老人搬去女儿家长住，" * 200  # 2,000 characters
    with engine.begin() as conn:
        manager.resolve(conn, alert_row(engine, alert_id), "admin", "cleared", f"{RETIRED}{reason}", T0 + 60)
    sender = OutboxSender(engine, {"wecom": WecomRobotNotifier(wecom.url)}, clock=lambda: T0 + 61, concurrency=1)
    sender.run_once()
    closing = wecom.messages[-1]["markdown"]["content"]
    assert "老人已注销登记" in closing and len(closing.encode()) <= 4096
    assert closing.endswith(f"> 警报 {alert_id[:8]}")


def test_the_cadres_group_robots_read_no_maintenance_case_unless_the_district_asks(engine) -> None:  # type: ignore[no-untyped-def]
    # A meter offline or faulty, a slow leak: the water utility's to act on (route maintenance), never a cadre's.
    # The group robots post to the chats cadres and street offices read, and each such case was a message there:
    # a street's power cut, one per meter. The platform still gets every case, with data.route.
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook", "wecom"])
    apply(engine, manager, finding("M1", "meter_offline", severity="low"), T0)
    apply(engine, manager, finding("M1", "continuous_flow", ts=T0 + 60, severity="low", route="maintenance"), T0 + 60)
    assert [j["payload"]["data"]["route"] for j in _jobs(engine, "webhook")] == ["maintenance", "maintenance"]
    assert _jobs(engine, "wecom") == []
    add_elder(engine, "E2", "M2")
    apply(engine, manager, finding("M2"), T0 + 120)  # hers is a cadre's: the group reads it
    routes = [j["payload"]["data"]["route"] for j in _jobs(engine, "wecom")]
    assert routes and set(routes) == {"community"}
    # A district whose groups are the utility's too (TAPWATCH_ROBOTS_MAINTENANCE): they get maintenance cases.
    add_elder(engine, "E3", "M3")
    with_robots = AlertManager(["webhook", "wecom"], robots_maintenance=True)
    apply(engine, with_robots, finding("M3", "meter_offline", severity="low"), T0 + 180)
    assert any(j["payload"]["data"]["route"] == "maintenance" for j in _jobs(engine, "wecom"))
