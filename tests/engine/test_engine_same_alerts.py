"""One engine: replay, the backtest route and the live pipeline raise the same alerts on the same readings.

Simulated elders (a fall, a leak, a tap left running, a fall in another time
zone, a quiet home with a snooze window) go through the real pipeline on SQLite as
meter messages; the readings it stored are then backtested through ``POST
/backtest``; the same readings are replayed by ``engine.replay.Replayer``. The
three sets of (meter, kind, data time) must be equal, and not empty.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert, select

from alerts.manager import AlertManager
from engine.pipeline import Pipeline, RawMessage
from engine.replay import Home, Replayer
from simulator import IncidentSpec, SimConfig, simulate
from store.registry import register_elder
from store.schema import alerts, away_windows
from tests.api_fixtures import A, Api, api_env  # noqa: F401
from tests.helpers import message

DAYS = 30
#: Elder 3 lives in New York and falls too: when a silence is unusual follows New York's clock (the others: default).
ZONES = {3: "America/New_York"}
#: Elder 4 snoozed alerts for a day (live, the alert manager mutes them; in replay, the same rule).
SNOOZED = 4

Key = tuple[str, str, float]


def _simulated() -> tuple[list[str], dict[str, list[tuple[float, float]]]]:
    """Five elders' half-hourly readings over the last 31 days: two falls, a leak, a tap, a quiet home."""
    first = (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=DAYS + 1)
    incidents = [
        IncidentSpec(elder=0, kind="fall", start_day=22.4),
        IncidentSpec(elder=1, kind="leak", start_day=21.5, duration_h=72, flow_lpm=1.5),
        IncidentSpec(elder=2, kind="tap_running", start_day=23.6, duration_h=4, flow_lpm=8.0),
        IncidentSpec(elder=3, kind="fall", start_day=24.9),
    ]
    res = simulate(
        SimConfig(
            elders=5,
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
    return list(res.meter_ids), readings


def _live(api: Api, meter_ids: list[str], readings: dict[str, list[tuple[float, float]]]) -> set[Key]:
    """Through the real pipeline, a day of each meter's readings per message, meters interleaved by day."""
    # No hold-down: a condition that comes back raises a new alert row (not a reopened one) with its data time.
    pipeline = Pipeline(api.engine, AlertManager(hold_down_s=-1.0), late_window_s=60 * 86400)
    longest = max(len(r) for r in readings.values())
    for lo in range(0, longest, 48):
        batch = [
            RawMessage("test", message(m, readings[m][lo : lo + 48]), m) for m in meter_ids if readings[m][lo : lo + 48]
        ]
        pipeline.process(batch)
    with api.engine.connect() as conn:
        rows = conn.execute(select(alerts.c.meter_id, alerts.c.kind, alerts.c.data_ts)).all()
    return {(m, kind, round(ts, 3)) for m, kind, ts in rows}


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


def _replayed(meter_ids: list[str], readings: dict[str, list[tuple[float, float]]], snooze: Home) -> set[Key]:
    homes = {m: Home(f"E{m}", ZONES.get(k)) for k, m in enumerate(meter_ids)}
    homes[snooze.elder_id[1:]] = snooze
    replayer = Replayer(default_tz="Asia/Shanghai", homes=homes)
    rows = [(m, ts, total) for m in meter_ids for ts, total in readings[m]]
    return {(f.meter_id, f.kind, round(f.ts, 3)) for f in replayer.run(rows) if not f.resolved}


def test_replay_backtest_and_live_raise_the_same_alerts(api: Api) -> None:
    meter_ids, readings = _simulated()
    snooze_from = readings[meter_ids[SNOOZED]][0][0] + 20 * 86400
    with api.engine.begin() as conn:
        for k, meter_id in enumerate(meter_ids):
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
    snooze = Home(f"E{meter_ids[SNOOZED]}", None, None, ((snooze_from, snooze_from + 86400, "snooze"),))

    live = _live(api, meter_ids, readings)
    backtested = _backtest(api)
    replayed = _replayed(meter_ids, readings, snooze)

    kinds = {kind for _, kind, _ in live}
    assert {"no_activity", "continuous_flow"} <= kinds, live  # the fall and the leak / tap were raised
    assert {m for m, _, _ in live} >= {meter_ids[0], meter_ids[1], meter_ids[2]}
    assert replayed == live
    assert backtested == live
