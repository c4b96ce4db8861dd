"""The evaluation harness: injection, scoring and the side-by-side table."""

from __future__ import annotations

import argparse
import io
import itertools
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from core.domain import Finding, Interval
from detect import Thresholds
from tapwatch import evaluate as ev
from tests.conftest import REAL_DATA

REAL = REAL_DATA
HOUR = 3600.0


def _series(days: int = 40) -> dict[str, tuple[list[float], list[float], list[int]]]:
    """One home, hourly: 10 L at 07:00, 12:00 and 19:00 every day."""
    ts, total, offs = [], [], []
    level = 1000.0
    for h in range(days * 24):
        if h % 24 in (7, 12, 19):
            level += 10.0
        ts.append(h * HOUR)
        total.append(level)
        offs.append(0)
    return {"home": (ts, total, offs)}


def test_injected_fall_silences_the_home_and_leak_adds_flow() -> None:
    series = _series()
    out, truth = ev.inject(series, seed=3, every_days=6)
    assert truth, "some incidents placed"
    ts, total, _ = out["home"]
    for t in truth:
        assert t.end is not None
        inside = [i for i, x in enumerate(ts) if t.start < x <= t.end - HOUR]
        steps = [total[i] - total[i - 1] for i in inside[1:]]
        if t.kind == "fall":
            assert steps and all(s == 0 for s in steps)
        elif t.kind == "leak":
            assert all(s >= 0.3 * 60 - 1 for s in steps), "the leak never stops"
        else:
            assert max(steps, default=300.0) >= 5 * 60 - 1
    assert all(b >= a for a, b in itertools.pairwise(total)), "registers still count up"


class _Fixed:
    """A fake detector that alerts at given times."""

    def __init__(self, times: list[float]) -> None:
        self.times = times

    def update(self, x: Interval) -> list[Finding]:
        return [Finding(x.meter_id, "no_activity", "high", x.end, "", "") for t in self.times if x.start < t <= x.end]


def test_scoring_counts_delays_noise_and_absences() -> None:
    xs = []
    for k in range(24 * 20):
        use = 0.0 if 100 <= k < 160 or 300 <= k < 340 else (5.0 if k % 3 == 0 else 0.0)
        xs.append(Interval("m", k * HOUR, (k + 1) * HOUR, use, "ok", 0))
    truth = [ev.Truth("m", "fall", "incident", 300 * HOUR, 340 * HOUR)]
    data = ev.Dataset("toy", {"m": xs}, truth, len(xs))
    # A hit 6 h after the fall, two alerts in the 60 h absence (one charged as absence, one noise),
    # and one alert in ordinary life (noise).
    alerts = [306 * HOUR, 130 * HOUR, 150 * HOUR, 50 * HOUR]
    s = ev.score("fake", lambda m, _x, _t: _Fixed(alerts), data)
    assert s.recall("fall") == 1.0
    assert s.quantile("fall", 50) == pytest.approx(6.0)
    assert s.absence == 1 and s.absences == 1
    assert s.noise == 2
    assert s.false_by_kind == {"no_activity": 2}


def test_incident_without_any_data_is_counted_apart() -> None:
    xs = [Interval("m", k * HOUR, (k + 1) * HOUR, 5.0, "ok", 0) for k in range(100)]
    xs += [Interval("m", 100 * HOUR, 200 * HOUR, 0.0, "gap", 0)]  # offline for 100 h
    truth = [ev.Truth("m", "fall", "incident", 120 * HOUR, 150 * HOUR)]
    s = ev.score("fake", lambda m, _x, _t: _Fixed([]), ev.Dataset("toy", {"m": xs}, truth, len(xs)))
    assert s.recall("fall") is None
    assert s.unobservable == {"fall": 1}


def test_eval_cli_prints_the_side_by_side_table() -> None:
    args = argparse.Namespace(elders=8, days=30, seed=2, csv=None, overrides=[], sweep=False, out=None)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert ev.run(args) == 0
    text = buf.getvalue()
    for name in (
        "tapwatch",
        "shanghai_12h",
        "taicang_24h",
        "nagano_8h_2h",
        "jingan_day",
        "longgang_leak",
        "oracle_p99.9",
    ):
        assert f"| {name} |" in text


