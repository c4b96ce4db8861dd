"""The preview of an elder whose consent was withdrawn and given back judges her afresh from then on, as live does.

Withdrawing consent erases the routine her meters learned and forgets their register
(:func:`store.registry.set_consent`), and her readings are dropped unread until it is given back: live, she
starts over as a new elder, on the learning week's rules. The backtest replayed her stored readings on, the
routine from before still in force, so the preview did not count what live raised in that week.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from sqlalchemy import select, update

from store.schema import audit_log
from tests.api_fixtures import A, Api, api_env, live_cases, previewed_cases  # noqa: F401
from tests.helpers import daily_pattern, ingest

DAY = 86400.0


def _consent(api: Api, given: bool, at: float) -> None:
    """Her consent changed through the API, as if at ``at`` (the audit entry that records it says when)."""
    answer = api.patch("cadre_a", "/elders/EA1", json={"consent": given, "reason": "家属来电" if given else "本人要求"})
    assert answer.status_code == 200, answer.text
    with api.engine.begin() as conn:
        newest = select(audit_log.c.id).where(audit_log.c.action == "elder.update").order_by(audit_log.c.id.desc())
        conn.execute(update(audit_log).where(audit_log.c.id == newest.limit(1).scalar_subquery()).values(at=at))


@pytest.mark.parametrize("days", [3, 6], ids=["back-in-warm-up", "back-in-period"])
def test_a_preview_starts_an_elder_afresh_where_her_consent_came_back(api: Api, days: int) -> None:
    now = time.time()
    withdrawn, back = now - 8 * DAY, now - 4.5 * DAY
    day = daily_pattern(26, now)  # water once a day at 07:00
    ingest(api.engine, "MA1", [r for r in day if r[0] < withdrawn])  # learned live
    _consent(api, False, withdrawn)
    ingest(api.engine, "MA1", [r for r in day if withdrawn <= r[0] < back])  # dropped unread
    _consent(api, True, back)
    ingest(api.engine, "MA1", [r for r in day if r[0] >= back])  # a new elder again: the learning week's rules

    for proposal in ({}, {"leak_flow_lpm": 0.4}):  # the current thresholds, and a change that moves nothing here
        result = api.post("op_a", "/backtest", json={"community": A, "days": days, "thresholds": proposal})
        assert result.status_code == 200, result.text
        body = result.json()
        live = live_cases(api.engine, "EA1", datetime.fromisoformat(body["start"]).timestamp())
        assert live  # her 23.5 h between washes, on the learning week's 16 h net
        assert previewed_cases(body) == live
        assert body["current"]["total"] == len(live)


def test_a_meter_replaced_while_her_consent_was_withdrawn_starts_afresh_as_live(api: Api) -> None:
    """Live, withdrawing consent erased the old meter's routine: the new meter had nothing to carry over."""
    now = time.time()
    withdrawn, back = now - 8 * DAY, now - 4.5 * DAY
    day = daily_pattern(26, now)
    ingest(api.engine, "MA1", [r for r in day if r[0] < withdrawn])
    _consent(api, False, withdrawn)
    answer = api.post("cadre_a", "/elders/EA1/meter", json={"meter_id": "MA1-NEW", "reason": "换表"})
    assert answer.status_code == 200, answer.text
    _consent(api, True, back)
    ingest(api.engine, "MA1-NEW", [r for r in day if r[0] >= back])

    result = api.post("op_a", "/backtest", json={"community": A, "days": 4, "thresholds": {}})
    assert result.status_code == 200, result.text
    live = live_cases(api.engine, "EA1", datetime.fromisoformat(result.json()["start"]).timestamp())
    assert live and previewed_cases(result.json()) == live
