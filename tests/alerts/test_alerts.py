"""Alert lifecycle against a real migrated store: raise, reopen, mute, acknowledge, resolve, feedback."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, insert, select

from alerts.cases import OUTCOMES, AlertStateError
from alerts.events import ReplayGuard, sign, verify
from alerts.lifecycle import mark_notified
from alerts.manager import AlertManager
from alerts.messages import RETIRED
from alerts.queries import alert_history, false_alarm_summary
from alerts.receiver import RobotReceiver, WebhookReceiver
from alerts.sender import OutboxSender, WebhookNotifier
from store.schema import away_windows, escalations, outbox
from tests.alert_support import T0, add_elder, alert_row, apply, finding, queued


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].rsplit(".", 1)[1] for e in events]


def test_signature_round_trip_replay_window_and_replay_guard() -> None:
    header = sign(b"s", b'{"a":1}', 1_700_000_000)
    assert verify(b"s", b'{"a":1}', header, now=1_700_000_100)
    assert not verify(b"s", b'{"a":2}', header, now=1_700_000_100)  # body changed
    assert not verify(b"s", b'{"a":1}', header, now=1_700_000_301)  # older than 5 minutes
    assert not verify(b"s", b'{"a":1}', "garbage", now=1_700_000_100)
    guard = ReplayGuard()
    assert guard.check(b"s", b'{"a":1}', header, now=1_700_000_100)
    assert not guard.check(b"s", b'{"a":1}', header, now=1_700_000_101)  # the same request again: a replay


def test_a_forged_signature_with_non_ascii_characters_is_refused_not_a_crash(receiver) -> None:  # type: ignore[no-untyped-def]
    # HTTP header bytes above 127 reach a Python receiver as latin-1 text; hmac.compare_digest refuses to
    # compare such a str (TypeError): the platform's handler crashed and the request got no answer at all.
    assert not verify(b"s", b"{}", f"t={int(time.time())},v1=\u00e9", now=time.time())
    assert not ReplayGuard().check(b"s", b"{}", f"t={int(time.time())},v1=\u00e9", now=time.time())
    forged = f"t={int(time.time())},v1=".encode() + b"\xe9" * 64
    answer = httpx.post(receiver.url, content=b"{}", headers={"X-Tapwatch-Signature": forged}, timeout=5.0)
    assert answer.status_code == 401 and receiver.bad_signatures == 1 and receiver.events == []


@pytest.mark.parametrize("length", [b"abc", b"-1"])
def test_the_reference_receivers_answer_a_bad_content_length_with_400(length: bytes) -> None:
    # The demo's stand-in platform and SMS gateway, and the stand-in robots: "abc" raised in the handler (no
    # answer, a traceback on the console) and "-1" read the connection until the sender gave up.
    receivers = [WebhookReceiver(secret=b"k").start(), RobotReceiver("wecom").start()]
    try:
        for receiver in receivers:
            with socket.create_connection(("127.0.0.1", receiver._server.server_address[1]), timeout=5) as conn:
                conn.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n{}")
                assert conn.recv(64).startswith(b"HTTP/1.1 400"), receiver
    finally:
        for receiver in receivers:
            receiver.stop()


def test_raise_notify_and_auto_resolve_over_a_real_webhook(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1", [{"name": "王强", "relation": "儿子", "phone": "13900000000"}])
    manager = AlertManager(["webhook"])
    alert_id = apply(engine, manager, finding("M1"), T0)
    assert alert_id is not None
    assert apply(engine, manager, finding("M1"), T0 + 60) is None  # still open: no second work order
    sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, b"test-secret")})
    sender.run_once()
    # No SMS channel: the contact cannot be reached, so the work order (level 2) goes out at once.
    assert types(receiver.events)[:2] == ["raised", "escalated"]
    raised = receiver.events[0]
    assert raised["specversion"] == "1.0" and raised["id"] == f"{alert_id}:1" and raised["source"] == "urn:tapwatch"
    assert raised["data"]["who"] == {"name": "王秀兰", "community": "大宁社区", "building": "3号楼", "room": "502"}
    assert raised["data"]["text"]["zh"].startswith("【长时间未用水】王秀兰（大宁社区 3号楼 502）")
    assert "13900000000" not in orjson.dumps(receiver.events).decode()  # contacts never reach the platform
    assert receiver.events[1]["data"]["level"] == 2 and receiver.events[1]["data"]["action"] == "dispatch"
    assert alert_row(engine, alert_id)["state"] == "notified"
    apply(engine, manager, finding("M1", ts=T0 + 3600, resolved=True), T0 + 3600)
    sender.run_once()
    resolved = receiver.events[-1]
    assert types([resolved]) == ["resolved"] and resolved["data"]["outcome"] == "use_resumed"
    assert resolved["data"]["visit_may_be_underway"] is True  # a cadre was dispatched: say they may be on the way
    assert "途中" in resolved["data"]["text"]["zh"]
    assert receiver.bad_signatures == 0
    with engine.connect() as conn:
        assert [e["seq"] for e in alert_history(conn, alert_id)] == [1, 2, 3, 4]


def test_a_case_a_change_of_the_registry_closed_tells_the_platform_why_in_its_language(engine) -> None:  # type: ignore[no-untyped-def]
    """Retiring an elder (consent withdrawn, a meter replaced) closes her cases with a note, an English phrase before
    the reason given (api/routes/elders.py), which the dashboard says in its reader's language; the platform's
    resolved event carried only that note: English in a Chinese work order."""
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"])
    alert_id = apply(engine, manager, finding("M1"), T0)
    with engine.begin() as conn:
        manager.resolve(conn, alert_row(engine, alert_id), "cadre:li", "cleared", f"{RETIRED}搬去养老院", T0 + 60)
    with engine.connect() as conn:
        events = [p["data"] for p in conn.execute(select(outbox.c.payload).order_by(outbox.c.id)).scalars()]
    resolved = next(e for e in events if e["event"] == "resolved")
    assert resolved["note"] == "elder retired: 搬去养老院"  # (as the dashboard and receivers before read it)
    assert resolved["text"] == {"zh": "老人已注销登记：搬去养老院", "en": "Elder retired from monitoring: 搬去养老院"}


def test_acknowledge_and_resolve_record_who_and_when_and_refuse_bad_moves(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"])
    alert_id = apply(engine, manager, finding("M1", severity="low"), T0)
    assert alert_id is not None
    stale = alert_row(engine, alert_id)
    with engine.begin() as conn:  # the sender marks it notified meanwhile: the caller's copy is stale
        assert mark_notified(conn, alert_id, "webhook", T0 + 1, ["webhook"])
    with engine.begin() as conn:
        manager.acknowledge(conn, stale, "cadre:li", "calling her now", T0 + 120)
    with engine.begin() as conn, pytest.raises(AlertStateError):
        manager.acknowledge(conn, stale, "cadre:li", "again", T0 + 121)
    with engine.begin() as conn, pytest.raises(ValueError, match="unknown outcome"):
        manager.resolve(conn, stale, "cadre:li", "fine", "", T0 + 130)
    with engine.begin() as conn:
        manager.resolve(conn, stale, "cadre:li", "needed_help", "fell in the kitchen, helped up", T0 + 600)
    row = alert_row(engine, alert_id)
    assert (row["state"], row["acknowledged_by"], row["acknowledged_at"]) == ("resolved", "cadre:li", T0 + 120)
    assert (row["resolved_by"], row["outcome"], row["note"]) == (
        "cadre:li",
        "needed_help",
        "fell in the kitchen, helped up",
    )
    with engine.connect() as conn:
        history = alert_history(conn, alert_id)
        pending = conn.execute(select(func.count()).where(escalations.c.status == "pending")).scalar_one()
    assert [(e["type"], e["actor"]) for e in history] == [
        ("raised", "tapwatch"),
        ("escalated", "tapwatch"),
        ("notified", "webhook"),
        ("acknowledged", "cadre:li"),
        ("resolved", "cadre:li"),
    ]
    assert pending == 0  # acknowledged: escalation stopped
    assert types(queued(engine)) == [h["type"] for h in history]  # every change went to the platform
    assert len({e["id"] for e in queued(engine)}) == 5 and set(OUTCOMES) >= {"ok", "hospital", "away", "device_fault"}


def test_flapping_reopens_the_same_alert_within_the_hold_down(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], hold_down_s=6 * 3600)
    first = apply(engine, manager, finding("M1"), T0)
    apply(engine, manager, finding("M1", resolved=True), T0 + 1800)
    again = apply(engine, manager, finding("M1", ts=T0 + 3600), T0 + 3600)
    assert again == first  # same work order on the platform, a new event on it
    row = alert_row(engine, first or "")
    assert row["state"] == "open" and row["details"]["reopened"] == 1 and row["outcome"] is None
    assert types(queued(engine))[-2:] == ["reopened", "escalated"]
    apply(engine, manager, finding("M1", resolved=True), T0 + 4000)
    later = apply(engine, manager, finding("M1", ts=T0 + 4000 + 7 * 3600), T0 + 4000 + 7 * 3600)
    assert later not in (None, first)  # past the hold-down: a new case
    with engine.begin() as conn:
        manager.resolve(conn, alert_row(engine, later or ""), "cadre:li", "ok", "visited", T0 + 30000)
    newest = apply(engine, manager, finding("M1", ts=T0 + 30100), T0 + 30100)
    assert newest not in (None, first, later)  # a person closed it: never silently reopened


def test_flapping_hold_down_counts_data_time(engine) -> None:  # type: ignore[no-untyped-def]
    """Readings caught up after an outage arrive at one wall-clock time: the hold-down reads their data times."""
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], hold_down_s=6 * 3600)
    now = T0 + 3 * 86400  # the whole backlog is applied now
    first = apply(engine, manager, finding("M1"), now)
    apply(engine, manager, finding("M1", ts=T0 + 1800, resolved=True), now)
    assert apply(engine, manager, finding("M1", ts=T0 + 3 * 3600), now) == first  # back 2.5 h later: flapping
    apply(engine, manager, finding("M1", ts=T0 + 4 * 3600, resolved=True), now)
    later = apply(engine, manager, finding("M1", ts=T0 + 11 * 3600), now)  # back 7 h later: a new case
    assert later not in (None, first)
    assert alert_row(engine, first or "")["state"] == "resolved"


def test_snooze_and_away_windows_mute_what_they_cover(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"])
    with engine.begin() as conn:
        for kind in ("snooze", "away"):
            start = T0 if kind == "snooze" else T0 + 10_000
            conn.execute(
                insert(away_windows).values(
                    elder_id="E1", kind=kind, start_ts=start, end_ts=start + 3600, created_by="op", created_at=T0
                )
            )
    assert apply(engine, manager, finding("M1", "continuous_flow", ts=T0 + 60), T0 + 60) is None  # snoozed
    device = apply(engine, manager, finding("M1", "meter_fault", ts=T0 + 60, severity="low"), T0 + 60)
    assert device is not None  # device kinds are never muted
    assert apply(engine, manager, finding("M1", ts=T0 + 10_100), T0 + 10_100) is None  # away explains no use
    assert apply(engine, manager, finding("M1", "continuous_flow", ts=T0 + 10_100), T0 + 10_100) is not None
    events = queued(engine)
    assert events[0]["data"]["route"] == "maintenance" and events[0]["data"]["action"] == "maintenance"
    assert "水务" in events[0]["data"]["text"]["zh"] and "王秀兰" not in events[0]["data"]["text"]["zh"]
    with engine.connect() as conn:
        timers = conn.execute(select(escalations.c.alert_id)).scalars().all()
    assert device not in timers  # maintenance does not escalate to cadres


def test_repeated_false_alarms_are_shown_with_a_less_eager_threshold(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    manager = AlertManager(["webhook"], hold_down_s=0)
    for k in range(3):  # silences the elder's model found unusual (the safety net's are below)
        alert_id = apply(engine, manager, finding("M1", ts=T0 + k * 86400, basis="learned"), T0 + k * 86400)
        with engine.begin() as conn:
            manager.resolve(
                conn, alert_row(engine, alert_id or ""), "cadre:li", "false_alarm", "at daughter's", T0 + k * 86400 + 60
            )
    with engine.connect() as conn:
        summary = false_alarm_summary(conn, since=T0 - 1)
    assert [(s["elder_id"], s["kind"], s["count"]) for s in summary] == [("E1", "no_activity", 3)]
    suggestion = summary[0]["suggestion"]
    assert suggestion["name"] == "sensitivity" and suggestion["new"] < suggestion["old"]
    assert summary[0]["sources"] == {"silence_model": 3, "safety_net": 0}


def _silence_false_alarms(engine, meter_id: str, raised: list[tuple[str, float]]) -> None:  # type: ignore[no-untyped-def]
    """One no_activity case per (basis, hours of silence), each resolved false_alarm before the next is raised."""
    manager = AlertManager(["webhook"], hold_down_s=0)
    for k, (basis, hours) in enumerate(raised):
        ts = T0 + (k + 1) * 3 * 86400
        raised_finding = finding(meter_id, ts=ts, basis=basis, since=ts - hours * 3600)
        alert_id = apply(engine, manager, raised_finding, ts)
        with engine.begin() as conn:
            manager.resolve(conn, alert_row(engine, alert_id or ""), "cadre:li", "false_alarm", "away", ts + 60)


def test_silence_false_alarms_the_safety_net_raised_point_at_the_nets_hours(engine) -> None:  # type: ignore[no-untyped-def]
    """A lower sensitivity was suggested for every repeated false silence call, and it never moves the safety
    net (under ceiling_litres in the net's hours, basis "rule"): when most calls were the net's, its window is
    suggested, the learning week's (ceiling_hours, 16 h) or the learned one's (learned_ceiling_hours, 24 h) as
    the calls were, with how many came from which."""
    add_elder(engine, "E1", "M1")
    add_elder(engine, "E2", "M2")
    _silence_false_alarms(engine, "M1", [("rule", 24.0), ("learned", 9.5), ("rule", 24.0), ("rule", 24.0)])
    _silence_false_alarms(engine, "M2", [("rule", 16.0), ("rule", 16.0), ("prior", 11.0)])
    with engine.connect() as conn:
        summary = {s["elder_id"]: s for s in false_alarm_summary(conn, since=T0 - 1)}
    learned, cold = summary["E1"], summary["E2"]
    assert learned["sources"] == {"silence_model": 1, "safety_net": 3}
    suggestion = learned["suggestion"]
    assert (suggestion["name"], suggestion["old"], suggestion["new"]) == ("learned_ceiling_hours", 24.0, 36.0)
    assert "3" in suggestion["note"]["en"] and "safety net" in suggestion["note"]["en"]
    assert "兜底规则" in suggestion["note"]["zh"]
    assert cold["sources"] == {"silence_model": 1, "safety_net": 2}
    assert (cold["suggestion"]["name"], cold["suggestion"]["new"]) == ("ceiling_hours", 24.0)


def test_a_live_receiver_sees_every_event_once_in_order(engine) -> None:  # type: ignore[no-untyped-def]
    for k in range(3):
        add_elder(engine, f"E{k}", f"M{k}")
    manager = AlertManager(["webhook"])
    for k in range(3):
        apply(engine, manager, finding(f"M{k}", "continuous_flow"), time.time())
        apply(engine, manager, finding(f"M{k}", "continuous_flow", resolved=True), time.time())
    receiver = WebhookReceiver(secret=b"k").start()
    try:
        OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, b"k")}).run_once()
        for k in range(3):
            mine = [e for e in receiver.events if e["subject"] == f"E{k}"]
            assert types(mine) == ["raised", "escalated", "resolved"]
            assert [int(e["id"].rsplit(":", 1)[1]) for e in mine] == [1, 2, 3]
    finally:
        receiver.stop()


def test_a_slow_leak_routed_to_maintenance_never_escalates_to_cadres(engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(engine, "E1", "M1")
    manager = AlertManager(notifiers=("webhook",))
    leak = finding("M1", "continuous_flow", details={"lpm": 0.5}, route="maintenance")
    alert_id = apply(engine, manager, leak, T0)
    assert alert_id is not None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(escalations)).scalar_one() == 0
    raised = queued(engine)[-1]
    assert raised["data"]["route"] == "maintenance" and raised["data"]["action"] == "maintenance"
