"""Read replay files: CSV with ``meter_id,ts,total_l`` (or ``total_m3``), plain or gzip.

Rows that cannot be used come out as :class:`BadRow` with a reason, in place,
so a replay dead-letters them exactly like the live pipeline would.
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

from ingest.payload import MAX_REGISTER_L


@dataclass(slots=True, frozen=True)
class CsvReading:
    meter_id: str
    ts: float
    total_l: float
    utc_offset_s: int


@dataclass(slots=True, frozen=True)
class BadRow:
    line: int
    reason: str
    text: str


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
        offsets: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            yield _row(row, line, i_meter, i_ts, i_total, scale, offsets)


def _row(
    row: list[str], line: int, i_meter: int, i_ts: int, i_total: int, scale: float, offsets: dict[str, int]
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
    suffix = ts_text[-6:]
    offset = offsets.get(suffix)
    if offset is None:
        offset = offsets[suffix] = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
    return CsvReading(meter_id, moment.timestamp(), total, offset)
