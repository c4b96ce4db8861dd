"""Cases group findings (issue 17 section 2): one open community case per elder, one maintenance case per meter.

Every test runs on SQLite and PostgreSQL (``any_engine``): the grouping is stored rows, conditional
updates and a unique index, which must behave alike on both.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select

from alerts.escalation import EscalationRunner
from alerts.manager import AlertManager
from alerts.messages import local_time
from alerts.queries import alert_history
from core.domain import Finding
from store.schema import alert_events, alerts, escalations
from tests.alert_support import T0, add_elder, alert_row, apply, finding, queued

CONTACTS = [{"name": "王强", "relation": "儿子", "phone": "13900000001"}]
HOUR = 3600.0
DAY = 86400.0


def types(engine: Any, alert_id: str) -> list[str]:
    with engine.connect() as conn:
        return [h["type"] for h in alert_history(conn, alert_id)]


def levels(engine: Any) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(select(alert_events.c.data).where(alert_events.c.type == "escalated"))
        return [int(r.data["level"]) for r in rows]


def cases(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(alerts)).scalar_one())


def test_a_second_community_kind_joins_the_open_case_and_a_rise_in_severity_escalates(any_engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(any_engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook", "sms"])  # medium: work order 60 min after the contact; high: 15 min
    case = apply(any_engine, manager, finding("M1", "high_usage", T0, severity="medium"), T0)
    assert case is not None and levels(any_engine) == [1]
    # The elder then stops using water: the same case, now high; the work order follows high's plan.
    silence = finding("M1", "no_activity", T0 + 600)
    assert apply(any_engine, manager, silence, T0 + 20 * 60) == case
    row = alert_row(any_engine, case)
    assert row["kind"] == "high_usage" and row["severity"] == "high"
    assert row["details"]["kinds"] == ["high_usage", "no_activity"] and row["details"]["occurrences"] == 2
    with any_engine.connect() as conn:
        pending = conn.execute(select(escalations.c.due_at).where(escalations.c.status == "pending")).scalars().all()
    assert pending == [T0 + 35 * 60]  # re-planned under high: 15 min after the rise, not medium's 60 after the raise
    assert EscalationRunner(any_engine, manager).run_once(T0 + 35 * 60) == 1 and levels(any_engine) == [1, 2]
    joined = [e for e in queued(any_engine) if e["data"]["event"] == "joined"]
    assert len(joined) == 1 and joined[0]["data"]["joined"] == "no_activity"
    assert joined[0]["data"]["severity_raised"] is True and joined[0]["data"]["kinds"] == ["high_usage", "no_activity"]
    assert "同一警报还有：用水量异常偏高" in joined[0]["data"]["text"]["zh"]
    with any_engine.connect() as conn:
        history = alert_history(conn, case)
    assert history[-2]["type"] == "joined" and history[-2]["data"]["message"]["zh"] == silence.message_zh

    # A third kind of no higher severity joins without notifying anyone again.
    texts = len(queued(any_engine, "sms"))
    assert apply(any_engine, manager, finding("M1", "continuous_flow", T0 + 1800), T0 + 1800) == case
    assert levels(any_engine) == [1, 2] and len(queued(any_engine, "sms")) == texts
    assert alert_row(any_engine, case)["severity"] == "high"

    # Each kind's clear is recorded on the case; the last one closes it.
    assert apply(any_engine, manager, finding("M1", "no_activity", T0 + 2000, resolved=True), T0 + 2000) == case
    assert apply(any_engine, manager, finding("M1", "high_usage", T0 + 2100, resolved=True), T0 + 2100) == case
    row = alert_row(any_engine, case)
    assert row["state"] == "open" and row["details"]["cleared"] == {"no_activity": T0 + 2000, "high_usage": T0 + 2100}
    cleared = queued(any_engine)[-1]["data"]
    assert cleared["event"] == "cleared" and cleared["kinds_open"] == ["continuous_flow"]
    assert apply(any_engine, manager, finding("M1", "continuous_flow", T0 + 2200, resolved=True), T0 + 2200) == case
    row = alert_row(any_engine, case)
    assert row["state"] == "resolved" and row["outcome"] == "cleared" and row["resolved_by"] == "tapwatch"
    assert types(any_engine, case) == ["raised", "escalated", "joined", "escalated", "joined"] + ["cleared"] * 2 + [
        "resolved"
    ]
    assert cases(any_engine) == 1


def test_a_fall_joining_an_acknowledged_case_that_never_clears_is_chased_again(any_engine) -> None:  # type: ignore[no-untyped-def]
    """routine_change never clears by the data: each fall that joins its case raises the severity and escalates."""
    add_elder(any_engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook", "sms"])
    case = apply(any_engine, manager, finding("M1", "routine_change", T0, severity="low"), T0)
    with any_engine.begin() as conn:
        manager.acknowledge(conn, alert_row(any_engine, case or ""), "cadre:li", "will call", T0 + 60)
    assert levels(any_engine) == [1]
    for day, (level, after_min) in ((1, (2, 15)), (2, (3, 45))):  # two falls on two days, in the same case
        start = T0 + day * DAY
        assert apply(any_engine, manager, finding("M1", "no_activity", start), start) == case
        row = alert_row(any_engine, case or "")
        assert (row["state"], row["severity"]) == ("open", "high")  # someone must take it again
        runner = EscalationRunner(any_engine, manager)  # the next level, after high's delay from the rise
        assert runner.run_once(start + after_min * 60 - 1) == 0 and runner.run_once(start + after_min * 60) == 1
        assert levels(any_engine)[-1] == level
        done = start + HOUR
        assert apply(any_engine, manager, finding("M1", "no_activity", done, resolved=True), done) == case
        row = alert_row(any_engine, case or "")
        assert (row["state"], row["severity"]) == ("open", "low")  # back to its one active kind's
        with any_engine.begin() as conn:
            manager.acknowledge(conn, row, "cadre:li", "visited", done + 60)
    assert levels(any_engine) == [1, 2, 3]


def test_device_and_community_findings_never_share_a_case(any_engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(any_engine, "E1", "M1")
    manager = AlertManager(["webhook"])
    silence = apply(any_engine, manager, finding("M1", "no_activity"), T0)
    offline = apply(any_engine, manager, finding("M1", "meter_offline", T0 + 60, severity="low"), T0 + 60)
    slow_leak = finding("M1", "continuous_flow", T0 + 120, details={"lpm": 0.5}, route="maintenance")
    assert apply(any_engine, manager, slow_leak, T0 + 120) == offline  # the meter's maintenance case
    assert silence != offline and cases(any_engine) == 2
    assert alert_row(any_engine, silence or "")["details"]["kinds"] == ["no_activity"]
    assert alert_row(any_engine, offline or "")["details"]["kinds"] == ["meter_offline", "continuous_flow"]
    with any_engine.connect() as conn:  # maintenance never escalates, even with a joined kind
        assert conn.execute(select(escalations.c.alert_id).distinct()).scalars().all() == [silence]
    # A flow that clears is the meter's maintenance case's (the detectors do not say which route it was).
    apply(any_engine, manager, finding("M1", "continuous_flow", T0 + 600, resolved=True), T0 + 600)
    assert alert_row(any_engine, offline or "")["details"]["cleared"] == {"continuous_flow": T0 + 600}
    assert alert_row(any_engine, silence or "")["state"] == "open"


def test_a_meter_offline_every_night_is_one_maintenance_case_until_a_person_resolves_it(any_engine) -> None:  # type: ignore[no-untyped-def]
    add_elder(any_engine, "E1", "M1")
    manager = AlertManager(["webhook"])  # maintenance hold-down: 7 days of data time

    def night(day: float) -> str | None:
        start = T0 + day * DAY
        raised = apply(any_engine, manager, finding("M1", "meter_offline", start, severity="low"), start)
        apply(any_engine, manager, finding("M1", "meter_offline", start + 3 * HOUR, resolved=True), start + HOUR)
        return raised

    first = night(0)
    assert [night(1), night(2)] == [first, first]
    row = alert_row(any_engine, first or "")
    assert row["state"] == "resolved" and row["details"]["occurrences"] == 3 and row["details"]["reopened"] == 2
    assert types(any_engine, first or "") == ["raised", "resolved"] + ["reopened", "resolved"] * 2
    reopened = [e["data"] for e in queued(any_engine) if e["data"]["event"] == "reopened"][-1]
    assert reopened["occurrences"] == 3 and reopened["route"] == "maintenance"
    assert "此表近期第 3 次" in reopened["text"]["zh"] and "3rd time recently" in reopened["text"]["en"]

    later = night(2 + 8)  # eight days after the data closed it: past the hold-down, a new case
    assert later not in (None, first)
    assert night(11) == later
    again = finding("M1", "meter_offline", T0 + 12 * DAY, severity="low")
    assert apply(any_engine, manager, again, T0 + 12 * DAY) == later
    with any_engine.begin() as conn:  # a person resolves it: the grouping ends
        manager.resolve(conn, alert_row(any_engine, later or ""), "plumber", "device_fault", "antenna", T0 + 12 * DAY)
    assert night(13) not in (None, first, later)
    assert cases(any_engine) == 3


def test_a_finding_applied_again_counts_once(any_engine) -> None:  # type: ignore[no-untyped-def]
    """A restart that rebuilds a meter's state from stored readings may apply its findings again: nothing repeats."""
    add_elder(any_engine, "E1", "M1")
    manager = AlertManager(["webhook"])
    offline = finding("M1", "meter_offline", T0, severity="low")
    case = apply(any_engine, manager, offline, T0)
    flow = finding("M1", "continuous_flow", T0 + 60)
    silence = apply(any_engine, manager, finding("M1", "no_activity", T0 + 30), T0 + 30)
    apply(any_engine, manager, flow, T0 + 60)
    before = (len(queued(any_engine)), alert_row(any_engine, case or ""), alert_row(any_engine, silence or ""))
    for f in (offline, flow):
        assert apply(any_engine, manager, f, T0 + 90) is None
    assert (len(queued(any_engine)), alert_row(any_engine, case or ""), alert_row(any_engine, silence or "")) == before
    cleared = finding("M1", "meter_offline", T0 + HOUR, resolved=True)
    apply(any_engine, manager, cleared, T0 + HOUR)
    events = len(queued(any_engine))
    assert apply(any_engine, manager, offline, T0 + 2 * HOUR) is None  # the closed case's own finding, again
    assert apply(any_engine, manager, cleared, T0 + 2 * HOUR) is None
    assert len(queued(any_engine)) == events and alert_row(any_engine, case or "")["state"] == "resolved"


