"""bench/other_elders.py (session 14): a second generator of elders living alone, scored as ``tapwatch eval`` scores.

A tiny population (5 elders x 20 days) keeps these fast; bench/ is outside testpaths, so the module is loaded by path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO
from tests.tools.scripts import load_script

DAY = 86400.0
ELDERS, DAYS = 5, 20


@pytest.fixture(scope="module")
def other() -> Iterator[ModuleType]:
    yield load_script(REPO / "bench" / "other_elders.py")
    sys.modules.pop("other_elders", None)


@pytest.fixture(scope="module")
def clean(other: ModuleType) -> Any:
    """No meter faults, many falls: what the meter delivers is the register itself."""
    return other.generate(
        ELDERS, DAYS, 2, faults=False, incident_rate_per_120d=40.0, incident_mix={"fall": 1.0}, keep_readings=True
    )


def test_registers_never_run_backwards_and_count_every_litre(clean: Any) -> None:
    for meter_id, (ts, total) in clean.readings.items():
        assert np.all(np.diff(ts) > 0), meter_id
        assert np.all(np.diff(total) >= 0), meter_id
        assert np.all(total == np.floor(total))  # 1 L resolution
        used = total[-1] - total[0]
        true = float(clean.usage[meter_id].sum())
        assert abs(used - true) < 0.05 * true + 5, meter_id  # the first and last half hours are partly outside
        xs = clean.data.intervals[meter_id]
        assert xs and all(x.usage_l is not None and x.usage_l >= 0 for x in xs)


def test_labels_lie_inside_the_data_and_follow_evals_contract(other: ModuleType, clean: Any) -> None:
    t0 = clean.t0
    truth = clean.data.truth
    assert truth and all(t.category in ("incident", "event") for t in truth)
    for t in truth:
        assert t0 <= t.start <= t0 + DAYS * DAY, t
        assert t.end is None or t.start <= t.end <= t0 + DAYS * DAY, t
        ts = clean.readings[t.meter_id][0]
        assert ts[0] <= t.start <= ts[-1], t
    kinds = {t.kind for t in truth if t.category == "incident"}
    assert kinds == {"fall"}
    assert {t.kind for t in truth if t.category == "event"} <= {"away", "hospital", "illness", "family_visit"}


def test_an_injected_fall_stops_the_elders_water(clean: Any) -> None:
    falls = [t for t in clean.data.truth if t.kind == "fall"]
    assert len(falls) >= 3
    t0 = clean.t0
    for fall in falls:
        starts, ends, _vols, _tags = clean.events[fall.meter_id]
        assert not np.any((starts < fall.end) & (ends > fall.start)), fall  # no use of their own while on the floor
        trickle = sum(
            lps * 1800.0
            for s, e, lps, tag in clean.flows[fall.meter_id]
            if tag == "cistern trickle" and s < fall.end and fall.start < e
        )
        grid = clean.usage[fall.meter_id]
        lo, hi = int((fall.start - t0) // 1800) + 1, int((fall.end - t0) // 1800)
        assert np.all(grid[lo:hi] <= trickle + 1e-3), fall  # only a running cistern, if the home has one


def test_the_cli_prints_evals_table_and_the_calls_with_what_made_them(
    other: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--elders", str(ELDERS), "--days", str(DAYS), "--seed", "2", "--outcomes", "--describe", "--cache", ""]
    assert other.main(argv) == 0
    assert not any(tmp_path.iterdir())  # no cache: nothing written
    out = capsys.readouterr().out
    assert "| detector |" in out and "noise /elder-month" in out and "absence alerts (real absences)" in out
    assert "\n| tapwatch |" in out and "\n| tapwatch + outcomes |" in out
    assert "# tapwatch: " in out and "false community calls" in out
    assert "WARNING" not in out  # the calls listed are the ones the score counted


def test_seed_1_is_refused(other: ModuleType) -> None:
    with pytest.raises(SystemExit):
        other.main(["--elders", "2", "--days", "3", "--seed", "1", "--cache", ""])
