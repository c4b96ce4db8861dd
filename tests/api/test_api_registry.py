"""Registry through the API: update, retire, replace a meter, readings and use, routine, away windows, devices."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update

from alerts.manager import AlertManager
from alerts.messages import local_time
from api.main import create_app
from core.domain import Finding
from core.metrics import Metrics
from core.settings import get_settings
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.registry import meter_context
from store.schema import elders, meters, outbox, readings
from tests.api_fixtures import ELDER_A, A, Api, add_elder, add_user, api_env, raise_alert  # noqa: F401
from tests.helpers import HOUR, SHANGHAI, daily_pattern, ingest, message
from timeseries.sql import SqlTimeseries


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, SHANGHAI).isoformat()


def test_update_is_audited_without_contact_numbers(api: Api) -> None:
    changed = api.patch(
        "cadre_a",
        "/elders/EA1",
        json={"room": "808", "consent": False, "contacts": [{"name": "李明", "phone": "13700000000"}], "reason": "r"},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["room"] == "808" and body["consent"] is False and body["contacts"][0]["name"] == "李明"
    entry = api.get("admin", "/audit", params={"action": "elder.update"}).json()["data"][0]
    assert entry["actor"] == "cadre_a" and entry["old"]["room"] == "201" and entry["new"]["room"] == "808"
    assert "13700000000" not in str(entry) and "13900000000" not in str(entry)
    assert entry["new"]["contacts"] == "1 contacts"
    assert api.patch("cadre_a", "/elders/EA1", json={"tz": "Nowhere/City"}).status_code == 422


def test_replace_meter_keeps_both_histories(api: Api) -> None:
    now = time.time()
    ingest(api.engine, "MA1", [(now - 3 * HOUR, 100.0), (now - 2 * HOUR, 110.0)])
    replaced = api.post("cadre_a", "/elders/EA1/meter", json={"meter_id": "MA9", "reason": "battery dead"})
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert body["meter_id"] == "MA9"
    assert [(m["meter_id"], m["retired_at"] is None) for m in body["meters"]] == [("MA9", True), ("MA1", False)]
    ingest(api.engine, "MA9", [(now - HOUR, 0.0), (now - 0.5 * HOUR, 5.0)])
    old = api.get("cadre_a", "/meters/MA1/readings", params={"start": iso(now - 4 * HOUR)}).json()
    new = api.get("cadre_a", "/meters/MA9/readings", params={"start": iso(now - 4 * HOUR)}).json()
    assert [r["total_l"] for r in old["data"]] == [100.0, 110.0] and old["elder_id"] == "EA1"
    assert [r["usage_l"] for r in new["data"]] == [None, 5.0]
    assert api.post("cadre_a", "/elders/EA1/meter", json={"meter_id": "MB1", "reason": "x"}).status_code == 409
    entry = api.get("admin", "/audit", params={"action": "meter.replace"}).json()["data"][0]
    assert entry["old"] == {"meter_id": "MA1"} and entry["new"] == {"meter_id": "MA9", "routine_carried": True}


def _routine(days: int, first_midnight: float) -> list[tuple[float, float]]:
    """Half-hourly register of an elder who uses 15 L at 07:00, 12:00 and 19:00 Shanghai time."""
    out, total = [], 0.0
    for k in range(days * 48):
        total += 15.0 if k % 48 in (14, 24, 38) else 0.0
        out.append((first_midnight + (k + 1) * 1800, total))
    return out


def _a_day_without_water(engine: Engine, meter_id: str, midnight: float) -> list[tuple[str, str]]:
    """What the live pipeline finds in a new meter's first day, on which nobody uses any water."""
    pipeline = Pipeline(engine, AlertManager(), late_window_s=90 * 86400)
    day = [(midnight + k * 1800, 500.0) for k in range(49)]
    result = pipeline.process([RawMessage("test", message(meter_id, day))])
    return [(f.kind, f.basis) for f in result.findings if not f.resolved]


