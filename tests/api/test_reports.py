"""``GET /reports/outcomes`` and ``tapwatch report``: a district's own false calls per elder-month (issue 17).

One hand-built set, on SQLite and PostgreSQL: cases raised through the real AlertManager at chosen times,
acknowledged and resolved through the API by the cadres, some closed by the data; every figure is worked out
by hand below. Each elder holds one open case at a time (a case is resolved before the elder's next is
raised), so joining a second kind into an open case does not change the set.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

import alerts.queries
from alerts.manager import AlertManager
from core.settings import get_settings
from store.registry import register_elder, set_consent
from store.schema import audit_log
from tests.alert_support import apply, finding
from tests.api_fixtures import A, Api, B

DAY, HOUR = 86400.0, 3600.0


def _elder(engine: Engine, elder_id: str, meter_id: str, community: str, registered: float) -> None:
    with engine.begin() as conn:
        register_elder(conn, {"elder_id": elder_id, "name": "王秀兰", "community": community}, meter_id, registered)


def _raise(api: Api, meter_id: str, kind: str, raised_at: float, **kw: Any) -> str:
    """A case raised by the real AlertManager at ``raised_at`` (its data time too)."""
    alert_id = apply(api.engine, AlertManager(), finding(meter_id, kind, ts=raised_at, **kw), raised_at)
    assert alert_id is not None
    return alert_id


def _close_by_data(api: Api, meter_id: str, kind: str, at: float) -> None:
    assert apply(api.engine, AlertManager(), finding(meter_id, kind, ts=at, resolved=True), at) is not None


def _ago(seconds: float) -> float:
    return time.time() - seconds


def _ack(api: Api, who: str, alert_id: str) -> None:
    done = api.post(who, f"/alerts/{alert_id}/ack", json={"note": ""})
    assert done.status_code == 200, done.text


def _resolve(api: Api, who: str, alert_id: str, outcome: str) -> None:
    done = api.post(who, f"/alerts/{alert_id}/resolve", json={"outcome": outcome, "note": ""})
    assert done.status_code == 200, done.text


@pytest.fixture(name="reports")
def reports_env(any_engine: Engine) -> Iterator[Api]:
    """Community A: three elders for 60 days, one for 15, one without consent; B: one elder for 60 days.

    Over the last 30 days A covers 3.5 elder-months (and meter-months), B 1.0. The cases (minutes after
    raising in brackets):

    ===  ====  ===================  ============================================  ==========================
     #   who   kind                 what happened                                 counts as
    ===  ====  ===================  ============================================  ==========================
     1   EA1   no_activity          ack (180), false_alarm (180)                  false call
     2   EA2   no_activity          ack (60), needed_help (60)                    confirmed
     3   EA3   continuous_flow      ok (120), never acknowledged                  false call
     4   EA1   high_usage           away (300)                                    away: apart
     5   EA2   routine_change       closed by the data (30), no one recorded      closed by data
     6   EA3   no_activity          closed by the data (60), then a person: ok    false call, resolve 60
     7   EA4   low_usage            open                                          open
     8   EA1   meter_offline        device_fault                                  maintenance
     9   EA2   continuous_flow      slow leak routed to maintenance, open         maintenance, open
    10   EA1   no_activity          40 days ago, false_alarm                      outside the period
    11   EB1   no_activity          ack (30), false_alarm (30)                    B's false call
    ===  ====  ===================  ============================================  ==========================
    """
    api = Api(any_engine, get_settings())
    now = time.time()
    for elder_id, meter_id in (("EA1", "MA1"), ("EA2", "MA2"), ("EA3", "MA3")):
        _elder(any_engine, elder_id, meter_id, A, now - 60 * DAY)
    _elder(any_engine, "EA4", "MA4", A, now - 15 * DAY)
    _elder(any_engine, "EA5", "MA5", A, now - 60 * DAY)
    with any_engine.begin() as conn:
        set_consent(conn, "EA5", False)
    _elder(any_engine, "EB1", "MB1", B, now - 60 * DAY)
    with api.client:
        # Each case is raised just before the cadre handles it, at "now" minus its age: the minutes to
        # acknowledge and resolve are then the age, give or take one request (well within the 0.1 min shown).
        old = _raise(api, "MA1", "no_activity", _ago(40 * DAY))  # 10
        _resolve(api, "cadre_a", old, "false_alarm")
        one = _raise(api, "MA1", "no_activity", _ago(3 * HOUR))  # 1
        _ack(api, "cadre_a", one)
        _resolve(api, "cadre_a", one, "false_alarm")
        four = _raise(api, "MA1", "high_usage", _ago(5 * HOUR))  # 4
        _resolve(api, "cadre_a", four, "away")
        eight = _raise(api, "MA1", "meter_offline", _ago(10 * HOUR))  # 8
        _resolve(api, "admin", eight, "device_fault")
        two = _raise(api, "MA2", "no_activity", _ago(1 * HOUR))  # 2
        _ack(api, "cadre_a", two)
        _resolve(api, "cadre_a", two, "needed_help")
        _raise(api, "MA2", "routine_change", at := _ago(4 * HOUR))  # 5
        _close_by_data(api, "MA2", "routine_change", at + 30 * 60)
        _raise(api, "MA2", "continuous_flow", _ago(8 * HOUR), route="maintenance")  # 9
        three = _raise(api, "MA3", "continuous_flow", _ago(2 * HOUR))  # 3
        _resolve(api, "cadre_a", three, "ok")
        six = _raise(api, "MA3", "no_activity", at := _ago(6 * HOUR))  # 6
        _close_by_data(api, "MA3", "no_activity", at + HOUR)
        _resolve(api, "cadre_a", six, "ok")
        _raise(api, "MA4", "low_usage", _ago(1 * HOUR))  # 7
        b = _raise(api, "MB1", "no_activity", _ago(0.5 * HOUR))  # 11
        _ack(api, "cadre_b", b)
        _resolve(api, "cadre_b", b, "false_alarm")
        yield api


def _mix(**counts: int) -> dict[str, int]:
    keys = ("needed_help", "hospital", "ok", "false_alarm", "away", "device_fault", "closed_by_data", "open")
    return {k: counts.get(k, 0) for k in keys}


def _timing(count: int, median: float | None, p90: float | None) -> dict[str, Any]:
    return {"count": count, "median_min": median, "p90_min": p90}


def _without_kinds(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k != "by_kind"}


#: Community A, worked out by hand from the table in :func:`reports_env`.
A_FIGURES = {
    "community": A,
    "elders": 4,  # EA1-EA4; EA5 has not consented
    "elder_months": 3.5,
    "meter_months": 3.5,
    "community_cases": 7,  # 1-7
    "community_cases_per_elder_month": 2.0,
    "maintenance_cases": 2,  # 8, 9
    "maintenance_cases_per_meter_month": 0.571,
    "outcomes": _mix(needed_help=1, ok=2, false_alarm=1, away=1, closed_by_data=1, open=1),
    "maintenance_outcomes": _mix(device_fault=1, open=1),
    "false_calls": 3,  # 1, 3, 6
    "false_calls_per_elder_month": 0.857,
    "confirmed": 1,  # 2
    "confirmed_per_elder_month": 0.286,
    "acknowledge": _timing(2, 120.0, 168.0),  # 60, 180
    "resolve": _timing(5, 120.0, 252.0),  # 60, 60, 120, 180, 300
}
B_FIGURES = {
    "community": B,
    "elders": 1,
    "elder_months": 1.0,
    "meter_months": 1.0,
    "community_cases": 1,
    "community_cases_per_elder_month": 1.0,
    "maintenance_cases": 0,
    "maintenance_cases_per_meter_month": 0.0,
    "outcomes": _mix(false_alarm=1),
    "maintenance_outcomes": _mix(),
    "false_calls": 1,
    "false_calls_per_elder_month": 1.0,
    "confirmed": 0,
    "confirmed_per_elder_month": 0.0,
    "acknowledge": _timing(1, 30.0, 30.0),
    "resolve": _timing(1, 30.0, 30.0),
}


def test_every_figure_of_a_hand_built_month_on_both_stores(reports: Api) -> None:
    got = reports.get("admin", "/reports/outcomes", params={"days": 30})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["days"] == 30
    assert [c["community"] for c in body["communities"]] == sorted([A, B])
    by_name = {c["community"]: c for c in body["communities"]}
    assert _without_kinds(by_name[A]) == A_FIGURES
    assert _without_kinds(by_name[B]) == B_FIGURES
    total = body["total"]
    assert (total["elders"], total["elder_months"], total["community_cases"], total["false_calls"]) == (5, 4.5, 8, 4)
    assert total["false_calls_per_elder_month"] == 0.889  # 4 / 4.5
    assert total["confirmed_per_elder_month"] == 0.222  # 1 / 4.5
    assert total["acknowledge"] == _timing(3, 60.0, 156.0)  # 30, 60, 180
    kinds = {k["kind"]: k for k in by_name[A]["by_kind"]}
    assert sorted(kinds) == [
        "continuous_flow",
        "high_usage",
        "low_usage",
        "meter_offline",
        "no_activity",
        "routine_change",
    ]
    assert (kinds["continuous_flow"]["community_cases"], kinds["continuous_flow"]["maintenance_cases"]) == (1, 1)
    assert kinds["continuous_flow"]["outcomes"] == _mix(ok=1, open=1)
    assert kinds["no_activity"]["community_cases"] == 3  # 1, 2, 6: the case 40 days ago is outside
    assert kinds["no_activity"]["outcomes"] == _mix(needed_help=1, ok=1, false_alarm=1)
    assert kinds["no_activity"]["acknowledge"] == _timing(2, 120.0, 168.0)
    assert kinds["no_activity"]["resolve"] == _timing(3, 60.0, 156.0)  # 60 (6), 60 (2), 180 (1)
    assert (kinds["meter_offline"]["maintenance_cases"], kinds["meter_offline"]["outcomes"]["device_fault"]) == (1, 1)


def test_a_longer_period_takes_the_older_case_and_more_months(reports: Api) -> None:
    body = reports.get("admin", "/reports/outcomes", params={"days": 45, "community": A}).json()
    [a] = body["communities"]
    assert a["community_cases"] == 8 and a["false_calls"] == 4  # case 10 too
    assert a["elder_months"] == 5.0  # 3 x 1.5 + 0.5
    assert a["false_calls_per_elder_month"] == 0.8


def test_a_community_registered_an_hour_ago_gives_counts_but_no_rates(reports: Api) -> None:
    _elder(reports.engine, "EC1", "MC1", "新来社区", time.time() - HOUR)
    _raise(reports, "MC1", "no_activity", _ago(0.5 * HOUR))
    body = reports.get("admin", "/reports/outcomes", params={"community": "新来社区"}).json()
    [c] = body["communities"]
    assert (c["elders"], c["community_cases"], c["outcomes"]["open"]) == (1, 1, 1)
    assert c["elder_months"] == 0.0  # one hour: 0.0014 months
    assert c["community_cases_per_elder_month"] is None and c["false_calls_per_elder_month"] is None


@pytest.mark.parametrize("who", ["cadre_a", "op_a"])
def test_a_cadre_or_operator_of_a_sees_only_a(reports: Api, who: str) -> None:
    body = reports.get(who, "/reports/outcomes").json()
    assert [c["community"] for c in body["communities"]] == [A]
    assert _without_kinds(body["communities"][0]) == A_FIGURES
    assert _without_kinds(body["total"]) == {k: v for k, v in A_FIGURES.items() if k != "community"}
    hidden = reports.get(who, "/reports/outcomes", params={"community": B})
    assert hidden.status_code == 404 and hidden.headers["content-type"] == "application/problem+json"
    assert B not in hidden.text


def test_cadre_b_never_sees_a(reports: Api) -> None:
    body = reports.get("cadre_b", "/reports/outcomes").json()
    assert [c["community"] for c in body["communities"]] == [B]
    assert body["total"]["false_calls"] == 1 and body["total"]["elders"] == 1
    assert A not in json.dumps(body, ensure_ascii=False)


def test_the_platform_gets_no_report(reports: Api) -> None:
    assert reports.get("platform_all", "/reports/outcomes").status_code == 403


@pytest.mark.parametrize("days", ["0", "366", "-1", "thirty", "1.5"])
def test_bad_days_answer_422_problem_json(reports: Api, days: str) -> None:
    got = reports.get("admin", "/reports/outcomes", params={"days": days})
    assert got.status_code == 422 and got.headers["content-type"] == "application/problem+json"
    assert got.json()["errors"][0]["loc"] == ["query", "days"]


def test_reading_the_report_is_audited_as_a_list_read(reports: Api) -> None:
    assert reports.get("op_a", "/reports/outcomes", params={"days": 7}).status_code == 200
    with reports.engine.connect() as conn:
        row = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.new).where(
                audit_log.c.target == "/reports/outcomes"
            )
        ).one()
    assert (row.actor, row.action, row.new) == ("op_a", "list.read", {"days": "7"})


def test_the_cli_prints_the_same_figures(reports: Api, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from tapwatch.cli import main

    monkeypatch.setenv("TAPWATCH_DATABASE_URL", reports.engine.url.render_as_string(hide_password=False))
    assert main(["report", "--days", "30", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {c["community"]: _without_kinds(c) for c in body["communities"]} == {A: A_FIGURES, B: B_FIGURES}
    assert main(["report", "--community", A]) == 0
    table = capsys.readouterr().out
    assert "误报/老人·月" in table and "按类型" in table
    row = next(line for line in table.splitlines() if line.startswith(A))
    assert row.split()[:9] == [A, "4", "3.5", "7", "2.00", "3", "0.86", "1", "0.29"]
    monkeypatch.setenv("TAPWATCH_LANGUAGE", "en")
    assert main(["report"]) == 0
    english = capsys.readouterr().out
    assert "false /elder-month" in english and "total" in english
    with pytest.raises(SystemExit):
        main(["report", "--days", "400"])
    assert "days must be 1..365" in capsys.readouterr().err


def test_the_chinese_report_is_in_chinese_punctuation(
    reports: Api, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """`tapwatch report` wrote "按类型 (合计):", half-width brackets and colon in the Chinese text, which the
    one-language rule of every text a cadre reads (tests/alerts/test_alert_texts.py) refuses; English keeps its own."""
    from tapwatch.cli import main

    monkeypatch.setenv("TAPWATCH_DATABASE_URL", reports.engine.url.render_as_string(hide_password=False))
    assert main(["report"]) == 0
    chinese = capsys.readouterr().out
    assert "按类型（合计）：" in chinese and not re.search(r"[()\[\]]", chinese), chinese
    monkeypatch.setenv("TAPWATCH_LANGUAGE", "en")
    assert main(["report"]) == 0
    assert "by kind (total):" in capsys.readouterr().out


def test_a_case_counts_under_every_kind_it_held(reports: Api) -> None:
    """A flow that joined a silence's case is that flow's case too: by kind, a district looks for both."""
    _elder(reports.engine, "ED1", "MD1", "合并社区", time.time() - 60 * DAY)
    both = _raise(reports, "MD1", "no_activity", at := _ago(2 * HOUR))
    joined = apply(reports.engine, AlertManager(), finding("MD1", "continuous_flow", ts=at + 600), at + 600)
    assert joined == both  # one case, two kinds
    _resolve(reports, "admin", both, "false_alarm")
    body = reports.get("admin", "/reports/outcomes", params={"community": "合并社区"}).json()
    [c] = body["communities"]
    assert (c["community_cases"], c["false_calls"]) == (1, 1)  # one work order, one false call
    kinds = {k["kind"]: k for k in c["by_kind"]}
    assert sorted(kinds) == ["continuous_flow", "no_activity"]
    for kind in kinds.values():
        assert (kind["community_cases"], kind["outcomes"]["false_alarm"], kind["resolve"]["count"]) == (1, 1, 1)


@pytest.mark.parametrize("chunk", [500, 1], ids=["one-query", "an-elder-a-query"])
def test_months_follow_consent_as_it_was_in_the_period(reports: Api, chunk: int, monkeypatch: Any) -> None:
    """Consent withdrawn 10 days ago (and, for the second elder, given back 4 days ago), through the API.

    The months count while each elder consented: 20 and 24 days of the last 30, not 0 and 30 (consent now).
    The history is read by elder through the audit log's (target, action) index, in chunks of elders.
    """
    monkeypatch.setattr(alerts.queries, "_HISTORY_CHUNK", chunk)
    for elder_id, meter_id in (("EC1", "MC1"), ("EC2", "MC2")):
        _elder(reports.engine, elder_id, meter_id, "同意社区", time.time() - 60 * DAY)

    def consent(elder_id: str, value: bool, days_ago: float) -> None:
        done = reports.patch("admin", f"/elders/{elder_id}", json={"consent": value, "reason": "家属要求"})
        assert done.status_code == 200, done.text
        with reports.engine.begin() as conn:  # as if the change had been made then
            newest = conn.execute(
                select(func.max(audit_log.c.id)).where(audit_log.c.target == f"elder:{elder_id}")
            ).scalar()
            conn.execute(update(audit_log).where(audit_log.c.id == newest).values(at=_ago(days_ago * DAY)))

    consent("EC1", False, 10)
    consent("EC2", False, 10)
    consent("EC2", True, 4)
    body = reports.get("admin", "/reports/outcomes", params={"community": "同意社区", "days": 30}).json()
    [c] = body["communities"]
    assert c["elders"] == 1  # monitored now: EC2
    assert (c["elder_months"], c["meter_months"]) == (1.47, 1.47)  # (20 + 24) days / 30
    longer = reports.get("admin", "/reports/outcomes", params={"community": "同意社区", "days": 90}).json()
    assert longer["communities"][0]["elder_months"] == 3.47  # registered 60 days ago: (50 + 54) days / 30


def test_a_moved_elders_months_stay_with_the_community_she_lived_in(reports: Api) -> None:
    """An elder who moved from one community to another 10 days ago: of the last 30 days, 20 are the old
    community's (her case of 15 days ago is there too), 10 the new one's. Each community's false calls per
    elder-month divide its own cases by its own months; neither community sees the other's row."""
    _elder(reports.engine, "EM1", "MM1", "旧社区", time.time() - 60 * DAY)
    old_case = _raise(reports, "MM1", "no_activity", _ago(15 * DAY))
    _resolve(reports, "admin", old_case, "false_alarm")
    moved = reports.patch("admin", "/elders/EM1", json={"community": "新社区", "reason": "搬家"})
    assert moved.status_code == 200, moved.text
    with reports.engine.begin() as conn:  # as if she had moved then (the move is audited in both communities)
        conn.execute(
            update(audit_log)
            .where(audit_log.c.target == "elder:EM1", audit_log.c.action == "elder.update")
            .values(at=_ago(10 * DAY))
        )
    body = reports.get("admin", "/reports/outcomes", params={"days": 30}).json()
    by_name = {c["community"]: c for c in body["communities"]}
    left, now = by_name["旧社区"], by_name["新社区"]
    assert (left["elders"], left["elder_months"], left["meter_months"]) == (0, 0.67, 0.67)
    assert (left["community_cases"], left["false_calls"], left["false_calls_per_elder_month"]) == (1, 1, 1.5)
    assert (now["elders"], now["elder_months"], now["meter_months"], now["community_cases"]) == (1, 0.33, 0.33, 0)
    for community, months in (("旧社区", 0.67), ("新社区", 0.33)):
        alone = reports.get("admin", "/reports/outcomes", params={"days": 30, "community": community}).json()
        assert [c["community"] for c in alone["communities"]] == [community]
        assert alone["total"]["elder_months"] == months


def test_the_cli_names_a_community_no_elder_belongs_to(
    reports: Api, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """`tapwatch report --community` with a name no elder has (a typo, a name cut short) printed the title and
    "没有可查看的社区" with exit 0, as if the community had no cases; it is refused (exit 2) naming the closest
    known, as `tapwatch user create` refuses such a community."""
    from tapwatch.cli import main

    monkeypatch.setenv("TAPWATCH_DATABASE_URL", reports.engine.url.render_as_string(hide_password=False))
    assert main(["report", "--community", A[:-1]]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no elder belongs to community {A[:-1]!r} (closest known: {A}" in captured.err, captured.err
