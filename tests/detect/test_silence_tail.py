"""The tail past the longest silence seen: a night gets the same margin as an afternoon (issue 17, session 7).

False silence alerts came mostly from silences begun in the day and hardly ever from nights, while
night falls set the p90: the tail's scale used to grow with the length of the silences (a tenth of
it), so a night got twice an afternoon's margin past its longest silence seen.
"""

from __future__ import annotations

import pickle
import random

import numpy as np

from detect.silence import SilenceModel

DAY = 86400.0


def _learned() -> SilenceModel:
    """Ninety days: nights from 22:00 of 7.5-8.5 h, and silences of 0.5-1.8 h from every odd hour of the day."""
    rng = random.Random(3)
    model = SilenceModel()
    for d in range(90):
        model.learn_one(d * DAY + 22 * 3600, rng.uniform(7.5, 8.5), 0)
        for start in range(7, 21, 2):
            model.learn_one(d * DAY + start * 3600, rng.uniform(0.5, 1.8), 0)
        model.decay(1.0)
    model.refresh(1e-3)
    return model


def _margin(model: SilenceModel, hour: int) -> float:
    """Hours from the longest silence seen from ``hour`` (its neighbours pooled) to its alert length."""
    longest = np.frombuffer(model.longest, dtype=np.float32)
    return model.alert_hours(hour) - float(max(longest[(hour - 1) % 24], longest[hour], longest[(hour + 1) % 24]))


def test_a_night_gets_no_wider_margin_than_an_afternoon() -> None:
    model = _learned()
    night, afternoon = _margin(model, 22), _margin(model, 13)
    assert 0.5 < afternoon < 3.0  # past the longest silence seen, but not by hours
    assert abs(night - afternoon) < 0.3, (night, afternoon)


def test_the_margin_still_narrows_as_silences_accumulate() -> None:
    few = SilenceModel()
    for d in range(10):
        few.learn_one(d * DAY + 22 * 3600, 8.0, 0)
    few.refresh(1e-3)
    assert _margin(few, 22) > _margin(_learned(), 22) + 0.5


def test_a_checkpoint_with_the_old_default_tail_takes_the_new_one() -> None:
    old = SilenceModel(tail_fraction=0.1, tail_base_h=0.5)  # as every meter was checkpointed before session 7
    loaded = pickle.loads(pickle.dumps(old))
    assert (loaded.tail_fraction, loaded.tail_base_h) == (SilenceModel().tail_fraction, SilenceModel().tail_base_h)
    chosen = pickle.loads(pickle.dumps(SilenceModel(tail_fraction=0.2, tail_base_h=0.5)))
    assert (chosen.tail_fraction, chosen.tail_base_h) == (0.2, 0.5)  # a tail chosen on purpose stays