def test_a_replaced_meter_carries_on_the_elders_routine(api: Api) -> None:
    today = (time.time() + 8 * HOUR) // 86400 * 86400 - 8 * HOUR  # local midnight
    ingest(api.engine, "MA1", _routine(21, today - 24 * 86400))
    offline = raise_alert(api.engine, "MA1", kind="meter_offline", severity="low")
    low_use = raise_alert(api.engine, "MA1", kind="low_usage", severity="medium")

    replaced = api.post("cadre_a", "/elders/EA1/meter", json={"meter_id": "MA2", "reason": "水表损坏"})
    assert replaced.status_code == 200, replaced.text
    closed = api.get("cadre_a", f"/alerts/{offline}").json()  # the old device's trouble went with it
    assert closed["state"] == "resolved" and closed["note"] == "meter replaced: 水表损坏"
    assert api.get("cadre_a", f"/alerts/{low_use}").json()["state"] == "open"  # the elder's case stays open

    # Her first day on the new meter without water is judged by her routine, as on the old meter;
    # a meter new to its home (EA3) has only the cautious cold-start rules to go by.
    assert ("no_activity", "learned") in _a_day_without_water(api.engine, "MA2", today - 2 * 86400)
    add_elder(api.engine, {"elder_id": "EA3", "meter_id": "MA3", "name": "赵兰英", "community": A})
    assert _a_day_without_water(api.engine, "MA3", today - 2 * 86400) == [("no_activity", "prior")]


def test_replacing_a_meter_closes_its_maintenance_case_that_began_as_a_slow_leak(api: Api) -> None:
    """The old meter's maintenance case began as a slow leak (``continuous_flow`` on the maintenance route), a meter
    offline joined it: the old meter never reports again, so the case closes with the meter, whatever its first
    kind. The elder's community case follows her."""
    now = time.time()
    leak = Finding("MA1", "continuous_flow", "low", now - HOUR, "慢漏", "slow leak", route="maintenance")
    with api.engine.begin() as conn:
        context = meter_context(conn, "MA1")
        assert context is not None
        case = AlertManager().apply(conn, context, leak, now - HOUR)
    assert case is not None and raise_alert(api.engine, "MA1", kind="meter_offline", severity="low") == case
    fall = raise_alert(api.engine, "MA1")

    replaced = api.post("cadre_a", "/elders/EA1/meter", json={"meter_id": "MA2", "reason": "水表损坏"})
    assert replaced.status_code == 200, replaced.text
    closed = api.get("cadre_a", f"/alerts/{case}").json()
    assert closed["state"] == "resolved" and closed["note"] == "meter replaced: 水表损坏", closed
    assert api.get("cadre_a", f"/alerts/{fall}").json()["state"] == "open"


def test_retire_closes_open_alerts_and_hides_the_elder(api: Api) -> None:
    alert_id = raise_alert(api.engine, "MA1")
    retired = api.post("cadre_a", "/elders/EA1/retire", json={"reason": "moved to a care home"})
    assert retired.status_code == 200 and retired.json()["retired_at"] is not None
    assert retired.json()["meter_id"] is None
    assert api.get("cadre_a", f"/alerts/{alert_id}").json()["state"] == "resolved"
    assert api.get("cadre_a", "/elders").json()["count"] == 0
    assert api.get("cadre_a", "/elders", params={"status": "retired"}).json()["data"][0]["elder_id"] == "EA1"
    assert api.post("cadre_a", "/elders/EA1/retire", json={"reason": "again"}).status_code == 409
    assert api.patch("cadre_a", "/elders/EA1", json={"room": "1"}).status_code == 409
    assert api.post("cadre_a", "/elders/EA1/retire", json={"reason": ""}).status_code == 422


def test_readings_usage_and_routine(api: Api) -> None:
    now = time.time()
    ingest(api.engine, "MA1", daily_pattern(14, now))
    readings = api.get("cadre_a", "/meters/MA1/readings", params={"limit": 5, "sort": "-ts"}).json()
    assert readings["count"] >= 46 and len(readings["data"]) == 5
    assert readings["data"][0]["ts"] > readings["data"][1]["ts"]
    daily = api.get(
        "cadre_a", "/meters/MA1/usage", params={"every": "day", "start": iso(now - 10 * 86400), "end": iso(now)}
    ).json()
    full_days = [d for d in daily["data"] if d["readings"] == 48]
    assert full_days and all(d["usage_l"] == 20.0 for d in full_days)
    assert all(d["start"].endswith("T00:00:00+08:00") for d in daily["data"])  # local days of the elder
    hourly = api.get("cadre_a", "/meters/MA1/usage", params={"every": "hour"}).json()
    assert {d["usage_l"] for d in hourly["data"]} <= {0.0, 20.0}
    routine = api.get("cadre_a", "/elders/EA1/routine").json()
    assert routine["source"] == "readings" and len(routine["weekday"]) == len(routine["weekend"]) == 48
    seven = routine["weekday"][14]
    assert seven["start"] == "07:00" and seven["p_use"] == 1.0 and seven["typical_l"] == 20.0
    assert max(s["p_use"] for i, s in enumerate(routine["weekday"]) if i != 14) == 0.0
    too_long = api.get("cadre_a", "/meters/MA1/readings", params={"start": iso(now - 200 * 86400)})
    assert too_long.status_code == 422


