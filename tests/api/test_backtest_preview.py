"""The backtest preview keeps what does not depend on a proposal, and forgets it when the elders' settings change.

It can be prepared ahead (``POST /backtest/prepare``, when the thresholds page opens): the preview
then answers from that preparation with exactly what a preview preparing on its own answers.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.grouping import HoldDowns
from api.main import create_app
from api.routes import backtest as route
from core.settings import get_settings
from tests.api_fixtures import ELDER_A, A, Api, B, add_elder, api_env  # noqa: F401
from tests.helpers import daily_pattern, ingest
from tests.processes import wait_until

DAY = 86400.0


def _preview(api: Api, proposal: dict[str, float]) -> dict:
    answer = api.post("op_a", "/backtest", json={"community": A, "days": 10, "thresholds": proposal})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_further_previews_reuse_the_replay_until_thresholds_change(api: Api) -> None:
    ingest(api.engine, "MA1", daily_pattern(30, time.time()))  # water once a day at 07:00, for 30 days
    first = _preview(api, {})
    strict = _preview(api, {"learned_ceiling_hours": 2})
    assert strict["end"] == first["end"]  # the same prepared replay (a new one would end later)
    assert strict["current"] == first["current"]
    assert strict["proposed"]["total"] > first["proposed"]["total"]  # a 2 h safety net fires every day

    route._prepared.clear()
    fresh = _preview(api, {"learned_ceiling_hours": 2})
    assert fresh["end"] > strict["end"]
    assert (fresh["current"], fresh["proposed"]) == (strict["current"], strict["proposed"])  # reuse changes nothing

    change = {"values": {"learned_ceiling_hours": 2}, "reason": "试一试"}
    assert api.put("op_a", "/thresholds/elder/EA1", json=change).status_code == 200
    after = _preview(api, {})
    assert after["end"] > fresh["end"]  # the elder's thresholds changed: replayed again
    # What was proposed is now current. A proposal applies from the period's start, as if made then: a
    # silence already running at that moment raises at the start under the proposal, but before the period
    # under the thresholds in force through the warm-up, and its episode runs on from there. So compare from the
    # period's second day.
    settled = max(datetime.fromisoformat(r["start"]) for r in (fresh, after)).timestamp() + DAY
    assert _alerts_after(after, settled) == _alerts_after(fresh, settled) != []


def _alerts_after(result: dict[str, Any], ts: float) -> list[tuple[str, str, str]]:
    return [
        (a["meter_id"], a["kind"], a["data_time"])
        for a in result["alerts"]
        if datetime.fromisoformat(a["data_time"]).timestamp() > ts
    ]


def _prepare(api: Api, who: str = "op_a", community: str = A) -> Any:
    return api.post(who, "/backtest/prepare", json={"community": community, "days": 10})


def test_preparing_when_the_page_opens_gives_the_preview_a_cold_start_gives(api: Api) -> None:
    ingest(api.engine, "MA1", daily_pattern(30, time.time()))
    proposal = {"learned_ceiling_hours": 2}
    cold = _preview(api, proposal)  # prepared by the preview itself
    route._prepared.clear()

    opened = _prepare(api)
    assert opened.status_code == 202, opened.text
    assert opened.json() == {"community": A, "days": 10, "state": "preparing"}
    assert wait_until(lambda: _prepare(api).json()["state"] == "ready", timeout=30)
    (kept,) = route._prepared.values()

    warm = _preview(api, proposal)
    assert datetime.fromisoformat(warm["end"]).timestamp() == pytest.approx(kept.end, abs=1e-3)  # the background's
    assert warm["end"] > cold["end"]
    for part in ("elders", "readings", "current", "proposed", "alerts"):
        assert warm[part] == cold[part], part  # the same replay, prepared ahead
    assert warm["proposed"]["total"] > 0


def test_a_preview_during_preparation_waits_for_it_instead_of_preparing_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(api.engine, "MA1", daily_pattern(30, time.time()))
    builds: list[float] = []
    build = route._build

    def counted(*args: Any) -> Any:
        builds.append(time.time())
        return build(*args)

    monkeypatch.setattr(route, "_build", counted)
    route._prepared.clear()
    assert _prepare(api).status_code == 202
    first = _preview(api, {})  # sent at once: the preparation is under way or done
    again = _preview(api, {"learned_ceiling_hours": 2})
    assert len(builds) == 1
    assert again["end"] == first["end"]


def test_prepare_is_scoped_like_the_preview(api: Api) -> None:
    assert _prepare(api, community=B).status_code == 404  # another community: as if absent
    assert _prepare(api, who="cadre_a").status_code == 403
    assert _prepare(api, community="没有这个社区").status_code == 404
    bad = api.post("op_a", "/backtest/prepare", json={"community": A, "days": 365})
    assert bad.status_code == 422


def test_a_preview_split_across_two_processes_answers_what_one_process_answers(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_elder(api.engine, {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "张秀英", "room": "202"})
    for k, meter_id in enumerate(("MA1", "MA2")):
        ingest(api.engine, meter_id, daily_pattern(30, time.time() - 3600 * k))
    proposal = {"learned_ceiling_hours": 2}
    monkeypatch.setattr(route, "SPLIT_FROM", 10**9)
    alone = _preview(api, proposal)
    monkeypatch.setattr(route, "SPLIT_FROM", 1)
    monkeypatch.setattr(route, "PROCESSES", 2)
    split = _preview(api, proposal)
    assert split["end"] == alone["end"]  # the same prepared replay, judged in two processes
    assert split["elders"] >= 2 and split["proposed"]["total"] > 0
    assert split == alone


def test_a_preparation_serves_only_previews_with_the_settings_it_was_made_with(api: Api) -> None:
    """The zone of elders without one and the hold-downs change what a replay raises: they are part of the key."""
    ingest(api.engine, "MA1", daily_pattern(30, time.time()))
    with api.engine.connect() as conn:
        homes = route._homes(conn, A)
    made = route._community(api.engine, A, 10, homes, "Asia/Shanghai", HoldDowns())
    assert route._community(api.engine, A, 10, homes, "Asia/Shanghai", HoldDowns()) is made  # kept
    other_zone = route._community(api.engine, A, 10, homes, "America/New_York", HoldDowns())
    other_hold = route._community(api.engine, A, 10, homes, "Asia/Shanghai", HoldDowns(flap_s=60.0))
    assert other_zone is not made and other_hold is not made and other_zone is not other_hold


def test_a_preview_is_audited_in_its_community_as_a_read_of_water_use(api: Api) -> None:
    """A preview replays every consenting elder's stored readings and shows what each would have raised, and
    when: a read of their water use, as GET /meters/{id}/readings is. Its community's operators see who ran it."""
    ingest(api.engine, "MA1", daily_pattern(12, time.time()))
    _preview(api, {"learned_ceiling_hours": 2})
    entries = api.get("op_a", "/audit", params={"action": "backtest.read"}).json()["data"]
    assert [(e["actor"], e["community"], e["target"]) for e in entries] == [("op_a", A, f"community:{A}")]
    assert entries[0]["new"] == {"days": 10, "thresholds": {"learned_ceiling_hours": 2.0}, "elders": 1}
    assert api.get("op_b", "/audit", params={"action": "backtest.read"}).json()["count"] == 0


def test_a_preview_says_when_the_store_keeps_less_history_than_it_replays(api: Api) -> None:
    """Readings leave the store after TAPWATCH_READINGS_RETENTION_DAYS (at least 7): a preview of 10 days and its 14
    days of warm-up over a store keeping 14 read a week less than it replays, and said nothing of it."""
    ingest(api.engine, "MA1", daily_pattern(30, time.time()))
    full = _preview(api, {})
    assert full["kept_from"] is None  # 400 days kept: the whole period and its warm-up were read
    short = TestClient(create_app(get_settings(readings_retention_days=14), api.engine))
    with short:
        answer = short.post("/backtest", json={"community": A, "days": 10}, headers=api.headers("op_a"))
    assert answer.status_code == 200, answer.text
    cut = answer.json()
    end = datetime.fromisoformat(cut["end"]).timestamp()
    assert datetime.fromisoformat(cut["kept_from"]).timestamp() == pytest.approx(end - 14 * DAY, abs=1e-3)
