"""The detectors' shortcuts give exactly what the long way gives, and old checkpoints are refused."""

from __future__ import annotations

import pickle
import warnings
from array import array

import numpy as np
import pytest

from core.domain import Interval
from detect.daily import DailyModel
from detect.flow import FlowModel
from detect.rules import LowUseWindowRule
from detect.silence import N_BINS, SilenceModel
from ingest.register import RegisterTracker


def _random_silences(seed: int) -> list[SilenceModel]:
    rng = np.random.default_rng(seed)
    models = []
    for _ in range(40):
        model = SilenceModel(prior_weight=float(rng.choice([10.0, 3.0])), tail_fraction=float(rng.choice([0.1, 0.5])))
        scale = float(rng.choice([0.01, 1.0, 30.0, 300.0]))
        cells = rng.exponential(1.0, 24 * N_BINS) * scale * (rng.random(24 * N_BINS) < rng.random())
        model.counts = array("H", cells.astype(np.float16).view(np.uint16).tobytes())
        model.longest = array("f", (rng.random(24) * 20).astype(np.float32).tobytes())
        model.n_learned = 1
        models.append(model)
    return models


def test_one_start_hour_of_the_curves_is_that_row_of_all_of_them() -> None:
    for model in _random_silences(1):
        full = model.curves()
        for hour in (0, 7, 22):
            assert model._curve(hour).tobytes() == full[hour].tobytes()


def test_a_model_that_learned_nothing_gets_the_alert_lengths_it_would_solve() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sensitivity in (1e-3, 1e-5, 0.05):
            fresh, solved = SilenceModel(), SilenceModel()
            fresh.refresh(sensitivity)
            fresh.refresh(sensitivity)  # from the table the second time
            solved._solve(sensitivity)
            assert fresh._alert.tobytes() == solved._alert.tobytes()


def test_hours_of_use_from_the_slot_mask_are_those_of_the_list() -> None:
    rng = np.random.default_rng(2)
    by_list, by_mask = FlowModel(), FlowModel()
    for _ in range(50):
        used = [bool(b) for b in rng.random(24) < 0.4]
        by_list.learn_day(used)
        slots = sum((1 << (2 * h)) | (int(rng.random() < 0.5) << (2 * h + 1)) for h in range(24) if used[h])
        by_mask.learn_day_slots(slots)
    assert by_list._state.tobytes() == by_mask._state.tobytes()
    assert len(by_list.p_use) == 24 and len(by_list.longest) == 24 * len(by_list.levels)


def test_an_interval_is_an_immutable_record_that_pickles_by_value() -> None:
    made = RegisterTracker("m1")
    made.push(10.0, 100.0, 3600)
    (x,) = made.push(1810.0, 103.5, 3600)[1]
    assert type(x) is Interval and x == Interval("m1", 10.0, 1810.0, 3.5, "ok", 3600)
    assert pickle.loads(pickle.dumps(x)) == x and x.hours == 0.5
    assert x._replace(usage_l=None) == ("m1", 10.0, 1810.0, None, "ok", 3600)
    with pytest.raises(AttributeError):
        x.start = 0.0  # type: ignore[misc]


def test_checkpoints_of_the_previous_layout_are_refused() -> None:
    fresh = DailyModel()
    nine_slots = (fresh._state[:14], 1 / 30, 14, 0.0, 0, 0.0, 7.0, 1.0, 6.0)  # as pickled before this layout
    with pytest.raises(ValueError, match="older format"):
        DailyModel().__setstate__(nine_slots)
    twenty_slots = (*FlowModel().__getstate__(), array("f", [0.5] * 24))  # p_use was an array of its own
    with pytest.raises(ValueError, match="older format"):
        FlowModel().__setstate__(twenty_slots)


def test_a_silence_the_safety_net_calls_unchanged_changes_nothing() -> None:
    rng = np.random.default_rng(4)
    rule, skipped = LowUseWindowRule(12, 10), 0
    for k in range(4000):
        use = float(rng.choice([0.0, 0.0, 0.0, 0.0, 2.0, 12.0])) if rng.random() > 0.002 else None
        x = Interval("m1", k * 1800.0, (k + 1) * 1800.0, use, "ok", 0)
        if use == 0.0 and rule.unchanged_by_silence(x.end):
            before = pickle.dumps(rule)
            assert rule.update(x) == [] and pickle.dumps(rule) == before
            skipped += 1
        else:
            rule.update(x)
    assert skipped > 1000
