"""bench/population_prior.py (session 15): a silence prior fitted on one data set, scored on another.

A tiny simulated population keeps these fast; bench/ is outside testpaths, so the module is loaded by path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import detect.silence as silence_module
from detect.prior import SILENCE_PRIOR
from detect.silence import SilenceModel
from tests.conftest import REPO
from tests.tools.scripts import load_script


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    yield load_script(REPO / "bench" / "population_prior.py")
    sys.modules.pop("population_prior", None)


def _alert_hours() -> list[float]:
    model = SilenceModel()
    model.refresh(1e-3)
    return [model.alert_hours(h) for h in range(24)]


_alert_hours_of_the_prior = _alert_hours()


def test_a_fitted_prior_is_a_distribution_per_start_hour(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prior.npy"
    assert bench.main(["fit", "--data", "sim:4x12x5", "--out", str(out), "--cache", str(tmp_path)]) == 0
    prior = np.load(out)
    assert prior.shape == SILENCE_PRIOR.shape
    assert np.allclose(prior.sum(axis=1), 1.0) and (prior > 0).all()
    assert "4 meters" in capsys.readouterr().out
    assert (tmp_path / "sim-4x12x5.pkl").exists()  # the data set is cached for the next run


def test_the_prior_is_swapped_for_the_run_and_restored(bench: ModuleType) -> None:
    shipped = _alert_hours()
    long_silences = np.full_like(SILENCE_PRIOR, 1e-3)
    long_silences[:, -1] = 1.0  # every silence of the population lasts a day or more
    with bench.population_prior(long_silences / long_silences.sum(axis=1, keepdims=True)):
        patient = _alert_hours()
    assert all(p > s for p, s in zip(patient, shipped, strict=True))
    assert silence_module.SILENCE_PRIOR is SILENCE_PRIOR and _alert_hours() == shipped


def test_priors_given_twice_are_averaged(bench: ModuleType, tmp_path: Path) -> None:
    flat = np.full_like(SILENCE_PRIOR, 1.0 / SILENCE_PRIOR.shape[1])
    np.save(tmp_path / "flat.npy", flat)
    mixed = bench.mixed(["default", str(tmp_path / "flat.npy")])
    assert np.allclose(mixed, (SILENCE_PRIOR + flat) / 2)
    np.save(tmp_path / "wrong.npy", np.ones((24, 3)))
    with pytest.raises(ValueError, match="start hours"):
        bench.mixed([str(tmp_path / "wrong.npy")])


def test_scores_as_eval_and_splits_by_age_or_month(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = ["--cache", str(tmp_path)]
    assert bench.main(["score", "--data", "sim:4x40x5", *cache]) == 0
    out = capsys.readouterr().out
    assert "without outcomes: false community" in out and "by age" in out
    assert "0-7:" in out and "30-60:" in out
    assert bench.main(["score", "--data", "sim:4x40x5", "--bands", "month", *cache]) == 0
    out = capsys.readouterr().out
    assert "0-30:" in out and "30-:" in out
    with pytest.raises(ValueError, match="a data set is"):
        bench.load("sim300x120x2", Path("none.csv"), tmp_path)


def test_a_meter_switched_on_later_keeps_the_absences_under_way(bench: ModuleType, tmp_path: Path) -> None:
    data = bench.load("sim:4x40x5", Path("none.csv"), tmp_path)
    later = bench.switched_on_later(data, 20)
    for meter_id, xs in later.intervals.items():
        first = data.intervals[meter_id][0].start
        assert xs and first + 20 * 86400.0 <= xs[0].start < first + 20.1 * 86400.0
    on = {m: xs[0].start for m, xs in later.intervals.items()}
    assert all(t.start >= on[t.meter_id] for t in later.truth if t.category == "incident")
    assert all(t.window_end > on[t.meter_id] for t in later.truth)
    assert later.readings == sum(len(xs) for xs in later.intervals.values()) < data.readings


def test_a_prior_stretched_to_a_slower_home_and_the_pace_read_back(bench: ModuleType) -> None:
    slower = bench.stretched(SILENCE_PRIOR, 1.5)
    assert np.allclose(slower.sum(axis=1), 1.0)
    mean_log = (SILENCE_PRIOR * bench._LOG_MID).sum(axis=1)
    assert ((slower * bench._LOG_MID).sum(axis=1) > mean_log).all()  # every start hour's silences are longer
    assert bench.stretched(SILENCE_PRIOR, 1.0) is SILENCE_PRIOR
    # a home whose silences follow the stretched prior: its pace reads about 1.5, shrunk by the doubt, clipped
    counts = 200.0 * slower
    assert 1.3 < bench.pace(counts, SILENCE_PRIOR, 0.0, 0.5, 3.0) < 1.7
    assert bench.pace(counts, SILENCE_PRIOR, 4800.0, 0.5, 3.0) < bench.pace(counts, SILENCE_PRIOR, 0.0, 0.5, 3.0)
    assert bench.pace(counts, SILENCE_PRIOR, 0.0, 0.5, 1.2) == 1.2
    assert bench.pace(200.0 * SILENCE_PRIOR, SILENCE_PRIOR, 0.0, 0.5, 3.0) == pytest.approx(1.0)

    def slow_home() -> SilenceModel:
        model = SilenceModel()  # silences from mid-morning last 3-4 h, where the prior's last about one
        for day in range(30):
            model.learn_one(day * 86400.0 + 10 * 3600, 3.0 + (day % 3) * 0.5, 0)
        model.refresh(1e-3)
        return model

    plain = slow_home().alert_hours(15)  # an afternoon hour: the home has shown none of its silences
    with bench.prior_at_home_pace(20.0, 0.7, 1.5):
        assert slow_home().alert_hours(15) > plain
        assert _alert_hours() == _alert_hours_of_the_prior  # a new home has no pace: the prior as it is
    assert silence_module.SilenceModel.survival is SilenceModel.survival
    assert slow_home().alert_hours(15) == plain
