"""Validate meter messages. Anything unusable raises :class:`PayloadError` with a reason.

The message format is documented in the README ("The reading message").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_READINGS_PER_MESSAGE = 1000
MAX_REGISTER_L = 1e10  # ten million cubic metres: no household register gets near it
METER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"


class PayloadError(ValueError):
    """A message that cannot be used; ``reason`` says why in one line."""

    def __init__(self, reason: str, meter_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.meter_id = meter_id


class ReadingIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ts: datetime
    total_l: float | None = None
    total_m3: float | None = None

    @field_validator("ts")
    @classmethod
    def _has_offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp has no UTC offset")
        return value

    @model_validator(mode="after")
    def _one_register(self) -> ReadingIn:
        if (self.total_l is None) == (self.total_m3 is None):
            raise ValueError("give exactly one of total_l or total_m3")
        litres = self.litres
        if not math.isfinite(litres) or not 0 <= litres <= MAX_REGISTER_L:
            raise ValueError(f"register value out of range: {litres!r} L")
        return self

    @property
    def litres(self) -> float:
        return self.total_l if self.total_l is not None else float(self.total_m3 or 0.0) * 1000.0


class MeterMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    meter_id: str = Field(pattern=METER_ID_PATTERN)
    readings: list[ReadingIn] = Field(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)
    battery_pct: float | None = Field(None, ge=0, le=100)
    rssi: float | None = Field(None, ge=-200, le=50)


@dataclass(slots=True, frozen=True)
class ParsedReading:
    ts: float
    total_l: float
    utc_offset_s: int


@dataclass(slots=True, frozen=True)
class ParsedMessage:
    meter_id: str
    readings: list[ParsedReading]  # sorted by ts
    battery_pct: float | None
    rssi: float | None


def parse_message(payload: bytes, topic_meter_id: str | None = None) -> ParsedMessage:
    """Validate one MQTT payload.

    >>> m = parse_message(b'{"meter_id": "m1", "readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_m3": 1.5}]}')
    >>> m.readings[0].total_l, m.readings[0].utc_offset_s
    (1500.0, 28800)
    >>> parse_message(b'{"meter_id": "m1", "readings": []}')
    Traceback (most recent call last):
    ...
    ingest.payload.PayloadError: readings: List should have at least 1 item after validation, not 0
    """
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PayloadError("payload is not a JSON object")
    meter_hint = raw.get("meter_id") if isinstance(raw.get("meter_id"), str) else None
    try:
        message = MeterMessage.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(_describe(exc), meter_hint) from None
    if topic_meter_id is not None and topic_meter_id != message.meter_id:
        raise PayloadError(
            f"meter_id {message.meter_id!r} does not match topic meter {topic_meter_id!r}", message.meter_id
        )
    readings = sorted(
        (ParsedReading(r.ts.timestamp(), r.litres, int(r.ts.utcoffset().total_seconds())) for r in message.readings),  # type: ignore[union-attr]
        key=lambda r: r.ts,
    )
    return ParsedMessage(message.meter_id, readings, message.battery_pct, message.rssi)


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
