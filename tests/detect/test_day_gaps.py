"""Readings lost in a gap are litres without a time: a day is judged on what is known of it.

A meter that misses transmissions sends its register when it is heard again: the interval spans the gap
(status ``gap``) and holds everything used in it. A real home (DAIAD, seed 2) sent a register after 73
days without a word, 4,506 L, and that day was judged as using 4,506 L: a call to the cadre about a pipe
or a tap (every false ``high_usage`` call on the tuning sets came within a day of a gap). A gap over the
morning also put the elder's rising at the gap's end: "rises later", a change of routine from a radio.
"""

from __future__ import annotations

import pickle
import random

from core.domain import Finding, Interval
from detect import MeterMonitor
from detect.monitor import _GAP_SLOTS
from tests.helpers import checkpoint_from_before

DAY, SLOT = 86400, 1800


def _litres(rng: random.Random) -> dict[int, float]:
    """An elder's day by half hour: up at 07:00 (flush, wash), lunch, dinner and an evening wash."""
    return {k: 15.0 * rng.uniform(0.8, 1.2) for k in (14, 15, 24, 25, 36, 37, 40)}


def _day(m: MeterMonitor, d: int, rng: random.Random, gap: tuple[int, int] | None = None) -> list[Finding]:
    """One day of half-hourly readings; ``gap`` (first, last slot) comes as one interval, as a late meter sends it."""
    litres = _litres(rng)
    found: list[Finding] = []
    k = 0
    while k < 48:
        start = d * DAY + k * SLOT
        if gap is not None and k == gap[0]:
            used = sum(litres.get(j, 0.0) for j in range(gap[0], gap[1] + 1))
            found += m.update(Interval(m.meter_id, start, d * DAY + (gap[1] + 1) * SLOT, used, "gap", 0))
            k = gap[1] + 1
            continue
        found += m.update(Interval(m.meter_id, start, start + SLOT, litres.get(k, 0.0), "ok", 0))
        k += 1
    return found


def _raised(found: list[Finding], kind: str) -> list[Finding]:
    return [f for f in found if f.kind == kind and not f.resolved]


def _settled(days: int, seed: int) -> tuple[MeterMonitor, random.Random, list[Finding]]:
    """A monitor that has seen ``days`` of the elder's days, every reading on time, and what it raised."""
    rng = random.Random(seed)
    m = MeterMonitor("m1")
    found: list[Finding] = []
    for d in range(days):
        found += _day(m, d, rng)
    return m, rng, found


def test_a_register_sent_after_weeks_of_silence_is_not_one_days_use() -> None:
    m, rng, found = _settled(40, seed=1)
    # Twenty days unheard (about 2,100 L used in them), then heard again at noon and every half hour after.
    used = sum(sum(_litres(rng).values()) for _ in range(20))
    found += m.update(Interval("m1", 40 * DAY, 60 * DAY + 12 * 3600, used, "gap", 0))
    for k in range(24, 48):
        start = 60 * DAY + k * SLOT
        found += m.update(Interval("m1", start, start + SLOT, 15.0 if k in (24, 36, 37) else 0.0, "ok", 0))
    for d in range(61, 64):
        found += _day(m, d, rng)
    assert used > m.thresholds.daily_max_l
    assert not _raised(found, "high_usage")
    assert not _raised(found, "low_usage")


def test_a_morning_in_a_gap_hides_the_rising_time_it_does_not_make_it_late() -> None:
    # From day 60 the meter's readings from 05:00 to 08:30 come in one interval each day (3.5 h, a gap): the
    # elder still rises at 07:00, and uses as much water as ever.
    m, rng, found = _settled(60, seed=2)
    usual = m.daily.recent_wake
    for d in range(60, 120):
        found += _day(m, d, rng, gap=(10, 16))
    assert not _raised(found, "routine_change")
    assert abs(m.daily.recent_wake - usual) < 0.25  # the hidden mornings taught no rising time at all
    assert m.daily.n > 100  # the days were judged and learned, on their volume


def test_a_gap_that_began_yesterday_gives_today_only_its_share_of_the_litres() -> None:
    m, _, _ = _settled(30, seed=3)
    # 20:00 yesterday to 02:00 today, 60 L: today's part is a third of the gap.
    m.update(Interval("m1", 30 * DAY + 20 * 3600, 31 * DAY + 2 * 3600, 60.0, "gap", 0))
    assert m.day_total == 20.0
    assert m.day_known_s - m.day_gap_s == 0.0  # none of it was seen


def test_a_checkpoint_from_before_gaps_were_told_apart_loads() -> None:
    m, _, _ = _settled(1, seed=5)
    old = checkpoint_from_before(m, _GAP_SLOTS)  # (and without the slots added since)
    restored = MeterMonitor.__new__(MeterMonitor)
    restored.__setstate__(old)
    assert restored.day_gap_s == 0.0
    assert pickle.loads(pickle.dumps(restored)).day_total == m.day_total
