"""bench/new_homes.py's silence tail variants (session 13): at the model's settings they are the model, and each
widens the tail where few silences were seen (bench/ is outside testpaths)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from types import ModuleType

import pytest

from detect.silence import SilenceModel
from tests.conftest import REPO
from tests.tools.scripts import load_script

DAY = 86400.0


@pytest.fixture(scope="module")
def new_homes() -> Iterator[ModuleType]:
    module = load_script(REPO / "bench" / "new_homes.py")
    yield module
    module.TailVariant.prior_share, module.TailVariant.lomax = module.TAILS["model"]


def taught(model: SilenceModel, days: int) -> SilenceModel:
    """The docstring's elder: a night from 22:00, short silences every other hour by day."""
    rng = random.Random(7)
    for d in range(days):
        model.learn_one(d * DAY + 22 * 3600, 8.5 + rng.uniform(-0.5, 0.5), 0)
        for start in range(7, 21, 2):
            model.learn_one(d * DAY + start * 3600, rng.uniform(0.5, 1.8), 0)
        model.decay(1.0)
    model.refresh(1e-3)
    return model


def alerts(new_homes: ModuleType, tail: str, days: int) -> list[float]:
    new_homes.TailVariant.prior_share, new_homes.TailVariant.lomax = new_homes.TAILS[tail]
    model = taught(new_homes.TailVariant(), days)
    return [model.alert_hours(h) for h in range(24)]


@pytest.mark.parametrize("days", [0, 5, 60])
def test_the_models_tail_gives_the_models_alert_lengths(new_homes: ModuleType, days: int) -> None:
    assert alerts(new_homes, "model", days) == [taught(SilenceModel(), days).alert_hours(h) for h in range(24)]


def test_not_counting_the_prior_as_silences_seen_widens_the_tail_where_few_were_seen(new_homes: ModuleType) -> None:
    model_young, own_young = alerts(new_homes, "model", 5), alerts(new_homes, "own", 5)
    model_old, own_old = alerts(new_homes, "model", 60), alerts(new_homes, "own", 60)
    assert all(o >= m for o, m in zip(own_young + own_old, model_young + model_old, strict=True))
    # From 21:00 (the night's start, pooled): 5 nights seen against a prior worth some 6 more, then 60 against less
    # than one: later while the home is young, the same once it has settled.
    assert own_young[21] - model_young[21] > 0.5
    assert own_old[21] - model_old[21] < 0.2
    # From 00:00, where this elder's silences never start, the tail widens however long she has been watched.
    assert own_old[0] - model_old[0] > 1.0


def test_the_lomax_tail_is_heavier_when_fewer_silences_were_seen(new_homes: ModuleType) -> None:
    young = [a - b for a, b in zip(alerts(new_homes, "lomax", 5), alerts(new_homes, "model", 5), strict=True)]
    old = [a - b for a, b in zip(alerts(new_homes, "lomax", 60), alerts(new_homes, "model", 60), strict=True)]
    assert min(young + old) >= 0.0
    assert young[21] > old[21] + 0.2


def test_evidence_counts_the_pooled_silences_and_the_prior_left(new_homes: ModuleType) -> None:
    model = taught(SilenceModel(), 10)
    n_own, weight, anchor = new_homes.evidence(model, 9)
    hist = model.histogram().astype(float).sum(axis=1)
    assert n_own == pytest.approx(0.5 * hist[8] + hist[9] + 0.5 * hist[10])
    assert weight == pytest.approx(model.prior_weight * (20.0 / (20.0 + n_own)) ** 2)
    assert 1.0 <= anchor <= 2.0  # the day's silences from 09:00 last 0.5-1.8 h


def test_a_variant_no_longer_young_has_the_models_tail(new_homes: ModuleType) -> None:
    new_homes.TailVariant.prior_share, new_homes.TailVariant.lomax = new_homes.TAILS["lomax-own"]
    variant = new_homes.TailVariant()
    variant.young = False  # what ``--tail-days`` sets once the home is older
    taught(variant, 5)
    assert [variant.alert_hours(h) for h in range(24)] == [taught(SilenceModel(), 5).alert_hours(h) for h in range(24)]
