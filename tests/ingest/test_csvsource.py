"""Replay CSVs: the fast paths of ``iter_csv`` give exactly the rows of csv.reader and fromisoformat."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path
from typing import Any

import pytest

from ingest.csvsource import BadRow, CsvReading, _row, _TimeCache, iter_csv, open_text


def _reference(path: Path) -> list[CsvReading | BadRow]:
    """Every row parsed the slow way: csv.reader, then ``fromisoformat`` for each timestamp."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        columns = [c.strip() for c in next(reader)]
        i_meter, i_ts = columns.index("meter_id"), columns.index("ts")
        scale, name = (1.0, "total_l") if "total_l" in columns else (1000.0, "total_m3")
        i_total = columns.index(name)
        cache = _TimeCache()  # filled, never read: ``_row`` always parses in full
        rows = enumerate(reader, start=2)
        return [_row(row, line, i_meter, i_ts, i_total, scale, cache) for line, row in rows if row]  # blank: no row


def _messy_rows(rng: random.Random, n: int) -> list[str]:
    """Mostly common rows, with every shape the fast paths must hand over to the full parse."""
    odd = [
        "",  # blank line
        "M1",
        "M1,2016-03-01T00:57:10+01:00",
        ",2016-03-01T00:57:10+01:00,5",
        "M1,2016-03-01T00:57:10+01:00,-5",
        "M1,2016-03-01T00:57:10+01:00,nan",
        "M1,2016-03-01T00:57:10+01:00,inf",
        "M1,2016-03-01T00:57:10+01:00,1e12",
        "M1,2016-03-01T00:57:10+01:00, 7 ",
        "M1,2016-03-01T00:57:60+01:00,5",
        "M1,2016-03-01T00:60:10+01:00,5",
        "M1,2016-03-01T24:57:10+01:00,5",
        "M1,2016-03-01 00:57:10+01:00,5",
        "M1,2016-03-01T00:57:10.5+01:00,5",
        "M1,2016-03-01T00:57:10+0100,5",
        "M1,2016-03-01T00:57:10Z,5",
        "M1,2016-03-01T00:57:10,5",
        "M1,2016-02-30T00:57:10+01:00,5",
        "M1,2016-03-01T00:57:10-03:30,5",
        "M1,2016-03-01T00:57:10+01:00,5,extra",
        "M1,not-a-time,5",
    ]
    rows = []
    for _ in range(n):
        if rng.random() < 0.1:
            rows.append(rng.choice(odd))
            continue
        day, hour, minute, second = rng.randint(1, 3), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        offset = rng.choice(("+01:00", "+02:00", "+08:00"))
        ts = f"2016-03-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{offset}"
        rows.append(f"M{rng.randint(1, 3)},{ts},{rng.randint(0, 999)}")
    return rows


@pytest.mark.parametrize("block_chars", [7, 64, 1 << 20])
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_rows_match_the_slow_parse(tmp_path: Path, block_chars: int, ending: str) -> None:
    rng = random.Random(len(ending) * 1000 + block_chars)
    text = "meter_id,ts,total_l" + ending + ending.join(_messy_rows(rng, 600))
    for name, data in (("plain.csv", text), ("no-last-newline.csv", text.rstrip())):
        path = tmp_path / name
        path.write_bytes(data.encode())
        assert list(iter_csv(path, block_chars=block_chars)) == _reference(path)


@pytest.mark.parametrize("block_chars", [5, 50, 1 << 20])
def test_quotes_midway_hand_the_rest_to_the_csv_module(tmp_path: Path, block_chars: int) -> None:
    rows = _messy_rows(random.Random(2), 200)
    rows[120:120] = ['"M9","2016-03-01T00:57:10+01:00","12"', '"M\n9",2016-03-01T01:57:10+01:00,13', "M9,\r"]
    path = tmp_path / "quoted.csv.gz"
    path.write_bytes(gzip.compress(("total_m3,ts,meter_id,x\n" + "\n".join(rows) + "\n").encode()))
    assert list(iter_csv(path, block_chars=block_chars)) == _reference(path)


def test_common_rows_take_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("meter_id,ts,total_l\nm1,2016-03-01T00:57:10+01:00,1\nm1,2016-03-01T00:58:11+01:00,2\n")
    first, second = iter_csv(path)
    assert isinstance(first, CsvReading) and isinstance(second, CsvReading)
    assert second.ts - first.ts == 61.0 and second.utc_offset_s == 3600


