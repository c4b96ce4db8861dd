"""The river HalfSpaceTrees peer (``detect/hst.py``) and its row in ``tapwatch eval``."""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from core.domain import Finding, Interval
from detect.hst import HalfSpaceTreesDetector
from simulator import IncidentSpec, SimConfig, simulate
from tapwatch import evaluate as ev

HOUR = 3600.0
FALL_DAY = 30.4


@pytest.fixture(scope="module")
def homes() -> tuple[dict[str, list[Interval]], dict[str, ev.Truth]]:
    """Four simulated elders, 36 days: two fall on day 30, two leave a tap running (8 L/min, 4 h)."""
    incidents = [IncidentSpec(e, "fall", start_day=FALL_DAY, duration_h=48) for e in (0, 1)]
    incidents += [IncidentSpec(e, "tap_running", start_day=FALL_DAY, duration_h=4, flow_lpm=8.0) for e in (2, 3)]
    cfg = SimConfig(
        elders=4, days=36, seed=1, random_incidents=False, random_events=False, faults=False, incidents=incidents
    )
    res = simulate(cfg)
    rows = zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True)
    intervals, _ = ev.intervals_from_readings(res.meter_ids, rows, ev.simulated_zone(res.config.tz_offset_h))
    truth = {
        lab.meter_id: ev.Truth(lab.meter_id, lab.kind, lab.category, lab.start, lab.end)
        for lab in res.labels
        if lab.category == "incident"
    }
    return intervals, truth


def _alerts(det: HalfSpaceTreesDetector, xs: list[Interval]) -> list[Finding]:
    return [f for x in xs for f in det.update(x) if not f.resolved]


def _first_in(alerts: list[Finding], inc: ev.Truth) -> Finding | None:
    return next((f for f in alerts if inc.start <= f.ts <= inc.window_end), None)


def test_falls_are_found_as_no_activity_within_a_day(homes) -> None:
    intervals, truth = homes
    for meter_id, inc in truth.items():
        if inc.kind != "fall":
            continue
        hit = _first_in(_alerts(HalfSpaceTreesDetector(meter_id, seed=1), intervals[meter_id]), inc)
        assert hit is not None, f"{meter_id}: fall missed"
        assert hit.kind == "no_activity"
        assert hit.ts - inc.start <= 24 * HOUR
        assert hit.since is not None and hit.since <= inc.start, "the silence began before the fall alert's data"


def test_tap_left_running_raises_continuous_flow_within_two_hours(homes) -> None:
    intervals, truth = homes
    for meter_id, inc in truth.items():
        if inc.kind != "tap_running":
            continue
        alerts = _alerts(HalfSpaceTreesDetector(meter_id, seed=1), intervals[meter_id])
        kinds = {f.kind for f in alerts if inc.start <= f.ts <= inc.start + 2 * HOUR}
        assert "continuous_flow" in kinds, f"{meter_id}: {kinds}"


def test_no_alert_before_the_threshold_is_learned(homes) -> None:
    intervals, _ = homes
    xs = intervals["WM000001"]
    det = HalfSpaceTreesDetector("WM000001", seed=1)
    for x in xs[: det.window_size + det.warmup - 1]:
        assert det.update(x) == []
    assert det.threshold is None
    for x in xs[det.window_size + det.warmup - 1 : det.window_size + det.warmup + 48]:
        det.update(x)
    assert det.threshold is not None and 0.0 < det.threshold < 1.0


def test_same_seed_same_findings_other_seed_other_trees(homes) -> None:
    intervals, _ = homes
    xs = intervals["WM000003"]

    def run(seed: int) -> tuple[float | None, list[tuple[str, float, float, bool]]]:
        det = HalfSpaceTreesDetector("WM000003", seed=seed)
        found = [(f.kind, f.ts, f.score, f.resolved) for x in xs for f in det.update(x)]
        return det.threshold, found

    first = run(7)
    assert first[1], "the tap raises findings"
    assert run(7) == first
    assert run(8)[0] != first[0]


def test_pickled_detector_continues_identically(homes) -> None:
    intervals, _ = homes
    xs = intervals["WM000001"]
    cut = int(len(xs) * 0.7)
    det = HalfSpaceTreesDetector("WM000001", seed=1)
    for x in xs[:cut]:
        det.update(x)
    blob = pickle.dumps(det)
    copy = pickle.loads(blob)
    rest = xs[cut:]
    assert [(f.kind, f.ts, f.resolved) for f in _alerts(copy, rest)] == [
        (f.kind, f.ts, f.resolved) for f in _alerts(det, rest)
    ]
    assert len(blob) > 4096, "HST state is trees of nodes: far above MeterMonitor's 4 KB (see docs)"


def test_unknown_intervals_do_not_count_as_silence() -> None:
    det = HalfSpaceTreesDetector("m", seed=1)
    assert det.update(Interval("m", 0, 1800, 0.0, "ok", 0)) == []
    assert det.update(Interval("m", 1800, 3600, None, "reset", 0)) == []
    assert det.features(Interval("m", 3600, 5400, 0.0, "ok", 0))["silence_h"] == pytest.approx(0.5 / 24)


def _eval(**kw: object) -> str:
    args = argparse.Namespace(elders=8, days=30, seed=2, csv=None, overrides=[], sweep=False, out=None)
    vars(args).update(kw)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert ev.run(args) == 0
    return buf.getvalue()


def test_eval_table_has_the_peer_row_simulated() -> None:
    text = _eval()
    row = next(line for line in text.splitlines() if line.startswith(f"| {ev.HST_NAME} |"))
    assert len(row.split("|")) == len(text.splitlines()[1].split("|")), "as many columns as the header"
    assert f"{ev.HST_NAME} replay:" in text


def test_eval_table_has_the_peer_row_real_csv(tmp_path: Path) -> None:
    """Two hourly homes, 45 days, with a flush at 07:00, 12:00 and 19:00: --csv injects incidents into them."""
    path = tmp_path / "homes.csv.gz"
    tz = timezone(timedelta(hours=8))
    t0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write("meter_id,ts,total_l\n")
        for home in ("h1", "h2"):
            level = 100
            for h in range(45 * 24):
                level += 10 if h % 24 in (7, 12, 19) else 0
                when = datetime.fromtimestamp(t0 + h * HOUR, UTC).astimezone(tz).isoformat(timespec="seconds")
                out.write(f"{home},{when},{level}\n")
    text = _eval(csv=str(path), seed=1)
    assert "real households" in text
    assert f"| {ev.HST_NAME} |" in text


def test_a_move_west_does_not_take_the_day_back() -> None:
    """The elder's zone moved west (Asia/Shanghai -> Europe/Madrid, an operator's correction) at 01:00 in Shanghai:
    the local day went back, 31 -> 30 -> 31, and the day's running total was started again twice (as
    :class:`~detect.monitor.MeterMonitor` did before its days only moved forward)."""
    shanghai, madrid, slot = 8 * 3600, 1 * 3600, 1800
    moved_at = 30 * 86400 + 17 * 3600
    det = HalfSpaceTreesDetector("m1", seed=1)
    days, totals = [], []
    for k in range(32 * 48):
        t = k * slot
        off = shanghai if t + slot <= moved_at else madrid
        det.update(Interval("m1", t, t + slot, 15.0 if (t + off) % 86400 // slot in (14, 24, 38) else 1.0, "ok", off))
        days.append(det.day)
        totals.append(det.day_l)
    assert days == sorted(days)
    moved = moved_at // slot  # the first interval read at Madrid's offset
    assert totals[moved] > totals[moved - 1]  # day 31's water goes on adding up over the move
