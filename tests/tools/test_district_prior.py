"""bench/district_prior.py (session 17): a silence prior the district refits from its own elders, causally.

bench/ is outside testpaths, so the module is loaded by path; a tiny simulated population keeps these fast.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import detect.silence as silence_module
from core.domain import Interval
from core.thresholds import Thresholds
from detect.prior import SILENCE_EDGES, SILENCE_PRIOR
from tapwatch import evaluate as ev
from tests.conftest import REPO
from tests.tools.scripts import load_script

DAY = 86400.0
HOUR = 3600.0


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    yield load_script(REPO / "bench" / "district_prior.py")
    for name in ("district_prior", "population_prior"):
        sys.modules.pop(name, None)


def _uses(meter_id: str, at_hours: list[float], days: float) -> list[Interval]:
    """Half-hourly intervals with 5 L in those that begin at ``at_hours`` (hours since 0), none elsewhere."""
    wet = {round(h * 2) for h in at_hours}
    return [
        Interval(meter_id, k * 1800.0, (k + 1) * 1800.0, 5.0 if k in wet else 0.0, "ok", 0)
        for k in range(int(days * 48))
    ]


def test_the_prior_at_t_knows_only_the_silences_completed_before_t(bench: ModuleType) -> None:
    # Uses at 07:00, 10:00 and 20:00: a 2.5 h silence from 07:30, and a 9.5 h one from 10:30; then 3 days dry.
    xs = _uses("M1", [7.0, 10.0, 20.0], 4)
    data = ev.Dataset(name="tiny", intervals={"M1": xs}, truth=[], readings=len(xs))
    per_meter = bench.completed_silences(data)
    early = bench.district_prior_at(per_meter, 12 * HOUR)
    later = bench.district_prior_at(per_meter, 21 * HOUR)
    assert early[7].argmax() == later[7].argmax() == bisect.bisect_right(SILENCE_EDGES, 2.5)
    assert early[7].max() > 0.9  # the only silence known by noon: its hour's row is all it
    assert np.allclose(early[10], early[10][0])  # the one from 10:30 has not ended by noon: that row knows nothing
    assert later[10].argmax() == bisect.bisect_right(SILENCE_EDGES, 9.5)
    assert np.allclose(later[20], later[20][0])  # the last silence has not ended (and would be over 24 h)
    assert np.allclose(later.sum(axis=1), 1.0)


def test_the_schedule_starts_with_the_shipped_prior_and_mixes_in_the_district(bench: ModuleType) -> None:
    xs = _uses("M1", [7.0 + 24 * d for d in range(20)] + [21.0 + 24 * d for d in range(20)], 20)
    data = ev.Dataset(name="tiny", intervals={"M1": xs}, truth=[], readings=len(xs))
    plan = bench.schedule(data, every_days=7.0, min_days=7.0, mix=0.25)
    assert [t / DAY for t, _ in plan] == [0.0, 7.0, 14.0]
    assert plan[0][1] is SILENCE_PRIOR
    learned = bench.district_prior_at(bench.completed_silences(data), 7 * DAY)
    assert np.allclose(plan[1][1], 0.25 * learned + 0.75 * SILENCE_PRIOR)


def test_a_monitor_follows_the_schedule_and_the_shipped_prior_is_restored(bench: ModuleType) -> None:
    xs = _uses("M1", [7.0 + 24 * d for d in range(6)], 6)
    other = np.full_like(SILENCE_PRIOR, 1.0 / SILENCE_PRIOR.shape[1])
    seen = []
    with bench.district([(0.0, SILENCE_PRIOR), (3 * DAY, other)]):
        monitor = ev.tapwatch_factory(Thresholds())("M1", xs, [])
        assert isinstance(monitor, bench.DistrictMonitor)
        for x in xs:
            monitor.update(x)
            seen.append(silence_module.SILENCE_PRIOR is other)
    assert seen.index(True) == 3 * 48 and all(seen[3 * 48 :])
    assert silence_module.SILENCE_PRIOR is SILENCE_PRIOR and ev.MeterMonitor is not bench.DistrictMonitor


def test_the_bench_scores_a_tiny_population(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--data", "sim:6x20x5", "--every", "5", "--mix", "0.5", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "district prior every 5 d from day 7, mix 0.5" in out
    assert "without outcomes: false community" in out and "by age (days)" in out
    assert silence_module.SILENCE_PRIOR is SILENCE_PRIOR
