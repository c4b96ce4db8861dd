"""Reading history for the API: raw readings and hourly/daily use, from whichever store holds them.

``SqlTimeseries`` reads the relational store (the embedded default); an
InfluxDB implementation of the same protocol serves production.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Engine, select

from store.schema import readings


class Timeseries(Protocol):
    def readings(self, meter_id: str, start: float, end: float) -> list[dict[str, Any]]:
        """Readings with ``ts``, ``total_l``, ``usage_l`` (None when unknown) and ``status``, oldest first."""
        ...

    def usage(self, meter_id: str, start: float, end: float, every_s: int, utc_offset_s: int) -> list[dict[str, Any]]:
        """Use per bucket of ``every_s`` seconds aligned to local time: ``start``, ``usage_l``, ``readings``."""
        ...


def bucket_usage(
    rows: list[dict[str, Any]], start: float, end: float, every_s: int, utc_offset_s: int
) -> list[dict[str, Any]]:
    """Sum known interval use into local-time buckets; a bucket with no readings is left out.

    >>> rows = [{"ts": 3600.0 * h, "usage_l": 1.0} for h in range(1, 49)]
    >>> [(b["start"], b["usage_l"]) for b in bucket_usage(rows, 0, 48 * 3600, 86400, 0)]
    [(0.0, 23.0), (86400.0, 24.0), (172800.0, 1.0)]
    """
    buckets: dict[float, dict[str, Any]] = {}
    for row in rows:
        if not start <= row["ts"] <= end:
            continue
        key = (row["ts"] + utc_offset_s) // every_s * every_s - utc_offset_s
        bucket = buckets.setdefault(key, {"start": float(key), "usage_l": 0.0, "readings": 0})
        bucket["readings"] += 1
        if row["usage_l"] is not None:
            bucket["usage_l"] += row["usage_l"]
    return [buckets[k] for k in sorted(buckets)]


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

    def usage(self, meter_id: str, start: float, end: float, every_s: int, utc_offset_s: int) -> list[dict[str, Any]]:
        return bucket_usage(self.readings(meter_id, start, end), start, end, every_s, utc_offset_s)
