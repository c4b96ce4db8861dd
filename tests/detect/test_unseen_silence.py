"""A fall the meter did not see (session 11).

A meter that stops reporting in the middle of a silence that was already long for its hour leaves a fall unseen:
no reading, no silence alert, and once readings came back (days later) the fall's window was over. Once the
silence's alert time has passed with the meter silent too (``offline_hours``), a cadre is called; live (``tick``)
and replay (the gap's interval) raise the same finding at the same data time.
"""

from __future__ import annotations

import pickle

from core.domain import COMMUNITY, Finding, Interval
from detect import MeterMonitor
from detect import monitor as monitor_module
from tests.helpers import checkpoint_from_before

DAY, HALF = 86400.0, 1800.0
OFF = 8 * 3600  # Asia/Shanghai: the silence's start hour is local


def _trained(days: int = 30) -> MeterMonitor:
    """An elder who uses water at 07:00, 12:00, 18:00 and 21:30 local time, read every half hour."""
    m = MeterMonitor("m1")
    for d in range(days):
        _day(m, d, until_k=48)
    return m


def _day(m: MeterMonitor, d: int, until_k: int, uses: tuple[int, ...] = (14, 24, 36, 43)) -> list[Finding]:
    found: list[Finding] = []
    for k in range(until_k):
        t = d * DAY + k * HALF - OFF  # local midnight of day d
        found += m.update(Interval("m1", t, t + HALF, 12.0 if k in uses else 0.0, "ok", OFF))
    return found


def _alert_h(m: MeterMonitor, local_hour: int) -> float:
    return float(m.silence._alert[local_hour])


def test_a_meter_silent_in_a_long_silence_calls_a_cadre_once_its_alert_time_passes() -> None:
    m = _trained()
    alert_h = _alert_h(m, 7)
    began = 30 * DAY + 7.5 * 3600 - OFF  # the 07:00 use's half hour ends at 07:30: the silence begins
    seen_k = 15 + int((alert_h - 0.1) * 2)  # the meter reports on, silent, until just before the alert
    assert [f for f in _day(m, 30, until_k=seen_k, uses=(14,)) if f.kind == "no_activity"] == []
    last = m.last_end
    assert last is not None and m.silence.p_value(7, (last - began) / 3600) <= monitor_module.UNSEEN_P
    due = max(began + alert_h * 3600, last + 6 * 3600)
    assert m.tick(last + 5 * 3600) == []  # a meter late by hours is no finding yet
    found = [f for f in m.tick(due + 600) if f.kind == "no_activity"]
    assert [(f.kind, f.route, f.ts, f.since) for f in found] == [("no_activity", COMMUNITY, due, began)]
    assert "07:30" in found[0].message_zh and "水表" in found[0].message_zh
    assert m.tick(due + 3600) == []  # raised once
    back = m.update(Interval("m1", last, due + 7200, 5.0, "gap", OFF))  # readings again: she had used water
    assert [(f.kind, f.resolved) for f in back if f.kind == "no_activity"] == [("no_activity", True)]


def test_replay_raises_the_same_finding_at_the_same_data_time() -> None:
    live, replay = _trained(), _trained()
    seen_k = 15 + int((_alert_h(live, 7) - 0.1) * 2)
    _day(live, 30, until_k=seen_k, uses=(14,))
    _day(replay, 30, until_k=seen_k, uses=(14,))
    last = live.last_end
    assert last is not None
    back = last + 2 * DAY  # the meter reports again two days later, the register unchanged (she lay there)
    raised = live.tick(last + 7 * 3600) + live.tick(back - 60)
    replayed = replay.update(Interval("m1", last, back, 0.0, "gap", OFF))
    key = [(f.kind, f.route, f.ts, f.since) for f in raised if f.kind == "no_activity"]
    assert key and key == [(f.kind, f.route, f.ts, f.since) for f in replayed if f.kind == "no_activity"]


def test_a_meter_silent_early_in_a_silence_raises_only_its_own_finding() -> None:
    m = _trained()
    _day(m, 30, until_k=17, uses=(14,))  # an hour of silence after the 07:00 use, then the meter stops
    last = m.last_end
    assert last is not None
    assert [f.kind for f in m.tick(last + 7 * 3600)] == ["meter_offline"]
    assert m.tick(last + 2 * DAY) == []  # nothing says the elder is unwell: a meter fault, for maintenance


def test_the_silences_offset_survives_a_checkpoint_and_older_checkpoints_load() -> None:
    m = _trained()
    _day(m, 30, until_k=20, uses=(14,))
    assert pickle.loads(pickle.dumps(m)).sil_off == OFF
    older = checkpoint_from_before(m, monitor_module._UNSEEN_SLOTS)
    loaded = MeterMonitor.__new__(MeterMonitor)
    loaded.__setstate__(older)
    assert loaded.sil_off == 0 and loaded.sil_start == m.sil_start


def test_a_silence_across_a_clock_change_is_told_from_the_local_time_it_began() -> None:
    """Europe/Madrid: the night the clocks go forward every elder's night silence spans the change."""
    winter, summer = 3600, 7200
    m = MeterMonitor("m1")
    for d in range(30):  # 07:00, 12:00, 18:00 and 21:30 in winter time
        for k in range(48):
            t = d * DAY + k * HALF - winter
            m.update(Interval("m1", t, t + HALF, 12.0 if k in (14, 24, 36, 43) else 0.0, "ok", winter))
    night = 30 * DAY - winter  # local midnight, winter time
    for k in range(44):  # her day as usual, the last use at 21:30: silent from 22:00 winter time
        m.update(
            Interval(
                "m1", night + k * HALF, night + (k + 1) * HALF, 12.0 if k in (14, 24, 36, 43) else 0.0, "ok", winter
            )
        )
    began = night + 22 * 3600
    change = night + DAY + 2 * 3600  # 02:00 winter time is 03:00 summer time
    found: list[Finding] = []
    t = began
    while not found and t < began + DAY:
        off = winter if t + HALF <= change else summer
        found = [f for f in m.update(Interval("m1", t, t + HALF, 0.0, "ok", off)) if f.kind == "no_activity"]
        t += HALF
    assert found and found[0].since == began
    assert "22:00" in found[0].message_zh and "22:00" in found[0].message_en, found[0].message_en
