"""A silence that alerted and then ended with use is learned at once, not at the next weekly refresh.

Session 9: without a person's outcome (live, many cases close by the data before anyone records one), the alert
length of a start hour waited up to 7 days (``REFRESH_DAYS``) to take in a silence that had just proved normal,
so the same outing called the cadre again the next day.
"""

from __future__ import annotations

from collections.abc import Iterator

from core.domain import Finding, Interval
from detect import MeterMonitor
from detect.monitor import REFRESH_DAYS

SLOT = 1800
DAY = 86400
#: Water at these half hours: rising at 06:30, meals, evening; every half hour from 09:00 to 13:00 a use too.
ROUTINE = (13, 14, 16, 17, 18, 20, 22, 23, 24, 26, 28, 30, 32, 34, 35, 38, 40, 42)
#: A day out: nothing from 09:00 to 13:00 (4 h), far past this elder's usual morning gaps.
OUTING = tuple(k for k in ROUTINE if not 18 <= k < 26)


def day(d: int, used: tuple[int, ...]) -> Iterator[Interval]:
    for k in range(48):
        t = d * DAY + k * SLOT
        yield Interval("m1", t, t + SLOT, 10.0 if k in used else 0.0, "ok", 0)


def raised(m: MeterMonitor, xs: Iterator[Interval]) -> list[Finding]:
    return [f for x in xs for f in m.update(x) if not f.resolved and f.kind == "no_activity"]


def test_an_outing_that_ended_with_use_does_not_call_again_the_next_day() -> None:
    m = MeterMonitor("m1")
    d = 0
    while d < 60 or m.refresh_day != d - 1:  # two months learned, the alert lengths refreshed this morning
        assert raised(m, day(d, ROUTINE)) == []
        d += 1
    assert [f.since for f in raised(m, day(d, OUTING))] == [d * DAY + 18 * SLOT]  # news the first time
    # The next day, before the weekly refresh: the same outing is now part of what this elder does.
    assert d + 1 < m.refresh_day + REFRESH_DAYS
    assert raised(m, day(d + 1, OUTING)) == []
