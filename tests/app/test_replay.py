"""`tapwatch replay`: the live detectors over a CSV, one JSON alert per line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from engine.replay import Replayer
from ingest.csvsource import BadRow, CsvReading, iter_csv
from tapwatch.cli import main
from tests.helpers import iso

START = 1_763_913_600.0  # 2025-11-24 00:00 Asia/Shanghai


def _write_csv(path: Path, rows: list[tuple[str, str, str]], gz: bool = False) -> Path:
    text = "meter_id,ts,total_l\n" + "".join(f"{m},{t},{v}\n" for m, t, v in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _silent_meter_rows() -> list[tuple[str, str, str]]:
    rows, total = [], 1000.0
    for k in range(4 * 48):  # four days, half-hourly
        ts = START + k * 1800
        if k < 2 * 48 + 20 and (k % 48) in range(14, 44) and k % 3 == 0:
            total += 12.0  # normal daytime use on days 1-2 and the morning of day 3
        rows.append(("M1", iso(ts), f"{total:.0f}"))
    return rows


def test_replay_prints_alerts_as_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _silent_meter_rows()
    rows.insert(10, ("M1", "not-a-time", "5"))  # malformed rows are dead-lettered, not fatal
    rows.insert(20, ("M1", iso(START + 999), "-3"))
    path = _write_csv(tmp_path / "r.csv.gz", rows, gz=True)
    assert main(["replay", str(path)]) == 0
    out, err = capsys.readouterr()
    alerts = [json.loads(line) for line in out.splitlines()]
    alert = alerts[0]
    assert alert["kind"] == "no_activity"
    assert {"meter_id", "kind", "ts", "severity", "message"} <= set(alert)
    assert alert["ts"].endswith("+08:00")
    assert "2 malformed rows dead-lettered" in err


def test_a_reading_dated_years_ahead_is_refused_and_the_meter_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A meter's clock wrong for one reading on day 1: live dead-letters it (in the future when it came); replay
    # took it, and every later reading of the meter was late, so day 3's silence went unseen.
    rows = _silent_meter_rows()
    rows.insert(20, ("M1", "2031-06-01T08:00:00+08:00", rows[19][2]))
    assert main(["replay", str(_write_csv(tmp_path / "r.csv", rows))]) == 0
    out, err = capsys.readouterr()
    assert main(["replay", str(_write_csv(tmp_path / "clean.csv", _silent_meter_rows()))]) == 0
    clean = capsys.readouterr().out
    assert out == clean and "no_activity" in out
    assert "1 readings refused: timestamp in the future (meter clock wrong?)" in err
    assert "M1 2031-06-01T08:00:00+08:00" in err


def test_readings_delivered_hours_late_among_newer_ones_are_late_not_refused() -> None:
    # Day 2's morning (07:00-09:00, five readings) comes after 17:00's: live reads it late, refuses nothing.
    rows = [("M1", START + k * 1800, 1000.0 + k) for k in range(3 * 48)]
    block = rows[62:67]
    delivered = [*rows[:62], *rows[67:83], *block, *rows[83:]]
    replayer = Replayer()
    list(replayer.run(delivered))
    assert not replayer.refused and replayer.readings == len(rows)


def test_a_file_of_malformed_rows_and_refused_readings_is_counted_not_held(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every malformed row and refused reading stayed in memory to the end, though only ten of each are shown:
    3 million rows without a UTC offset (a whole export written in local time) held 600 MB."""
    bad = [("M1", f"2025-11-24 08:{k % 60:02d}:00", str(k)) for k in range(500)]  # no UTC offset
    # A clock wrong every other reading: 2031, then back to 2025 (live refused the one in the future each time).
    future = [("M2", "2031-06-01T08:00:00+08:00" if k % 2 else iso(START + k * 3600), str(k)) for k in range(400)]
    replayer = Replayer()
    list(replayer.run(iter_csv(_write_csv(tmp_path / "bad.csv", [*bad, *future]))))
    assert len(replayer.malformed.examples) <= 10 and len(replayer.refused.examples) <= 10
    assert (replayer.malformed.count, replayer.refused.count) == (500, 199)
    shown = replayer.malformed.examples
    assert [b.line for b in shown] == list(range(2, 2 + len(shown)))  # the first ones
    assert main(["replay", str(tmp_path / "bad.csv")]) == 0
    err = capsys.readouterr().err
    assert "500 malformed rows dead-lettered" in err and "199 readings refused" in err