def _dates_read(points: list[tuple[float, float]], since: float) -> int:
    """Local dates (Asia/Shanghai) of the intervals between consecutive readings, both read at or after ``since``."""
    read = [ts for ts, _total in points if ts >= since]
    return len({datetime.fromtimestamp(start, ZoneInfo("Asia/Shanghai")).date() for start in read[:-1]})


def test_the_routine_says_on_how_many_of_its_days_there_were_readings(api: Api) -> None:
    """``days`` is the 28-day window whatever was read: a meter installed two days ago looked as learned as one
    read for a month, and the dashboard's 'still being learned' note (days of data under 7) never showed."""
    now = time.time()
    two_days, forty_days = daily_pattern(2, now), daily_pattern(40, now)
    ingest(api.engine, "MA1", two_days)
    ingest(api.engine, "MB1", forty_days)
    new = api.get("cadre_a", "/elders/EA1/routine").json()
    old = api.get("cadre_b", "/elders/EB1/routine").json()
    window = now - 28 * 86400
    # Local dates of the half hours read in the window (the first and the last date are parts of days, read or
    # not by the hour of the run): 3-4 and 28-29.
    assert (new["days"], new["days_observed"]) == (28, _dates_read(two_days, window))
    assert (old["days"], old["days_observed"]) == (28, _dates_read(forty_days, window))
    assert new["days_observed"] < 7 <= old["days_observed"]  # the dashboard's line: a routine still being learned
    add_elder(api.engine, {**ELDER_A, "elder_id": "EA5", "meter_id": "MA5", "contacts": []})
    assert api.get("cadre_a", "/elders/EA5/routine").json()["days_observed"] == 0  # nothing read yet


