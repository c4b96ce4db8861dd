"""The API against a real migrated store: registry, alerts, errors as problem+json."""

from __future__ import annotations

import time

import pytest

from alerts.manager import AlertManager
from core.domain import MAINTENANCE, Finding
from store.registry import meter_context
from tests.api_fixtures import ELDER_A, Api, api_env, raise_alert  # noqa: F401

NEW_ELDER = {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "赵玉兰", "room": "305"}


def test_health_and_readiness_are_public(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["store"] is True
    assert api.client.get("/").status_code == 200  # the dashboard page
    assert api.client.get("/openapi.json").status_code == 200
    assert api.client.get("/docs").status_code == 200


def test_metrics_show_alerts_by_kind_and_delivery_lag(api: Api) -> None:
    raise_alert(api.engine, "MA1", "no_activity")
    text = api.client.get("/metrics").text
    assert 'tapwatch_alerts_open{kind="no_activity"} 1.0' in text
    assert 'tapwatch_alerts_open{kind="meter_offline"} 0.0' in text
    assert "tapwatch_delivery_lag_seconds" in text
    assert "tapwatch_readings_received_total" in text and "tapwatch_dead_letters_total" in text


def test_register_list_and_get_elder(api: Api) -> None:
    created = api.post("cadre_a", "/elders", json=NEW_ELDER)
    assert created.status_code == 201, created.text
    assert created.json()["meter_id"] == "MA2"
    listed = api.get("cadre_a", "/elders", params={"community": ELDER_A["community"], "sort": "-name"}).json()
    assert listed["count"] == 2 and {e["elder_id"] for e in listed["data"]} == {"EA1", "EA2"}
    assert [e["name"] for e in listed["data"]] == sorted([e["name"] for e in listed["data"]], reverse=True)
    for entry in listed["data"]:  # lists carry no address inside the building and no contacts
        assert "contacts" not in entry and "room" not in entry
    one = api.get("cadre_a", "/elders/EA2").json()
    assert one["room"] == "305" and one["contacts"][0]["phone"] == "13900000000"
    assert [m["meter_id"] for m in one["meters"]] == ["MA2"]
    assert api.get("op_a", "/elders/EA2").json()["contacts"] is None  # operators do not phone families
    views = api.get("admin", "/audit", params={"action": "elder.view"}).json()["data"]
    assert sorted((v["actor"], v["target"]) for v in views) == [("cadre_a", "elder:EA2"), ("op_a", "elder:EA2")]


@pytest.mark.parametrize("who", ["admin", "op_a", "cadre_a", "platform_all"])
def test_every_read_of_an_elders_address_is_audited_whoever_reads_it(api: Api, who: str) -> None:
    """GET /elders/{id} was audited only for the roles that see contacts: an operator or the grid platform read
    an elder's building and room with no trace of who looked. Every role's read is audited; a list page, which
    carries no address, only as the list audit has it (one entry for the page)."""
    one = api.get(who, f"/elders/{ELDER_A['elder_id']}")
    assert one.status_code == 200 and one.json()["room"] == ELDER_A["room"], one.text
    views = api.get("admin", "/audit", params={"action": "elder.view"}).json()["data"]
    assert [(v["actor"], v["target"], v["community"]) for v in views] == [
        (who, f"elder:{ELDER_A['elder_id']}", ELDER_A["community"])
    ]
    assert api.get(who, "/elders").status_code == 200
    assert len(api.get("admin", "/audit", params={"action": "elder.view"}).json()["data"]) == 1


def test_lists_page_and_search(api: Api) -> None:
    for i in range(3):
        api.post("admin", "/elders", json={**NEW_ELDER, "elder_id": f"EA{i + 2}", "meter_id": f"MA{i + 2}"})
    page = api.get("admin", "/elders", params={"limit": 2, "offset": 1, "sort": "elder_id"}).json()
    assert page["count"] == 5 and [e["elder_id"] for e in page["data"]] == ["EA2", "EA3"]
    assert api.get("admin", "/elders", params={"q": "EB"}).json()["count"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/elders", {"elder_id": "E2"}, 422),
        ("post", "/elders", {**NEW_ELDER, "elder_id": "bad id!"}, 422),
        ("post", "/elders", {**NEW_ELDER, "tz": "Mars/Olympus"}, 422),
        # Files zoneinfo reads that no browser knows (the dashboard shows the elder's times in the elder's zone).
        ("post", "/elders", {**NEW_ELDER, "tz": "posix/Asia/Shanghai"}, 422),
        ("post", "/elders", {**NEW_ELDER, "tz": "localtime"}, 422),
        ("get", "/elders/nobody", None, 404),
        ("get", "/elders?sort=password", None, 422),
        ("get", "/alerts?state=maybe", None, 422),
        ("get", "/alerts?limit=0", None, 422),
        ("get", "/alerts?offset=99999999999999999999", None, 422),
        ("get", "/alerts?since=2026-11-23T08:00:00", None, 422),  # no offset: ambiguous
        ("get", "/alerts/unknown", None, 404),
        ("post", "/alerts/unknown/resolve", {"outcome": "cleared"}, 422),  # a system outcome
        ("get", "/meters/MA1/readings?start=2026-11-23T08:00:00%2B08:00&end=2026-11-22T08:00:00%2B08:00", None, 422),
        ("delete", "/elders", None, 405),
        ("get", "/no/such/route", None, 404),
    ],
)
def test_bad_requests_get_problem_json(api: Api, method: str, path: str, body: object, status: int) -> None:
    response = api.request("admin", method, path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status and response.json()["title"]


def test_duplicate_registration_is_a_conflict(api: Api) -> None:
    again = api.post("admin", "/elders", json={**NEW_ELDER, "meter_id": "MA1"})
    assert again.status_code == 409
    assert "already in use" in again.json()["detail"]


def test_alerts_filtering_and_sorting(api: Api) -> None:
    raise_alert(api.engine, "MA1", "no_activity", ts=1_000)
    raise_alert(api.engine, "MA1", "meter_offline", ts=2_000, severity="low")
    raise_alert(api.engine, "MB1", "no_activity", ts=3_000, severity="critical")
    assert api.get("admin", "/alerts").json()["count"] == 3
    only = api.get("admin", "/alerts", params={"kind": "meter_offline"}).json()
    assert [a["kind"] for a in only["data"]] == ["meter_offline"]
    both = api.get("admin", "/alerts", params=[("kind", "meter_offline"), ("kind", "no_activity")]).json()
    assert both["count"] == 3
    assert api.get("admin", "/alerts", params={"community": "别的社区"}).json()["count"] == 0
    by_severity = api.get("admin", "/alerts", params={"sort": "severity"}).json()["data"]
    assert [a["severity"] for a in by_severity] == ["critical", "high", "low"]  # by rank, not alphabet
    assert [a["severity"] for a in api.get("admin", "/alerts", params={"sort": "-severity"}).json()["data"]] == [
        "low",
        "high",
        "critical",
    ]
    oldest_first = api.get("admin", "/alerts", params={"sort": "raised_at"}).json()["data"]
    assert [a["meter_id"] for a in oldest_first] == ["MA1", "MA1", "MB1"]
    timed = api.get("admin", "/alerts", params={"since": "1970-01-01T08:25:00+08:00"}).json()  # 1500 s
    assert timed["count"] == 2
    one = api.get("admin", f"/alerts/{only['data'][0]['alert_id']}").json()
    assert one["message"] == {"zh": "未用水", "en": "no use"}
    assert one["raised_at"].endswith(("Z", "+00:00"))


def test_acknowledge_resolve_and_event_history(api: Api) -> None:
    alert_id = raise_alert(api.engine, "MA1")
    acked = api.post("cadre_a", f"/alerts/{alert_id}/ack", json={"note": "calling her"})
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "cadre_a"
    again = api.post("cadre_a", f"/alerts/{alert_id}/ack", json={})  # resent (no answer came back): done
    assert again.status_code == 200 and again.json()["acknowledged_by"] == "cadre_a"
    assert api.post("admin", f"/alerts/{alert_id}/ack", json={}).status_code == 409  # someone else's now
    done = api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "away", "note": "at her daughter's"})
    assert done.status_code == 200 and done.json()["outcome"] == "away" and done.json()["state"] == "resolved"
    resent = api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "away", "note": "at her daughter's"})
    assert resent.status_code == 200 and resent.json() == done.json()  # the same resolve again: done, once
    assert api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "ok"}).status_code == 409
    assert api.post("admin", f"/alerts/{alert_id}/ack", json={}).status_code == 409
    events = api.get("cadre_a", f"/alerts/{alert_id}/events").json()
    types = [e["type"] for e in events["data"]]  # escalation events may come between
    assert types[0] == "raised" and types[-2:] == ["acknowledged", "resolved"]
    assert events["data"][-1]["actor"] == "cadre_a" and events["data"][-1]["data"]["note"] == "at her daughter's"
    newest_first = api.get("cadre_a", f"/alerts/{alert_id}/events", params={"sort": "-seq"}).json()
    assert newest_first["data"][0]["type"] == "resolved"
    audit = api.get("admin", "/audit", params={"target": f"alert:{alert_id}", "sort": "at"}).json()
    assert [e["action"] for e in audit["data"]] == ["alert.acknowledge", "alert.resolve"]


