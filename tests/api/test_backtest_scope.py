"""A preview is of a community's change: an elder's own value of a threshold stays hers in it, as it does live.

The dashboard previews a proposal, then saves it for the community (``PUT /thresholds/community/{c}``); an elder
with her own value of that threshold (``PUT /thresholds/elder/{id}``) keeps it, since her level wins. The preview
set the proposal over her own value, so it counted alerts for her that the change would never raise.
"""

from __future__ import annotations

import time

from tests.api_fixtures import ELDER_A, A, Api, add_elder, api_env  # noqa: F401
from tests.helpers import daily_pattern, ingest


def _preview(api: Api, proposal: dict[str, float]) -> dict:
    answer = api.post("op_a", "/backtest", json={"community": A, "days": 7, "thresholds": proposal})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_preview_leaves_an_elders_own_value_as_the_community_change_leaves_it(api: Api) -> None:
    add_elder(api.engine, {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "赵秀珍"})
    for meter_id in ("MA1", "MA2"):  # water once a day at 07:00, for 30 days
        ingest(api.engine, meter_id, daily_pattern(30, time.time()))
    own = {"values": {"learned_ceiling_hours": 30}, "reason": "独居，一天只用一次水"}
    assert api.put("op_a", "/thresholds/elder/EA1", json=own).status_code == 200

    proposal = {"learned_ceiling_hours": 2}  # a 2 h net fires every day where it applies
    result = _preview(api, proposal)
    assert result["proposed"]["total"] > result["current"]["total"]
    assert {a["elder_id"] for a in result["alerts"]} == {"EA2"}  # EA1's own 30 h stays hers

    # Live after the change: the community's value for EA2, her own for EA1.
    change = {"values": proposal, "reason": "试一试"}
    assert api.put("op_a", f"/thresholds/community/{A}", json=change).status_code == 200
    for elder_id, value, source in (("EA1", 30.0, "elder"), ("EA2", 2.0, "community")):
        values = api.get("op_a", f"/elders/{elder_id}/thresholds").json()["values"]
        ceiling = next(v for v in values if v["name"] == "learned_ceiling_hours")
        assert (ceiling["value"], ceiling["source"]) == (value, source)


def test_a_proposal_out_of_bounds_is_refused_though_every_elder_keeps_her_own_value(api: Api) -> None:
    """Each elder's thresholds under the proposal are what the preview validated; with every elder keeping her own
    value of the threshold, no elder's took the proposal, and a value the save refuses (out of its bounds) was
    previewed (200, nothing changed), the operator told only when saving it."""
    own = {"values": {"learned_ceiling_hours": 30}, "reason": "独居，一天只用一次水"}
    assert api.put("op_a", "/thresholds/elder/EA1", json=own).status_code == 200
    for value in (1e6, 0.0):  # learned_ceiling_hours is 1 .. 96 h
        proposal = {"learned_ceiling_hours": value}
        saved = api.put("op_a", f"/thresholds/community/{A}", json={"values": proposal, "reason": "试一试"})
        assert saved.status_code == 422, saved.text
        previewed = api.post("op_a", "/backtest", json={"community": A, "days": 7, "thresholds": proposal})
        assert previewed.status_code == 422, previewed.text
        assert "learned_ceiling_hours" in previewed.json()["detail"]
