"""bench/outcome_lessons.py (session 23): a benign silence teaching its whole length, measured, not shipped.

bench/ is outside testpaths, so the module is loaded by path; one synthetic elder keeps these fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from core.domain import Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor
from detect.monitor import QUIET_MAX_FACTOR, QUIET_STEP
from tests.conftest import REPO
from tests.tools.scripts import load_script

DAY, SLOT = 86400.0, 1800.0
#: Half-hour slots with use: rising at 06:30, meals, evening; last use at 21:00-21:30.
ROUTINE = (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42)
#: 1970-01-03 was a Saturday: day 2 + 7k is one, day 4 + 7k a Monday (UTC: offset 0 here).
SATURDAY = 2


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    yield load_script(REPO / "bench" / "outcome_lessons.py")
    for name in ("outcome_lessons", "population_prior", "other_elders"):
        sys.modules.pop(name, None)


def _day(m: MeterMonitor, d: int, out_from: int = 48, back_at: int = 48) -> list[Finding]:
    """A day of the routine, out (no water) from slot ``out_from`` until slot ``back_at``; its raised alerts."""
    found: list[Finding] = []
    for k in range(48):
        t = d * DAY + k * SLOT
        used = (k in ROUTINE and not out_from <= k < back_at) or k == back_at
        found += m.update(Interval(m.meter_id, t, t + SLOT, 12.0 if used else 0.0, "ok", 0))
    return [f for f in found if not f.resolved]


def _day_out(m: MeterMonitor, d: int) -> Finding:
    """Out from 08:30 (after the 08:00 wash) until 20:00: a day at a child's home; the silence alert it raises."""
    alerts = [f for f in _day(m, d, out_from=17, back_at=40) if f.kind == "no_activity"]
    assert len(alerts) == 1
    return alerts[0]


def _whole(bench: ModuleType, by_class: bool = False) -> Any:
    m = bench.WholeSilence("m1", Thresholds(), 1.25, 1, by_class)
    for d in range(SATURDAY + 28):
        assert _day(m, d) == []
    return m


def test_a_benign_day_out_teaches_its_whole_length_once_water_ends_it(bench: ModuleType) -> None:
    m = _whole(bench)
    first_day = SATURDAY + 28
    # Answered while she is still out (the contract's visit an hour after the call): ended at 20:00 by her water.
    t = first_day * DAY
    for k in range(48):
        x = Interval("m1", t + k * SLOT, t + (k + 1) * SLOT, 12.0 if k in ROUTINE and k < 17 else 0.0, "ok", 0)
        alerts = [f for f in m.update(x) if not f.resolved and f.kind == "no_activity"]
        if alerts:
            alert, until = alerts[0], k
            break
    assert alert.since is not None
    m.learn_outcome("no_activity", "false_alarm", alert.since, alert.ts)
    at_alert = m.quiet_q[8] / 4.0
    assert at_alert == pytest.approx((alert.ts - alert.since) / 3600.0 * QUIET_STEP, abs=0.25)  # main's lesson
    for k in range(until + 1, 48):
        used = (k >= 40 and k in ROUTINE) or k == 40
        m.update(Interval("m1", t + k * SLOT, t + (k + 1) * SLOT, 12.0 if used else 0.0, "ok", 0))
    whole_h = (t + 40 * SLOT - alert.since) / 3600.0  # from 08:30 to 20:00
    assert m.quiet_q[8] / 4.0 == pytest.approx(whole_h * 1.25, abs=0.25)
    assert m.quiet_q[8] / 4.0 > at_alert
    assert m.silence.alert_hours(8) <= _own(m, 8) * QUIET_MAX_FACTOR + 1e-9  # bounded as main's lesson is


def _own(m: MeterMonitor, hour: int) -> float:
    """The silence model's own alert length for ``hour``, without what outcomes earned."""
    saved = m.silence._alert[:]
    m.silence.refresh(m.thresholds.sensitivity)
    own = float(m.silence._alert[hour])
    m.silence._alert[:] = saved
    return own


def test_a_confirmed_silence_or_a_seen_elder_teaches_no_whole_length(bench: ModuleType) -> None:
    for outcome in ("needed_help", "ok"):
        m = _whole(bench)
        alert = _day_out(m, SATURDAY + 28)  # the day runs on: her water at 20:00 ends the silence
        before = m.quiet_q
        assert alert.since is not None
        m.learn_outcome("no_activity", outcome, alert.since, alert.ts)  # a late answer: the data closed it first
        if outcome == "needed_help":
            assert m.quiet_q == before == b""
        else:  # seen well: main's lesson at the alert, no more
            assert m.quiet_q[8] / 4.0 == pytest.approx((alert.ts - alert.since) / 3600.0 * QUIET_STEP, abs=0.25)


def test_by_class_the_whole_length_holds_on_its_weekday_class_only(bench: ModuleType) -> None:
    m = _whole(bench, by_class=True)
    saturday = SATURDAY + 28
    alert = _day_out(m, saturday)
    m.learn_outcome("no_activity", "false_alarm", alert.since, alert.ts)  # after the data closed it: taught at once
    assert m.quiet_w[24 + 8] > 0 and not any(m.quiet_w[:24])
    _day(m, saturday + 1)  # Sunday: the weekend's lift holds
    weekend = m.silence.alert_hours(8)
    _day(m, saturday + 2)  # Monday: gone
    assert m.silence.alert_hours(8) < weekend


def test_without_outcomes_the_lesson_changes_nothing(bench: ModuleType) -> None:
    plain, whole = MeterMonitor("m1"), bench.WholeSilence("m1", Thresholds(), 1.25, 2, True)
    for d in range(40):
        out_from, back_at = (17, 40) if d % 7 == SATURDAY else (48, 48)
        assert _day(plain, d, out_from, back_at) == _day(whole, d, out_from, back_at)


def test_seed_1_is_refused(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--data", "sim:300x120x1"])
    assert "seed 1" in capsys.readouterr().err


def test_a_silence_past_the_lessons_reach_teaches_no_whole_length(bench: ModuleType) -> None:
    m = _whole(bench)
    m.reach = 1.0  # no whole length past the silence's length at its alert: a day out always is
    alert = _day_out(m, SATURDAY + 28)
    assert alert.since is not None
    m.learn_outcome("no_activity", "false_alarm", alert.since, alert.ts)
    assert m.quiet_q[8] / 4.0 == pytest.approx((alert.ts - alert.since) / 3600.0 * QUIET_STEP, abs=0.25)