def test_workers_joining_one_case_at_once_lose_no_kind(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Two workers join kinds to the elder's open case at the same moment: the seq-conditional write keeps both."""
    add_elder(any_engine, "E1", "M1")
    add_elder(any_engine, "E1b", "M2")  # the elder's second meter, registered to the same elder below
    with any_engine.begin() as conn:
        from store.schema import meters

        conn.execute(meters.update().where(meters.c.meter_id == "M2").values(elder_id="E1"))
    manager = AlertManager(["webhook"])
    case = apply(any_engine, manager, finding("M1", "no_activity"), T0)
    for round_ in range(12):
        ts = T0 + (round_ + 1) * HOUR
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def work(
            meter: str, kind: str, resolved: bool, ts: float = ts, barrier: Any = barrier, errors: Any = errors
        ) -> None:
            try:
                barrier.wait(5)
                apply(any_engine, manager, finding(meter, kind, ts, resolved=resolved), ts)
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        resolved = round_ % 2 == 1  # join both, then clear both, and again
        threads = [
            threading.Thread(target=work, args=("M1", "high_usage", resolved)),
            threading.Thread(target=work, args=("M2", "low_usage", resolved)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        details = alert_row(any_engine, case or "")["details"]
        active = {k for k in details["kinds"] if k not in details["cleared"]}
        assert active == ({"no_activity"} if resolved else {"no_activity", "high_usage", "low_usage"}), round_
    with any_engine.connect() as conn:  # every change one event, numbered without a gap
        seqs = conn.execute(select(alert_events.c.seq).where(alert_events.c.alert_id == case)).scalars().all()
    assert sorted(seqs) == list(range(1, len(seqs) + 1))


def test_a_case_reopened_by_its_second_kind_is_texted_and_escalated_under_that_kind(any_engine) -> None:  # type: ignore[no-untyped-def]
    """A tap running again after a silence's case closed: the family and the work order read "flow", not "no water"."""
    add_elder(any_engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook", "sms"])
    case = apply(any_engine, manager, finding("M1", "no_activity", T0), T0)
    flow_zh, flow_en = "水流已持续 3 小时未停。", "Water has run for 3 h."
    flow = Finding("M1", "continuous_flow", "high", T0 + 600, flow_zh, flow_en)
    assert apply(any_engine, manager, flow, T0 + 600) == case
    apply(any_engine, manager, finding("M1", "no_activity", T0 + 700, resolved=True), T0 + 700)
    apply(any_engine, manager, finding("M1", "continuous_flow", T0 + 800, resolved=True), T0 + 800)
    back = Finding("M1", "continuous_flow", "high", T0 + HOUR, flow_zh, flow_en)  # within the hold-down: reopens
    assert apply(any_engine, manager, back, T0 + HOUR) == case
    assert EscalationRunner(any_engine, manager).run_once(T0 + 10 * HOUR) == 1
    family = queued(any_engine, "sms")[-1]["data"]["text"]
    assert family.startswith("【持续用水】王秀兰：" + flow_zh), family
    order = [e["data"] for e in queued(any_engine) if e["data"]["event"] == "escalated"][-1]
    assert order["level"] == 2 and order["text"]["zh"].startswith("【持续用水】"), order["text"]
    assert "Continuous water flow" in order["text"]["en"] and "No water use]" not in order["text"]["en"]
    assert alert_row(any_engine, case or "")["kind"] == "no_activity"  # the case's first kind, as the platform has it


def test_a_flow_the_data_closed_is_not_announced_as_water_use_resumed(any_engine) -> None:  # type: ignore[no-untyped-def]
    """The tap was turned off: the cadres' groups must not read "water use has resumed" (that is a silence's end)."""
    add_elder(any_engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook"])
    flow = apply(any_engine, manager, finding("M1", "continuous_flow", T0), T0)
    apply(any_engine, manager, finding("M1", "continuous_flow", T0 + HOUR, resolved=True), T0 + HOUR)
    assert alert_row(any_engine, flow or "")["outcome"] == "cleared"
    closed = [e["data"] for e in queued(any_engine) if e["data"]["event"] == "resolved"][-1]
    assert closed["resolved_by_data"] is True
    assert "用水已恢复" not in closed["text"]["zh"] and "resumed" not in closed["text"]["en"], closed["text"]
    assert "仍在途中" in closed["text"]["zh"] and "on the way" in closed["text"]["en"]  # the visit may be underway
    # A silence the data closed: the elder used water again, as before.
    silence = apply(any_engine, manager, finding("M1", "no_activity", T0 + DAY), T0 + DAY)
    apply(any_engine, manager, finding("M1", "no_activity", T0 + DAY + HOUR, resolved=True), T0 + DAY + HOUR)
    assert alert_row(any_engine, silence or "")["outcome"] == "use_resumed"
    closed = [e["data"] for e in queued(any_engine) if e["data"]["event"] == "resolved"][-1]
    assert closed["text"]["zh"].startswith("用水已恢复") and closed["text"]["en"].startswith("Water use has resumed")


def test_the_work_order_of_a_fall_joining_a_routine_case_tells_the_fall(any_engine) -> None:  # type: ignore[no-untyped-def]
    """A fall joins the elder's open routine_change case and raises it to high: the work order its rise brings on
    must send the cadre to a possible fall (its label, message and advice), not to ask about a routine."""
    add_elder(any_engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook", "sms"])
    routine = Finding("M1", "routine_change", "low", T0, "起床时间比平时晚 2 小时。", "Rose 2 h later than usual.")
    case = apply(any_engine, manager, routine, T0)
    fall_zh, fall_en = "已 9 小时未用水（平时 3 小时内会用水）。", "No water for 9 h (usually within 3 h)."
    start = T0 + DAY
    fall = Finding("M1", "no_activity", "high", start, fall_zh, fall_en, since=start - 9 * HOUR)
    assert apply(any_engine, manager, fall, start) == case
    assert EscalationRunner(any_engine, manager).run_once(start + 15 * 60) == 1
    order = [e["data"] for e in queued(any_engine) if e["data"]["event"] == "escalated"][-1]
    assert order["level"] == 2 and order["severity"] == "high"
    zh, en = order["text"]["zh"], order["text"]["en"]
    assert zh.startswith("【长时间未用水】王秀兰（大宁社区 3号楼 502）：" + fall_zh), zh
    assert "请立即电话联系老人；联系不上请尽快上门查看。" in zh and "同一警报还有：生活规律变化。" in zh, zh
    assert en.startswith("[No water use] 王秀兰") and fall_en in en and "Rose 2 h later" not in en, en
    assert f"自 {local_time(fall.since or 0.0, 'Asia/Shanghai')} 起。" in zh, zh  # since the fall began


def test_a_graver_kind_that_clears_leaves_the_escalation_of_the_kind_still_open(any_engine) -> None:  # type: ignore[no-untyped-def]
    """A fall joined a routine change's case and brought its work order forward (high: 15 min after the rise); the
    fall cleared before then (she used water): the case is a routine change again, and its work order comes when
    the routine change's plan calls it (low: 4 h after the family's text), not at the fall's."""
    add_elder(any_engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook", "sms"])
    routine = Finding("M1", "routine_change", "low", T0, "起床时间比平时晚 2 小时。", "Rose 2 h later than usual.")
    case = apply(any_engine, manager, routine, T0)
    assert levels(any_engine) == [1]
    fall = finding("M1", "no_activity", T0 + HOUR)
    assert apply(any_engine, manager, fall, T0 + HOUR) == case  # high: the work order 15 min after the rise
    up = finding("M1", "no_activity", T0 + HOUR + 600, resolved=True)
    assert apply(any_engine, manager, up, T0 + HOUR + 600) == case
    assert alert_row(any_engine, case or "")["severity"] == "low"
    runner = EscalationRunner(any_engine, manager)
    assert runner.run_once(T0 + HOUR + 15 * 60) == 0  # before: the work order went out, for a low routine change
    assert runner.run_once(T0 + 4 * HOUR - 1) == 0 and levels(any_engine) == [1]
    assert runner.run_once(T0 + 4 * HOUR) == 1 and levels(any_engine) == [1, 2]
    # A critical flow joined a fall's case and cleared, the fall still open: the work order comes by the fall's plan
    # (high: 15 min after the family's text), as for a fall alone, not by the flow's (5 min after it joined).
    add_elder(any_engine, "E2", "M2", CONTACTS)
    other = apply(any_engine, manager, finding("M2", "no_activity", T0 + DAY), T0 + DAY)
    flow = finding("M2", "continuous_flow", T0 + DAY + 60, severity="critical")
    assert apply(any_engine, manager, flow, T0 + DAY + 60) == other
    apply(any_engine, manager, finding("M2", "continuous_flow", T0 + DAY + 120, resolved=True), T0 + DAY + 120)
    assert runner.run_once(T0 + DAY + 15 * 60 - 1) == 0
    assert runner.run_once(T0 + DAY + 15 * 60) == 1 and levels(any_engine) == [1, 2, 1, 2]


def test_a_fall_joining_a_case_the_family_was_texted_of_texts_the_family_of_the_fall(any_engine) -> None:  # type: ignore[no-untyped-def]
    """The family was texted of a routine change (level 1 fired); a fall joins and raises the case to high: the
    family, the fastest to reach her, must hear of the fall too, once. A join that raises nothing texts nobody."""
    add_elder(any_engine, "E1", "M1", CONTACTS)
    manager = AlertManager(["webhook", "sms"])
    routine = Finding("M1", "routine_change", "low", T0, "起床时间比平时晚 2 小时。", "Rose 2 h later than usual.")
    case = apply(any_engine, manager, routine, T0)
    assert len(queued(any_engine, "sms")) == 1  # level 1: the family texted of the routine change
    fall_zh = "已 9 小时未用水（平时 3 小时内会用水）。"
    fall = Finding("M1", "no_activity", "high", T0 + HOUR, fall_zh, "No water for 9 h.", since=T0 - 8 * HOUR)
    assert apply(any_engine, manager, fall, T0 + HOUR) == case
    texts = [t["data"]["text"] for t in queued(any_engine, "sms")]
    assert len(texts) == 2 and texts[1].startswith("【长时间未用水】") and fall_zh in texts[1], texts
    assert len({t["id"] for t in queued(any_engine, "sms")}) == 2  # its own idempotency key
    assert [e["data"].get("contacts_notified") for e in queued(any_engine) if e["data"]["event"] == "joined"] == [1]
    # A tap of no graver severity joins: nobody is texted again.
    assert apply(any_engine, manager, finding("M1", "continuous_flow", T0 + HOUR + 60), T0 + HOUR + 60) == case
    # The fall clears while the tap runs, then comes back: a rise again, but the family already knows of the fall.
    apply(any_engine, manager, finding("M1", "continuous_flow", T0 + HOUR + 120, resolved=True), T0 + HOUR + 120)
    apply(any_engine, manager, finding("M1", "no_activity", T0 + HOUR + 180, resolved=True), T0 + HOUR + 180)
    assert alert_row(any_engine, case or "")["severity"] == "low"
    assert apply(any_engine, manager, finding("M1", "no_activity", T0 + 2 * HOUR), T0 + 2 * HOUR) == case
    assert alert_row(any_engine, case or "")["severity"] == "high"
    assert len(queued(any_engine, "sms")) == 2