def test_daily_use_follows_the_elders_local_days_across_a_clock_change(api: Api) -> None:
    """Days were cut at one fixed offset (the start's): after clocks went back, each 'day' began at 23:00."""
    berlin = ZoneInfo("Europe/Berlin")  # clocks went back an hour on 2025-10-26 (03:00 CEST -> 02:00 CET)
    add_elder(api.engine, {**ELDER_A, "elder_id": "EG1", "meter_id": "MG1", "tz": "Europe/Berlin", "contacts": []})
    start = datetime(2025, 10, 24, tzinfo=berlin).timestamp()
    end = datetime(2025, 10, 28, tzinfo=berlin).timestamp()
    hourly = [start + 3600 * h for h in range(1, int((end - start) // 3600) + 1)]  # 1 L an hour
    with api.engine.begin() as conn:
        conn.execute(
            insert(readings),
            [
                {"meter_id": "MG1", "ts": ts, "total_l": float(k), "usage_l": 1.0, "status": "ok", "received_at": ts}
                for k, ts in enumerate(hourly, 1)
            ],
        )
    expected: dict[str, float] = {}
    for ts in hourly:
        day = datetime.fromtimestamp(ts, berlin).date().isoformat()
        expected[day] = expected.get(day, 0.0) + 1.0
    daily = api.get("cadre_a", "/meters/MG1/usage", params={"every": "day", "start": iso(start), "end": iso(end)})
    assert daily.status_code == 200
    got = {d["start"]: d["usage_l"] for d in daily.json()["data"]}
    assert got == {
        "2025-10-24T00:00:00+02:00": expected["2025-10-24"],
        "2025-10-25T00:00:00+02:00": expected["2025-10-25"],
        "2025-10-26T00:00:00+02:00": expected["2025-10-26"],  # 25 hours long
        "2025-10-27T00:00:00+01:00": expected["2025-10-27"],
        "2025-10-28T00:00:00+01:00": expected["2025-10-28"],
    }
    assert expected["2025-10-26"] == 25.0


class _Service:
    """A monitor as the API sees it (api.deps.MonitorService): what tapwatch.service.Service offers it."""

    def __init__(self, engine: Engine) -> None:
        self.metrics = Metrics()
        self.alert_manager = AlertManager()
        self.timeseries = SqlTimeseries(engine)

    def readiness(self) -> dict[str, Any]:
        return {"broker": True, "store": True, "ready": True}


def _state_version(engine: Engine, meter_id: str) -> int:
    with engine.connect() as conn:
        query = select(meters.c.state_version).where(meters.c.meter_id == meter_id)
        return int(conn.execute(query).scalar_one())


def test_away_windows_make_every_worker_reload_the_meter(api: Api) -> None:
    service = _Service(api.engine)
    client = TestClient(create_app(get_settings(), api.engine, service))
    with api.engine.begin() as conn:  # the meter's detector state, as a worker left it
        conn.execute(update(meters).where(meters.c.meter_id == "MA1").values(state_version=7))
    headers = api.headers("cadre_a")
    window = {
        "kind": "away",
        "start": "2026-11-24T09:00:00+08:00",
        "end": "2026-11-27T18:00:00+08:00",
        "reason": "女儿家",
    }
    made = client.post("/elders/EA1/away", json=window, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json()["start"] in ("2026-11-24T01:00:00Z", "2026-11-24T01:00:00+00:00")
    assert _state_version(api.engine, "MA1") == 8  # moved on with the change: cached copies are stale
    snooze = {**window, "kind": "snooze", "start": "2026-11-20T09:00:00+08:00", "end": "2026-11-20T12:00:00+08:00"}
    client.post("/elders/EA1/away", json=snooze, headers=headers)
    listed = client.get("/elders/EA1/away", params={"sort": "start"}, headers=headers).json()
    assert [w["kind"] for w in listed["data"]] == ["snooze", "away"]
    assert client.get("/elders/EA1/away", params={"kind": "away"}, headers=headers).json()["count"] == 1
    window_id = made.json()["window_id"]
    assert client.delete(f"/elders/EA1/away/{window_id}", headers=headers).status_code == 204
    assert client.delete(f"/elders/EA1/away/{window_id}", headers=headers).status_code == 404
    assert _state_version(api.engine, "MA1") == 10
    backwards = {**window, "end": "2026-11-23T09:00:00+08:00"}
    assert client.post("/elders/EA1/away", json=backwards, headers=headers).status_code == 422
    naive = {**window, "start": "2026-11-24T09:00:00"}
    assert client.post("/elders/EA1/away", json=naive, headers=headers).status_code == 422
    actions = [e["action"] for e in api.get("admin", "/audit", params={"sort": "at"}).json()["data"]]
    assert [a for a in actions if a != "list.read"] == ["away.create", "away.create", "away.delete"]


def test_devices(api: Api) -> None:
    now = time.time()
    with api.engine.begin() as conn:
        conn.execute(update(meters).where(meters.c.meter_id == "MA1").values(battery_pct=5.0, last_reading_ts=now))
        conn.execute(
            update(meters).where(meters.c.meter_id == "MB1").values(battery_pct=90.0, last_reading_ts=now - 86400)
        )
    devices = api.get("admin", "/devices").json()
    assert {d["meter_id"]: d["statuses"] for d in devices["data"]} == {"MA1": ["low_battery"], "MB1": ["offline"]}
    assert api.get("admin", "/devices", params={"status": "offline"}).json()["data"][0]["meter_id"] == "MB1"
    assert api.get("op_a", "/devices").json()["count"] == 1  # only community A
    by_battery = api.get("admin", "/devices", params={"sort": "-battery_pct"}).json()["data"]
    assert [d["meter_id"] for d in by_battery] == ["MB1", "MA1"]
    glitchy = [(now - 5 * HOUR, 100.0), (now - 4 * HOUR, 101.0), (now - 3 * HOUR, 900_000.0), (now - 2 * HOUR, 102.0)]
    ingest(api.engine, "MA1", glitchy)
    with api.engine.connect() as conn:
        assert conn.execute(select(meters.c.battery_pct).where(meters.c.meter_id == "MA1")).scalar_one() == 5.0
    statuses = {d["meter_id"]: d["statuses"] for d in api.get("admin", "/devices").json()["data"]}
    assert "faulty" in statuses["MA1"]


def test_devices_are_offline_by_the_elders_own_offline_hours_not_the_global_one(api: Api) -> None:
    """A community whose meters report twice a day sets offline_hours 48: its meters were all listed offline."""
    now = time.time()
    with api.engine.begin() as conn:
        silent_a_day = update(meters).values(battery_pct=90.0, last_reading_ts=now - 24 * HOUR)
        conn.execute(silent_a_day.where(meters.c.meter_id.in_(["MA1", "MB1"])))
    eased = {"values": {"offline_hours": 48}, "reason": "meters report twice a day here"}
    assert api.put("op_a", f"/thresholds/community/{A}", json=eased).status_code == 200
    statuses = {d["meter_id"]: d["statuses"] for d in api.get("admin", "/devices").json()["data"]}
    assert statuses == {"MB1": ["offline"]}  # B keeps the default 6 h
    assert api.put("admin", "/thresholds/elder/EB1", json=eased).status_code == 200
    assert api.get("admin", "/devices").json()["data"] == []
    tighter = {"values": {"offline_hours": 12}, "reason": "this meter reports hourly"}
    assert (
        api.put("admin", "/thresholds/elder/EA1", json=tighter).status_code == 200
    )  # the elder's over the community's
    assert {d["meter_id"] for d in api.get("admin", "/devices").json()["data"]} == {"MA1"}


def _every_six_hours(days: int, last: float) -> list[tuple[float, float]]:
    """A meter that saves its battery: one reading every 6 h for ``days``, the newest at ``last``, 5 L each time."""
    count = days * 4
    return [(last - (count - 1 - k) * 6 * HOUR, 5.0 * k) for k in range(count)]


def test_a_six_hourly_meter_is_offline_on_the_devices_page_by_the_line_detection_draws_on_its_cadence(
    api: Api,
) -> None:
    """The page said offline after ``offline_hours`` (6 h) alone: a 6-hourly meter was "offline" most of each
    interval though the monitor (2.5 of its usual interval: 15 h) opened no case."""
    now = time.time()
    ingest(api.engine, "MA1", _every_six_hours(20, now - 8 * HOUR))  # between two readings, one late
    ingest(api.engine, "MB1", _every_six_hours(20, now - 16 * HOUR))  # two readings missed and more
    statuses = {d["meter_id"]: d["statuses"] for d in api.get("admin", "/devices").json()["data"]}
    assert statuses == {"MB1": ["offline"]}
    with api.engine.begin() as conn:  # a meter the monitor never learned a cadence of: offline_hours, as before
        conn.execute(update(meters).where(meters.c.meter_id == "MA1").values(usual_interval_s=None))
    statuses = {d["meter_id"]: d["statuses"] for d in api.get("admin", "/devices").json()["data"]}
    assert statuses == {"MA1": ["offline"], "MB1": ["offline"]}


def test_the_meter_of_an_elder_without_consent_is_not_listed_as_a_device_problem(api: Api) -> None:
    """Her readings are dropped unread and her meter is not watched: it was listed offline, a technician sent."""
    now = time.time()
    with api.engine.begin() as conn:
        installed_long_ago = update(meters).values(installed_at=now - 30 * 86400, last_reading_ts=now, battery_pct=5.0)
        conn.execute(installed_long_ago.where(meters.c.meter_id.in_(["MA1", "MB1"])))
    assert api.patch("cadre_a", "/elders/EA1", json={"consent": False, "reason": "不愿意"}).status_code == 200
    assert {d["meter_id"] for d in api.get("admin", "/devices").json()["data"]} == {"MB1"}  # its low battery
    assert {d["meter_id"] for d in api.get("admin", "/devices", params={"include_healthy": True}).json()["data"]} == {
        "MB1"
    }


def test_devices_show_every_device_kind_of_a_meters_one_maintenance_case(api: Api) -> None:
    now = time.time()
    with api.engine.begin() as conn:  # MA1 reports: its status comes from its open case alone
        conn.execute(update(meters).where(meters.c.meter_id == "MA1").values(battery_pct=90.0, last_reading_ts=now))
    case = raise_alert(api.engine, "MA1", "meter_offline", ts=now - 2 * HOUR, severity="low")
    assert raise_alert(api.engine, "MA1", "meter_fault", ts=now - HOUR, severity="low") == case  # joined
    statuses = {d["meter_id"]: d["statuses"] for d in api.get("admin", "/devices").json()["data"]}
    assert statuses["MA1"] == ["offline", "faulty"]


@pytest.mark.parametrize("sort", ["meter_id", "-battery_pct", "last_reading_at"])
def test_devices_sort_with_missing_values(api: Api, sort: str) -> None:
    listed = api.get("admin", "/devices", params={"sort": sort, "include_healthy": True})
    assert listed.status_code == 200 and listed.json()["count"] == 2


def test_an_elder_registered_without_a_zone_gets_the_configured_one_stored(api: Api) -> None:
    # A district in Madrid: TAPWATCH_TIMEZONE is the zone of every elder registered without one.
    client = TestClient(create_app(get_settings(timezone="Europe/Madrid"), api.engine))
    headers = api.headers("cadre_a")
    new = {"elder_id": "EA9", "meter_id": "MA9", "name": "Carmen", "community": A}
    made = client.post("/elders", json=new, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json()["tz"] == "Europe/Madrid"
    given = client.post(
        "/elders", json={**new, "elder_id": "EA8", "meter_id": "MA8", "tz": "Atlantic/Canary"}, headers=headers
    )
    assert given.json()["tz"] == "Atlantic/Canary"
    # Stored with the elder: a later change of the setting does not move her, and PATCH without tz keeps it.
    later = TestClient(create_app(get_settings(timezone="Asia/Shanghai"), api.engine))
    assert later.patch("/elders/EA9", json={"room": "2B"}, headers=headers).json()["tz"] == "Europe/Madrid"
    with api.engine.connect() as conn:
        assert conn.execute(select(elders.c.tz).where(elders.c.elder_id == "EA9")).scalar() == "Europe/Madrid"


def _queued_case(engine: Engine, meter_id: str, ts: float, channels: tuple[str, ...] = ("webhook",)) -> None:
    """A case of ``meter_id``'s elder whose steps wait in the outbox of ``channels`` (their receivers down, say)."""
    f = Finding(meter_id, "no_activity", "high", ts, "12 小时未用水。", "No use for 12 h.", since=ts - 12 * HOUR)
    with engine.begin() as conn:
        context = meter_context(conn, meter_id)
        assert context is not None
        assert AlertManager(channels).apply(conn, context, f, ts) is not None


def _unsent(engine: Engine, notifier: str = "webhook") -> list[dict[str, Any]]:
    query = select(outbox.c.payload).where(outbox.c.status != "sent", outbox.c.notifier == notifier)
    with engine.connect() as conn:
        return [r.payload for r in conn.execute(query)]


def test_her_case_s_queued_steps_name_the_door_she_lives_at_after_a_new_building_or_room(api: Api) -> None:
    """A new building or room without a move (a wrong room put right, a flat in the same community) left her
    case's steps still queued naming the old door: the work order sent a visitor to a door she is not behind."""
    _queued_case(api.engine, "MA1", 1_790_000_000.0)
    changed = api.patch("admin", "/elders/EA1", json={"building": "9号楼", "room": "1101", "reason": "wrong room"})
    assert changed.status_code == 200, changed.text
    steps = [p["data"] for p in _unsent(api.engine) if "who" in p["data"]]
    assert len(steps) >= 2  # raised, the work order
    for step in steps:
        assert (step["who"]["building"], step["who"]["room"]) == ("9号楼", "1101")
        assert f"李桂芳（{A} 9号楼 1101）：" in step["text"]["zh"] and "201" not in step["text"]["zh"]
        assert f"李桂芳 ({A} 9号楼 1101): " in step["text"]["en"] and "201" not in step["text"]["en"]


def test_her_case_s_queued_steps_say_since_when_in_the_zone_she_lives_in_now(api: Api) -> None:
    """A new time zone left her case's steps still queued (to the platform, to her family) saying since when in
    the old zone's local time: two hours off for an elder who moved from Shanghai to Urumqi."""
    ts = 1_790_000_000.0
    _queued_case(api.engine, "MA1", ts, ("webhook", "sms"))
    changed = api.patch("admin", "/elders/EA1", json={"tz": "Asia/Urumqi", "reason": "moved to her daughter"})
    assert changed.status_code == 200, changed.text
    was, now = local_time(ts - 12 * HOUR, "Asia/Shanghai"), local_time(ts - 12 * HOUR, "Asia/Urumqi")
    platform = [p["data"]["text"] for p in _unsent(api.engine) if "text" in p["data"]]
    family = [p["data"]["text"] for p in _unsent(api.engine, "sms")]
    assert len(platform) == len(family) == 1  # raised; the text to her son
    for text in platform:
        assert f"自 {now} 起。" in text["zh"] and was not in text["zh"]
        assert f"Since {now}." in text["en"] and was not in text["en"]
    assert f"自 {now} 起。" in family[0] and was not in family[0]
