"""Line protocol for InfluxDB: readings, findings, alert events and dead letters as points.

Pure encoding (no I/O) apart from :func:`alert_event_lines` and
:func:`dead_letter_lines`, which read the append-only tables they encode.
:mod:`timeseries.spool` stages and writes these lines; :mod:`timeseries.influxql`
reads the same measurements back.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from core.domain import Finding
from ingest.payload import ParsedMessage
from store.linetags import tag_value as _tag
from store.schema import alert_events, alerts, dead_letters

MS = 1000
NS_PER_MS = 1_000_000


def _str_field(value: object) -> str:
    text = str(value).replace("\n", " ").replace("\r", " ")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fields(values: Mapping[str, object]) -> str:
    """Field set; None and non-finite numbers are left out (InfluxDB has no null)."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int):
            parts.append(f"{key}={value}i")
        elif isinstance(value, float):
            if math.isfinite(value):
                parts.append(f"{key}={value!r}")
        else:
            parts.append(f"{key}={_str_field(value)}")
    return ",".join(parts)


def line(measurement: str, tags: Mapping[str, object], fields: Mapping[str, object], ts_ms: int) -> str | None:
    """One point in line protocol; None when no field has a value.

    >>> line("readings", {"meter_id": "m 1"}, {"total_l": 12.0, "usage_l": None, "status": "ok"}, 1000)
    'readings,meter_id=m\\\\ 1 total_l=12.0,status="ok" 1000'
    """
    field_set = _fields(fields)
    if not field_set:
        return None
    tag_set = "".join(f",{k}={_tag(v)}" for k, v in sorted(tags.items()) if v is not None and v != "")
    return f"{measurement.replace(',', '_').replace(' ', '_')}{tag_set} {field_set} {int(ts_ms)}"


def to_ms(ts: float) -> int:
    return round(ts * MS)


def _float_field(key: str, value: object) -> str:
    if value is None:
        return ""
    number = float(value)  # type: ignore[arg-type]
    return f",{key}={number!r}" if math.isfinite(number) else ""


def reading_lines(context: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], message: ParsedMessage) -> list[str]:
    """One ``readings`` point per row; the hot path of the stager, so the shared parts are built once."""
    tags = {"meter_id": message.meter_id, "elder_id": context.get("elder_id"), "community": context.get("community")}
    head = "readings" + "".join(f",{k}={_tag(v)}" for k, v in sorted(tags.items()) if v is not None and v != "")
    device = _float_field("battery_pct", message.battery_pct) + _float_field("rssi", message.rssi)
    out = []
    for row in rows:
        total = float(row["total_l"])
        if not math.isfinite(total):
            continue
        usage = _float_field("usage_l", row["usage_l"])
        out.append(f"{head} total_l={total!r}{usage}{device},status={_str_field(row['status'])} {to_ms(row['ts'])}")
    return out


def finding_lines(context: Mapping[str, Any], findings: Sequence[Finding]) -> list[str]:
    out = []
    for f in findings:
        # resolved is a tag so that a raise and a resolve at one data time stay two points
        tags = {
            "meter_id": f.meter_id,
            "elder_id": context.get("elder_id"),
            "community": context.get("community"),
            "kind": f.kind,
            "resolved": "true" if f.resolved else "false",
        }
        point = line("findings", tags, {"score": float(f.score), "severity": f.severity, "basis": f.basis}, to_ms(f.ts))
        if point:
            out.append(point)
    return out


def _unique_ns(at: float, row_id: int) -> int:
    """Millisecond time with the row id in the sub-millisecond digits: rows in one millisecond stay distinct."""
    return row_point_ns(to_ms(at), row_id)


def row_point_ns(ms: int, row_id: int) -> int:
    """The time in ns of a mirrored row's point, from its time in ms (as InfluxQL reads it back) and its row id.

    >>> row_point_ns(1_700_000_000_123, 42)
    1700000000123000042
    """
    return ms * NS_PER_MS + row_id % NS_PER_MS


def alert_event_lines(
    conn: Connection, after_id: int, limit: int, ids: Collection[int] | None = None
) -> list[tuple[int, str]]:
    """Points of the events after ``after_id`` (of those with ``ids`` only, if given), in id order."""
    rows = conn.execute(
        select(
            alert_events.c.id,
            alert_events.c.alert_id,
            alert_events.c.seq,
            alert_events.c.type,
            alert_events.c.at,
            alert_events.c.actor,
            alerts.c.meter_id,
            alerts.c.elder_id,
            alerts.c.community,
            alerts.c.kind,
            alerts.c.severity,
            alerts.c.message_zh,
            alerts.c.message_en,
        )
        .join(alerts, alerts.c.alert_id == alert_events.c.alert_id)
        .where(alert_events.c.id > after_id, *([alert_events.c.id.in_(ids)] if ids is not None else []))
        .order_by(alert_events.c.id)
        .limit(limit)
    ).all()
    out = []
    for r in rows:
        tags = {"community": r.community, "kind": r.kind, "severity": r.severity, "type": r.type}
        fields = {
            "row_id": int(r.id),
            "alert_id": r.alert_id,
            "seq": int(r.seq),
            "meter_id": r.meter_id,
            "elder_id": r.elder_id,
            "actor": r.actor,
            "message_zh": r.message_zh,
            "message_en": r.message_en,
        }
        point = line("alert_events", tags, fields, _unique_ns(r.at, int(r.id)))
        out.append((int(r.id), point or ""))
    return out


def dead_letter_lines(
    conn: Connection, after_id: int, limit: int, ids: Collection[int] | None = None
) -> list[tuple[int, str]]:
    """Points of the dead letters after ``after_id`` (of those with ``ids`` only, if given), in id order."""
    rows = conn.execute(
        select(dead_letters.c.id, dead_letters.c.received_at, dead_letters.c.meter_id, dead_letters.c.reason)
        .where(dead_letters.c.id > after_id, *([dead_letters.c.id.in_(ids)] if ids is not None else []))
        .order_by(dead_letters.c.id)
        .limit(limit)
    ).all()
    out = []
    for r in rows:
        # no tags: meter ids of dead letters are unvalidated input and must not create series
        fields = {"row_id": int(r.id), "meter_id": r.meter_id or "", "reason": r.reason[:256]}
        out.append((int(r.id), line("dead_letters", {}, fields, _unique_ns(r.received_at, int(r.id))) or ""))
    return out
