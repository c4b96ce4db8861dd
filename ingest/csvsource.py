"""Read replay files: CSV with ``meter_id,ts,total_l`` (or ``total_m3``), plain or gzip, UTF-8 or UTF-16.

Rows that cannot be used come out as :class:`BadRow` with a reason, in place,
so a replay dead-letters them exactly like the live pipeline would. Blank lines
are no rows (as for :mod:`csv` and spreadsheets) and are skipped.

Parsing is the largest cost of a replay, so the common case takes a fast path.
The file is read in large blocks and split into lines and fields with
``str.split`` (blocks with quotes or carriage returns go through the
:mod:`csv` module, which gives the same rows for plain ones). The common
timestamp shape (``2016-03-01T00:57:10+01:00``) is looked up: the hour with its
UTC offset in a table filled by full parses, the minutes and seconds in a table
of their 3,600 spellings. Anything else goes through
:meth:`datetime.fromisoformat`, which also words the errors.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
>>> _ = path.write_text("meter_id,ts,total_l\\nm1,2016-03-01T00:57:10+01:00,351583\\nm1,2016-03-01 01:57,9\\n")
>>> for row in iter_csv(path):
...     print(row)
CsvReading(meter_id='m1', ts=1456790230.0, total_l=351583.0, utc_offset_s=3600)
BadRow(line=3, reason='timestamp has no UTC offset', text='m1,2016-03-01 01:57,9')
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import math
import operator
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from ingest.payload import MAX_REGISTER_L, TS_MAX, TS_MIN, epoch_seconds, valid_meter_id

#: A timestamp written as an epoch number (seconds or milliseconds of 2000-2099 have 9 to 13 digits).
_EPOCH_NUMBER = re.compile(r"\d{9,}(\.\d+)?")
#: Why an epoch number is refused.
NOT_AN_EPOCH = "timestamp as a number must be epoch seconds or milliseconds of the years 2000-2099"
#: Characters of a field a reason quotes (a row's text is kept to 200): a damaged export's 10 MB field would
#: otherwise be a 10 MB line where replay and eval print the first bad rows.
QUOTED_CHARS = 40
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


#: Seconds past the hour of each valid ``MM:SS``, as written in a timestamp.
_MINUTE_SECOND_S = {f"{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(60)}
#: Decoded characters read at a time: one ``split`` per block instead of a readline per row.
BLOCK_CHARS = 1 << 20


class _TimeCache:
    """Epoch seconds of common-shape timestamps: the hour from a table filled by full parses.

    A fixed UTC offset makes the epoch linear in the time, so
    ``epoch = hours[date, hour, offset] + seconds(MM:SS)`` exactly. Only hours of
    timestamps that parsed are stored, keyed by their text with all its punctuation,
    and minutes and seconds are read only from valid two-digit fields, so every
    combination the fast path accepts is a timestamp ``fromisoformat`` accepts with
    the same value.
    """

    __slots__ = ("hours",)

    def __init__(self) -> None:
        # ``YYYY-MM-DDTHH:`` + ``+HH:MM`` -> (epoch of the hour's start, offset s)
        self.hours: dict[str, tuple[float, int]] = {}

    def remember(self, text: str, moment: datetime, epoch: float, offset: int) -> None:
        """Store the hour of a timestamp that ``fromisoformat`` accepted with an offset."""
        if len(text) != _COMMON_TS_LEN or moment.microsecond or text[4] != "-" or text[7] != "-":
            return  # not a calendar date with whole seconds
        if text[10] != "T" or text[13] != ":" or text[16] != ":" or text[19] not in "+-" or text[22] != ":":
            return
        self.hours[text[:14] + text[19:]] = (epoch - (moment.minute * 60 + moment.second), offset)


def open_text(path: str | Path) -> io.TextIOBase:
    path = Path(path)
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else path.open("rb")  # noqa: SIM115 (closed with the wrapper returned)
    # A file saved as "Unicode" (Windows PowerShell's `> file`, Notepad, Excel) is UTF-16 behind its byte order
    # mark, which the utf-16 codec reads and drops.
    unicode_text = raw.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    # utf-8-sig: a spreadsheet's export starts with a byte order mark, which would hide the first column's
    # name. A byte that is not UTF-8 becomes U+FFFD, which no meter id, time or number holds: its row is a
    # BadRow like any other, where a decoding error would end the whole file.
    encoding = "utf-16" if unicode_text else "utf-8-sig"
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")


def iter_csv(path: str | Path, block_chars: int = BLOCK_CHARS) -> Iterator[CsvReading | BadRow]:
    """Readings in file order; malformed rows as :class:`BadRow`."""
    try:
        yield from _read(path, block_chars)
    except (csv.Error, EOFError, zlib.error) as exc:
        # A quote never closed, a gzip file cut short or damaged: the file's error, a ValueError as the
        # header's is (the commands print it on one line), not a traceback.
        raise ValueError(f"{path}: {exc}") from None


def _read(path: str | Path, block_chars: int) -> Iterator[CsvReading | BadRow]:
    with open_text(path) as handle:
        header = next(csv.reader(handle), None)
        if header is None:
            return
        written = [c.strip() for c in header]
        columns = [c.lower() for c in written]  # an export's 'Meter_ID,TS,Total_L' names the same columns
        try:
            i_meter, i_ts = columns.index("meter_id"), columns.index("ts")
        except ValueError:
            if len(columns) == 1 and ";" in columns[0]:  # a European locale's export: ';' and decimal commas
                raise ValueError(
                    f"{path}: columns separated by ';', not ',': save it as CSV with commas (and '.' for decimals)"
                ) from None
            raise ValueError(f"{path}: header needs meter_id and ts columns, got {written}") from None
        scale, i_total = (1.0, columns.index("total_l")) if "total_l" in columns else (1000.0, -1)
        if i_total < 0:
            if "total_m3" not in columns:
                raise ValueError(f"{path}: header needs total_l or total_m3, got {written}")
            i_total = columns.index("total_m3")
        yield from _rows(handle, block_chars, i_meter, i_ts, i_total, scale)


def _rows(
    handle: io.TextIOBase, block_chars: int, i_meter: int, i_ts: int, i_total: int, scale: float
) -> Iterator[CsvReading | BadRow]:
    """Rows from blocks of text split on newlines and commas, common ones parsed from the tables.

    Without quotes and carriage returns a CSV line is its fields joined by commas, so
    ``split`` gives exactly the rows of :mod:`csv`. From the first block with either, the
    rest of the file is left to ``csv.reader`` and the full parse.
    """
    # One loop with local names: this runs once per row of files with millions of rows.
    cache = _TimeCache()
    hours = cache.hours.get
    minute_second = _MINUTE_SECOND_S.get
    pick = operator.itemgetter(i_meter, i_ts, i_total)
    make, reading, max_l = tuple.__new__, CsvReading, MAX_REGISTER_L
    valid_ids: set[str] = set()  # meter ids seen to match the pattern: checked once each, not once per row
    line = 1
    tail = ""
    while True:
        block = handle.read(block_chars)
        text = tail + block
        if '"' in text or "\r" in text:
            # The rest of the line, so the csv module starts on a line boundary (quoted
            # fields may span lines; ``newline=""`` splits lines as the file handle does).
            text += handle.readline()
            reader = csv.reader(itertools.chain(io.StringIO(text, newline=""), handle))
            number = line
            try:
                for number, row in enumerate(reader, start=line + 1):
                    if row:  # a blank line is no row (an editor's trailing one): not a malformed reading
                        yield _row(row, number, i_meter, i_ts, i_total, scale, cache)
            except csv.Error as exc:
                # A quote never closed reads the rest of the file as one field, up to the module's limit.
                raise csv.Error(f"line {number + 1}: {exc} (a quote not closed?)") from None
            return
        if block:
            cut = text.rfind("\n")
            if cut < 0:
                tail = text
                continue
            tail, text = text[cut + 1 :], text[:cut]
        elif not text:
            return
        for text_line in text.split("\n"):
            line += 1
            row = text_line.split(",")
            try:
                meter_id, ts_text, total_text = pick(row)
            except IndexError:  # too few fields; a blank line, one empty field, is no row at all
                if text_line:
                    yield _row(row, line, i_meter, i_ts, i_total, scale, cache)
                continue
            # The tables' keys are 20 characters: only a 25-character timestamp can match.
            hour = hours(ts_text[:14] + ts_text[19:])
            seconds = minute_second(ts_text[14:19])
            if meter_id not in valid_ids and valid_meter_id(meter_id):
                valid_ids.add(meter_id)
            if hour is not None and seconds is not None and meter_id in valid_ids:
                try:
                    total = float(total_text) * scale
                except ValueError:
                    total = -1.0  # the full parse words the error
                if 0.0 <= total <= max_l:  # also false for NaN and infinities
                    yield make(reading, (meter_id, hour[0] + seconds, total, hour[1]))
                    continue
            yield _row(row, line, i_meter, i_ts, i_total, scale, cache)
        if not block:
            return


def _row(
    row: list[str], line: int, i_meter: int, i_ts: int, i_total: int, scale: float, cache: _TimeCache
) -> CsvReading | BadRow:
    try:
        # Spaces around a field are no part of it ('M1, 2016-03-01T00:57:10+01:00, 1', as people type CSV).
        meter_id, ts_text, total_text = row[i_meter].strip(), row[i_ts].strip(), row[i_total].strip()
    except IndexError:
        return BadRow(line, "missing columns", ",".join(row)[:200])
    try:
        when = _when(ts_text, cache)
    except ValueError as exc:
        # fromisoformat's words quote the whole timestamp
        return BadRow(line, f"unparsable value: {str(exc)[: QUOTED_CHARS * 3]}", ",".join(row)[:200])
    if isinstance(when, str):
        return BadRow(line, when, ",".join(row)[:200])
    total = _litres(total_text, scale)
    if isinstance(total, str):
        return BadRow(line, total, ",".join(row)[:200])
    if not valid_meter_id(meter_id):
        return BadRow(line, "missing or invalid meter id", ",".join(row)[:200])
    return CsvReading(meter_id, when[0], total, when[1])


def _litres(total_text: str, scale: float) -> float | str:
    """A register value in litres, or why it is no reading (worded for the person who wrote the file)."""
    try:
        total = float(total_text) * scale
    except ValueError:
        hint = f" (decimal comma? write {quoted(total_text.replace(',', '.'))[1:-1]})" if "," in total_text else ""
        return f"register value {quoted(total_text)} is not a number{hint}"
    if not math.isfinite(total) or not 0 <= total <= MAX_REGISTER_L:  # NaN and infinities too
        return f"register value {quoted(total_text)} is not a reading (0 to {MAX_REGISTER_L:g} litres)"
    return total


def quoted(text: str) -> str:
    """``text`` quoted for a reason (or a list on stderr): its first :data:`QUOTED_CHARS` characters, ``...`` if
    longer.

    >>> quoted("123,5"), quoted("9" * 50)
    ("'123,5'", "'9999999999999999999999999999999999999999...'")
    """
    return repr(text) if len(text) <= QUOTED_CHARS else repr(text[:QUOTED_CHARS] + "...")


def _when(ts_text: str, cache: _TimeCache) -> tuple[float, int] | str:
    """A timestamp's epoch seconds and UTC offset, or why it is refused; ValueError if it is no time at all.

    A number of 9 digits or more is an epoch time (UTC, offset 0), in seconds or milliseconds
    (:func:`ingest.payload.epoch_seconds`); shorter ones are left to ``fromisoformat`` (``20160301`` is a date).
    """
    if _EPOCH_NUMBER.fullmatch(ts_text):
        epoch = epoch_seconds(float(ts_text))
        return NOT_AN_EPOCH if epoch is None else (epoch, 0)
    moment = datetime.fromisoformat(ts_text)
    if moment.tzinfo is None:
        return "timestamp has no UTC offset"
    offset = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
    epoch = moment.timestamp()
    if not TS_MIN <= epoch < TS_MAX:  # the same bounds as live messages (ingest.payload): never stored
        return "timestamp outside the years 2000-2099"
    cache.remember(ts_text, moment, epoch, offset)
    return epoch, offset
