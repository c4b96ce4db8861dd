"""Validate meter messages. Anything unusable raises :class:`PayloadError` with a reason.

The message format is documented in the README ("The reading message").
The common shape (numbers as numbers, canonical ISO times) takes a hand-written
fast path; anything else, valid or not, goes through the pydantic models, which
alone decide what is accepted and word the reasons.

What a hostile or broken meter sends never reaches the store unchecked: meter
ids (from the payload or the topic) match :data:`METER_ID_PATTERN`, times lie
in :data:`TS_MIN`..:data:`TS_MAX`, and :func:`store_safe_text` makes the text
of a dead letter (reason, payload excerpt, topic) something every database
takes: no NUL, no lone surrogate, bounded length.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_READINGS_PER_MESSAGE = 1000
MAX_REGISTER_L = 1e10  # ten million cubic metres: no household register gets near it
METER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
_METER_ID = re.compile(METER_ID_PATTERN.strip("^$"))  # fullmatch: "$" alone would let a final newline in
#: Reading times outside these years are a broken clock, never data: 2000-01-01 and 2100-01-01 UTC.
#: Bounding them at parse keeps absurd values (year 9999, offset -14:00) out of every table and every
#: later conversion to a local date, which would overflow.
TS_MIN, TS_MAX = 946_684_800.0, 4_102_444_800.0


def epoch_seconds(number: float) -> float | None:
    """Epoch seconds of a time written as a number of the years 2000-2099: seconds, or milliseconds (as
    JavaScript and many exports write them; the two ranges are far apart); None if it is neither.

    >>> epoch_seconds(1_456_790_230), epoch_seconds(1_456_790_230_500), epoch_seconds(20160301)
    (1456790230.0, 1456790230.5, None)
    """
    if TS_MIN <= number < TS_MAX:
        return float(number)
    if TS_MIN * 1000 <= number < TS_MAX * 1000:
        return number / 1000
    return None


STAMP_CACHE_SIZE = 4096
_STAMPS: dict[str, tuple[float, int]] = {}
# Times the fast path reads with datetime.fromisoformat, which agrees with pydantic on exactly these.
#: What store_safe_text escapes: C0 controls but tab and newline, DEL (none is text a meter needs to show).
_UNSAFE_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CANONICAL_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")


class PayloadError(ValueError):
    """A message that cannot be used; ``reason`` says why in one line."""

    def __init__(self, reason: str, meter_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.meter_id = meter_id


def _not_a_boolean(value: object) -> object:
    # Pydantic reads true and false as 1 and 0 where a float is wanted: a firmware's flag would become a
    # register of 0 L (a meter "replaced") or a battery at 1 %.
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


class ReadingIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ts: datetime
    total_l: float | None = None
    total_m3: float | None = None

    _numbers = field_validator("total_l", "total_m3", mode="before")(_not_a_boolean)

    @field_validator("ts")
    @classmethod
    def _has_offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp has no UTC offset")
        if not TS_MIN <= value.timestamp() < TS_MAX:
            raise ValueError("timestamp outside the years 2000-2099 (meter clock wrong?)")
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

    _numbers = field_validator("battery_pct", "rssi", mode="before")(_not_a_boolean)


# Named tuples, not frozen dataclasses: built for every message, and a frozen dataclass costs ~1 us to build.
class ParsedReading(NamedTuple):
    ts: float
    total_l: float
    utc_offset_s: int


@dataclass(slots=True)
class RawMessage:
    """A message as it came off the wire, before validation; ``topic_meter_id`` is parsed from the topic.

    ``size`` is the payload's length on the wire when ``payload`` is only an excerpt of an oversized
    message (0: the payload is whole). ``retained``: the broker replayed it from its retained store.
    """

    source: str
    payload: bytes
    topic_meter_id: str | None = None
    received_at: float = 0.0
    qos: int = 1
    retained: bool = False
    size: int = 0


class ParsedMessage(NamedTuple):
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
    if topic_meter_id is not None and not valid_meter_id(topic_meter_id):
        raise PayloadError("the topic's meter id is not a valid meter id")
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON: {exc}", topic_meter_id) from None
    if not isinstance(raw, dict):
        raise PayloadError("payload is not a JSON object", topic_meter_id)
    try:
        parsed = _fast_path(raw) or _validated(raw)
    except PayloadError as exc:
        # Filed under the topic's meter (the one that sent it), not whatever the payload claims.
        exc.meter_id = topic_meter_id if topic_meter_id is not None else exc.meter_id
        raise
    if topic_meter_id is not None and topic_meter_id != parsed.meter_id:
        raise PayloadError(
            f"meter_id {parsed.meter_id!r} does not match topic meter {topic_meter_id!r}", topic_meter_id
        )
    return parsed


def valid_meter_id(value: object) -> bool:
    r"""Whether ``value`` is a meter id the store may hold (:data:`METER_ID_PATTERN`).

    >>> valid_meter_id("WM-0001"), valid_meter_id("WM\x00"), valid_meter_id("M1\n"), valid_meter_id("x" * 65)
    (True, False, False, False)
    """
    return type(value) is str and _METER_ID.fullmatch(value) is not None


def store_safe_text(value: str | bytes, limit: int) -> str:
    r"""``value`` as text any store accepts, at most ``limit`` characters: for dead letters' reasons, topics, excerpts.

    Bytes that are not UTF-8 and lone surrogates become backslash escapes, as do NUL
    (PostgreSQL refuses it in text) and the other C0 controls but tab and newline, so
    the excerpt shows what the meter sent without being able to break the INSERT.

    >>> print(store_safe_text(b'{"m": 1}\x00\xff\x1b', 100))
    {"m": 1}\x00\xff\x1b
    >>> print(store_safe_text("a\udc80b", 100), store_safe_text("abcdef", 3))
    a\udc80b abc
    """
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value[: 4 * limit]).decode("utf-8", "backslashreplace")
    else:
        text = value[: 4 * limit].encode("utf-8", "backslashreplace").decode("utf-8")
    if _UNSAFE_CHARS.search(text):
        text = _UNSAFE_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text[:limit]


def _validated(raw: dict[str, object]) -> ParsedMessage:
    hint = raw.get("meter_id")
    # A claimed id is only ever stored if it is a valid one.
    meter_hint = hint if isinstance(hint, str) and valid_meter_id(hint) else None
    try:
        message = MeterMessage.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(_describe(exc), meter_hint) from None
    readings = sorted(
        (ParsedReading(r.ts.timestamp(), r.litres, int(r.ts.utcoffset().total_seconds())) for r in message.readings),  # type: ignore[union-attr]
        key=lambda r: r.ts,
    )
    return ParsedMessage(message.meter_id, readings, message.battery_pct, message.rssi)


def _fast_path(raw: dict[str, object]) -> ParsedMessage | None:
    """The message if it has the common shape and is valid; None sends it to the full validation.

    Pydantic costs ~30 us a message, more than the rest of ingest; this costs a few.
    """
    meter_id, items = raw.get("meter_id"), raw.get("readings")
    if type(meter_id) is not str or not _METER_ID.fullmatch(meter_id) or type(items) is not list:
        return None
    if not 1 <= len(items) <= MAX_READINGS_PER_MESSAGE:
        return None
    battery, rssi = raw.get("battery_pct"), raw.get("rssi")
    if not (battery is None or (_is_number(battery) and 0 <= battery <= 100)):  # type: ignore[operator]
        return None
    if not (rssi is None or (_is_number(rssi) and -200 <= rssi <= 50)):  # type: ignore[operator]
        return None
    readings = []
    for item in items:
        reading = _fast_reading(item)
        if reading is None:
            return None
        readings.append(reading)
    if len(readings) > 1:
        readings.sort(key=lambda r: r.ts)
    return ParsedMessage(meter_id, readings, _as_float(battery), _as_float(rssi))


def _fast_reading(item: object) -> ParsedReading | None:
    if type(item) is not dict:
        return None
    stamp, litres, m3 = item.get("ts"), item.get("total_l"), item.get("total_m3")
    if type(stamp) is not str:
        return None
    if m3 is None and _is_number(litres):
        value = float(litres)  # type: ignore[arg-type]
    elif litres is None and _is_number(m3):
        value = float(m3) * 1000.0  # type: ignore[arg-type]
    else:
        return None
    if not (math.isfinite(value) and 0 <= value <= MAX_REGISTER_L):
        return None
    moment = _STAMPS.get(stamp) or _read_stamp(stamp)
    return None if moment is None else ParsedReading(moment[0], value, moment[1])


def _read_stamp(stamp: str) -> tuple[float, int] | None:
    """(epoch seconds, UTC offset) of a canonical ISO time, remembered: meters of a tick share their stamp."""
    if not _CANONICAL_TS.fullmatch(stamp):
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:  # no such date (a 30 February): the full validation words the reason
        return None
    offset = when.utcoffset()
    if offset is None or not TS_MIN <= when.timestamp() < TS_MAX:  # out of range: the full validation says so
        return None
    if len(_STAMPS) >= STAMP_CACHE_SIZE:
        _STAMPS.clear()
    moment = _STAMPS[stamp] = (when.timestamp(), int(offset.total_seconds()))
    return moment


def _is_number(value: object) -> bool:
    return type(value) is float or type(value) is int  # not bool, not a numeric string: those take the slow path


def _as_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
