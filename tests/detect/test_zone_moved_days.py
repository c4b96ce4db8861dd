"""An elder's time zone moved west (an operator's correction): a local day is closed once.

A monitor knows local time only by each interval's UTC offset. When the zone moves west (Asia/Shanghai ->
Europe/Madrid) the local day number goes back: the day that had begun was closed after an hour, the day
before opened again and was closed a second time, and after a move of 20 h or more (Pacific/Kiritimati ->
America/Los_Angeles) the daily model learned that day twice. The day now runs on to the new zone's next
midnight and, longer than any day the clocks make, is neither judged nor learned.
"""

from __future__ import annotations

from core.domain import Finding, Interval
from detect import MeterMonitor

DAY, HOUR, SLOT = 86400, 3600, 1800
#: The zones' offsets in December (no summer time then on either side of the move).
SHANGHAI, MADRID, KIRITIMATI, LOS_ANGELES = 8 * HOUR, 1 * HOUR, 14 * HOUR, -8 * HOUR
#: Half hours with use on an ordinary local day (07:00 wash, lunch, dinner, an evening wash), 15 L each.
USE_SLOTS = (14, 15, 24, 25, 36, 37, 40)


def _moved(before: int, after: int, moved_at: float, days: int) -> tuple[list[int], list[int], list[Finding]]:
    """Half-hourly use on the elder's local clock, read at ``before`` until ``moved_at``, at ``after`` since.

    Returns the local day the monitor sums after each interval, the days the daily model learned, the findings.
    """
    m = MeterMonitor("m1")
    summed, learned, found = [], [], []
    for k in range(days * 48):
        t = k * SLOT
        off = before if t + SLOT <= moved_at else after
        used = 15.0 if (t + off) % DAY // SLOT in USE_SLOTS else 0.0
        closing, n = m.day, m.daily.n
        found += m.update(Interval("m1", t, t + SLOT, used, "ok", off))
        if m.daily.n > n:
            learned.append(closing)
        summed.append(m.day)
    return summed, learned, found


def test_a_move_west_after_midnight_does_not_take_the_day_back() -> None:
    # Moved at 01:00 in Shanghai on day 31 (18:00 on day 30 in Madrid): day 31 had begun an hour before.
    summed, learned, found = _moved(SHANGHAI, MADRID, 30 * DAY + 17 * HOUR, 40)
    assert summed == sorted(summed)  # it went 31 -> 30 -> 31: day 30 was closed twice, day 31 too
    assert len(learned) == len(set(learned))
    assert 31 not in learned  # 31 h long (Shanghai's midnight to Madrid's): not a day's water
    assert {30, 32} <= set(learned)
    assert not [f for f in found if f.kind in ("high_usage", "low_usage")]


def test_a_day_is_not_learned_twice_after_a_move_of_most_of_a_day() -> None:
    # Moved at 00:30 on Kiritimati's day 31 (02:30 on day 30 in Los Angeles): day 30 had been learned on
    # Kiritimati's clock, then opened again for 21.5 h on Los Angeles' and learned a second time.
    summed, learned, found = _moved(KIRITIMATI, LOS_ANGELES, 30 * DAY + 10 * HOUR + 30 * 60, 40)
    assert len(learned) == len(set(learned))
    assert summed == sorted(summed)
    assert not [f for f in found if f.kind in ("high_usage", "low_usage")]
