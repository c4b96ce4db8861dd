"""The simulator's shapes match the real DAIAD meters (skipped when the real data is not beside the repo)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import SimConfig, simulate
from simulator.calibrate import Hourly, hourly, load_real, sim_readings, stats
from tests.conftest import REAL_DATA


@pytest.fixture(scope="module")
def real() -> tuple[dict[str, object], Hourly]:
    path = REAL_DATA
    if not path.exists():
        pytest.skip(f"real meter data not found at {path} (it sits beside the repository)")
    h = hourly(load_real(path))
    return stats(h), h


@pytest.fixture(scope="module")
def sim() -> tuple[dict[str, object], Hourly]:
    res = simulate(SimConfig(elders=80, days=180, seed=2, start="2026-03-01", random_incidents=False))
    h = hourly(sim_readings(res))
    return stats(h), h


def test_real_data_figures_are_as_documented(real: tuple[dict[str, object], Hourly]) -> None:
    _, h = real
    assert h.faults["n"] == 418_212  # the README's 418,258 readings of 46 meters
    assert h.faults["negative steps per 1,000 intervals"] == pytest.approx(192 / 418_212 * 1000, rel=1e-6)


def test_daily_rhythm_matches(real: tuple[dict[str, object], Hourly], sim: tuple[dict[str, object], Hourly]) -> None:
    r, s = real[0], sim[0]
    assert np.corrcoef(np.asarray(r["profile"]), np.asarray(s["profile"]))[0, 1] > 0.5
    for key in ("zero share 01-05 h (%)", "zero share 07-22 h (%)", "zero share (%)"):
        assert abs(float(r[key]) - float(s[key])) < 10, key  # type: ignore[arg-type]
    assert float(s["use 00-06 h (% of day)"]) < 12  # type: ignore[arg-type]


def test_irregularity_and_silences_match(
    real: tuple[dict[str, object], Hourly], sim: tuple[dict[str, object], Hourly]
) -> None:
    r, s = real[0], sim[0]
    for key in ("daily total p10 / median", "daily total p90 / median", "daily total CV within home"):
        assert abs(float(r[key]) - float(s[key])) < 0.2, key  # type: ignore[arg-type]
    assert float(s["no-use run p90 (h)"]) == pytest.approx(float(r["no-use run p90 (h)"]), abs=2)  # type: ignore[arg-type]
    ratio = float(s["no-use runs >= 8 h (%)"]) / float(r["no-use runs >= 8 h (%)"])  # type: ignore[arg-type]
    assert 0.5 < ratio < 2


def test_fault_rates_match(real: tuple[dict[str, object], Hourly], sim: tuple[dict[str, object], Hourly]) -> None:
    rf, sf = real[1].faults, sim[1].faults
    for key in ("gaps > 3 h per 1,000 intervals", "negative steps per 1,000 intervals"):
        assert 1 / 3 < sf[key] / rf[key] < 3, key
    assert abs(sf["intervals 0.9-1.1 h (%)"] - rf["intervals 0.9-1.1 h (%)"]) < 5
