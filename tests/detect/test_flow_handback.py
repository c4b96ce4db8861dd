"""A leak under a tap goes back to maintenance when the tap closes (issue 17, session 8).

A steady slow leak is the plumbing's (maintenance route); a tap left open on top of it is a cadre's case.
When the tap stops and the leak goes on, the cadre's case closes (the data closed it, or a person did) and
the leak is the plumbing's again: it is raised on the maintenance route instead of staying on the cadres'.
"""

from __future__ import annotations

from core.domain import COMMUNITY, MAINTENANCE, Finding, Interval
from detect import MeterMonitor
from tests.helpers import evening_meter

DAY, SLOT = 86400, 1800
LEAK, TAP = 15.0, 15.0 + 90.0  # litres a half hour: 0.5 L/min; 3 L/min on top of it


def _run(m: MeterMonitor, start: float, litres: list[float]) -> list[Finding]:
    found: list[Finding] = []
    for k, used in enumerate(litres):
        found += m.update(Interval("m1", start + k * SLOT, start + (k + 1) * SLOT, used, "ok", 0))
    return [f for f in found if f.kind == "continuous_flow"]


def test_the_leak_under_a_tap_goes_back_to_maintenance_when_the_tap_closes() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    leak = _run(m, night, [LEAK] * 8)
    assert [(f.resolved, f.route) for f in leak] == [(False, MAINTENANCE)]
    tap = _run(m, night + 8 * SLOT, [TAP] * 6)  # a tap left open on top: a cadre's case
    assert [(f.resolved, f.route) for f in tap] == [(True, COMMUNITY), (False, COMMUNITY)]
    after = _run(m, night + 14 * SLOT, [LEAK] * 4)  # the tap is closed, the leak goes on
    assert [(f.resolved, f.route) for f in after] == [(True, COMMUNITY), (False, MAINTENANCE)]
    assert after[0].ts == after[1].ts == night + 15 * SLOT  # at the first interval of the leak alone
    assert "handed to maintenance" in after[0].message_en
    assert after[1].details["lpm"] == 0.5


def test_a_tap_a_cadre_took_in_hand_leaves_its_leak_to_maintenance() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    _run(m, night, [LEAK] * 8)
    tap = next(f for f in _run(m, night + 8 * SLOT, [TAP] * 6) if not f.resolved)
    m.learn_outcome(tap.kind, "needed_help", tap.since, tap.ts, 0, tap.details["lpm"])  # the elder was helped
    after = [f for f in _run(m, night + 14 * SLOT, [LEAK] * 4) if not f.resolved]
    assert [f.route for f in after] == [MAINTENANCE]


def test_use_after_a_tap_without_a_leak_under_it_raises_nothing() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    tap = _run(m, night, [90.0] * 6 + [12.0, 20.0, 8.0, 0.0])  # a tap left open, then a little use, then nothing
    assert [(f.resolved, f.route) for f in tap if not f.resolved] == [(False, COMMUNITY)]
    assert [f.route for f in tap if f.resolved] == [COMMUNITY]  # closed when the flow stopped, not handed on
