"""Thresholds (spec, levels, bounds, audit, effective values) and backtests over stored readings."""

from __future__ import annotations

import time
from typing import Any, get_args

from sqlalchemy import func, select

from alerts.cases import OUTCOMES
from alerts.manager import AlertManager
from api.models import Outcome
from core.thresholds import THRESHOLD_SPECS
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.schema import alerts, detector_state, meters, thresholds
from tests.api_fixtures import A, Api, B, api_env, raise_alert  # noqa: F401
from tests.helpers import HOUR, ingest, message


def test_spec_lists_every_threshold_with_bounds_and_words(api: Api) -> None:
    spec = api.get("cadre_a", "/thresholds/spec").json()
    assert {s["name"] for s in spec["data"]} == set(THRESHOLD_SPECS) and spec["count"] == len(THRESHOLD_SPECS)
    ceiling = next(s for s in spec["data"] if s["name"] == "ceiling_hours")
    assert ceiling["unit"] == "h" and ceiling["low"] == 2 and ceiling["high"] == 72 and ceiling["default"] == 16
    assert ceiling["description"]["zh"] and ceiling["description"]["en"]


def test_change_levels_effective_values_and_audit(api: Api) -> None:
    put = api.put(
        "admin", "/thresholds/global", json={"values": {"ceiling_hours": 14, "daily_max_l": 1500}, "reason": "winter"}
    )
    assert put.status_code == 200, put.text
    assert put.json()["values"] == {"ceiling_hours": 14.0, "daily_max_l": 1500.0}
    assert (
        api.put(
            "op_a", f"/thresholds/community/{A}", json={"values": {"ceiling_hours": 10}, "reason": "falls"}
        ).status_code
        == 200
    )
    api.put("op_a", "/thresholds/elder/EA1", json={"values": {"ceiling_litres": 5}, "reason": "uses little"})
    effective = {v["name"]: v for v in api.get("cadre_a", "/elders/EA1/thresholds").json()["values"]}
    assert (effective["ceiling_hours"]["value"], effective["ceiling_hours"]["source"]) == (10.0, "community")
    assert (effective["ceiling_litres"]["value"], effective["ceiling_litres"]["source"]) == (5.0, "elder")
    assert (effective["daily_max_l"]["value"], effective["daily_max_l"]["source"]) == (1500.0, "global")
    assert effective["sensitivity"]["source"] == "default" and effective["ceiling_hours"]["unit"] == "h"
    in_b = {v["name"]: v for v in api.get("cadre_b", "/elders/EB1/thresholds").json()["values"]}
    assert in_b["ceiling_hours"]["value"] == 14.0
    # null removes the value at that level: it inherits again
    api.put("op_a", f"/thresholds/community/{A}", json={"values": {"ceiling_hours": None}, "reason": "back"})
    effective = {v["name"]: v for v in api.get("cadre_a", "/elders/EA1/thresholds").json()["values"]}
    assert (effective["ceiling_hours"]["value"], effective["ceiling_hours"]["source"]) == (14.0, "global")
    level = api.get("op_a", f"/thresholds/community/{A}").json()
    assert level["values"] == {} and level["scope"] == "community"
    trail = api.get("admin", "/audit", params={"action": "thresholds.update", "sort": "at"}).json()["data"]
    assert [(e["actor"], e["target"]) for e in trail] == [
        ("admin", "global"),
        ("op_a", f"community:{A}"),
        ("op_a", "elder:EA1"),
        ("op_a", f"community:{A}"),
    ]
    assert trail[1]["old"] == {"ceiling_hours": None} and trail[1]["new"] == {"ceiling_hours": 10.0}
    assert trail[3]["old"] == {"ceiling_hours": 10.0} and trail[3]["new"] == {"ceiling_hours": None}
    assert trail[1]["reason"] == "falls" and trail[1]["at"]


def test_bounds_are_checked(api: Api) -> None:
    for values in (
        {"ceiling_hours": 0.5},
        {"ceiling_hours": 1e300},
        {"sensitivity": -1},
        {"daily_min_l": 900, "daily_max_l": 800},
        {"no_such_threshold": 1},
        {},
    ):
        response = api.put("admin", f"/thresholds/community/{A}", json={"values": values, "reason": "x"})
        assert response.status_code == 422, values
        assert response.headers["content-type"] == "application/problem+json"
    assert api.put("admin", "/thresholds/global", json={"values": {"ceiling_hours": 10}}).status_code == 422  # why?
    # a community value that clashes with the global one is refused too
    api.put("admin", "/thresholds/global", json={"values": {"daily_max_l": 100}, "reason": "x"})
    clash = api.put("admin", f"/thresholds/community/{A}", json={"values": {"daily_min_l": 200}, "reason": "x"})
    assert clash.status_code == 422 and "daily_min_l" in clash.json()["detail"]
    with api.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(thresholds)).scalar_one() == 1


