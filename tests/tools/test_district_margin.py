"""bench/district_margin.py (session 16): a silence margin learned from the district's outcomes by cell.

bench/ is outside testpaths, so the module is loaded by path; a tiny simulated population keeps these fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from core.domain import COMMUNITY, Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor
from engine.outcomes import Label
from tests.conftest import REPO
from tests.tools.scripts import load_script

DAY = 86400.0
MONDAY_NOON_UTC = 4 * DAY + 12 * 3600  # 1970-01-05 was a Monday


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    yield load_script(REPO / "bench" / "district_margin.py")
    for name in ("district_margin", "population_prior"):
        sys.modules.pop(name, None)


def _silence(meter_id: str, since: float, ts: float) -> Finding:
    return Finding(meter_id, "no_activity", "high", ts, "", "", since=since, route=COMMUNITY)


def test_only_false_alarms_whose_visit_came_before_the_cut_teach_and_margins_only_lengthen(
    bench: ModuleType,
) -> None:
    cut = MONDAY_NOON_UTC + 7 * DAY
    xs = [Interval("M1", 0.0, 1800.0, 0.0, "ok", 0)]
    alerts = [
        _silence("M1", MONDAY_NOON_UTC, MONDAY_NOON_UTC + 6 * 3600),  # weekday, 12:00 band: false
        _silence("M1", MONDAY_NOON_UTC + DAY, MONDAY_NOON_UTC + DAY + 6 * 3600),  # the same cell: a fall
        _silence("M1", cut - 1800.0, cut - 1800.0),  # its visit comes after the cut: not known yet
    ]
    fall = Label("M1", "fall", MONDAY_NOON_UTC + DAY, MONDAY_NOON_UTC + DAY + 8 * 3600)
    margins, false = bench.learn_margins({"M1": (xs, alerts)}, {"M1": [fall]}, cut, 1.0, 5.0, 1.5)
    assert false[0][3] == 1.5 and false.sum() == pytest.approx(0.5 * 12 + 1)
    assert margins[0][3] == max(max(row) for row in margins) > 1.0  # the cell of the false alarm waits longest
    assert min(min(row) for row in margins) == 1.0  # never shorter than the model's own
    assert all(m <= 1.5 for row in margins for m in row)


def test_the_margin_applies_from_the_cut_on_and_the_monitor_is_restored(bench: ModuleType) -> None:
    cut = 3 * DAY
    xs = [Interval("M1", t, t + 1800.0, 0.0, "ok", 0) for t in range(0, int(5 * DAY), 1800)]

    def lengths_by_day(margins: list[list[float]] | None) -> list[list[float]]:
        seen = []
        with bench.margins_from(margins, cut):
            monitor = MeterMonitor("M1", Thresholds())
            for x in xs:
                monitor.update(x)
                if x.end % DAY == 0:
                    seen.append(monitor.silence._alert[:])
        return seen

    plain, doubled = lengths_by_day(None), lengths_by_day([[2.0] * 6, [2.0] * 6])
    assert doubled[:3] == plain[:3]  # before the cut the model's own
    assert all(d == 2 * p for d, p in zip(doubled[3], plain[3], strict=True))
    assert MeterMonitor._refresh_silence.__name__ == "_refresh_silence"  # restored


def test_the_bench_scores_a_tiny_population_with_and_without_the_margin(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data", "sim:6x20x5", "--cut", "10", "--learn", "--cache", str(tmp_path)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "sim:6x20x5 sensitivity 0.001: " in out and "sensitivity 0.001 + district margin: " in out
    assert "margins: [[" in out
