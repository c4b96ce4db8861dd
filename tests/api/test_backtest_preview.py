"""The backtest preview keeps what does not depend on a proposal, and forgets it when the elders' settings change."""

from __future__ import annotations

import time

from api.routes import backtest as route
from tests.api.test_api_registry import daily_pattern, ingest
from tests.api_fixtures import A, Api, api_env  # noqa: F401


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
    assert after["current"] == fresh["proposed"]  # what was proposed is now current
