"""A home whose water never stops: a fall under a running cistern is still found (session 10).

A trickle under the leak level (a running cistern, a dripping tap) draws a litre or more in every interval:
counted as use, it hid every silence and kept the safety net's litres up, so a fall in that home was never
found. The base flow (``detect.baseflow``) is the plumbing's: use is what a person draws above it.
"""

from __future__ import annotations

import bisect
import math
import pickle
import random
from collections.abc import Callable

import pytest

import detect.baseflow as baseflow
import detect.monitor as monitor_module
from core.domain import COMMUNITY, MAINTENANCE, Finding, Interval
from detect.monitor import MeterMonitor
from tests.helpers import checkpoint_from_before

DAY = 86400.0
SLOT = 1800.0
#: Half-hours of the day the elder uses water (12 L each): rising, meals, evening.
ROUTINE = (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42)
#: Litres a trickle has drawn by a time (a register counts them floored to the litre).
Register = Callable[[float], float]


def constant(lph: float, start: float = 0.0, end: float = math.inf) -> Register:
    return lambda t: max(min(t, end) - start, 0.0) * lph / 3600.0


def cistern(seed: int, days: int) -> Register:
    """A cistern that refills irregularly: 3-9 L every 20-90 min."""
    rng = random.Random(seed)
    times, totals = [0.0], [0.0]
    while times[-1] < days * DAY:
        times.append(times[-1] + rng.uniform(20.0, 90.0) * 60.0)
        totals.append(totals[-1] + rng.uniform(3.0, 9.0))
    return lambda t: totals[bisect.bisect_right(times, t) - 1]


def no_trickle(t: float) -> float:
    return 0.0


def run(m: MeterMonitor, days: range, trickle: Register, fall_at: float = math.inf) -> list[Finding]:
    """The elder's routine plus the trickle, half-hourly; from ``fall_at`` on she uses no water (the trickle runs)."""
    found: list[Finding] = []
    for d in days:
        for k in range(48):
            t = d * DAY + k * SLOT
            person = 12.0 if k in ROUTINE and t < fall_at else 0.0
            drawn = math.floor(trickle(t + SLOT)) - math.floor(trickle(t))
            found += m.update(Interval(m.meter_id, t, t + SLOT, person + drawn, "ok", 0))
    return found


def raised(found: list[Finding], route: str = COMMUNITY) -> list[Finding]:
    return [f for f in found if not f.resolved and f.route == route]


FALL = 21 * DAY + 10 * 3600.0  # 10:00 on day 21, after her 07:00 water


def test_a_fall_under_a_constant_trickle_is_found() -> None:
    m = MeterMonitor("m1")
    assert raised(run(m, range(21), constant(3.0))) == []  # three weeks of routine over a 3 L/h trickle
    found = raised(run(m, range(21, 23), constant(3.0), fall_at=FALL))
    assert [f.kind for f in found] == ["no_activity"]
    assert found[0].ts - FALL <= 16 * 3600.0


def test_a_fall_under_a_cistern_that_refills_irregularly_is_found() -> None:
    m = MeterMonitor("m1")
    tank = cistern(seed=5, days=23)
    assert raised(run(m, range(21), tank)) == []
    found = raised(run(m, range(21, 23), tank, fall_at=FALL))
    assert [f.kind for f in found] == ["no_activity"]
    assert found[0].ts - FALL <= 24 * 3600.0


def test_a_home_without_a_trickle_gives_exactly_the_findings_it_gave_before(monkeypatch: pytest.MonkeyPatch) -> None:
    def stream(m: MeterMonitor) -> list[tuple[str, str, float, bool]]:
        # Routine with a 1 L tick now and then (rounding, a drip that stops), an absence and a fall.
        rng = random.Random(11)
        out = []
        for d in range(40):
            for k in range(48):
                t = d * DAY + k * SLOT
                u = 12.0 if k in ROUTINE and d not in (25, 26) and t < 35 * DAY + 9 * 3600 else 0.0
                u += 1.0 if rng.random() < 0.15 else 0.0
                out += [(f.kind, f.route, f.ts, f.resolved) for f in m.update(Interval("m1", t, t + SLOT, u, "ok", 0))]
        return out

    now = stream(MeterMonitor("m1"))
    monkeypatch.setattr(baseflow, "WINDOW_BLOCKS", 10**9)  # the base flow never found: the monitor as before it
    before = stream(MeterMonitor("m1"))
    assert now == before and any(kind == "no_activity" for kind, *_ in now)


def test_a_water_that_never_stops_is_reported_to_maintenance_once_and_cleared_when_it_stops() -> None:
    m = MeterMonitor("m1")
    trickle = constant(4.0, start=3 * DAY, end=12 * DAY)  # a cistern runs for nine days, then is repaired
    found = run(m, range(21), trickle)
    base = [f for f in found if f.details.get("base_lph") or (f.resolved and f.route == MAINTENANCE)]
    assert [(f.kind, f.route, f.resolved) for f in base] == [
        ("continuous_flow", MAINTENANCE, False),
        ("continuous_flow", MAINTENANCE, True),
    ]
    opened, cleared = base
    found_at = 3 * DAY + monitor_module.BASE_FLOW_REPORT_H * 3600.0
    assert found_at <= opened.ts <= found_at + 3 * 3600.0 and opened.since is not None and opened.since <= 3.1 * DAY
    # Stopped by the first night without water (two dry blocks), cleared once it stayed stopped.
    assert 12 * DAY < cleared.ts <= 13 * DAY + monitor_module.BASE_FLOW_CLEAR_H * 3600.0
    assert "running cistern" in opened.message_en and "水箱" in opened.message_zh
    assert raised(found) == []  # no cadre is called about the plumbing


