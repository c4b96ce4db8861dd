"""A silence judged by more than its start hour (issue 17 section 4): the habitual hours it passes.

An hour in which the elder uses water on nearly every day that goes by without any, twice, is what a
cadre who knows her would notice ("she always makes her tea at three").
"""

from __future__ import annotations

import pickle

import pytest

import detect.monitor as monitor_module
from core.domain import Finding, Interval
from detect import MeterMonitor
from tests.helpers import checkpoint_from_before

DAY, SLOT = 86400, 1800
#: Half-hour slots with use: every other hour from 07:00 to 21:00, every day (habitual hours 7, 9, ..., 21).
ROUTINE = tuple(range(14, 44, 4))


def _day(m: MeterMonitor, d: int, quiet_from: int = 48) -> list[Finding]:
    found: list[Finding] = []
    for k in range(48):
        t = d * DAY + k * SLOT
        u = 12.0 if k in ROUTINE and k < quiet_from else 0.0
        found += m.update(Interval(m.meter_id, t, t + SLOT, u, "ok", 0))
    return [f for f in found if not f.resolved and f.kind == "no_activity"]


def _trained() -> MeterMonitor:
    m = MeterMonitor("m1")
    for d in range(40):
        assert _day(m, d) == []
    return m


def test_the_habitual_hours_of_an_elder_are_learned() -> None:
    m = _trained()
    assert m.habit_h is not None
    assert m.habit_h[13] == 5.0  # from 13:00, the second habitual hour missed is 17:00-18:00


def test_a_silence_that_misses_two_habitual_hours_alerts_before_its_start_hours_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_habits, without = _trained(), _trained()
    for m in (with_habits, without):
        m.silence._alert[13] = 10.0  # a start hour whose silences have run long (naps, say)
    # No water after the 13:00 use (a fall at 13:30): 15:00 and 17:00 go by without the usual water.
    first = _day(with_habits, 40, quiet_from=27)
    assert len(first) == 1
    hours = (first[0].ts - first[0].since) / 3600
    assert "15:00 and 17:00 went by without water" in first[0].message_en
    assert "15:00、17:00" in first[0].message_zh
    deadline = 4.5 * monitor_module.HABIT_SLACK  # to the end of 17:00-18:00 (4.5 h), with slack
    assert deadline <= hours < deadline + 0.5  # at the first half-hourly reading past it
    monkeypatch.setattr(monitor_module, "HABIT_SHARE", 2.0)  # no hour is habitual: the start hour alone
    late = _day(without, 40, quiet_from=27)
    assert [round((f.ts - f.since) / 3600) for f in late] == [10]


def test_a_benign_outcome_at_an_hour_does_not_switch_its_habits_off() -> None:
    # What a benign silence earned is how long a silence from its hour may last; it never decays. As
    # a floor of the habit deadline it silenced the habits of those hours for good, and on the real
    # homes cost falls 1.5 h at p90 for nothing measurable in noise (docs/detection.md).
    m = _trained()
    m.silence._alert[13] = 10.0
    m.quiet_q = bytes(13) + bytes([40]) + bytes(10)  # a benign silence from 13:00 earned 10 h (quarter hours)
    found = _day(m, 40, quiet_from=27)  # a fall at 13:30: 15:00 and 17:00 go by without the usual water
    assert len(found) == 1 and "15:00 and 17:00 went by without water" in found[0].message_en
    deadline = 4.5 * monitor_module.HABIT_SLACK
    assert deadline <= (found[0].ts - found[0].since) / 3600 < deadline + 0.5


def test_state_stays_compact_and_checkpoints_from_before_still_load() -> None:
    m = _trained()
    assert len(pickle.dumps(m)) <= 4096
    old = checkpoint_from_before(m, monitor_module._HABIT_SLOTS)
    loaded = MeterMonitor.__new__(MeterMonitor)
    loaded.__setstate__(old)
    assert loaded.habit_h is None and loaded.sil_habit == float("inf") and loaded.first_ts == m.first_ts
    again = pickle.loads(pickle.dumps(m))
    assert again.habit_h == m.habit_h


def test_the_habit_table_is_the_second_habitual_hour_after_each_start_hour() -> None:
    # The table is read off the habitual hours in order (daily for every meter); by definition it is, per start
    # hour, the ``HABIT_MISSED``-th smallest distance to a habitual hour (the start hour itself a day later), + 1 h.
    import random
    from array import array

    rng = random.Random(5)
    m = MeterMonitor("m1")
    m.first_ts = -100.0 * DAY  # long past learning
    at = 24 * len(m.flow.levels)
    for _ in range(500):
        habitual = sorted(rng.sample(range(24), rng.randint(0, 24)))
        m.flow._state[at : at + 24] = array("f", [0.9 if h in habitual else 0.2 for h in range(24)])
        m._habit_table()
        if len(habitual) < monitor_module.HABIT_MISSED:
            assert m.habit_h is None
            continue
        expected = [
            sorted((h - hour) % 24 or 24 for h in habitual)[monitor_module.HABIT_MISSED - 1] + 1.0 for hour in range(24)
        ]
        assert m.habit_h is not None and list(m.habit_h) == expected
