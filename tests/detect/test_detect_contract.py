"""Contract every per-meter model in ``detect`` must keep (like river's ``checks/common.py``).

We hold thousands of these in memory and pickle them as checkpoints, so each one
must round-trip through pickle without changing what it says next, stay small
after months of data, answer before it has learned anything, and never mutate
or keep hold of its input.
"""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.domain import Interval
from detect import MeterMonitor
from detect.oracle import SilenceOracle
from detect.rules import (
    AllSlotsRule,
    ContinuousUseRule,
    DayBoundsRule,
    LowUseWindowRule,
    NoUseRule,
    RuleSet,
)

SLOT = 1800
DAY = 86400
MAX_BYTES = 4096


def elder_home(days: int, seed: int = 0, start_day: int = 0) -> Iterator[Interval]:
    """Half-hourly intervals of an elder: up ~06:30, meals, evening wash, bed ~21:30, faults now and then."""
    rng = random.Random(seed)
    for d in range(start_day, start_day + days):
        wake = 13 + rng.choice((0, 0, 1))
        busy = {wake, wake + 1, 16, 22, 23, 27, 30, 34, 35, 38, 40, 42}
        for k in range(48):
            t = d * DAY + k * SLOT
            if rng.random() < 0.002:
                yield Interval("m1", t, t + SLOT, None, "glitch", 8 * 3600)
                continue
            use = rng.uniform(3.0, 25.0) if k in busy and rng.random() < 0.85 else 0.0
            if k < 12 and rng.random() < 0.05:
                use = 6.0  # a night-time flush
            yield Interval("m1", t - 8 * 3600, t + SLOT - 8 * 3600, round(use, 1), "ok", 8 * 3600)


def _signature(findings: list[Any]) -> list[tuple[Any, ...]]:
    return [(f.kind, f.ts, f.resolved, f.basis, f.message_en) for f in findings]


MODELS: dict[str, Callable[[], Any]] = {
    "MeterMonitor": lambda: MeterMonitor("m1"),
    "LowUseWindowRule": lambda: LowUseWindowRule(12, 10),
    "NoUseRule": lambda: NoUseRule(8),
    "ContinuousUseRule": lambda: ContinuousUseRule(2),
    "AllSlotsRule": lambda: AllSlotsRule(24),
    "DayBoundsRule": lambda: DayBoundsRule(),
    "RuleSet": lambda: RuleSet([NoUseRule(8), ContinuousUseRule(2)]),
    "SilenceOracle": lambda: SilenceOracle.fit(list(elder_home(30, seed=5))),
}


@pytest.fixture(params=sorted(MODELS), ids=sorted(MODELS))
def make(request: pytest.FixtureRequest) -> Callable[[], Any]:
    return MODELS[request.param]


def test_pickling_round_trip_keeps_behaviour(make: Callable[[], Any]) -> None:
    model = make()
    for x in elder_home(20, seed=1):
        model.update(x)
    clone = pickle.loads(pickle.dumps(model))
    later = list(elder_home(15, seed=2, start_day=20))
    later[200:230] = [Interval("m1", x.start, x.end, 0.0, "ok", x.utc_offset_s) for x in later[200:230]]
    a = [f for x in later for f in model.update(x)]
    b = [f for x in later for f in clone.update(x)]
    assert _signature(a) == _signature(b)


def test_bounded_memory_growth(make: Callable[[], Any]) -> None:
    model = make()
    stream = elder_home(180, seed=3)
    for _ in range(30 * 48):
        model.update(next(stream))
    one_month = len(pickle.dumps(model))
    for x in stream:
        model.update(x)
    six_months = len(pickle.dumps(model))
    assert six_months <= MAX_BYTES, f"{six_months} B after six months"
    assert six_months <= one_month * 1.25 + 256, f"grew from {one_month} B to {six_months} B"


def test_scores_before_learning(make: Callable[[], Any]) -> None:
    model = make()
    first = Interval("m1", 0.0, SLOT, 0.0, "ok", 0)
    assert isinstance(model.update(first), list)
    unknown = Interval("m1", SLOT, 2 * SLOT, None, "reset", 0)
    assert isinstance(model.update(unknown), list)


def test_no_aliasing_of_input(make: Callable[[], Any]) -> None:
    model = make()
    xs = list(elder_home(10, seed=4))
    before = copy.deepcopy(xs)
    findings = [f for x in xs for f in model.update(x)]
    assert xs == before
    for f in findings:
        assert all(v is not x for x in xs[:50] for v in f.details.values())


def test_clones_are_independent(make: Callable[[], Any]) -> None:
    a = make()
    b = copy.deepcopy(a)
    for x in elder_home(5, seed=6):
        a.update(x)
    fresh = make()
    probe = list(elder_home(3, seed=7, start_day=5))
    assert _signature([f for x in probe for f in b.update(x)]) == _signature(
        [f for x in probe for f in fresh.update(x)]
    )
