"""A tap left open on top of a slow leak: the plumbing's case hands the flow on to a cadre, live as in replay.

An elder's meter shows a steady slow leak one night: a maintenance case opens (no cadre is called). Hours
later a tap is opened on top of it and left running: the detector closes the maintenance case (the data
closed it, ``flow_handed_on``) and raises a community one, which must reach the platform, be notified and
escalate as any community alert, while the maintenance case never escalates. The readings go through the
real pipeline on SQLite and PostgreSQL; the same readings replayed by ``engine.replay.Replayer`` give the
same (event, meter, kind, data time, route) sequence.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, select

from alerts.escalation import EscalationRunner
from alerts.events import iso
from alerts.manager import AlertManager
from alerts.notifiers import WebhookNotifier
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from engine.pipeline import Pipeline, RawMessage
from engine.replay import Home, Replayer
from store.registry import register_elder
from store.schema import alert_events, alerts, outbox
from tests.helpers import message

DAY, SLOT = 86400.0, 1800.0
#: Half-hour slots (Shanghai time) of the elder's routine, litres each: meals, a wash at 19:00, bed after 21:30.
ROUTINE = {13: 12.0, 14: 12.0, 16: 12.0, 20: 12.0, 23: 12.0, 26: 12.0, 30: 12.0, 34: 12.0, 36: 12.0, 38: 40.0}
LEAK_L = 15.0  # per half hour: 0.5 L/min, plumbing (slower than a tap)
TAP_L = 90.0  # per half hour: 3 L/min, a tap
LEARN_DAYS = 20
#: Data-time events the platform sees, in order: (event, meter, kind, data time, route).
Event = tuple[str, str, str, str, str]
CASE_EVENTS = ("raised", "joined", "reopened", "cleared", "resolved")


def _readings() -> list[tuple[float, float]]:
    """20 usual days; the leak from 22:00 of day 20; a tap on top from 02:00 to 05:00; the leak fixed at 10:00.

    Half-hourly register totals from a Shanghai midnight some days ago (the readings end before now).
    """
    start = (time.time() // DAY - LEARN_DAYS - 6) * DAY - 8 * 3600
    out, total = [], 0.0
    for d in range(LEARN_DAYS + 3):
        for k in range(48):
            slot = d * 48 + k
            leak = LEARN_DAYS * 48 + 44 <= slot < (LEARN_DAYS + 2) * 48 + 20
            tap = (LEARN_DAYS + 1) * 48 + 4 <= slot < (LEARN_DAYS + 1) * 48 + 10
            total += ROUTINE.get(k, 0.0) + (LEAK_L if leak else 0.0) + (TAP_L if tap else 0.0)
            out.append((start + d * DAY + (k + 1) * SLOT, total))
    return out


def _platform_events(engine: Engine) -> list[dict[str, Any]]:
    """Every event queued to the platform (webhook), in order: what it is told about the cases."""
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.payload).where(outbox.c.notifier == "webhook").order_by(outbox.c.id))
        return [r.payload["data"] for r in rows]


def _case_events(engine: Engine) -> list[Event]:
    """The events that raised, joined, reopened, cleared or resolved a case, with the case's route.

    (The platform's ``route`` of a community case says street once the supervisor level fired: the case's
    route is still the community's.)
    """
    return [
        (
            e["event"],
            e["meter_id"],
            e.get("joined") or e.get("cleared") or e["kind"],
            e["data_time"],
            "maintenance" if e["route"] == "maintenance" else "community",
        )
        for e in _platform_events(engine)
        if e["event"] in CASE_EVENTS
    ]


def _replayed(readings: list[tuple[float, float]]) -> list[Event]:
    replayer = Replayer(default_tz="Asia/Shanghai", homes={"MT1": Home("ET1")})
    return [
        (e.action, e.finding.meter_id, e.finding.kind, iso(e.finding.ts), e.route)
        for e in replayer.events(("MT1", ts, total) for ts, total in readings)
    ]


def test_a_tap_left_open_on_a_leak_closes_the_maintenance_case_and_reaches_a_cadre(
    any_engine: Engine, receiver: WebhookReceiver
) -> None:
    engine = any_engine
    elder = {"elder_id": "ET1", "name": "陈玉珍", "community": "大宁社区", "building": "5号楼", "room": "301"}
    with engine.begin() as conn:
        register_elder(conn, elder, "MT1", time.time())
    readings = _readings()
    pipeline = Pipeline(engine, AlertManager(["webhook"]), late_window_s=60 * DAY)
    tap_day = (LEARN_DAYS + 1) * 48
    # A day per message, as a meter that reports daily; the day of the tap up to 05:00 (the tap ran 02:00-05:00).
    cut = tap_day + 10
    for lo in range(0, cut, 48):
        pipeline.process([RawMessage("test", message("MT1", readings[lo : min(lo + 48, cut)]), "MT1")])

    with engine.connect() as conn:
        cases = [dict(r._mapping) for r in conn.execute(select(alerts).order_by(alerts.c.data_ts))]
    assert [(c["kind"], c["case_key"], c["state"], c["outcome"]) for c in cases] == [
        ("continuous_flow", "maintenance:MT1", "resolved", "cleared"),  # the data closed the plumbing's case
        ("continuous_flow", "community", "open", None),  # and a cadre's case is open
    ]
    leak, tap = cases
    assert (leak["details"]["route"], leak["resolved_by"]) == ("maintenance", "tapwatch")
    assert "route" not in tap["details"] and tap["severity"] == "critical"
    assert tap["data_ts"] == leak["details"]["cleared"]["continuous_flow"]  # handed on in the same interval
    assert tap["data_ts"] <= readings[tap_day + 4][0] + 2 * 3600  # as soon as a tap alone would alert

    # The platform is told: the leak to maintenance (never escalated), the tap to the community (escalated).
    events = _platform_events(engine)
    by_case = {
        c["alert_id"]: [(e["event"], e["route"]) for e in events if e["alert_id"] == c["alert_id"]] for c in cases
    }
    assert by_case[leak["alert_id"]] == [("raised", "maintenance"), ("resolved", "maintenance")]
    assert by_case[tap["alert_id"]] == [("raised", "community"), ("escalated", "community")]  # no contact: work order
    assert "handed to the community" in events[1]["note"]  # the resolution says why (flow_handed_on)
    runner = EscalationRunner(engine, pipeline.alerts)
    assert runner.run_once(time.time() + 3600) == 1  # unacknowledged: the street supervisor next
    assert [(e["event"], e["route"], e["escalation_level"]) for e in _platform_events(engine)[len(events) :]] == [
        ("escalated", "street", 3)
    ]
    sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, b"test-secret")}, concurrency=1)
    while sender.run_once():
        pass
    with engine.connect() as conn:
        states = dict(conn.execute(select(alerts.c.alert_id, alerts.c.state)).all())
        fired = select(alert_events.c.alert_id).where(alert_events.c.type == "escalated")
        escalated = set(conn.execute(fired).scalars())
    assert states == {leak["alert_id"]: "resolved", tap["alert_id"]: "notified"}
    assert escalated == {tap["alert_id"]}
    assert {e["data"]["alert_id"] for e in receiver.events} == {leak["alert_id"], tap["alert_id"]}

    # The leak goes on after the tap closed, until it is fixed: the data closes the cadre's case at the first
    # half hour of the leak alone (``flow_handed_back``) and the meter's maintenance case reopens until the fix.
    for lo in range(cut, len(readings), 48):
        pipeline.process([RawMessage("test", message("MT1", readings[lo : lo + 48]), "MT1")])
    live = _case_events(engine)
    assert [e[0] for e in live] == ["raised", "resolved", "raised", "resolved", "reopened", "resolved"], live
    routes = ["maintenance", "maintenance", "community", "community", "maintenance", "maintenance"]
    assert [e[4] for e in live] == routes, live
    closed = [e for e in _platform_events(engine) if e["event"] == "resolved" and e["alert_id"] == tap["alert_id"]]
    assert closed[0]["route"] == "street"  # it had reached the supervisor
    assert "handed to maintenance" in closed[0]["note"]
    assert live == _replayed(readings)