@pytest.mark.parametrize("packed", [False, True])
def test_a_byte_order_mark_and_a_row_not_in_utf8_do_not_refuse_the_file(tmp_path: Path, packed: bool) -> None:
    """A spreadsheet's export starts with a BOM: 'header needs meter_id and ts columns, got [meter_id, ts, ...]'.

    One row with a byte that is not UTF-8 ended the whole replay with a decoding error at a byte position;
    it is a malformed row like any other, set aside in place while the rows around it replay.
    """
    text = (
        b"\xef\xbb\xbfmeter_id,ts,total_l\n"
        b"M1,2016-03-01T00:57:10+01:00,1\n"
        b"M\xff1,2016-03-01T00:58:10+01:00,2\n"
        b"M1,2016-03-01T00:59:10+01:00,3\xe9\n"
        b"M1,2016-03-01T01:00:10+01:00,4\n"
    )
    path = tmp_path / ("r.csv.gz" if packed else "r.csv")
    path.write_bytes(gzip.compress(text) if packed else text)
    rows = list(iter_csv(path))
    assert [r.total_l for r in rows if isinstance(r, CsvReading)] == [1.0, 4.0]
    assert [r.line for r in rows if isinstance(r, BadRow)] == [3, 4]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_file_in_utf16_with_its_byte_order_mark_is_read(tmp_path: Path, packed: bool, encoding: str) -> None:
    """A CSV saved as "Unicode" (Windows PowerShell's `> file`, Excel's and Notepad's Unicode text) starts with
    the UTF-16 byte order mark: read as UTF-8 it was 'header needs meter_id and ts columns, got
    ['\\ufffd\\ufffdm\\x00e\\x00t\\x00...']', the whole file refused."""
    text = "meter_id,ts,total_l\r\nM1,2016-03-01T00:57:10+01:00,1\r\nM1,2016-03-01T00:58:10+01:00,2\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # Python's utf-16 writes the machine's order; the other one is marked too
    path = tmp_path / ("r.csv.gz" if packed else "r.csv")
    path.write_bytes(gzip.compress(data) if packed else data)
    rows = list(iter_csv(path))
    assert [r.total_l for r in rows if isinstance(r, CsvReading)] == [1.0, 2.0], rows


def test_a_quote_never_closed_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys: Any) -> None:
    """A stray quote at a row's start reads the rest of the file as one field: past the csv module's limit
    (128 KiB) `tapwatch replay` died with a traceback of ``_csv.Error``, naming neither the file nor the line."""
    from tapwatch.cli import main

    rows = ["meter_id,ts,total_l", "M1,2016-03-01T00:57:10+01:00,1", '"M1,2016-03-01T00:58:10+01:00,2']
    rows += [f"M1,2016-03-{1 + k // 1440:02d}T{k // 60 % 24:02d}:{k % 60:02d}:10+01:00,{k}" for k in range(3, 5000)]
    path = tmp_path / "r.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"r\.csv: line 3: field larger than field limit"):
        list(iter_csv(path))
    assert main(["replay", str(path)]) == 2
    assert "line 3" in capsys.readouterr().err


def test_a_gzip_file_cut_short_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys: Any) -> None:
    """A replay file whose copy was interrupted: `tapwatch replay` died with a traceback of ``EOFError``."""
    from tapwatch.cli import main

    rows = ["meter_id,ts,total_l"]
    rows += [f"M1,2016-03-{1 + k // 1440:02d}T{k // 60 % 24:02d}:{k % 60:02d}:10+01:00,{k}" for k in range(5000)]
    packed = gzip.compress(("\n".join(rows) + "\n").encode())
    path = tmp_path / "r.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=r"r\.csv\.gz: Compressed file ended before"):
        list(iter_csv(path))
    assert main(["replay", str(path)]) == 2
    assert "Compressed file ended" in capsys.readouterr().err


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_blank_lines_are_no_rows(tmp_path: Path, ending: str) -> None:
    """An editor's trailing empty line (or a blank one between blocks) was 'line 3: missing columns', a malformed
    row dead-lettered in every replay's summary; the csv module and spreadsheets read a blank line as no row."""
    rows = ["meter_id,ts,total_l", "M1,2016-03-01T00:57:10+01:00,1", "", "M1,2016-03-01T01:57:10+01:00,2", "", ""]
    path = tmp_path / "r.csv"
    path.write_bytes(ending.join(rows).encode())
    read = list(iter_csv(path))
    assert [r for r in read if isinstance(r, BadRow)] == []
    assert [r.total_l for r in read if isinstance(r, CsvReading)] == [1.0, 2.0]


def test_header_names_are_read_whatever_their_case(tmp_path: Path) -> None:
    """An export that writes 'Meter_ID,TS,Total_L' was refused whole: 'header needs meter_id and ts columns'."""
    path = tmp_path / "r.csv"
    path.write_text(" Meter_ID ,TS, Total_L\nM1,2016-03-01T00:57:10+01:00,1\n")
    assert [r.total_l for r in iter_csv(path) if isinstance(r, CsvReading)] == [1.0]