def test_replay_thresholds_can_be_overridden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_csv(tmp_path / "r.csv", _silent_meter_rows())
    main(
        [
            "replay",
            str(path),
            "--set",
            "ceiling_hours=72",
            "--set",
            "learned_ceiling_hours=72",
            "--set",
            "sensitivity=1e-6",
        ]
    )
    assert capsys.readouterr().out.strip() == ""  # nothing fires within a 72 h ceiling on 38 h of silence
    assert main(["replay", str(path), "--set", "no_such_threshold"]) == 2
    assert main(["replay", str(path), "--set", "no_such_threshold=3"]) == 2
    assert "unknown thresholds" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("ceiling_hours=200", "ceiling_hours must be between 2 and 72 h, got 200"),
        ("sensitivity=nan", "sensitivity must be a finite number"),
        ("flow_margin_h=two", "--set flow_margin_h expects a number, got 'two'"),
    ],
)
def test_replay_refuses_a_threshold_the_api_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, error: str
) -> None:
    path = _write_csv(tmp_path / "r.csv", _silent_meter_rows())
    assert main(["replay", str(path), "--set", override]) == 2
    captured = capsys.readouterr()
    assert error in captured.err
    assert captured.out == ""  # refused before any alert is printed


def test_replay_takes_the_flow_knobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows, total = [], 1000.0
    for k in range(3 * 48 + 28 + 1):  # two days of a little use, then from 14:00 on day 3 a tap runs 6 h
        ts = START + k * 1800
        total += 90.0 if 2 * 48 + 28 <= k < 2 * 48 + 40 else (12.0 if k % 48 in (14, 36) else 0.0)
        rows.append(("M1", iso(ts), f"{total:.0f}"))
    path = _write_csv(tmp_path / "tap.csv", rows)
    first = {}
    for knobs in ([], ["--set", "flow_margin_h=3", "--set", "flow_run_factor=2"]):
        assert main(["replay", str(path), *knobs]) == 0
        alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        first[len(knobs)] = next(a["ts"] for a in alerts if a["kind"] == "continuous_flow")
    assert first[0] < first[4]  # the same tap, raised later with the larger margin and factor


def test_replay_refuses_a_file_without_the_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n")
    assert main(["replay", str(path)]) == 2
    assert "header needs meter_id and ts" in capsys.readouterr().err


def _three_meters(tmp_path: Path, grouped: bool) -> list[CsvReading | BadRow]:
    """Three meters (one goes silent, one glitches, one resets), grouped by meter or interleaved by time."""
    rows = _silent_meter_rows()
    glitchy = [("M2", t, str(int(v) + (248_000 if k == 60 else 0))) for k, (_, t, v) in enumerate(rows)]
    reset = [("M3", t, str(int(v) - (900 if k >= 120 else 0))) for k, (_, t, v) in enumerate(rows)]
    reset.insert(30, ("M3", iso(START + 400 * 86400), reset[29][2]))  # a clock wrong once: refused
    every = [*rows, ("M1", "not-a-time", "5"), *glitchy, *reset]
    if not grouped:
        every.sort(key=lambda row: row[1])
    return list(iter_csv(_write_csv(tmp_path / f"three-{grouped}.csv", every)))


