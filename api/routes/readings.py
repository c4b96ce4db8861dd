"""Reading history of a meter, hourly and daily use, and the elder's learned routine."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import Connection, select

from api.deps import PERSONAL_READERS, ConnDep, CurrentUser, TimeseriesDep, allow
from api.lookups import elder_zone, load_elder, load_meter
from api.models import Instant, ReadingList, ReadingPublic, Routine, RoutineSlot, UsageBucket, UsageList, to_dt
from api.problems import AUTH_RESPONSES, responses
from store import audit
from store.schema import meters
from timeseries.sql import SLOT_S, SlotUse, slot_shift

#: An elder's water use is for those who care for them and tune detection, never the platform (docs/alerts.md);
#: every read is audited, scoped to the elder's community so its operators see who looked.
router = APIRouter(
    tags=["readings"],
    dependencies=[Depends(allow(*PERSONAL_READERS))],
    responses={**AUTH_RESPONSES, **responses(404)},
)

EVERY_S = {"hour": 3600, "day": 86400}
MAX_SPAN_DAYS = {"readings": 93, "usage": 400}
ROUTINE_DAYS = 28
USE_L = 0.5  # litres in a half hour that count as use (below: meter noise)
MAX_INTERVAL_S = 3 * 3600  # longer gaps: the volume is known but not when it was used

Start = Annotated[Instant | None, Query(description="From (ISO-8601 with offset); default: one day before end.")]
End = Annotated[Instant | None, Query(description="Until (ISO-8601 with offset); default: now.")]


def _range(start: datetime | None, end: datetime | None, kind: str, default_days: float) -> tuple[float, float]:
    end_ts = end.timestamp() if end is not None else time.time()
    start_ts = start.timestamp() if start is not None else end_ts - default_days * 86400
    if start_ts >= end_ts:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "start must be before end")
    if end_ts - start_ts > MAX_SPAN_DAYS[kind] * 86400:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"at most {MAX_SPAN_DAYS[kind]} days at a time")
    return start_ts, end_ts


@router.get(
    "/meters/{meter_id}/readings",
    response_model=ReadingList,
    summary="A meter's readings over a time range (active or replaced meters alike).",
)
def list_readings(
    meter_id: str,
    conn: ConnDep,
    user: CurrentUser,
    timeseries: TimeseriesDep,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 2000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    sort: Annotated[Literal["ts", "-ts"], Query(description="Oldest (ts) or newest (-ts) first.")] = "ts",
) -> ReadingList:
    _meter, elder = load_meter(conn, user, meter_id)
    start_ts, end_ts = _range(start, end, "readings", 1)
    _audit_read(conn, user.username, "readings.read", f"meter:{meter_id}", elder["community"], start_ts, end_ts)
    rows, count = timeseries.page(meter_id, start_ts, end_ts, offset, limit, newest_first=sort == "-ts")
    data = [
        ReadingPublic(
            ts=datetime.fromtimestamp(r["ts"], UTC),
            total_l=r["total_l"],
            usage_l=r["usage_l"],
            status=r["status"],
        )
        for r in rows
    ]
    return ReadingList(meter_id=meter_id, elder_id=elder["elder_id"], data=data, count=count)


@router.get(
    "/meters/{meter_id}/usage",
    response_model=UsageList,
    summary="Litres used per hour or per day (local days of the elder) over a time range.",
)
def usage(
    meter_id: str,
    conn: ConnDep,
    user: CurrentUser,
    timeseries: TimeseriesDep,
    start: Start = None,
    end: End = None,
    every: Literal["hour", "day"] = "hour",
) -> UsageList:
    _meter, elder = load_meter(conn, user, meter_id)
    start_ts, end_ts = _range(start, end, "usage", 1 if every == "hour" else 30)
    _audit_read(conn, user.username, "usage.read", f"meter:{meter_id}", elder["community"], start_ts, end_ts)
    tz = elder_zone(elder["tz"])
    offset_s = int((datetime.fromtimestamp(start_ts, tz).utcoffset() or timedelta(0)).total_seconds())
    if every == "hour":
        buckets = timeseries.usage(meter_id, start_ts, end_ts, EVERY_S["hour"], offset_s)
    else:  # a local day is 23 or 25 hours long where clocks change: one fixed width would cut it an hour off
        buckets = local_days(timeseries.usage(meter_id, start_ts, end_ts, EVERY_S["hour"], offset_s), tz)
    data = [
        UsageBucket(
            start=datetime.fromtimestamp(b["start"], tz), usage_l=round(b["usage_l"], 3), readings=b["readings"]
        )
        for b in buckets
    ]
    return UsageList(meter_id=meter_id, elder_id=elder["elder_id"], every=every, data=data, count=len(data))


@router.get(
    "/elders/{elder_id}/routine",
    response_model=Routine,
    tags=["elders"],
    summary="The elder's routine: per half hour of weekdays and weekends, how likely water use is and how much.",
)
def routine(elder_id: str, conn: ConnDep, user: CurrentUser, timeseries: TimeseriesDep) -> Routine:
    elder = load_elder(conn, user, elder_id)
    audit.record(
        conn, actor=user.username, action="routine.read", target=f"elder:{elder_id}", community=elder["community"]
    )
    end = time.time()
    tz = elder_zone(elder["tz"])
    shift = slot_shift(tz, end)
    meter_ids = conn.execute(select(meters.c.meter_id).where(meters.c.elder_id == elder_id)).scalars().all()
    uses = [timeseries.slot_use(m, end - ROUTINE_DAYS * 86400, end, shift, MAX_INTERVAL_S) for m in meter_ids]
    litres = litres_by_slot_and_day(uses, tz)
    weekday, weekend = routine_from_litres(litres)
    return Routine(
        elder_id=elder_id,
        source="readings",
        days=ROUTINE_DAYS,
        days_observed=len({day for _weekend, _slot, day in litres}),
        weekday=weekday,
        weekend=weekend,
    )


def local_days(hours: list[dict[str, Any]], tz: ZoneInfo) -> list[dict[str, Any]]:
    """Hourly buckets summed by the elder's local date, each starting at that date's local midnight.

    >>> berlin = ZoneInfo("Europe/Berlin")  # clocks went back an hour on 2025-10-26: a day of 25 hours
    >>> midnight = datetime(2025, 10, 26, tzinfo=berlin).timestamp()
    >>> hours = [{"start": midnight + 3600 * h, "usage_l": 1.0, "readings": 1} for h in range(-1, 26)]
    >>> [(datetime.fromtimestamp(d["start"], berlin).isoformat(), d["usage_l"]) for d in local_days(hours, berlin)]
    [('2025-10-25T00:00:00+02:00', 1.0), ('2025-10-26T00:00:00+02:00', 25.0), ('2025-10-27T00:00:00+01:00', 1.0)]
    """
    days: dict[Any, dict[str, Any]] = {}
    for hour in hours:
        day = datetime.fromtimestamp(hour["start"], tz).date()
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        bucket = days.setdefault(day, {"start": midnight, "usage_l": 0.0, "readings": 0})
        bucket["usage_l"] += hour["usage_l"]
        bucket["readings"] += hour["readings"]
    return [days[day] for day in sorted(days)]


def _audit_read(
    conn: Connection, actor: str, action: str, target: str, community: str, start: float, end: float
) -> None:
    """Who read whose water use, over which span (the community's operators see it in /audit)."""
    span = {"start": to_dt(start).isoformat(), "end": to_dt(end).isoformat()}
    audit.record(conn, actor=actor, action=action, target=target, community=community, new=span)


def _slot_start(slot: int) -> str:
    return f"{slot // 2:02d}:{30 * (slot % 2):02d}"


def litres_by_slot_and_day(uses: list[SlotUse], tz: ZoneInfo) -> dict[tuple[bool, int, str], float]:
    """Litres per (weekend, half-hour slot, local date) of every slot a known interval covered, none used too."""
    litres: dict[tuple[bool, int, str], float] = defaultdict(float)
    for use in uses:
        for slot_start, summed in use.sums:
            litres[_slot_key(datetime.fromtimestamp(slot_start, tz))] += summed
        for begin, end, used in use.crossing:
            t = begin
            while t < end:
                local = datetime.fromtimestamp(t, tz)
                slot_end = t + SLOT_S - (local.minute * 60 + local.second) % SLOT_S
                step_end = min(slot_end, end)
                litres[_slot_key(local)] += used * (step_end - t) / (end - begin)
                t = step_end
    return litres


def routine_from_litres(
    litres: dict[tuple[bool, int, str], float],
) -> tuple[list[RoutineSlot], list[RoutineSlot]]:
    """Weekday and weekend slots: how often each half hour saw use, and how much on the days it did."""
    per_slot: dict[tuple[bool, int], list[float]] = defaultdict(list)
    for (weekend, slot, _day), value in litres.items():
        per_slot[(weekend, slot)].append(value)
    return _slots(per_slot, False), _slots(per_slot, True)


def _slot_key(local: datetime) -> tuple[bool, int, str]:
    slot = (local.hour * 3600 + local.minute * 60 + local.second) // SLOT_S
    return local.weekday() >= 5, slot, local.date().isoformat()


def _slots(per_slot: dict[tuple[bool, int], list[float]], weekend: bool) -> list[RoutineSlot]:
    out = []
    for slot in range(48):
        values = per_slot.get((weekend, slot), [])
        used = [v for v in values if v >= USE_L]
        out.append(
            RoutineSlot(
                slot=slot,
                start=_slot_start(slot),
                p_use=round(len(used) / len(values), 3) if values else 0.0,
                typical_l=round(statistics.median(used), 2) if used else 0.0,
                days=len(values),
            )
        )
    return out