def test_spaces_around_fields_are_not_part_of_them(tmp_path: Path) -> None:
    """'M1, 2016-03-01T00:57:10+01:00, 1' (a space after each comma, as people type CSV) was a malformed row:
    'Invalid isoformat string: ' 2016-03-01T00:57:10+01:00''; the header's names were already stripped."""
    path = tmp_path / "r.csv"
    path.write_text("meter_id, ts, total_l\nM1, 2016-03-01T00:57:10+01:00, 1\n M1 ,2016-03-01T01:57:10+01:00 ,2\n")
    read = list(iter_csv(path))
    assert [r for r in read if isinstance(r, BadRow)] == []
    assert [(r.meter_id, r.ts, r.total_l) for r in read if isinstance(r, CsvReading)] == [
        ("M1", 1456790230.0, 1.0),
        ("M1", 1456793830.0, 2.0),
    ]


def test_timestamps_in_epoch_seconds_or_milliseconds_are_read(tmp_path: Path) -> None:
    """A logger's export with epoch times was all malformed rows, the milliseconds ones as 'month must be in
    1..12'. Epoch times are UTC: seconds or milliseconds of the years 2000-2099 are read, any other number is
    refused naming what a number must be."""
    path = tmp_path / "r.csv"
    path.write_text(
        "meter_id,ts,total_l\nM1,1456790230,1\nM1,1456793830500,2\nM1,1456793830.25,3\nM1,12345678901234567,4\n"
    )
    read = list(iter_csv(path))
    assert read[:3] == [
        CsvReading("M1", 1456790230.0, 1.0, 0),
        CsvReading("M1", 1456793830.5, 2.0, 0),
        CsvReading("M1", 1456793830.25, 3.0, 0),
    ]
    assert isinstance(read[3], BadRow) and read[3].line == 5
    assert "epoch seconds or milliseconds of the years 2000-2099" in read[3].reason


def test_a_file_separated_by_semicolons_is_refused_saying_so(tmp_path: Path) -> None:
    """A spreadsheet set to a European locale writes 'meter_id;ts;total_l' and decimal commas: refused as
    'header needs meter_id and ts columns, got ['meter_id;ts;total_l']', which does not say what is wrong."""
    path = tmp_path / "r.csv"
    path.write_text("meter_id;ts;total_l\nM1;2016-03-01T00:57:10+01:00;1,5\n")
    with pytest.raises(ValueError, match=r"r\.csv: columns separated by ';', not ',': save it as CSV with commas"):
        list(iter_csv(path))


def test_a_register_value_that_is_no_reading_is_refused_saying_so(tmp_path: Path) -> None:
    """'NaN' was 'missing or invalid meter id or register value out of range' (which of the two?), a decimal
    comma 'could not convert string to float: '123,5'' (Python's words, no cure)."""
    path = tmp_path / "r.csv"
    path.write_text('meter_id,ts,total_l\nM1,2016-03-01T00:57:10+01:00,NaN\nM1,2016-03-01T01:57:10+01:00,"123,5"\n')
    nan, comma = iter_csv(path)
    assert isinstance(nan, BadRow) and nan.reason == "register value 'NaN' is not a reading (0 to 1e+10 litres)"
    assert (
        isinstance(comma, BadRow)
        and comma.reason == "register value '123,5' is not a number (decimal comma? write 123.5)"
    )


@pytest.mark.parametrize(
    "row",
    [
        "M1,2016-03-01T00:57:10+01:00," + "1" * 10_000_000,  # a register of 10 MB of digits: no number
        "M1,2016-03-01T00:57:10+01:00,1" + "x" * 10_000_000,
        "M1,2016-03-01T" + "9" * 10_000_000 + ",1",  # a timestamp of 10 MB: fromisoformat quotes it whole
    ],
)
def test_a_reason_quotes_a_10_mb_field_no_further_than_the_row(tmp_path: Path, row: str) -> None:
    """A row's text is kept to 200 characters, but its reason quoted the field whole: a 10 MB line of a damaged
    export became a 10 MB line on the terminal (replay and eval print the first bad rows' reasons)."""
    path = tmp_path / "r.csv"
    path.write_text(f"meter_id,ts,total_l\n{row}\n")
    (bad,) = iter_csv(path)
    assert isinstance(bad, BadRow) and bad.line == 2
    assert len(bad.reason) <= 200 and len(bad.text) <= 200
    assert bad.reason.startswith(("register value '1", "unparsable value: "))