def test_a_change_that_clashes_with_an_elders_own_values_below_it_is_refused(api: Api) -> None:
    """The clash used to be stored: the elder's monitor refused the thresholds, and her readings became dead letters."""

    def put(who: str, path: str, values: dict[str, float]) -> Any:
        return api.put(who, path, json={"values": values, "reason": "r"})

    assert put("op_a", "/thresholds/elder/EA1", {"daily_min_l": 500}).status_code == 200
    assert put("admin", f"/thresholds/community/{B}", {"daily_min_l": 300}).status_code == 200
    for who, path, why in (
        ("op_a", f"/thresholds/community/{A}", "for elder EA1: daily_min_l"),
        ("admin", "/thresholds/global", "for elder EA1: daily_min_l"),
    ):
        clash = put(who, path, {"daily_max_l": 400})
        assert clash.status_code == 422 and clash.json()["detail"].startswith(why), (path, clash.text)
    clash = put("admin", "/thresholds/global", {"daily_max_l": 250})
    assert clash.status_code == 422 and clash.json()["detail"].startswith(f"for community {B}: daily_min_l")
    assert put("op_b", f"/thresholds/community/{B}", {"daily_max_l": 400}).status_code == 200  # no clash there
    now = time.time()
    stored = Pipeline(api.engine, AlertManager()).process([RawMessage("t", message("MA1", [(now - 60, 1.0)]), "MA1")])
    assert (stored.readings_stored, stored.dead_letters) == (1, 0)


def test_an_elder_is_not_moved_to_a_community_whose_thresholds_clash_with_her_own(api: Api) -> None:
    own, theirs = {"values": {"daily_min_l": 500}, "reason": "r"}, {"values": {"daily_max_l": 400}, "reason": "r"}
    assert api.put("op_a", "/thresholds/elder/EA1", json=own).is_success
    assert api.put("op_b", f"/thresholds/community/{B}", json=theirs).is_success
    moved = api.patch("admin", "/elders/EA1", json={"community": B, "reason": "moved"})
    assert moved.status_code == 422 and "daily_min_l" in moved.json()["detail"], moved.text
    assert api.get("admin", "/elders/EA1").json()["community"] == A
    now = time.time()
    stored = Pipeline(api.engine, AlertManager()).process([RawMessage("t", message("MA1", [(now - 60, 1.0)]), "MA1")])
    assert (stored.readings_stored, stored.dead_letters) == (1, 0)


def test_outcomes_offered_to_people_exclude_the_system_ones() -> None:
    assert set(get_args(Outcome)) == set(OUTCOMES) - {"use_resumed", "cleared"}


def _silence_history(days: int, now: float) -> list[tuple[float, float]]:
    """Use every daytime hour for ``days`` days, then 20 hours without any use, up to ``now``."""
    start = now - (days * 24 + 20) * HOUR
    readings, total = [], 0.0
    t = start
    while t <= now - 20 * HOUR:
        local_hour = int((t + 8 * HOUR) % 86400 // HOUR)
        if 7 <= local_hour <= 21:
            total += 6.0
        readings.append((t, total))
        t += 1800
    while t <= now:
        readings.append((t, total))
        t += 1800
    return readings


def _live_state(api: Api) -> tuple[int, int, list[object]]:
    with api.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(alerts)).scalar_one(),
            conn.execute(select(func.count()).select_from(detector_state)).scalar_one(),
            [tuple(r) for r in conn.execute(select(meters.c.meter_id, meters.c.state_version)).all()],
        )


def test_backtest_previews_a_change_without_touching_live_state(api: Api) -> None:
    # The silence ends at the last 23:00 Shanghai time, so it covers a whole day's waking hours whatever the
    # hour the test runs at (ending it at "now" left too little daytime silence for the lenient run at night).
    now = time.time()
    ingest(api.engine, "MA1", _silence_history(20, now - (now + 8 * HOUR - 23 * HOUR) % 86400))
    before = _live_state(api)
    same = api.post("op_a", "/backtest", json={"community": A, "days": 3, "thresholds": {}})
    assert same.status_code == 200, same.text
    body = same.json()
    # The history ends up to 24 h before now: at least two of the three days' half-hourly readings are in the window.
    assert body["community"] == A and body["days"] == 3 and body["elders"] == 1 and body["readings"] >= 90
    assert body["current"] == body["proposed"]  # no change proposed: the same alerts
    assert body["current"]["by_kind"].get("no_activity", 0) >= 1  # 20 silent hours from the evening on
    assert body["proposed"]["total"] == len(body["alerts"]) == sum(body["proposed"]["by_kind"].values())
    now_first = min(a["data_time"] for a in body["alerts"] if a["kind"] == "no_activity")
    lenient = {"sensitivity": 1e-5}
    later = api.post("op_a", "/backtest", json={"community": A, "days": 3, "thresholds": lenient}).json()
    later_first = min(a["data_time"] for a in later["alerts"] if a["kind"] == "no_activity")
    assert later_first > now_first  # less sensitive: the same silence alarms later
    alert = next(a for a in later["alerts"] if a["kind"] == "no_activity")
    assert alert["elder_id"] == "EA1" and alert["meter_id"] == "MA1" and alert["message"]["zh"]
    assert _live_state(api) == before  # nothing live was written
    bad = api.post("op_a", "/backtest", json={"community": A, "days": 3, "thresholds": {"ceiling_hours": 1}})
    assert bad.status_code == 422
    empty = api.post("op_b", "/backtest", json={"community": B, "days": 1}).json()
    assert empty["current"]["total"] == empty["proposed"]["total"] == 0 and empty["readings"] == 0
    assert api.post("op_a", "/backtest", json={"community": A, "days": 365}).status_code == 422


