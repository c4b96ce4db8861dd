"""The preview of an elder whose meter was replaced judges the new meter as live does: with her routine.

Live, ``POST /elders/{id}/meter`` carries the routine the old meter learned over to the new one
(:func:`engine.meterstate.carry_routine`), so an elder who has not changed is not put back on the
cold-start rules. The backtest replays the same readings and must raise what live raised: before, it
started the new meter cold, and its 16 h safety net called a cadre every day about her usual 23.5 h.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.api_fixtures import A, Api, api_env, live_cases, previewed_cases  # noqa: F401
from tests.helpers import daily_pattern, ingest

DAY = 86400.0


@pytest.mark.parametrize("days", [3, 6], ids=["swap-in-warm-up", "swap-in-period"])
def test_a_preview_judges_a_replacement_meter_with_the_routine_live_carried_over(api: Api, days: int) -> None:
    now = time.time()
    swap, fall = now - 4 * DAY, now - 1.6 * DAY
    day = daily_pattern(25, now)  # water once a day at 07:00, her routine
    ingest(api.engine, "MA1", [(ts, total) for ts, total in day if ts <= swap])  # three weeks: learned live
    answer = api.post("cadre_a", "/elders/EA1/meter", json={"meter_id": "MA1-NEW", "reason": "电池故障，换表"})
    assert answer.status_code == 200, answer.text
    # The same days on the new meter (its register starts afresh), until she no longer uses water.
    stopped = max(total for ts, total in day if ts <= fall)
    ingest(api.engine, "MA1-NEW", [(ts, min(total, stopped)) for ts, total in day if ts > swap])

    for proposal in ({}, {"leak_flow_lpm": 0.4}):  # the current thresholds, and a change that moves nothing here
        result = api.post("op_a", "/backtest", json={"community": A, "days": days, "thresholds": proposal})
        assert result.status_code == 200, result.text
        body = result.json()
        live = live_cases(api.engine, "EA1", datetime.fromisoformat(body["start"]).timestamp())
        assert [(meter, kind) for meter, kind, _ in live] == [("MA1-NEW", "no_activity")]  # her fall, once
        assert previewed_cases(body) == live
        assert body["current"]["total"] == len(live)
