"""Reading history for the API: raw readings and hourly/daily use, from whichever store holds them.

``SqlTimeseries`` reads the relational store (the embedded default); an
InfluxDB implementation of the same protocol serves production.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, ColumnElement, Engine, case, cast, func, select

from store.schema import readings

#: The routine's slot: half an hour of local time, which starts ``shift_s`` past a UTC half hour.
SLOT_S = 1800


def slot_shift(tz: ZoneInfo, when: float) -> int:
    """The ``shift_s`` of the zone's slots at ``when``: seconds past a UTC half hour at which its half hours start
    (a zone's offset changes by whole half hours).

    >>> now = 1_800_000_000.0  # 2027: Kathmandu at +05:45
    >>> slot_shift(ZoneInfo("Asia/Shanghai"), now), slot_shift(ZoneInfo("Asia/Kathmandu"), now)
    (0, 900)
    """
    return int((datetime.fromtimestamp(when, tz).utcoffset() or timedelta(0)).total_seconds()) % SLOT_S


class SlotUse(NamedTuple):
    """A meter's known intervals of use: summed per slot when inside one, else each as it is, to be spread."""

    sums: list[tuple[float, float]]  # (the slot's start, litres of the intervals inside it)
    crossing: list[tuple[float, float, float]]  # (start, end, litres) of each interval across a slot's end


class Timeseries(Protocol):
    def readings(self, meter_id: str, start: float, end: float) -> list[dict[str, Any]]:
        """Readings with ``ts``, ``total_l``, ``usage_l`` (None when unknown) and ``status``, oldest first."""
        ...

    def page(
        self, meter_id: str, start: float, end: float, offset: int, limit: int, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int]:
        """Readings ``offset`` to ``offset + limit`` in time order (newest first if asked), and how many in all."""
        ...

    def slot_use(self, meter_id: str, start: float, end: float, shift_s: int, max_interval_s: float) -> SlotUse:
        """Use between consecutive readings in ``[start, end]`` (status ``ok``, known, at most ``max_interval_s``
        long; negative use as none), by the slots of a zone whose offset from UTC is ``shift_s`` modulo SLOT_S."""
        ...

    def usage(self, meter_id: str, start: float, end: float, every_s: int, utc_offset_s: int) -> list[dict[str, Any]]:
        """Use per bucket of ``every_s`` seconds aligned to local time: ``start``, ``usage_l``, ``readings``."""
        ...


class SqlTimeseries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def readings(self, meter_id: str, start: float, end: float) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(readings.c.ts, readings.c.total_l, readings.c.usage_l, readings.c.status)
                .where(readings.c.meter_id == meter_id, readings.c.ts >= start, readings.c.ts <= end)
                .order_by(readings.c.ts)
            ).all()
        return [dict(r._mapping) for r in rows]

    def page(
        self, meter_id: str, start: float, end: float, offset: int, limit: int, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int]:
        # Counted and cut by the store: a page's cost is its own rows, not the 134,000 a meter read every
        # minute holds in the 93 days a request may span (docs/reliability.md).
        span = (readings.c.meter_id == meter_id, readings.c.ts >= start, readings.c.ts <= end)
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(readings).where(*span)).scalar_one()
            rows = conn.execute(
                select(readings.c.ts, readings.c.total_l, readings.c.usage_l, readings.c.status)
                .where(*span)
                .order_by(readings.c.ts.desc() if newest_first else readings.c.ts)
                .offset(offset)
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows], int(count)

    def slot_use(self, meter_id: str, start: float, end: float, shift_s: int, max_interval_s: float) -> SlotUse:
        # Summed by the store: 28 days of a meter read every minute are 40,320 readings, a routine's slots 1,344.
        with self.engine.connect() as conn:
            dialect = conn.dialect.name
            paired = (
                select(
                    readings.c.ts,
                    readings.c.usage_l,
                    readings.c.status,
                    func.lag(readings.c.ts).over(order_by=readings.c.ts).label("prev"),
                )
                .where(readings.c.meter_id == meter_id, readings.c.ts >= start, readings.c.ts <= end)
                .subquery()
            )
            span = paired.c.ts - paired.c.prev
            known = (
                paired.c.status == "ok",
                paired.c.usage_l.is_not(None),
                paired.c.prev.is_not(None),
                span > 0,
                span <= max_interval_s,
            )
            slot = _bucket_number(dialect, paired.c.prev + shift_s, SLOT_S).label("slot")
            inside = paired.c.ts + shift_s <= (slot + 1) * SLOT_S
            litres = case((paired.c.usage_l > 0, paired.c.usage_l), else_=0.0)
            sums = conn.execute(
                select(slot, func.sum(litres)).where(*known, inside).group_by(slot).order_by(slot)
            ).all()
            crossing = conn.execute(
                select(paired.c.prev, paired.c.ts, litres).where(*known, ~inside).order_by(paired.c.ts)
            ).all()
        return SlotUse(
            [(float(number * SLOT_S - shift_s), float(total)) for number, total in sums],
            [(float(a), float(b), float(use)) for a, b, use in crossing],
        )

    def usage(self, meter_id: str, start: float, end: float, every_s: int, utc_offset_s: int) -> list[dict[str, Any]]:
        # Summed by the store, as InfluxDB does: a meter read every minute holds 576,000 readings in the 400 days
        # a request may span, and turning each into a Python row took a worker 9 s (docs/reliability.md).
        with self.engine.connect() as conn:
            bucket = _bucket_number(conn.dialect.name, readings.c.ts + utc_offset_s, every_s).label("bucket")
            rows = conn.execute(
                select(bucket, func.sum(readings.c.usage_l), func.count())
                .where(readings.c.meter_id == meter_id, readings.c.ts >= start, readings.c.ts <= end)
                .group_by(bucket)
                .order_by(bucket)
            ).all()
        return [
            {"start": float(number * every_s - utc_offset_s), "usage_l": float(litres or 0.0), "readings": count}
            for number, litres, count in rows
        ]


def slot_use_of(rows: list[dict[str, Any]], shift_s: int, max_interval_s: float) -> SlotUse:
    """:meth:`Timeseries.slot_use` of one meter's readings, oldest first.

    >>> rows = [{"ts": t, "usage_l": 1.0, "status": "ok"} for t in (0.0, 600.0, 1800.0, 2400.0, 4200.0)]
    >>> slot_use_of(rows, 0, 3 * 3600)
    SlotUse(sums=[(0.0, 2.0), (1800.0, 1.0)], crossing=[(2400.0, 4200.0, 1.0)])
    """
    sums: dict[float, float] = {}
    crossing = []
    for prev, cur in pairwise(rows):
        if cur["usage_l"] is None or cur["status"] != "ok" or not 0 < cur["ts"] - prev["ts"] <= max_interval_s:
            continue
        litres = max(cur["usage_l"], 0.0)
        slot = (prev["ts"] + shift_s) // SLOT_S * SLOT_S - shift_s
        if cur["ts"] <= slot + SLOT_S:
            sums[slot] = sums.get(slot, 0.0) + litres
        else:
            crossing.append((prev["ts"], cur["ts"], litres))
    return SlotUse(sorted(sums.items()), crossing)


def _bucket_number(dialect: str, local_ts: ColumnElement[float], every_s: int) -> ColumnElement[int]:
    """``floor(local_ts / every_s)`` in SQL: SQLite's CAST truncates (times are positive), PostgreSQL's rounds."""
    if dialect == "sqlite":
        return cast(local_ts / every_s, BigInteger)
    return cast(func.floor(local_ts / every_s), BigInteger)
