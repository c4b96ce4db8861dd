"""Parked deliveries through the API: an operator sees those of their communities and puts them back.

Real pieces throughout: alerts raised by the manager queue jobs, the outbox
sender delivers them to a webhook receiver on loopback that refuses (HTTP
400) until it is fixed, and the API lists and requeues what was parked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from alerts.manager import AlertManager
from alerts.notifiers import WebhookNotifier
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.domain import Finding
from store.registry import meter_context
from store.schema import outbox
from tests.api_fixtures import Api, api_env  # noqa: F401

SECRET = b"platform-secret"


@pytest.fixture
def refusing_platform() -> Iterator[tuple[WebhookReceiver, dict[str, int]]]:
    verdict = {"status": 400}
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _e: (verdict["status"], {})).start()
    yield receiver, verdict
    receiver.stop()


def _raise(api: Api, meter_id: str) -> str:
    now = time.time()
    with api.engine.begin() as conn:
        context = meter_context(conn, meter_id)
        assert context is not None
        finding = Finding(meter_id, "no_activity", "high", now, "未用水", "no use")
        alert_id = AlertManager(["webhook"]).apply(conn, context, finding, now)
    assert alert_id is not None
    return alert_id


def test_parked_events_are_listed_in_scope_and_put_back_once_the_platform_is_fixed(
    api: Api, refusing_platform: tuple[WebhookReceiver, dict[str, int]]
) -> None:
    receiver, verdict = refusing_platform
    alert_a, alert_b = _raise(api, "MA1"), _raise(api, "MB1")
    sender = OutboxSender(api.engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, give_up_s=3600)
    sender.run_once()  # 400: will not get better by retrying, so parked at once

    mine = api.get("op_a", "/deliveries/parked")
    assert mine.status_code == 200, mine.text
    jobs = mine.json()["data"]
    assert mine.json()["count"] == len(jobs) >= 1 and {j["alert_id"] for j in jobs} == {alert_a}
    assert jobs[-1]["event_type"] == "raised" and jobs[0]["last_error"] == "HTTP 400"
    assert "未用水" not in mine.text and "李桂芳" not in mine.text  # no message text, no names
    assert {j["alert_id"] for j in api.get("op_b", "/deliveries/parked").json()["data"]} == {alert_b}
    assert api.get("admin", "/deliveries/parked").json()["count"] == len(jobs) * 2
    assert api.get("cadre_a", "/deliveries/parked").status_code == 403
    summary = api.get("op_a", "/deliveries").json()["data"]
    assert [(s["notifier"], s["parked"], s["pending"]) for s in summary] == [("webhook", len(jobs) * 2, 0)]

    job = jobs[-1]["id"]
    assert api.post("op_b", f"/deliveries/parked/{job}/requeue", json={"reason": "x"}).status_code == 404
    assert api.post("op_a", f"/deliveries/parked/{2**70}/requeue", json={"reason": "x"}).status_code == 422
    empty = api.post("op_a", f"/deliveries/parked/{job}/requeue", json={"reason": " "})
    assert empty.status_code == 422 and empty.headers["content-type"].startswith("application/problem+json")
    verdict["status"] = 204
    for j in reversed(jobs):  # oldest first: the lane keeps its order
        back = api.post("op_a", f"/deliveries/parked/{j['id']}/requeue", json={"reason": "平台证书已更新"})
        assert back.status_code == 200, back.text
    assert api.post("op_a", f"/deliveries/parked/{job}/requeue", json={"reason": "again"}).status_code == 404

    sender.run_once()
    arrived = [e["id"] for e in receiver.events]  # then the platform also hears the alert went out ("notified")
    assert arrived[: len(jobs)] == [j["event_id"] for j in reversed(jobs)]
    assert api.get("op_a", "/deliveries/parked").json()["count"] == 0
    audit = api.get("op_a", "/audit", params={"action": "delivery.requeue"}).json()
    assert audit["count"] == len(jobs) and audit["data"][0]["actor"] == "op_a"
    assert audit["data"][0]["reason"] == "平台证书已更新"


def test_a_parked_daily_note_is_listed_in_its_elders_community_and_put_back(api: Api) -> None:
    """A daily note has no alert row: it is parked like any job and must be found, scoped and requeued too."""
    from sqlalchemy import insert, select

    from alerts.daily import _event, _job
    from store.schema import outbox

    now = time.time()
    with api.engine.begin() as conn:
        context = meter_context(conn, "MA1")
        assert context is not None
        elder_id = str(context["elder_id"])
        job = _job("note-1", elder_id, _event("note-1", 0, elder_id, now, "13800000000", "【平安】"), "sms", now)
        job_id = conn.execute(insert(outbox).values({**job, "status": "parked"}).returning(outbox.c.id)).scalar_one()

    mine = api.get("op_a", "/deliveries/parked").json()
    assert [(j["id"], j["kind"], j["community"], j["elder_id"]) for j in mine["data"]] == [
        (job_id, "daily_note", context["community"], elder_id)
    ]
    assert mine["count"] == 1 and "13800000000" not in str(mine) and "平安" not in str(mine)
    assert api.get("op_b", "/deliveries/parked").json()["count"] == 0
    only = api.get("op_a", "/deliveries/parked", params={"community": context["community"]}).json()
    assert only["count"] == 1
    assert api.post("op_b", f"/deliveries/parked/{job_id}/requeue", json={"reason": "x"}).status_code == 404
    back = api.post("op_a", f"/deliveries/parked/{job_id}/requeue", json={"reason": "短信网关已修复"})
    assert back.status_code == 200, back.text
    with api.engine.connect() as conn:
        assert conn.execute(select(outbox.c.status).where(outbox.c.id == job_id)).scalar_one() == "pending"
    audit = api.get("op_a", "/audit", params={"action": "delivery.requeue"}).json()
    assert audit["count"] == 1 and audit["data"][0]["community"] == context["community"]


def test_a_parked_event_the_platform_refuses_for_good_is_dismissed_with_a_reason(
    api: Api, refusing_platform: tuple[WebhookReceiver, dict[str, int]]
) -> None:
    """The platform refuses one event for good (400 each time): requeued it is parked again, and the critical
    TapwatchEventsParked alarm stays on. An operator of its community dismisses it with a reason: audited, final
    (never sent, no longer parked), counted by GET /deliveries."""
    receiver, _verdict = refusing_platform
    alert_a, _alert_b = _raise(api, "MA1"), _raise(api, "MB1")
    sender = OutboxSender(api.engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, give_up_s=3600)
    sender.run_once()
    jobs = api.get("op_a", "/deliveries/parked").json()["data"]
    assert {j["alert_id"] for j in jobs} == {alert_a}
    job = jobs[0]["id"]
    path = f"/deliveries/parked/{job}/dismiss"
    assert api.post("op_b", path, json={"reason": "平台不收此事件"}).status_code == 404  # not in op_b's communities
    assert api.post("op_a", path, json={"reason": " "}).status_code == 422  # a reason is required
    assert api.post("cadre_a", path, json={"reason": "x"}).status_code == 403
    gone = api.post("op_a", path, json={"reason": "平台不收此事件"})
    assert gone.status_code == 200, gone.text
    assert gone.json()["id"] == job
    assert api.post("op_a", path, json={"reason": "again"}).status_code == 404  # final: not parked any more
    assert api.post("op_a", f"/deliveries/parked/{job}/requeue", json={"reason": "x"}).status_code == 404
    assert job not in {j["id"] for j in api.get("op_a", "/deliveries/parked").json()["data"]}
    summary = {s["notifier"]: s for s in api.get("op_a", "/deliveries").json()["data"]}
    assert summary["webhook"]["dismissed"] == 1 and summary["webhook"]["parked"] == len(jobs) * 2 - 1
    audit = api.get("op_a", "/audit", params={"action": "delivery.dismiss"}).json()
    assert audit["count"] == 1 and audit["data"][0]["actor"] == "op_a"
    assert audit["data"][0]["reason"] == "平台不收此事件" and audit["data"][0]["new"] == "dismissed"
    sender.run_once()  # the sender leaves it alone
    with api.engine.connect() as conn:
        assert conn.execute(select(outbox.c.status).where(outbox.c.id == job)).scalar_one() == "dismissed"
