"""One engine: replay, the backtest route and the live pipeline raise the same alerts on the same readings.

Simulated elders (a fall, a leak, a tap left running that flaps, a fall in another time
zone, a quiet home with a snooze window, an elder with two meters whose silence
and a flow overlap, a meter that drops out on three nights, a fall whose silence is
found inside a snooze and goes on past it) go through the real pipeline on SQLite as
meter messages, with the escalation runner's pass between them (it raises a silence a
snooze held at the snooze's end); the readings it stored are then
backtested through ``POST /backtest``; the same readings are replayed by
``engine.replay.Replayer``. The cases raised (meter, kind, first data time)
must be the same three times (the backtest also counts a community case reopened
by flapping: it calls the cadre again), and not empty; live and replay must also agree on
each case's kinds and occurrences (one case for the overlap, one maintenance case
for the three nights, one case for a tap turned on again within the flap hold-down,
a new one for a tap turned on after it).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert, select

from alerts.escalation import EscalationRunner
from alerts.manager import AlertManager
from engine.pipeline import Pipeline, RawMessage
from engine.replay import Home, Replayer
from simulator import IncidentSpec, SimConfig, simulate
from store.registry import register_elder
from store.schema import alerts, away_windows, meters
from tests.api_fixtures import A, Api, api_env  # noqa: F401
from tests.helpers import message

DAYS = 30
#: Elder 3 lives in New York and falls too: when a silence is unusual follows New York's clock (the others: default).
ZONES = {3: "America/New_York"}
#: Elder 4 snoozed alerts for a day (live, the alert manager mutes them; in replay, the same rule).
SNOOZED = 4
#: Elder 5 has two meters: the second one's (simulated elder 6's) tap runs while the first one is silent.
SECOND_METER = 6
#: Elder 2's tap runs 4 h, again 2.5 h after (within the 6 h flap hold-down), and again 8.5 h after that.
TAPS = 2
#: Simulated elder 7's meter drops out from 01:00 to 09:00 on these days.
OFFLINE, OFFLINE_DAYS = 7, (10, 12, 13)
#: Elder 0 snoozed alerts for the day her fall (day 22.4, found a day or more later) is found in: her silence goes on
#: past the snooze, and is raised at its end, live (the escalation runner) and in replay alike.
FALLEN, FALL_SNOOZE_DAY = 0, 22

Key = tuple[str, str, float]
Case = tuple[str, str, float, tuple[str, ...], int]  # meter, first kind, first data time, kinds, occurrences


def _simulated() -> tuple[list[str], dict[str, list[tuple[float, float]]]]:
    """Eight meters' half-hourly readings over the last 31 days: falls, a leak, taps, a quiet home, night gaps."""
    first = (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=DAYS + 1)
    incidents = [
        IncidentSpec(elder=0, kind="fall", start_day=22.4),
        IncidentSpec(elder=1, kind="leak", start_day=21.5, duration_h=72, flow_lpm=1.5),
        IncidentSpec(elder=TAPS, kind="tap_running", start_day=23.6, duration_h=4, flow_lpm=8.0),
        IncidentSpec(elder=TAPS, kind="tap_running", start_day=23.6 + 6.5 / 24, duration_h=2, flow_lpm=8.0),
        IncidentSpec(elder=TAPS, kind="tap_running", start_day=23.6 + 17 / 24, duration_h=2, flow_lpm=8.0),
        IncidentSpec(elder=3, kind="fall", start_day=24.9),
        IncidentSpec(elder=5, kind="fall", start_day=20.4),
        IncidentSpec(elder=SECOND_METER, kind="tap_running", start_day=21.0, duration_h=4, flow_lpm=6.0),
    ]
    res = simulate(
        SimConfig(
            elders=8,
            days=DAYS,
            seed=3,
            start=date.isoformat(first),
            random_incidents=False,
            random_events=False,
            faults=False,
            incidents=incidents,
        )
    )
    readings: dict[str, list[tuple[float, float]]] = {m: [] for m in res.meter_ids}
    for idx, ts, total in zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True):
        if math.isfinite(total):
            readings[res.meter_ids[idx]].append((float(ts), float(total)))
    gaps = [(res.start_ts + d * 86400 + 17 * 3600, res.start_ts + d * 86400 + 25 * 3600) for d in OFFLINE_DAYS]
    offline = res.meter_ids[OFFLINE]
    readings[offline] = [(ts, total) for ts, total in readings[offline] if not any(a <= ts < b for a, b in gaps)]
    return list(res.meter_ids), readings


def _elder(k: int) -> int:
    """The elder a simulated meter belongs to (the second meter is elder 5's)."""
    return 5 if k == SECOND_METER else k


def _live(api: Api, meter_ids: list[str], readings: dict[str, list[tuple[float, float]]]) -> set[Case]:
    """Through the real pipeline, a day of each meter's readings per message, meters interleaved by day."""
    # The default hold-downs, as replay's and the backtest's: a day of readings per message, so data time counts.
    manager = AlertManager()
    pipeline = Pipeline(api.engine, manager, late_window_s=60 * 86400)
    runner = EscalationRunner(api.engine, manager)
    days = readings[meter_ids[FALLEN]]  # no gaps: its readings tell the data time each day's batch starts at
    longest = max(len(r) for r in readings.values())
    for lo in range(0, longest, 48):
        batch = [
            RawMessage("test", message(m, readings[m][lo : lo + 48]), m) for m in meter_ids if readings[m][lo : lo + 48]
        ]
        pipeline.process(batch)
        # The runner's pass as the data reach the next day (live, every 15 s): a snooze over by then releases
        # what it held, before the next readings.
        runner.run_once(days[lo + 48][0] if lo + 48 < len(days) else time.time())
    with api.engine.connect() as conn:
        rows = conn.execute(select(alerts.c.meter_id, alerts.c.kind, alerts.c.details)).all()
    return {(m, kind, round(d["first_ts"], 3), tuple(d["kinds"]), d["occurrences"]) for m, kind, d in rows}


