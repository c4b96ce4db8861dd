"""Read replay files: CSV with ``meter_id,ts,total_l`` (or ``total_m3``), plain or gzip.

Rows that cannot be used come out as :class:`BadRow` with a reason, in place,
so a replay dead-letters them exactly like the live pipeline would.

Parsing is the largest cost of a replay, so the common row shape
(``2016-03-01T00:57:10+01:00``) takes a fast path: the date with its UTC offset
is parsed once and looked up afterwards, the time of day is read from its
digits. Anything else goes through :meth:`datetime.fromisoformat`, which also
words the errors.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
>>> _ = path.write_text("meter_id,ts,total_l\\nm1,2016-03-01T00:57:10+01:00,351583\\nm1,2016-03-01 01:57,9\\n")
>>> for row in iter_csv(path):
...     print(row)
CsvReading(meter_id='m1', ts=1456790230.0, total_l=351583.0, utc_offset_s=3600)
BadRow(line=3, reason='timestamp has no UTC offset', text='m1,2016-03-01 01:57,9')
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from ingest.payload import MAX_REGISTER_L

#: Length of ``YYYY-MM-DDTHH:MM:SS+HH:MM``, the shape the fast path knows.
_COMMON_TS_LEN = 25


class CsvReading(NamedTuple):
    """One usable row (a tuple: cheap to make, immutable)."""

    meter_id: str
    ts: float
    total_l: float
    utc_offset_s: int


@dataclass(slots=True, frozen=True)
class BadRow:
    line: int
    reason: str
    text: str


#: Seconds of each valid two-digit hour, and of each minute or second, as written in a timestamp.
_HOUR_S = {f"{h:02d}": h * 3600 for h in range(24)}
_MINUTE_S = {f"{m:02d}": m * 60 for m in range(60)}
_SECOND_S = {f"{s:02d}": s for s in range(60)}


class _TimeCache:
    """Epoch seconds of common-shape timestamps: the day from a table filled by full parses.

    A fixed UTC offset makes the epoch linear in the time of day, so
    ``epoch = day_base[date + offset] + seconds(HH:MM:SS)`` exactly. Only days of
    timestamps that parsed are stored, all with the ``+HH:MM`` punctuation, and the
    time of day is read only from valid two-digit fields, so every combination the
    fast path accepts is a timestamp ``fromisoformat`` accepts with the same value.
    """

    __slots__ = ("days",)

    def __init__(self) -> None:
        self.days: dict[str, tuple[float, int]] = {}  # date + offset text -> (epoch of local midnight, offset s)

    def remember(self, text: str, moment: datetime, epoch: float, offset: int) -> None:
        """Store the day of a timestamp that ``fromisoformat`` accepted with an offset."""
        if len(text) != _COMMON_TS_LEN or moment.microsecond or text[4] != "-" or text[7] != "-":
            return  # not a calendar date with whole seconds
        if text[10] != "T" or text[13] != ":" or text[16] != ":" or text[19] not in "+-" or text[22] != ":":
            return
        seconds = moment.hour * 3600 + moment.minute * 60 + moment.second
        self.days[text[:10] + text[19:]] = (epoch - seconds, offset)


def open_text(path: str | Path) -> io.TextIOBase:
    path = Path(path)
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def iter_csv(path: str | Path) -> Iterator[CsvReading | BadRow]:
    """Readings in file order; malformed rows as :class:`BadRow`."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        columns = [c.strip() for c in header]
        try:
            i_meter, i_ts = columns.index("meter_id"), columns.index("ts")
        except ValueError:
            raise ValueError(f"{path}: header needs meter_id and ts columns, got {columns}") from None
        scale, i_total = (1.0, columns.index("total_l")) if "total_l" in columns else (1000.0, -1)
        if i_total < 0:
            if "total_m3" not in columns:
                raise ValueError(f"{path}: header needs total_l or total_m3, got {columns}")
            i_total = columns.index("total_m3")
        yield from _rows(reader, i_meter, i_ts, i_total, scale)


def _rows(
    reader: Iterator[list[str]], i_meter: int, i_ts: int, i_total: int, scale: float
) -> Iterator[CsvReading | BadRow]:
    # One loop with local names: this runs once per row of files with millions of rows.
    cache = _TimeCache()
    days = cache.days
    hours, minutes, seconds_of = _HOUR_S.get, _MINUTE_S.get, _SECOND_S.get
    make = tuple.__new__
    width = max(i_meter, i_ts, i_total)
    for line, row in enumerate(reader, start=2):
        if len(row) > width:
            meter_id, ts_text, total_text = row[i_meter], row[i_ts], row[i_total]
            if len(ts_text) == _COMMON_TS_LEN and ts_text[10] == "T" and ts_text[13] == ":" and ts_text[16] == ":":
                day = days.get(ts_text[:10] + ts_text[19:])
                hour, minute, second = hours(ts_text[11:13]), minutes(ts_text[14:16]), seconds_of(ts_text[17:19])
                if day is not None and hour is not None and minute is not None and second is not None and meter_id:
                    seconds = hour + minute + second
                    try:
                        total = float(total_text) * scale
                    except ValueError:
                        total = -1.0  # the full parse words the error
                    if 0.0 <= total <= MAX_REGISTER_L:  # also false for NaN and infinities
                        yield make(CsvReading, (meter_id, day[0] + seconds, total, day[1]))
                        continue
        yield _row(row, line, i_meter, i_ts, i_total, scale, cache)


def _row(
    row: list[str], line: int, i_meter: int, i_ts: int, i_total: int, scale: float, cache: _TimeCache
) -> CsvReading | BadRow:
    try:
        meter_id, ts_text, total_text = row[i_meter], row[i_ts], row[i_total]
    except IndexError:
        return BadRow(line, "missing columns", ",".join(row)[:200])
    try:
        moment = datetime.fromisoformat(ts_text)
        total = float(total_text) * scale
    except ValueError as exc:
        return BadRow(line, f"unparsable value: {exc}", ",".join(row)[:200])
    if moment.tzinfo is None:
        return BadRow(line, "timestamp has no UTC offset", ",".join(row)[:200])
    if not meter_id or not math.isfinite(total) or not 0 <= total <= MAX_REGISTER_L:
        return BadRow(line, "missing meter id or register value out of range", ",".join(row)[:200])
    offset = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
    epoch = moment.timestamp()
    cache.remember(ts_text, moment, epoch, offset)
    return CsvReading(meter_id, epoch, total, offset)