@pytest.mark.parametrize("grouped", [True, False])
def test_the_replay_loop_finds_what_feeding_reading_by_reading_finds(tmp_path: Path, grouped: bool) -> None:
    rows = _three_meters(tmp_path, grouped)
    fed = Replayer()
    expected = [f for row in rows if isinstance(row, CsvReading) for f in fed.feed(row)]
    expected += fed.finish()
    looped = Replayer()
    assert list(looped.run(rows)) == expected
    # Sorted by time, the reading in the future comes last: no later reading shows it was.
    refused = [("M3", START + 400 * 86400)] if grouped else []
    assert [r[:2] for r in looped.refused.examples] == [r[:2] for r in fed.refused.examples] == refused
    assert {f.kind for f in expected} >= {"no_activity", "meter_fault"}
    assert looped.readings == fed.readings == len(rows) - 1 and looped.malformed.count == 1
    assert looped.meters.keys() == fed.meters.keys() == {"M1", "M2", "M3"}


@pytest.mark.slow
def test_replay_runs_to_the_end_on_the_real_households(real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(real_data)]) == 0
    out, err = capsys.readouterr()
    assert "replayed 418258 readings of 46 meters" in err
    for line in out.splitlines():
        record = json.loads(line)
        assert record["kind"] in {
            "no_activity",
            "continuous_flow",
            "high_usage",
            "low_usage",
            "routine_change",
            "meter_offline",
            "meter_fault",
        }


@pytest.mark.parametrize("command", ["replay", "eval"])
def test_a_mistyped_tz_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """`--tz Europe/Madird` replayed (or scored) the homes in Shanghai time without a word of refusal."""
    csv = tmp_path / "r.csv"
    csv.write_text("meter_id,ts,total_l\nM1,2026-01-05T00:00:00+01:00,1\n")
    args = ["replay", str(csv)] if command == "replay" else ["eval", "--csv", str(csv)]
    with pytest.raises(SystemExit) as done:
        main([*args, "--tz", "Europe/Madird"])
    assert done.value.code == 2
    assert "unknown time zone 'Europe/Madird'" in capsys.readouterr().err


def test_replay_speaks_the_configured_language_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`replay` wrote every "message" in Chinese whatever TAPWATCH_LANGUAGE said (its --language defaulted to zh),
    while `report` and the monitor's console follow the setting, as `replay --tz` follows TAPWATCH_TIMEZONE."""
    path = _write_csv(tmp_path / "r.csv", _silent_meter_rows())
    monkeypatch.setenv("TAPWATCH_LANGUAGE", "en")
    assert main(["replay", str(path)]) == 0
    alert = json.loads(capsys.readouterr().out.splitlines()[0])
    assert alert["message"] == alert["message_en"]
    assert main(["replay", str(path), "--language", "zh"]) == 0
    alert = json.loads(capsys.readouterr().out.splitlines()[0])
    assert alert["message"] != alert["message_en"]


def test_a_visit_delay_without_outcomes_is_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--visit-delay-h` times the visits of `--outcomes`: given alone it was accepted and changed nothing, and a
    replay meant to show a slower visit's lesson printed the same alerts as without it, exit 0."""
    path = _write_csv(tmp_path / "r.csv", _silent_meter_rows())
    assert main(["replay", str(path), "--visit-delay-h", "6"]) == 2
    assert "--outcomes" in capsys.readouterr().err


def test_a_file_not_in_time_order_says_how_many_readings_were_read_late(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A meter's rows written newest first: every reading after the first was late (stored, no usage counted), so
    the replay saw no water and no silence, and its summary said nothing. It says how many and which, and why."""
    rows = _silent_meter_rows()
    assert main(["replay", str(_write_csv(tmp_path / "r.csv", rows[::-1]))]) == 0
    err = capsys.readouterr().err
    assert f"{len(rows) - 1} readings older than their meter's newest one" in err, err
    assert f"M1 {rows[-2][1]}" in err  # the first of them
    assert main(["replay", str(_write_csv(tmp_path / "sorted.csv", rows))]) == 0
    assert "older than their meter's newest" not in capsys.readouterr().err