def _backtest(api: Api) -> set[Key]:
    """The stored readings through POST /backtest: what it says the current thresholds raised, and the alerts."""
    answer = api.post("op_a", "/backtest", json={"community": A, "days": DAYS + 5, "thresholds": {}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["current"] == body["proposed"]  # nothing proposed: the same replay
    found = {
        (a["meter_id"], a["kind"], round(datetime.fromisoformat(a["data_time"]).timestamp(), 3)) for a in body["alerts"]
    }
    assert body["current"]["total"] == len(found)
    return found


def _replayed(
    meter_ids: list[str], readings: dict[str, list[tuple[float, float]]], snoozes: list[Home]
) -> tuple[set[Case], set[Key]]:
    """The cases the replay raised, and the community cases it saw reopened (meter, kind, data time)."""
    homes = {m: Home(f"E{meter_ids[_elder(k)]}", ZONES.get(k)) for k, m in enumerate(meter_ids)}
    for snooze in snoozes:
        homes[snooze.elder_id[1:]] = snooze
    replayer = Replayer(default_tz="Asia/Shanghai", homes=homes)
    # In time order, as live sees them: elder 5's two meters meet in one case, so which came first matters.
    rows = sorted(((m, ts, total) for m in meter_ids for ts, total in readings[m]), key=lambda row: row[1])
    raised: dict[int, tuple[str, str, float]] = {}
    grouped: dict[int, tuple[tuple[str, ...], int]] = {}
    reopens: set[Key] = set()
    for event in replayer.events(rows):
        key = (event.finding.meter_id, event.finding.kind, round(event.finding.ts, 3))
        if event.action == "raised":
            raised[event.case] = key
        elif event.action == "reopened" and event.route == "community":
            reopens.add(key)  # a call again: the backtest counts it
        grouped[event.case] = (event.kinds, event.occurrences)
    return {(*raised[case], *grouped[case]) for case in raised}, reopens


def test_replay_backtest_and_live_raise_the_same_alerts(api: Api) -> None:
    meter_ids, readings = _simulated()
    snooze_from = readings[meter_ids[SNOOZED]][0][0] + 20 * 86400
    fallen = meter_ids[FALLEN]
    fall_snooze = (readings[fallen][FALL_SNOOZE_DAY * 48][0], readings[fallen][(FALL_SNOOZE_DAY + 1) * 48][0])
    # About a day (the meter's clock jitters), one day's batch: the runner's pass after it comes at the snooze's end.
    with api.engine.begin() as conn:
        for k, meter_id in enumerate(meter_ids):
            if k == SECOND_METER:
                owner = f"E{meter_ids[_elder(k)]}"
                conn.execute(insert(meters).values(meter_id=meter_id, elder_id=owner, installed_at=time.time()))
                continue
            elder = {"elder_id": f"E{meter_id}", "name": f"老人{k}", "community": A, "tz": ZONES.get(k)}
            register_elder(conn, elder, meter_id, time.time())
        conn.execute(
            insert(away_windows).values(
                elder_id=f"E{meter_ids[SNOOZED]}",
                kind="snooze",
                start_ts=snooze_from,
                end_ts=snooze_from + 86400,
                created_by="test",
                created_at=time.time(),
            )
        )
        conn.execute(
            insert(away_windows).values(
                elder_id=f"E{fallen}",
                kind="snooze",
                start_ts=fall_snooze[0],
                end_ts=fall_snooze[1],
                created_by="test",
                created_at=time.time(),
            )
        )
    snooze = Home(f"E{meter_ids[SNOOZED]}", None, None, ((snooze_from, snooze_from + 86400, "snooze"),))
    fall_snoozed = Home(f"E{fallen}", ZONES.get(FALLEN), None, ((*fall_snooze, "snooze"),))

    live = _live(api, meter_ids, readings)
    backtested = _backtest(api)
    replayed, reopens = _replayed(meter_ids, readings, [snooze, fall_snoozed])

    kinds = {case[1] for case in live}
    assert {"no_activity", "continuous_flow", "meter_offline"} <= kinds, live  # falls, the leak / tap, the gaps
    assert {case[0] for case in live} >= {meter_ids[0], meter_ids[1], meter_ids[2]}
    overlap = [case for case in live if case[0] in (meter_ids[5], meter_ids[SECOND_METER])]
    joined = [case for case in overlap if len(case[3]) > 1]
    assert [case[3] for case in joined] == [("no_activity", "continuous_flow")], overlap  # one case, both kinds
    assert not [case for case in overlap if case[1] == "continuous_flow"], overlap  # the tap opened no case
    nights = [case for case in live if case[0] == meter_ids[OFFLINE] and case[1] == "meter_offline"]
    assert [case[4] for case in nights] == [len(OFFLINE_DAYS)], nights  # one maintenance case, three occurrences
    taps = sorted(case[2:] for case in live if case[0] == meter_ids[TAPS])
    assert [case[1:] for case in taps] == [(("continuous_flow",), 2), (("continuous_flow",), 1)], taps  # flapping
    falls = [case for case in live if case[0] == fallen and case[1] == "no_activity"]
    assert [case[2] for case in falls] == [fall_snooze[1]], falls  # found in the snooze: raised at its end
    assert replayed == live
    assert reopens and backtested == {case[:3] for case in live} | reopens  # a reopen calls the cadre again
