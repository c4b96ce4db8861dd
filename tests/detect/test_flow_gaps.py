"""Lost readings are no evidence of a slow leak (issue 17: false maintenance alerts).

When a meter misses transmissions, the next interval spans the gap and its volume, the household's
ordinary use, averaged over hours, looks like a trickle that never stopped. On the simulator those
gaps were nearly all of the false maintenance alerts.
"""

from __future__ import annotations

from core.domain import Finding, Interval
from detect import MeterMonitor
from tests.helpers import evening_meter

DAY, SLOT = 86400, 1800


def _flows(m: MeterMonitor, rows: list[tuple[float, float, float]]) -> list[Finding]:
    found: list[Finding] = []
    for start, end, litres in rows:
        found += m.update(Interval("m1", start, end, litres, "ok", 0))
    return [f for f in found if not f.resolved and f.kind == "continuous_flow"]


def test_use_averaged_over_a_gap_in_the_readings_is_not_a_leak() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600  # a little use at 22:00, then four hours of readings lost
    rows = [(night - SLOT, night, 6.0), (night, night + 4 * 3600, 100.0), (night + 4 * 3600, night + 4.5 * 3600, 0.0)]
    assert _flows(m, rows) == []


def test_a_slow_leak_across_a_gap_is_still_reported_on_the_next_reading() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    rows = [(night - SLOT, night, 15.0), (night, night + 4 * 3600, 0.5 * 240)]  # 0.5 L/min, then a gap
    rows += [(night + 4 * 3600 + k * SLOT, night + 4 * 3600 + (k + 1) * SLOT, 15.0) for k in range(2)]
    found = _flows(m, rows)
    assert [(f.route, f.ts) for f in found] == [("maintenance", night + 4.5 * 3600)]  # one reading later


def test_a_slow_leak_read_as_usual_alerts_as_before() -> None:
    m = evening_meter()
    night = 20 * DAY + 22 * 3600
    rows = [(night + k * SLOT, night + (k + 1) * SLOT, 15.0) for k in range(12)]
    found = _flows(m, rows)
    assert [f.route for f in found] == ["maintenance"] and found[0].ts < night + 6 * 3600
