"""A community nobody is registered in is not found: backtest and thresholds answer 404, and nothing is saved."""

from __future__ import annotations

from sqlalchemy import func, select

from store.schema import thresholds
from tests.api_fixtures import A, Api, api_env  # noqa: F401

UNKNOWN = "无此社区"  # registered nowhere in these fixtures


def test_backtest_of_an_unknown_community_is_404_problem(api: Api) -> None:
    answer = api.post("admin", "/backtest", json={"community": UNKNOWN, "days": 7, "thresholds": {}})
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert UNKNOWN in answer.json()["detail"]
    known = api.post("admin", "/backtest", json={"community": A, "days": 7, "thresholds": {}})
    assert known.status_code == 200, known.text


def test_thresholds_of_an_unknown_community_are_404_and_not_saved(api: Api) -> None:
    put = api.put(
        "admin", f"/thresholds/community/{UNKNOWN}", json={"values": {"sensitivity": 0.0001}, "reason": "typo"}
    )
    assert put.status_code == 404, put.text
    assert put.headers["content-type"].startswith("application/problem+json")
    assert api.get("admin", f"/thresholds/community/{UNKNOWN}").status_code == 404
    with api.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(thresholds)).scalar() == 0
    ok = api.put("admin", f"/thresholds/community/{A}", json={"values": {"sensitivity": 0.0001}, "reason": "quiet"})
    assert ok.status_code == 200, ok.text
