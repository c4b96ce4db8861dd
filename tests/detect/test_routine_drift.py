"""``routine_change``: a slow change of routine is found, one odd day is not (``detect.daily``)."""

from __future__ import annotations

import random

from detect.daily import DailyModel, DaySummary


def _learned(days: int = 60, seed: int = 5) -> tuple[DailyModel, random.Random]:
    """An elder who rises about 07:00 and uses about 150 L a day, learned for ``days`` days."""
    rng = random.Random(seed)
    model = DailyModel()
    for d in range(days):
        assert model.learn_one(_day(d, rng)) == []
    return model, rng


def _day(d: int, rng: random.Random, *, rising_later_h: float = 0.0, use: float = 1.0) -> DaySummary:
    total = rng.uniform(120.0, 180.0) * use
    return DaySummary(d, total, 7.0 + rng.gauss(0.0, 0.4) + rising_later_h, 20, 24.0)


def test_one_day_of_late_rising_is_not_a_change_of_routine() -> None:
    # The day an elder comes home at 19:00 from a night away: the first use is 12 h late.
    model, rng = _learned()
    assert model.learn_one(DaySummary(60, 90.0, 19.1, 8, 24.0)) == []
    for d in range(61, 90):
        assert model.learn_one(_day(d, rng)) == []


def test_a_few_odd_days_scattered_over_months_are_not_a_change_either() -> None:
    model, rng = _learned()
    found = []
    for d in range(60, 180):
        odd = d % 20 == 0  # a late morning or a day out every three weeks or so
        found += model.learn_one(_day(d, rng, rising_later_h=5.0 if odd else 0.0, use=0.4 if odd else 1.0))
    assert found == []


def test_a_decline_over_weeks_is_found_while_it_goes_on() -> None:
    # Frailty: over eight weeks she rises 1.5 h later and uses a third less water, and stays so.
    model, rng = _learned()
    found_on = None
    for k in range(90):
        progress = min(k / 56.0, 1.0)
        drifting = model.learn_one(_day(60 + k, rng, rising_later_h=1.5 * progress, use=1.0 - 0.33 * progress))
        if drifting and found_on is None:
            found_on = k
    assert found_on is not None and found_on <= 63
    assert model.usual_wake < 7.0 + 1.5  # the baseline has not yet taken the new rising time for normal


def test_a_checkpoint_from_before_the_slow_baselines_starts_them_at_its_means() -> None:
    model, rng = _learned()
    state = model.__getstate__()
    older = (state[0][:-2], *state[1:])  # as pickled before session 8: no slow baselines
    restored = DailyModel.__new__(DailyModel)
    restored.__setstate__(older)
    assert restored.usual_mean == model.mean and restored.usual_wake == model.wake_mean
    assert restored.learn_one(_day(60, rng)) == []