def test_a_person_closing_the_report_teaches_the_flow_model_nothing() -> None:
    m = MeterMonitor("m1")
    found = run(m, range(10), constant(4.0, start=3 * DAY))
    report = next(f for f in found if f.details.get("base_lph") and not f.resolved)
    flow_before = bytes(m.flow._state)
    # What a person's resolve of the meter's case applies (engine.outcomes.apply_outcome): the plumber came.
    m.learn_outcome(report.kind, "ok", report.since, report.ts, 0, report.details["lpm"])
    assert bytes(m.flow._state) == flow_before and m.base_open == monitor_module._BASE_REPORTED
    later = run(m, range(10, 12), constant(4.0, start=3 * DAY))
    assert not [f for f in later if f.details.get("base_lph")]  # not raised again while the water runs


def test_state_survives_pickling_and_a_checkpoint_from_before_the_base_flow_loads() -> None:
    m = MeterMonitor("m1")
    run(m, range(10), constant(3.0))
    assert m.base.lph > 0.0
    assert len(pickle.dumps(m)) <= 4096
    copy = pickle.loads(pickle.dumps(m))
    assert (copy.base.lph, copy.base.allow_lph, list(copy.base.blocks)) == (
        m.base.lph,
        m.base.allow_lph,
        list(m.base.blocks),
    )
    later = [(f.kind, f.ts, f.resolved) for f in run(m, range(10, 13), constant(3.0), fall_at=10.5 * DAY)]
    assert later == [(f.kind, f.ts, f.resolved) for f in run(copy, range(10, 13), constant(3.0), fall_at=10.5 * DAY)]
    older = checkpoint_from_before(m, monitor_module._BASE_SLOTS)
    loaded = MeterMonitor.__new__(MeterMonitor)
    loaded.__setstate__(older)
    assert loaded.base.lph == 0.0 and loaded.base_open == 0 and loaded.first_ts == m.first_ts
    other = MeterMonitor.__new__(MeterMonitor)
    other.__setstate__(older)
    assert other.base is not loaded.base  # each meter learns its own


def _window_from_scratch(blocks: list[float]) -> tuple[float, float]:
    """The base flow of a full window as the first version computed it at every block: (lph, allow_lph)."""
    rates = blocks[0::2]
    quiet = sorted(range(baseflow.WINDOW_BLOCKS), key=rates.__getitem__)[: baseflow.QUIET_BLOCKS]
    peaks = sorted(blocks[2 * i + 1] for i in quiet)
    return min(rates), max(peaks[baseflow.PEAK_RANK], min(rates))


def test_a_full_window_that_keeps_its_quietest_blocks_gives_what_recomputing_it_gives() -> None:
    # The window is recomputed only when the block that leaves or the one that comes is among its quietest
    # (``quiet_lph``): over weeks of a lumpy trickle, with ties (rates in whole litres), the base flow after every
    # block must be the one the whole window gives.
    rng = random.Random(7)
    base = baseflow.BaseFlow()
    hour = 3600.0
    checked = 0
    for k in range(24 * 60):
        base.learn_one(k * hour, (k + 1) * hour, float(rng.choice((1, 2, 2, 3, 3, 4, 8, 20))))
        if len(base.blocks) == 2 * baseflow.WINDOW_BLOCKS:
            assert (base.lph, base.allow_lph) == _window_from_scratch(list(base.blocks))
            checked += 1
    assert checked > 600


@pytest.mark.parametrize("added", [("quiet_lph", "reported", "wet_end"), ("reported", "wet_end")])
def test_a_base_flow_checkpoint_from_session_10_loads_and_goes_on_the_same(added: tuple[str, ...]) -> None:
    # Session 10's first checkpoints lacked ``quiet_lph``, its last ``reported`` and ``wet_end`` (session 11).
    base = baseflow.BaseFlow()
    hour = 3600.0
    rng = random.Random(3)
    usage = [float(rng.choice((2, 3, 3, 5, 9))) for _ in range(24 * 8)]
    for k in range(24 * 5):
        base.learn_one(k * hour, (k + 1) * hour, usage[k])
    assert base.lph > 0.0
    older = tuple(v for n, v in zip(baseflow.BaseFlow.__slots__, base.__getstate__(), strict=True) if n not in added)
    loaded = baseflow.BaseFlow.__new__(baseflow.BaseFlow)
    loaded.__setstate__(older)
    assert loaded.reported == base.since  # a base flow found then was reported then
    for k in range(24 * 5, 24 * 8):
        base.learn_one(k * hour, (k + 1) * hour, usage[k])
        loaded.learn_one(k * hour, (k + 1) * hour, usage[k])
        assert (loaded.lph, loaded.allow_lph, loaded.quiet_lph) == (base.lph, base.allow_lph, base.quiet_lph)