def _false_alarms(api: Api, who: str, meter_id: str, times: int) -> None:
    for _ in range(times):  # one open alert per elder and kind: each is resolved before the next
        alert_id = raise_alert(api.engine, meter_id, basis="learned")  # the elder's silence model's calls
        done = api.post(who, f"/alerts/{alert_id}/resolve", json={"outcome": "false_alarm", "note": "在家,没事"})
        assert done.status_code == 200, done.text


def test_repeated_false_alarms_point_operators_at_a_threshold_to_ease(api: Api) -> None:
    _false_alarms(api, "cadre_a", "MA1", 3)
    _false_alarms(api, "cadre_b", "MB1", 2)
    mine = api.get("op_a", "/thresholds/false-alarms")
    assert mine.status_code == 200, mine.text
    [entry] = mine.json()["data"]  # op_a sees the elders of community A only
    assert (entry["elder_id"], entry["community"], entry["kind"], entry["count"]) == ("EA1", A, "no_activity", 3)
    suggestion = entry["suggestion"]
    assert suggestion["scope"] == "elder" and suggestion["name"] == "sensitivity"
    assert suggestion["new"] == suggestion["old"] * 0.5  # half as eager to call a silence unusual
    assert entry["sources"] == {"silence_model": 3, "safety_net": 0} and "3" in suggestion["note"]["zh"]
    assert [e["elder_id"] for e in api.get("op_b", "/thresholds/false-alarms").json()["data"]] == ["EB1"]
    assert api.get("admin", "/thresholds/false-alarms").json()["count"] == 2
    assert api.get("op_a", "/thresholds/false-alarms", params={"min_count": 4}).json()["count"] == 0
    assert api.get("cadre_a", "/thresholds/false-alarms").status_code == 403
    assert api.get("op_a", "/thresholds/false-alarms", params={"days": 0}).status_code == 422

    change = {"values": {suggestion["name"]: suggestion["new"]}, "reason": "三次误报:老人常午睡"}
    assert api.put("op_a", "/thresholds/elder/EA1", json=change).status_code == 200
    again = api.get("op_a", "/thresholds/false-alarms").json()["data"][0]["suggestion"]
    assert again["old"] == suggestion["new"]  # measured against the thresholds now in force


def test_an_elder_who_moved_is_not_listed_under_the_community_she_left(api: Api) -> None:
    """EA1's false alarms resolved in A stayed listed to A's operators after she moved to B, with a suggestion
    made from her thresholds in B (B's community values, shown to A) for a change A's operators may not make
    (404: she is not theirs). Each entry is now of an elder in the community where the cases were worked."""
    _false_alarms(api, "cadre_a", "MA1", 3)
    b_values = {"values": {"sensitivity": 0.0004}, "reason": "older homes"}
    assert api.put("op_b", f"/thresholds/community/{B}", json=b_values).status_code == 200
    moved = api.patch("admin", "/elders/EA1", json={"community": B, "reason": "moved to her daughter's"})
    assert moved.status_code == 200, moved.text
    listed = api.get("op_a", "/thresholds/false-alarms").json()
    assert listed["data"] == [] and listed["count"] == 0
    assert (
        api.put("op_a", "/thresholds/elder/EA1", json={"values": {"sensitivity": 0.0002}, "reason": "x"}).status_code
        == 404
    )
    for entry in api.get("admin", "/thresholds/false-alarms").json()["data"]:
        assert (entry["elder_id"], entry["community"]) != ("EA1", A)


def test_a_safety_net_of_0_litres_which_could_never_fire_is_refused(api: Api) -> None:
    """The net alerts when a window holds *under* ``ceiling_litres``: nothing is under 0 L, so at 0 it never fired,
    learning or learned, and the API took the value without a word."""
    for path in (f"/thresholds/community/{A}", "/thresholds/elder/EA1"):
        zero = api.put("op_a", path, json={"values": {"ceiling_litres": 0}, "reason": "任何用水都算"})
        assert zero.status_code == 422, zero.text
        assert zero.json()["detail"] == "ceiling_litres must be between 1 and 100 L, got 0"
    preview = api.post("op_a", "/backtest", json={"community": A, "days": 7, "thresholds": {"ceiling_litres": 0}})
    assert preview.status_code == 422, preview.text
    one = api.put("op_a", f"/thresholds/community/{A}", json={"values": {"ceiling_litres": 1}, "reason": "几乎不用水"})
    assert one.status_code == 200, one.text