def test_operators_read_alerts_but_do_not_handle_them(api: Api) -> None:
    alert_id = raise_alert(api.engine, "MA1")
    assert api.get("op_a", f"/alerts/{alert_id}").status_code == 200
    refused = api.post("op_a", f"/alerts/{alert_id}/ack", json={})
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"


def test_openapi_documents_routes_auth_and_problems(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert {"/elders", "/alerts/{alert_id}/resolve", "/thresholds/spec", "/backtest", "/devices"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["type"] == "oauth2"
    not_found = spec["paths"]["/elders/{elder_id}"]["get"]["responses"]["404"]
    assert list(not_found["content"]) == ["application/problem+json"]
    assert "examples" in spec["components"]["schemas"]["ElderCreate"]


def test_an_alert_is_a_case_with_its_kinds_and_occurrences(api: Api) -> None:
    case = raise_alert(api.engine, "MA1", "high_usage", ts=1_000, severity="medium")
    assert raise_alert(api.engine, "MA1", "no_activity", ts=2_000) == case  # joins the elder's open case
    offline = raise_alert(api.engine, "MA1", "meter_offline", ts=3_000, severity="low")
    assert offline != case  # the meter's maintenance case, apart
    one = api.get("cadre_a", f"/alerts/{case}").json()
    assert one["kind"] == "high_usage" and one["kinds"] == one["kinds_open"] == ["high_usage", "no_activity"]
    assert (one["severity"], one["occurrences"]) == ("high", 2)
    listed = api.get("cadre_a", "/alerts", params={"open": "true", "sort": "raised_at"}).json()
    assert [(a["kinds"], a["occurrences"]) for a in listed["data"]] == [
        (["high_usage", "no_activity"], 2),
        (["meter_offline"], 1),
    ]
    events = api.get("cadre_a", f"/alerts/{case}/events").json()["data"]
    joined = [e for e in events if e["type"] == "joined"]
    assert len(joined) == 1 and joined[0]["data"]["joined"] == "no_activity"
    assert joined[0]["data"]["message"] == {"zh": "未用水", "en": "no use"} and joined[0]["data"]["severity_raised"]


def test_an_open_case_says_what_it_is_about_now(api: Api) -> None:
    """A fall joining a low routine change's case: its card showed "routine change" and that finding's words, the fall
    a footnote, while the work order and the platform's events told the fall. `told` is the case as they tell it."""
    routine = Finding("MA1", "routine_change", "low", 1_000.0, "起床比平时晚。", "Rose late.", since=900.0)
    fall = Finding("MA1", "no_activity", "high", 2_000.0, "9 小时未用水。", "No water for 9 h.", since=1_500.0)
    with api.engine.begin() as conn:
        context = meter_context(conn, "MA1")
        assert context is not None
        case = AlertManager().apply(conn, context, routine, 1_000.0)
        assert AlertManager().apply(conn, context, fall, 2_000.0) == case
    one = api.get("cadre_a", f"/alerts/{case}").json()
    assert (one["kind"], one["message"]["zh"]) == ("routine_change", "起床比平时晚。")  # the case's first kind
    assert one["told"]["kind"] == "no_activity"
    assert one["told"]["message"] == {"zh": "9 小时未用水。", "en": "No water for 9 h."}
    assert one["told"]["since"].startswith("1970-01-01T00:25:00")
    api.post("cadre_a", f"/alerts/{case}/resolve", json={"outcome": "ok"})
    assert api.get("cadre_a", f"/alerts/{case}").json()["told"] is None  # closed: nothing to tell now


def test_an_alert_says_whether_it_is_the_cadres_or_maintenance_s(api: Api) -> None:
    """A slow leak is a continuous_flow the detectors route to maintenance (docs/alerts.md section 5): nothing in
    an alert told it from a tap left running, so the dashboard called the cadres to it with a chime."""
    now = time.time()
    leak = Finding("MA1", "continuous_flow", "low", now, "缓慢漏水", "slow leak", route=MAINTENANCE)
    with api.engine.begin() as conn:
        context = meter_context(conn, "MA1")
        assert context is not None
        slow_leak = AlertManager().apply(conn, context, leak, now)
    offline = raise_alert(api.engine, "MA1", "meter_offline", severity="low")
    tap = raise_alert(api.engine, "MB1", "continuous_flow")
    routes = {a["alert_id"]: a["route"] for a in api.get("admin", "/alerts").json()["data"]}
    assert routes == {slow_leak: "maintenance", offline: "maintenance", tap: "community"}
    assert api.get("cadre_a", f"/alerts/{slow_leak}").json()["route"] == "maintenance"


def test_a_scrape_counts_the_closed_cases_only_now_and_then(api: Api) -> None:
    """Cases are kept for good: each scrape counted them all, its cost growing with every case ever raised."""
    from sqlalchemy import event, select

    from alerts.manager import AlertManager
    from api.routes.health import CLOSED_RECOUNT_S, ClosedCounts
    from store.schema import alerts

    def resolve(alert_id: str) -> None:
        with api.engine.begin() as conn:
            row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).mappings().one()
            AlertManager().resolve(conn, row, "cadre_a", "ok", "", time.time())

    clock = [1000.0]
    api.app.state.closed_counts = ClosedCounts(clock=lambda: clock[0])
    resolve(raise_alert(api.engine, "MA1", "no_activity"))
    raise_alert(api.engine, "MB1", "no_activity")
    text = api.client.get("/metrics").text
    assert 'tapwatch_alerts{kind="no_activity",state="resolved"} 1.0' in text
    assert 'tapwatch_alerts{kind="no_activity",state="open"} 1.0' in text

    resolve(raise_alert(api.engine, "MA1", "leak"))
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731  # (conn, cursor, statement, ...)
    event.listen(api.engine, "before_cursor_execute", listener)
    try:
        text = api.client.get("/metrics").text
    finally:
        event.remove(api.engine, "before_cursor_execute", listener)
    on_alerts = [s for s in statements if "FROM alerts" in s]
    assert on_alerts and all("IN (" in s for s in on_alerts), on_alerts  # the open cases only, by the index
    assert 'tapwatch_alerts{kind="leak",state="resolved"}' not in text  # counted again later

    clock[0] += CLOSED_RECOUNT_S
    text = api.client.get("/metrics").text
    assert 'tapwatch_alerts{kind="leak",state="resolved"} 1.0' in text
    assert 'tapwatch_alerts{kind="no_activity",state="resolved"} 1.0' in text
    assert 'tapwatch_alerts_open{kind="no_activity"} 1.0' in text
