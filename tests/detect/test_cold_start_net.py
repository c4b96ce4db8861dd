"""The learning week's safety net (``ceiling_hours``): long enough for an elder's night, short enough for a fall.

Session 9 measured where false silence calls come from: on the simulator a fifth of them were this net in an
elder's first week, Shanghai's 12 h rule firing at dawn on evening silences the population prior already
judged normal (docs/detection-studies.md, "Where false silence calls come from (session 9)").
"""

from __future__ import annotations

from collections.abc import Iterator

from core.domain import Finding, Interval
from core.thresholds import Thresholds
from detect import MeterMonitor

SLOT = 1800
DAY = 86400
OFF = 8 * 3600  # Shanghai: local = UTC + 8 h
#: An early sleeper: water at these half hours, the last at 18:30-19:00, the first again at 07:30 (a 12.5 h night).
USED = (15, 16, 18, 20, 23, 26, 28, 30, 33, 35, 37)


def day(d: int, until_slot: int = 48) -> Iterator[Interval]:
    """Day ``d`` of the early sleeper (local days), with no water from half hour ``until_slot`` on."""
    for k in range(48):
        t = d * DAY + k * SLOT - OFF
        yield Interval("m1", t, t + SLOT, 12.0 if k in USED and k < until_slot else 0.0, "ok", OFF)


def raised(m: MeterMonitor, xs: Iterator[Interval]) -> list[Finding]:
    return [f for x in xs for f in m.update(x) if not f.resolved and f.kind == "no_activity"]


def test_an_early_sleepers_nights_in_the_learning_week_call_no_cadre() -> None:
    # Before session 9 the net (under 10 L in 12 h) fired at 07:00 on each of these 12.5 h nights: six calls in
    # the first week about an elder asleep, where the population prior puts a night from 19:00 at 13 h or more.
    m = MeterMonitor("m1")
    found = [f for d in range(7) for f in raised(m, day(d))]
    assert found == []


def test_a_fall_in_the_learning_week_is_still_found_within_the_net() -> None:
    for fall_slot, within_h in ((20, 12.0), (38, 16.0)):  # after the 10:00 use; after the last use of the evening
        m = MeterMonitor("m1")
        for d in range(3):
            assert raised(m, day(d)) == []
        found = raised(m, day(3, until_slot=fall_slot)) + raised(m, day(4, until_slot=0))
        assert found, f"a fall from half hour {fall_slot} went unseen"
        silence_h = (found[0].ts - found[0].since) / 3600 if found[0].since is not None else None
        assert found[0].basis in ("prior", "rule") and silence_h is not None and silence_h <= within_h


def test_the_learning_weeks_net_is_an_operators_setting() -> None:
    # A district that wants Shanghai's 12 h rule while a routine is learned still sets it.
    m = MeterMonitor("m1", Thresholds(ceiling_hours=12.0))
    found = raised(m, day(0)) + raised(m, day(1))
    assert [(f.basis, round((f.ts - f.since) / 3600, 1)) for f in found if f.since is not None][:1] == [("rule", 12.0)]
