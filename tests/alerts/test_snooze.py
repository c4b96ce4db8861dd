"""A snooze window mutes what is found inside it, not what is still going on when it ends.

A snooze ("mute her alerts for a while", 1, 3 or 7 days in one tap on the dashboard) used to swallow a
finding for good: the detectors raise a silence or a running tap once per episode, and the one raised inside
the window was muted. A fall whose silence went on past the window, or a tap left running after it ended,
then called nobody until the water came back. The readings go through the real pipeline on SQLite and
PostgreSQL; the escalation runner (the service's thread) raises what is still going on at the window's end.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, insert, select

from alerts.escalation import EscalationRunner
from alerts.manager import AlertManager
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.schema import alert_events, alerts, away_windows
from tests.api_fixtures import ELDER_A, add_elder
from tests.helpers import message

DAY, HALF, HOUR = 86400.0, 1800.0, 3600.0
SHANGHAI = 8 * 3600
USES = (14, 24, 36, 43)  # 07:00, 12:00, 18:00, 21:30 local


def _days(last_day: dict[int, float]) -> tuple[float, list[tuple[float, float]]]:
    """30 days of her routine, then a day (the 31st, local midnight returned) of ``last_day``'s litres per slot."""
    midnight = (time.time() + SHANGHAI) // DAY * DAY - SHANGHAI - 32 * DAY
    total, points = 0.0, []
    for k in range(32 * 48):
        day, slot = divmod(k, 48)
        total += (12.0 if slot in USES else 0.0) if day != 30 else last_day.get(slot, 0.0)
        points.append((midnight + (k + 1) * HALF, total))
    return midnight + 30 * DAY, points


def _run(store: Engine, points: list[tuple[float, float]], snooze: tuple[float, float]) -> None:
    """Her readings two hours a message (a meter reporting every two hours), the escalation runner passing after each
    at its data time: live, data time is the wall clock's."""
    add_elder(store, ELDER_A)
    with store.begin() as conn:
        conn.execute(
            insert(away_windows).values(
                elder_id="EA1", kind="snooze", start_ts=snooze[0], end_ts=snooze[1], created_by="t", created_at=0.0
            )
        )
    manager = AlertManager(["webhook"])
    pipeline = Pipeline(store, manager, late_window_s=60 * DAY)
    runner = EscalationRunner(store, manager)
    for lo in range(0, len(points), 4):
        pipeline.process([RawMessage("test", message("MA1", points[lo : lo + 4]), "MA1")])
        runner.run_once(points[lo + 3][0])


def _cases(store: Engine) -> list[dict[str, object]]:
    with store.connect() as conn:
        return [dict(r) for r in conn.execute(select(alerts).order_by(alerts.c.raised_at)).mappings()]


def test_a_fall_found_inside_a_snooze_that_goes_on_past_it_is_raised_when_it_ends(any_engine: Engine) -> None:
    day, points = _days({14: 12.0})  # her 07:00 wash, then no water until 07:00 the next day
    _run(any_engine, points, (day + 8 * HOUR, day + 16 * HOUR))  # snoozed 08:00-16:00; found at 15:00 (8 h dry)
    cases = _cases(any_engine)  # before: none (the silence went on 15 h more)
    assert [(c["kind"], c["data_ts"], c["raised_at"]) for c in cases] == [
        ("no_activity", day + 16 * HOUR, day + 16 * HOUR)  # raised as the snooze ended
    ]
    assert cases[0]["since_ts"] == day + 7.5 * HOUR  # her silence, since her wash ended
    assert cases[0]["outcome"] == "use_resumed"  # closed when she used water the next morning
    with any_engine.connect() as conn:
        types = conn.execute(select(alert_events.c.type).order_by(alert_events.c.seq)).scalars().all()
    assert types[0] == "raised"


def test_a_tap_still_running_when_a_snooze_ends_is_raised_then(any_engine: Engine) -> None:
    # 200 L a half hour from 14:30 to 20:00: a tap left running, found at 15:00, inside a snooze until 16:00.
    day, points = _days({slot: 200.0 for slot in range(29, 40)} | {s: 12.0 for s in USES if s >= 40})
    _run(any_engine, points, (day + 8 * HOUR, day + 16 * HOUR))
    cases = _cases(any_engine)  # before: none
    assert [(c["kind"], c["data_ts"], c["outcome"]) for c in cases] == [
        ("continuous_flow", day + 16 * HOUR, "cleared")  # raised as the snooze ended, closed when the tap stopped
    ], cases


def test_a_tap_stopped_inside_the_snooze_raises_nothing_when_it_ends(any_engine: Engine) -> None:
    day, points = _days({slot: 200.0 for slot in range(29, 31)} | {s: 12.0 for s in USES if s >= 36})
    _run(any_engine, points, (day + 8 * HOUR, day + 18 * HOUR))  # the tap ran 14:30-15:30, snoozed until 18:00
    assert _cases(any_engine) == []
