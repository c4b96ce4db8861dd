"""Scoping by role and community: what lies outside your communities answers 404; what your role may not do, 403."""

from __future__ import annotations

import pytest

from tests.api_fixtures import ELDER_A, A, Api, B, api_env, raise_alert  # noqa: F401

WINDOW = {"kind": "away", "start": "2026-11-24T09:00:00+08:00", "end": "2026-11-25T09:00:00+08:00"}
CHANGE = {"values": {"ceiling_hours": 10}, "reason": "test"}
#: Reads the platform may not make anywhere (water use, routine, learned thresholds): 403 before any lookup.
PERSONAL = ("/meters/", "/elders/EB1/routine", "/elders/EB1/thresholds")


def _b_paths(alert_b: str) -> list[tuple[str, str, object]]:
    return [
        ("get", "/elders/EB1", None),
        ("patch", "/elders/EB1", {"room": "999"}),
        ("post", "/elders/EB1/retire", {"reason": "x"}),
        ("post", "/elders/EB1/meter", {"meter_id": "MB9", "reason": "x"}),
        ("get", "/elders/EB1/routine", None),
        ("get", "/elders/EB1/thresholds", None),
        ("get", "/elders/EB1/away", None),
        ("post", "/elders/EB1/away", WINDOW),
        ("get", "/meters/MB1/readings", None),
        ("get", "/meters/MB1/usage", None),
        ("get", f"/alerts/{alert_b}", None),
        ("get", f"/alerts/{alert_b}/events", None),
        ("post", f"/alerts/{alert_b}/ack", {}),
        ("post", f"/alerts/{alert_b}/resolve", {"outcome": "ok"}),
    ]