def test_oracle_and_tapwatch_are_scored_on_the_same_data() -> None:
    data = ev.simulated(5, 20, 4)
    scores = ev.run_all(data, Thresholds())
    assert next(s.name for s in scores) == "tapwatch"
    assert len({round(s.months, 6) for s in scores}) == 1


def test_simulated_elders_read_hourly() -> None:
    """The same elders at another cadence (``bench/maint_hourly.py``): the real homes are read hourly."""
    data = ev.simulated(2, 3, 4, interval_min=60)
    lengths = sorted(x.end - x.start for xs in data.intervals.values() for x in xs)
    assert lengths[len(lengths) // 2] == pytest.approx(HOUR, abs=120.0)
    assert data.name.endswith("every 60 min")
    assert not ev.simulated(2, 3, 4).name.endswith("min")  # half-hourly, as ``tapwatch eval``


@pytest.mark.skipif(not REAL.exists(), reason=f"real readings not found at {REAL}")
def test_real_households_with_injected_incidents() -> None:
    few = ev.read_csv_series(REAL, max_meters=3)
    out, truth = ev.inject(few, seed=1)
    ids = sorted(out)
    rows = ((k, t, v) for k, m in enumerate(ids) for t, v in zip(out[m][0], out[m][1], strict=True))
    intervals, _ = ev.intervals_from_readings(ids, rows, "Europe/Madrid")  # the DAIAD homes are in Alicante
    data = ev.Dataset("real-4", intervals, truth, 0)
    s = ev.score("tapwatch", ev.tapwatch_factory(Thresholds()), data)
    falls, taps = s.recall("fall"), s.recall("tap_running")
    assert falls is not None and falls >= 0.8
    assert taps is None or taps >= 0.7


def test_sweep_plot_is_written(tmp_path: Path) -> None:
    data = ev.simulated(4, 20, 5)
    points = ev.sweep(data, Thresholds(), values=(1e-4, 1e-3))
    others = [ev.score("shanghai_12h", ev.rule_factory("shanghai_12h"), data)]
    out = tmp_path / "img" / "detection-sim-sweep.png"
    ev.plot(points, others, 1e-3, out, "test")
    assert out.stat().st_size > 10_000
    learned = ev.sweep(data, Thresholds(), values=(1e-4, 1e-3), visit_delay_h=1.0)
    assert [s.name for _, s in learned] == [f"{ev.OUTCOMES_NAME} s=0.0001", f"{ev.OUTCOMES_NAME} s=0.001"]
    both = tmp_path / "img" / "both.png"
    ev.plot(points, others, 1e-3, both, "test", learned)  # the curve with outcomes on the same axes
    assert both.stat().st_size > out.stat().st_size


class _Device:
    """A fake detector that raises device alerts: (kind, since, ts) each."""

    def __init__(self, alerts: list[tuple[str, float, float]]) -> None:
        self.alerts = alerts

    def update(self, x: Interval) -> list[Finding]:
        return [
            Finding(x.meter_id, kind, "low", ts, "", "", since=since)
            for kind, since, ts in self.alerts
            if x.start < ts <= x.end
        ]


def test_device_alerts_are_scored_against_the_fault_labels() -> None:
    xs = [Interval("m", k * HOUR, (k + 1) * HOUR, 5.0, "ok", 0) for k in range(200)]
    faults = [
        ev.Truth("m", "offline", "fault", 20 * HOUR, 30 * HOUR),  # a 10 h outage: a device alert is for it
        ev.Truth("m", "offline", "fault", 60 * HOUR, 61 * HOUR),  # a 1 h dropout: bridged, not counted in recall
        ev.Truth("m", "glitch", "fault", 100 * HOUR, 100 * HOUR),  # a register fault nobody alerted on
        ev.Truth("m", "duplicate", "fault", 150 * HOUR, 150 * HOUR),  # handled by ingest: not in recall
    ]
    alerts = [
        ("meter_offline", 19.5 * HOUR, 25.5 * HOUR),  # inside the outage: true
        ("meter_fault", 60.5 * HOUR, 61.5 * HOUR),  # on the short dropout: true, though not required
        ("meter_fault", 120 * HOUR, 121 * HOUR),  # nothing labelled near: false
        ("meter_offline", 95 * HOUR, 99.5 * HOUR),  # ends within the slack before the glitch: true, finds it
    ]
    data = ev.Dataset("toy", {"m": xs}, [], len(xs), faults)
    s = ev.score("fake", lambda m, _x, _t: _Device(alerts), data)
    d = s.devices
    assert d is not None and s.device == 4
    assert (d.true, d.false) == (3, 1)
    assert (d.outages, d.outages_found, d.register, d.register_found) == (1, 1, 1, 1)
    assert d.recall == 1.0
    late = [("meter_offline", 95 * HOUR, 98.5 * HOUR)]  # 1.5 h before the glitch: past the 1 h slack
    missed = ev.score("fake", lambda m, _x, _t: _Device(late), data).devices
    assert missed is not None and (missed.true, missed.false, missed.register_found, missed.recall) == (0, 1, 0, 0.0)
    text = ev.device_table([s])
    assert "| fake | " in text and "outages >= 6 h found (n=1)" in text and "1 (1.00)" in text
    # Real homes have no fault labels: the figures are "–", never a guess.
    unlabelled = ev.score("fake", lambda m, _x, _t: _Device(alerts), ev.Dataset("toy", {"m": xs}, [], len(xs)))
    assert unlabelled.devices is None
    assert ev.device_table([unlabelled]).splitlines()[-1].endswith("| – | – | – | – | – |")


def test_a_second_alert_in_the_same_real_absence_is_counted_on_its_own() -> None:
    xs = []
    for k in range(24 * 20):
        use = 0.0 if 100 <= k < 160 or 300 <= k < 340 else (5.0 if k % 3 == 0 else 0.0)
        xs.append(Interval("m", k * HOUR, (k + 1) * HOUR, use, "ok", 0))
    data = ev.Dataset("toy", {"m": xs}, [], len(xs))
    # Two real absences: three alerts in the first (one charged, two more), one in the second; one in daily life.
    alerts = [110 * HOUR, 130 * HOUR, 150 * HOUR, 320 * HOUR, 50 * HOUR]
    s = ev.score("fake", lambda m, _x, _t: _Fixed(alerts), data)
    assert (s.absences, s.absence, s.second_absence) == (2, 2, 2)
    assert s.noise == 3  # the second alerts are still noise too: that column keeps its meaning
    row = next(line for line in ev.table([s], ev.INCIDENT_ORDER).splitlines() if line.startswith("| fake"))
    assert row.endswith(f"| {2 / s.months:.3f} (2) |")


def test_a_held_step_is_scored_when_the_reading_that_releases_it_comes_as_live() -> None:
    from engine.meter import MeterStep
    from ingest.register import RegisterTracker

    half = HOUR / 2
    ts, total = [], []
    level = 1000.0
    for k in range(10 * 48):  # ten days of 10 L at 07:00, 12:00 and 19:00, read every half hour
        if k % 48 in (14, 24, 38):
            level += 10.0
        ts.append(k * half)
        total.append(level)
    burst = ts[-1]
    for k in range(1, 5):  # a pipe bursts at 40 L/min: steeper than any tap, so each step waits for the next
        ts.append(burst + k * half)
        total.append(level + 1200.0 * k)
    rows = [(0, t, v) for t, v in zip(ts, total, strict=True)]
    released: dict[str, dict[int, float]] = {}
    intervals, n = ev.intervals_from_readings(["M1"], rows, "UTC", released)
    first_held = len(intervals["M1"]) - 4
    assert released == {"M1": {first_held: burst + 2 * half, first_held + 2: burst + 4 * half}}
    truth = [ev.Truth("M1", "tap_running", "incident", burst, burst + 2 * HOUR)]
    data = ev.Dataset("a burst", intervals, truth, n, released=released)
    scored = ev.score("tapwatch", ev.tapwatch_factory(Thresholds()), data)

    live = MeterStep(RegisterTracker("M1"), ev.MeterMonitor("M1", Thresholds()), "UTC")
    raised = [f for t, v in zip(ts, total, strict=True) for f in live.push(t, v).findings if f.kind != "meter_fault"]
    first = min(f.ts for f in raised if f.ts > burst and not f.resolved)
    assert scored.delays["tap_running"] == [(first - burst) / HOUR]
    assert first >= burst + 2 * half  # not at the held interval's end, half an hour before anyone could know
    unstamped = ev.score("tapwatch", ev.tapwatch_factory(Thresholds()), ev.Dataset("a burst", intervals, truth, n))
    assert unstamped.delays["tap_running"] == [0.5]


def test_an_out_dir_without_the_sweep_is_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out DIR` writes the sweep's plot and nothing else: without `--sweep` the whole evaluation ran, wrote
    nothing there and exited 0, and the operator went looking for a plot that was never made."""
    from tapwatch.cli import main

    assert main(["eval", "--elders", "2", "--days", "2", "--out", str(tmp_path / "plots")]) == 2
    assert "--sweep" in capsys.readouterr().err


def test_a_visit_delay_with_no_outcomes_is_refused_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    """`--visit-delay-h` times the visits of the outcomes row, which `--no-outcomes` leaves out: both together ran
    the whole evaluation with the delay ignored, exit 0."""
    from tapwatch.cli import main

    assert main(["eval", "--elders", "2", "--days", "2", "--no-outcomes", "--visit-delay-h", "6"]) == 2
    assert "--no-outcomes" in capsys.readouterr().err


def test_real_readings_not_in_time_order_are_read_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A meter's rows written newest first: each meter's series went to the injection (which looks times up
    in it as sorted) and to the register in file order, every older reading late: no usage, no incident, no
    word. `eval --csv` reads each meter's readings in time order and says how many meters it sorted."""
    step = 3600.0
    rows = [
        (m, 1_456_790_400.0 + k * step, 1000.0 + k * (3 + j))
        for j, m in enumerate(("M1", "M2"))
        for k in range(24 * 40)
    ]
    text = "".join(f"{m},{int(ts)},{total:.0f}\n" for m, ts, total in rows)
    shuffled = "".join(f"{m},{int(ts)},{total:.0f}\n" for m, ts, total in reversed(rows))
    (tmp_path / "sorted.csv").write_text("meter_id,ts,total_l\n" + text)
    (tmp_path / "reversed.csv").write_text("meter_id,ts,total_l\n" + shuffled)
    assert ev.read_csv_series(tmp_path / "reversed.csv") == ev.read_csv_series(tmp_path / "sorted.csv")
    assert "2 meters" in capsys.readouterr().err
    ordered = ev.real(tmp_path / "sorted.csv", 2, "Europe/Madrid")
    unordered = ev.real(tmp_path / "reversed.csv", 2, "Europe/Madrid")
    assert unordered.intervals == ordered.intervals and unordered.truth == ordered.truth


def test_malformed_real_rows_are_counted_and_a_file_of_none_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval --csv` left malformed rows out without a word: a meter exported without UTC offsets was simply
    not scored, and a file of such rows was scored as no readings at all, a table of zeros."""
    from tapwatch.cli import main

    good = "".join(f"M1,{1_456_790_400 + k * 3600},{1000 + k}\n" for k in range(48))
    local = "".join(f"M2,2016-03-01 {k:02d}:00:00,{1000 + k}\n" for k in range(24))
    (tmp_path / "mixed.csv").write_text("meter_id,ts,total_l\n" + good + local)
    series = ev.read_csv_series(tmp_path / "mixed.csv")
    assert list(series) == ["M1"]
    err = capsys.readouterr().err
    assert "24 malformed rows left out" in err and "line 50: timestamp has no UTC offset" in err, err
    (tmp_path / "local.csv").write_text("meter_id,ts,total_l\n" + local)
    assert main(["eval", "--csv", str(tmp_path / "local.csv"), "--no-outcomes"]) == 2
    assert "no readings" in capsys.readouterr().err


def test_python_m_evaluate_refuses_a_bad_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tapwatch.evaluate --csv FILE` (how the docs run eval) died with a ValueError's traceback on a
    file `tapwatch eval` refuses in one line (here a header without the columns)."""
    (tmp_path / "r.csv").write_text("x,y\n1,2\n")
    assert ev.main(["--csv", str(tmp_path / "r.csv")]) == 2
    assert (
        capsys.readouterr().err
        == f"tapwatch: error: {tmp_path / 'r.csv'}: header needs meter_id and ts columns, got ['x', 'y']\n"
    )
