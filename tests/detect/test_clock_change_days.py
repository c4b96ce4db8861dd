"""The day the clocks change is judged from its own midnight.

A monitor knows local time only by each interval's UTC offset (at its end). A day was told to begin at
the next day's offset when it closed: on the night the clocks go forward or back, a high or low day's
``since`` was an hour off its midnight, an away window an hour before the day excused it, and a gap's
litres were shared with an hour too many or too few.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core.domain import Finding, Interval
from detect import MeterMonitor
from detect.monitor import _DAY_OFF_SLOTS
from tests.helpers import checkpoint_from_before

MADRID = ZoneInfo("Europe/Madrid")
SLOT = 1800
#: Half hours with use on an ordinary day (07:00 wash, lunch, dinner, an evening wash), 15 L each.
USE_SLOTS = (14, 15, 24, 25, 36, 37, 40)


def _offset(ts: float) -> int:
    offset = datetime.fromtimestamp(ts, UTC).astimezone(MADRID).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _midnight(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=MADRID).timestamp()


def _readings(m: MeterMonitor, first: str, last: str, litres_on: dict[str, float]) -> list[Finding]:
    """Half-hourly intervals from ``first``'s midnight to ``last``'s, each at its end's offset; a day named in
    ``litres_on`` uses that many litres in each of its half hours of use."""
    found: list[Finding] = []
    t, end = _midnight(first), _midnight(last)
    while t < end:
        off = _offset(t + SLOT)
        local = datetime.fromtimestamp(t, UTC).astimezone(MADRID)
        slot = local.hour * 2 + local.minute // 30
        used = litres_on.get(local.date().isoformat(), 15.0) if slot in USE_SLOTS else 0.0
        found += m.update(Interval(m.meter_id, t, t + SLOT, used, "ok", off))
        t += SLOT
    return found


@pytest.mark.parametrize("day", ["2026-03-29", "2026-10-25"])  # forward (23 h), back (25 h)
def test_a_high_day_on_a_clock_change_began_at_its_midnight(day: str) -> None:
    m = MeterMonitor("m1")
    found = _readings(m, "2026-03-01" if day < "2026-06" else "2026-10-01", "2026-10-28", {day: 60.0})
    high = [f for f in found if f.kind == "high_usage" and not f.resolved]
    assert [f.since for f in high] == [_midnight(day)]  # an hour off before (the next day's offset)


def test_an_away_evening_before_the_clocks_go_forward_does_not_excuse_the_next_day() -> None:
    m = MeterMonitor("m1")
    # Away until 23:30 on the Saturday: the Sunday, 23 h long, began at its midnight, after the window.
    m.set_away([(_midnight("2026-03-28") + 12 * 3600, _midnight("2026-03-28") + 23.5 * 3600)])
    found = _readings(m, "2026-03-01", "2026-03-31", {"2026-03-29": 60.0})
    high = [f for f in found if f.kind == "high_usage" and not f.resolved]
    assert [f.since for f in high] == [_midnight("2026-03-29")]  # unjudged before: its start fell in the window


def test_a_gap_into_the_day_the_clocks_go_forward_gives_it_its_share() -> None:
    m = MeterMonitor("m1")
    _readings(m, "2026-03-20", "2026-03-28", {})
    # Unheard from 20:00 on the Saturday to 08:00 on the Sunday: 11 h (the clocks went forward), 7 of them Sunday's.
    start, end = _midnight("2026-03-28") + 20 * 3600, _midnight("2026-03-29") + 7 * 3600
    _readings(m, "2026-03-28", "2026-03-28T20:00", {})
    m.update(Interval("m1", start, end, 110.0, "gap", _offset(end)))
    assert m.day_total == pytest.approx(70.0)  # 80 L before: the day began an hour early


def test_a_checkpoint_from_before_days_kept_their_offset_loads() -> None:
    m = MeterMonitor("m1")
    _readings(m, "2026-03-20", "2026-03-22", {})
    restored = MeterMonitor.__new__(MeterMonitor)
    restored.__setstate__(checkpoint_from_before(m, _DAY_OFF_SLOTS))
    assert restored.day_off is None and restored.last_off is None and restored.run_off is None
    assert restored.base_off is None and restored.block_off is None
    # The day it was summing closes at the next day's offset, as before.
    after = _readings(restored, "2026-03-22", "2026-03-24", {})
    assert after == _readings(m, "2026-03-22", "2026-03-24", {})
    assert pickle.loads(pickle.dumps(restored)).day_off == m.day_off


def test_a_flow_alert_after_the_clocks_go_back_says_when_the_run_began_on_its_own_clock() -> None:
    m = MeterMonitor("m1")
    _readings(m, "2026-10-01", "2026-10-24", {})
    # A cistern runs from 02:00 summer time on the night the clocks go back (03:00 summer is 02:00 winter).
    began = _midnight("2026-10-25") + 2 * 3600
    found: list[Finding] = []
    t = _midnight("2026-10-24")
    while t < _midnight("2026-10-25") + 12 * 3600:
        running = began <= t
        found += m.update(Interval("m1", t, t + SLOT, 20.0 if running else 0.0, "ok", _offset(t + SLOT)))
        t += SLOT
    flow = next(f for f in found if f.kind == "continuous_flow" and not f.resolved)
    assert flow.since == began and _offset(flow.ts) == 3600  # raised in winter time
    assert "since 02:00" in flow.message_en and "自 02:00 起" in flow.message_zh  # 01:00 before


def test_a_base_flow_reported_after_the_clocks_go_back_says_when_it_began_on_its_own_clock() -> None:
    m = MeterMonitor("m1")
    _readings(m, "2026-10-01", "2026-10-22", {})
    # A cistern starts running at 10:00 summer time, three days before the clocks go back; reported in winter time.
    began = _midnight("2026-10-22") + 10 * 3600
    found: list[Finding] = []
    t = _midnight("2026-10-22")
    while t < _midnight("2026-10-27"):
        litres = 2.0 if began <= t else 0.0
        found += m.update(Interval("m1", t, t + SLOT, litres, "ok", _offset(t + SLOT)))
        t += SLOT
    report = next(f for f in found if f.details.get("base_lph"))
    assert report.since == began and _offset(report.ts) == 3600  # reported in winter time
    assert "10-22 10:00" in report.message_en and "10月22日 10:00 起" in report.message_zh  # 09:00 before
