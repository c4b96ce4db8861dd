"""The flow and routine-change knobs through the API: levels, bounds, the live pipeline and the backtest preview."""

from __future__ import annotations

import time

from sqlalchemy import select

from core.thresholds import THRESHOLD_SPECS
from store.schema import alerts
from tests.api_fixtures import A, Api, B, api_env, raise_alert  # noqa: F401
from tests.helpers import HOUR, ingest

DAY = 86400.0
TAP_L = 90.0  # litres per half hour: 3 L/min, a tap's rate


def _mornings_then_a_tap(days: int, now: float, tap_slots: int) -> list[tuple[float, float]]:
    """Half-hourly register (Shanghai time) of a home that runs a tap for two hours every morning, from 06:00,
    08:00 or 10:00 in turn, for ``days`` days; on the day after, a tap from 08:00 runs ``tap_slots`` half hours.
    The last day ends at the last local midnight before ``now``."""
    last_midnight = ((now + 8 * HOUR) // DAY) * DAY - 8 * HOUR
    start = last_midnight - (days + 1) * DAY
    readings, total = [(start, 0.0)], 0.0
    for d in range(days + 1):
        first = 16 if d == days else 12 + 4 * (d % 3)  # the half hour the morning's run begins in
        slots = tap_slots if d == days else 4
        for k in range(48):
            total += TAP_L if first <= k < first + slots else (5.0 if k in (30, 38) else 0.0)
            readings.append((start + d * DAY + (k + 1) * 1800, total))
    return readings


def _flow_alerts(api: Api, meter_id: str) -> list[float]:
    with api.engine.connect() as conn:
        rows = conn.execute(
            select(alerts.c.data_ts, alerts.c.since_ts).where(
                alerts.c.meter_id == meter_id, alerts.c.kind == "continuous_flow"
            )
        ).all()
    return [(r.data_ts - r.since_ts) / HOUR for r in rows]


def test_a_community_run_factor_reaches_its_meters_and_no_others(api: Api) -> None:
    change = {"values": {"flow_run_factor": 3, "routine_threshold": 12}, "reason": "家里人多,用水时间长"}
    saved = api.put("op_a", f"/thresholds/community/{A}", json=change)
    assert saved.status_code == 200, saved.text
    assert saved.json()["values"] == {"flow_run_factor": 3.0, "routine_threshold": 12.0}
    effective = {v["name"]: v for v in api.get("cadre_a", "/elders/EA1/thresholds").json()["values"]}
    assert (effective["flow_run_factor"]["value"], effective["flow_run_factor"]["source"]) == (3.0, "community")
    assert effective["flow_run_factor"]["unit"] == THRESHOLD_SPECS["flow_run_factor"].unit
    assert {v["name"]: v["value"] for v in api.get("cadre_b", "/elders/EB1/thresholds").json()["values"]}[
        "flow_run_factor"
    ] == 1.5

    now = time.time()
    for meter_id in ("MA1", "MB1"):  # the same home in both communities: a tap from 08:00 runs 6 h
        ingest(api.engine, meter_id, _mornings_then_a_tap(21, now, 12))
    in_a, in_b = _flow_alerts(api, "MA1"), _flow_alerts(api, "MB1")
    assert len(in_a) == len(in_b) == 1
    assert in_b[0] < in_a[0]  # community A waits three times this home's longest run, B one and a half


def test_out_of_bounds_knobs_are_refused_with_their_bounds(api: Api) -> None:
    for values, words in (
        ({"flow_run_factor": 0.5}, "flow_run_factor must be between 1 and 4"),
        ({"flow_run_factor": 10}, "flow_run_factor must be between 1 and 4"),
        ({"flow_margin_h": 0}, "flow_margin_h must be between 0.5 and 4 h"),
        ({"routine_threshold": 2}, "routine_threshold must be between 4 and 30"),
        ({"routine_threshold": "many"}, None),
    ):
        answer = api.put("op_a", f"/thresholds/community/{A}", json={"values": values, "reason": "试"})
        assert answer.status_code == 422, (values, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        if words is not None:
            assert words in answer.json()["detail"], answer.json()
    preview = api.post("op_a", "/backtest", json={"community": A, "days": 3, "thresholds": {"flow_run_factor": 9}})
    assert preview.status_code == 422 and preview.headers["content-type"] == "application/problem+json"
    assert "flow_run_factor" in preview.text
    assert api.get("op_b", f"/thresholds/community/{B}").json()["values"] == {}


def test_the_backtest_preview_shows_fewer_flow_alerts_with_a_larger_factor(api: Api) -> None:
    ingest(api.engine, "MA1", _mornings_then_a_tap(21, time.time(), 7))  # the tap runs 3.5 h, then stops
    before = _flow_alerts(api, "MA1")
    assert len(before) == 1  # raised live, with the default factor
    asked = {"community": A, "days": 3}
    now = api.post("op_a", "/backtest", json={**asked, "thresholds": {}}).json()
    patient = api.post("op_a", "/backtest", json={**asked, "thresholds": {"flow_run_factor": 3}}).json()
    assert now["proposed"]["by_kind"].get("continuous_flow") == 1
    assert patient["current"] == now["current"]
    assert patient["proposed"]["by_kind"].get("continuous_flow", 0) == 0
    assert _flow_alerts(api, "MA1") == before  # a preview changes nothing live


def test_repeated_false_flow_and_routine_alarms_point_at_their_own_knobs(api: Api) -> None:
    for kind in ("continuous_flow", "routine_change"):
        for _ in range(2):  # one open alert per elder and kind: each is resolved before the next
            alert_id = raise_alert(api.engine, "MA1", kind=kind)
            done = api.post("cadre_a", f"/alerts/{alert_id}/resolve", json={"outcome": "false_alarm", "note": "没事"})
            assert done.status_code == 200, done.text
    listed = {e["kind"]: e["suggestion"] for e in api.get("op_a", "/thresholds/false-alarms").json()["data"]}
    assert (listed["continuous_flow"]["name"], listed["continuous_flow"]["new"]) == ("flow_margin_h", 2.0)
    assert (listed["routine_change"]["name"], listed["routine_change"]["new"]) == ("routine_threshold", 12.0)
    for suggestion in listed.values():  # each applies as suggested
        change = {"values": {suggestion["name"]: suggestion["new"]}, "reason": "两次误报"}
        assert api.put("op_a", "/thresholds/elder/EA1", json=change).status_code == 200