@pytest.mark.parametrize("who", ["cadre_a", "platform_a", "op_a"])
def test_community_b_does_not_exist_for_users_of_a(api: Api, who: str) -> None:
    alert_b = raise_alert(api.engine, "MB1")
    for method, path, body in _b_paths(alert_b):
        response = api.request(who, method, path, json=body)
        if response.status_code == 403:  # the role may not do this anywhere: refused before any lookup
            assert method != "get" or (who == "platform_a" and path.startswith(PERSONAL)), (who, path)
            continue
        assert response.status_code == 404, (who, method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "EB1" not in response.text or path.startswith("/elders/EB1")  # nothing of B's data leaks


def test_404_for_scoped_out_equals_404_for_nonexistent(api: Api) -> None:
    hidden, missing = api.get("cadre_a", "/elders/EB1"), api.get("cadre_a", "/elders/EB404")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace("EB1", "X") == missing.json()["detail"].replace("EB404", "X")


@pytest.mark.parametrize(
    ("who", "elders", "alerts"),
    [
        ("admin", {"EA1", "EB1"}, 2),
        ("op_a", {"EA1"}, 1),
        ("cadre_a", {"EA1"}, 1),
        ("cadre_b", {"EB1"}, 1),
        ("platform_a", {"EA1"}, 1),
        ("platform_all", {"EA1", "EB1"}, 2),
    ],
)
def test_lists_show_only_your_communities(api: Api, who: str, elders: set[str], alerts: int) -> None:
    raise_alert(api.engine, "MA1")
    raise_alert(api.engine, "MB1")
    assert {e["elder_id"] for e in api.get(who, "/elders").json()["data"]} == elders
    assert api.get(who, "/alerts").json()["count"] == alerts
    # asking for another community by name does not widen the scope
    assert api.get(who, "/alerts", params={"community": B}).json()["count"] == (1 if "EB1" in elders else 0)


def test_cadre_handles_own_community(api: Api) -> None:
    alert_a = raise_alert(api.engine, "MA1")
    assert api.post("cadre_a", f"/alerts/{alert_a}/ack", json={"note": "on my way"}).status_code == 200
    assert api.patch("cadre_a", "/elders/EA1", json={"room": "202", "reason": "moved"}).status_code == 200
    assert api.post("cadre_a", "/elders/EA1/away", json=WINDOW).status_code == 201
    new_b = {**ELDER_A, "elder_id": "EB7", "meter_id": "MB7", "community": B}
    assert api.post("cadre_a", "/elders", json=new_b).status_code == 403  # may not register in B
    moved = api.patch("cadre_a", "/elders/EA1", json={"community": B})
    assert moved.status_code == 403  # nor move an elder out of reach
    for method, path in (("get", "/devices"), ("get", "/audit"), ("get", "/dead-letters"), ("get", "/users")):
        assert api.request("cadre_a", method, path).status_code == 403, path
    assert api.put("cadre_a", f"/thresholds/community/{A}", json=CHANGE).status_code == 403
    assert api.post("cadre_a", "/backtest", json={"community": A, "days": 1}).status_code == 403


def test_an_elder_moved_to_another_community_is_in_both_communities_audit(api: Api) -> None:
    alert_id = raise_alert(api.engine, "MA1")
    moved = api.patch("admin", "/elders/EA1", json={"community": B, "reason": "moved in with her son"})
    assert moved.status_code == 200
    # Her open case follows her: the community she joined works it, the one she left no longer sees it.
    assert api.get("op_b", f"/alerts/{alert_id}").status_code == 200
    assert api.get("op_a", f"/alerts/{alert_id}").status_code == 404
    for who in ("op_a", "op_b"):  # the community she left, the one she joined
        entries = api.get(who, "/audit", params={"target": "elder:EA1", "action": "elder.update"}).json()["data"]
        assert [(e["old"], e["new"], e["reason"]) for e in entries] == [
            ({"community": A}, {"community": B}, "moved in with her son")
        ], who


def test_operator_changes_thresholds_only_where_assigned(api: Api) -> None:
    assert api.put("op_a", f"/thresholds/community/{A}", json=CHANGE).status_code == 200
    assert api.put("op_a", "/thresholds/elder/EA1", json=CHANGE).status_code == 200
    assert api.put("op_a", f"/thresholds/community/{B}", json=CHANGE).status_code == 404
    assert api.put("op_a", "/thresholds/elder/EB1", json=CHANGE).status_code == 404
    assert api.put("op_a", "/thresholds/global", json=CHANGE).status_code == 403
    assert api.get("op_a", f"/thresholds/community/{B}").status_code == 404
    assert api.post("op_a", "/backtest", json={"community": B, "days": 1}).status_code == 404
    assert api.put("admin", "/thresholds/global", json=CHANGE).status_code == 200
    # operators read; they do not edit the registry
    assert api.patch("op_a", "/elders/EA1", json={"room": "1"}).status_code == 403
    assert api.post("op_a", "/elders/EA1/away", json=WINDOW).status_code == 403


def test_operator_sees_audit_of_own_communities_and_global_thresholds(api: Api) -> None:
    api.put("op_b", f"/thresholds/community/{B}", json=CHANGE)
    api.put("op_a", f"/thresholds/community/{A}", json=CHANGE)
    api.put("admin", "/thresholds/global", json=CHANGE)
    new_user = {"username": "new.user", "password": "blue kettle 42", "role": "cadre", "communities": [A]}
    assert api.post("admin", "/users", json=new_user).status_code == 201
    changes = {"action": ["thresholds.update", "user.create"]}
    targets = {e["target"] for e in api.get("op_a", "/audit").json()["data"]}
    assert targets == {f"community:{A}", "global"}  # list calls are admins' to read (community None)
    assert len([e for e in api.get("admin", "/audit").json()["data"] if e["action"] in changes["action"]]) == 4


def test_platform_acknowledges_work_orders_of_its_communities(api: Api) -> None:
    alert_a, alert_b = raise_alert(api.engine, "MA1"), raise_alert(api.engine, "MB1")
    assert api.post("platform_a", f"/alerts/{alert_a}/ack", json={"note": "work order 77"}).status_code == 200
    assert api.post("platform_a", f"/alerts/{alert_b}/ack", json={}).status_code == 404
    assert api.post("platform_all", f"/alerts/{alert_b}/resolve", json={"outcome": "false_alarm"}).status_code == 200
    assert api.patch("platform_all", "/elders/EB1", json={"room": "1"}).status_code == 403
    # the platform never gets contacts' phone numbers (docs/alerts.md): cadres call the family
    assert api.get("platform_a", "/elders/EA1").json()["contacts"] is None
    assert api.get("cadre_a", "/elders/EA1").json()["contacts"]
