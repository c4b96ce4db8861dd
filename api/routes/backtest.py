"""Backtest: what would these thresholds have raised over the last days in a community?

Runs :class:`tapwatch.replay.Replayer` (the live detectors, in memory) over the
stored readings, once with each elder's current thresholds and once with the
proposal applied over them. Nothing live is read or written besides readings.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import Connection, select

from api.deps import ConnDep, CurrentUser, TimeseriesDep, allow
from api.lookups import elder_zone
from api.models import BacktestAlert, BacktestCounts, BacktestRequest, BacktestResult, to_dt, to_dt_or_none
from api.problems import AUTH_RESPONSES, responses
from detect import MeterMonitor, Thresholds
from ingest.csvsource import CsvReading
from ingest.register import RegisterTracker
from tapwatch.domain import Finding
from tapwatch.registry import away_for, community_exists, effective_thresholds
from tapwatch.replay import Replayer
from tapwatch.store.schema import elders, meters
from tapwatch.timeseries import Timeseries

router = APIRouter(tags=["thresholds"], responses=AUTH_RESPONSES)

#: Days replayed before the period so learned routines are warm, as they are live; their alerts are not counted.
WARMUP_DAYS = 14


@router.post(
    "/backtest",
    response_model=BacktestResult,
    summary="Preview thresholds: the alerts they would have raised in a community over the last days, "
    "next to what the current thresholds raised in the same replay.",
    dependencies=[Depends(allow("admin", "operator"))],
    responses=responses(404),
)
def backtest(body: BacktestRequest, conn: ConnDep, user: CurrentUser, timeseries: TimeseriesDep) -> BacktestResult:
    if not user.sees(body.community) or not community_exists(conn, body.community):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no community {body.community!r}")
    end = time.time()
    start = end - body.days * 86400
    current: Counter[str] = Counter()
    proposed: Counter[str] = Counter()
    found: list[BacktestAlert] = []
    n_elders = n_readings = 0
    for elder in _elders(conn, body.community):
        limits, _sources = effective_thresholds(conn, elder["elder_id"], body.community)
        try:
            trial = limits.replace(**body.thresholds)
            trial.validate()
        except ValueError as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"for elder {elder['elder_id']}: {exc}"
            ) from None
        away = away_for(conn, elder["elder_id"])
        readings = list(_readings(conn, timeseries, elder, start - WARMUP_DAYS * 86400, end))
        n_elders += 1
        n_readings += sum(1 for r in readings if r.ts >= start)
        for finding in _replay(limits, away, readings, start):
            current[finding.kind] += 1
        for finding in _replay(trial, away, readings, start):
            proposed[finding.kind] += 1
            found.append(_alert(elder["elder_id"], finding))
    found.sort(key=lambda a: a.data_time)
    return BacktestResult(
        community=body.community,
        days=body.days,
        start=to_dt(start),
        end=to_dt(end),
        elders=n_elders,
        readings=n_readings,
        current=BacktestCounts(total=sum(current.values()), by_kind=dict(current)),
        proposed=BacktestCounts(total=sum(proposed.values()), by_kind=dict(proposed)),
        alerts=found,
    )


def _elders(conn: Connection, community: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(elders.c.elder_id, elders.c.tz)
        .where(elders.c.community == community, elders.c.retired_at.is_(None))
        .order_by(elders.c.elder_id)
    ).all()
    return [dict(r._mapping) for r in rows]


def _readings(
    conn: Connection, timeseries: Timeseries, elder: dict[str, Any], start: float, end: float
) -> Iterator[CsvReading]:
    tz = elder_zone(elder["tz"])
    meter_ids = conn.execute(select(meters.c.meter_id).where(meters.c.elder_id == elder["elder_id"])).scalars()
    for meter_id in list(meter_ids):
        for row in timeseries.readings(meter_id, start, end):
            offset = datetime.fromtimestamp(row["ts"], tz).utcoffset() or timedelta(0)
            yield CsvReading(meter_id, float(row["ts"]), float(row["total_l"]), int(offset.total_seconds()))


def _replay(
    limits: Thresholds, away: list[tuple[float, float]], readings: list[CsvReading], count_from: float
) -> Iterator[Finding]:
    """Alerts raised (not resolutions) with data time in the counted period."""
    replayer = Replayer(limits)
    for meter_id in {r.meter_id for r in readings}:  # the live monitor knows the elder's away windows too
        monitor = MeterMonitor(meter_id, limits)
        monitor.set_away(away)
        replayer.trackers[meter_id] = RegisterTracker(meter_id)
        replayer.monitors[meter_id] = monitor
    for finding in replayer.run(readings):
        if not finding.resolved and finding.ts >= count_from:
            yield finding


def _alert(elder_id: str, f: Finding) -> BacktestAlert:
    return BacktestAlert(
        elder_id=elder_id,
        meter_id=f.meter_id,
        kind=f.kind,
        severity=f.severity,
        basis=f.basis,
        data_time=to_dt(f.ts),
        since=to_dt_or_none(f.since),
        message={"zh": f.message_zh, "en": f.message_en},
    )
