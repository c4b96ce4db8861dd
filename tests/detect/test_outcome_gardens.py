"""A cadre's benign answer about a garden's watering teaches the detectors to call less, never more (session 10).

On the garden variant of the real homes (bench/flow_generalise.py --garden) outcomes added false cadre calls: a
benign answer dropped the near miss the run would have taught on its own, and the same watering's next hour (its
first full one) was taken for a tap opened on top of it. docs/detection-studies.md, "Outcomes on a garden's
waterings (session 10)".
"""

from __future__ import annotations

import numpy as np

from core.domain import COMMUNITY
from detect import MeterMonitor
from tests.helpers import hours_with_visits, longest_runs

DAY, HOUR = 86400.0, 3600.0


def _evening_hourly(days: int = 20) -> MeterMonitor:
    """An elder read hourly who uses 40 L at 19:00 only."""
    m = MeterMonitor("m1")
    for d in range(days):
        hours_with_visits(m, d, [40.0 if k == 19 else 0.0 for k in range(24)], None)
    return m


def test_a_benign_answer_teaches_the_flow_model_no_less_than_no_answer() -> None:
    # Three hours at 3 L/min from 03:00 every night, then one night four hours: it alerts at 07:00 (the run's fourth
    # hour) and stops at 08:00, within the hour after its alert: a near miss, learned at every level it drew. A cadre
    # who calls it harmless must not make the model learn less of it than no cadre would.
    night = [180.0 if 3 <= k < 6 else (40.0 if k == 19 else 0.0) for k in range(24)]
    longer = [180.0 if 3 <= k < 7 else (40.0 if k == 19 else 0.0) for k in range(24)]
    learned = []
    for outcome in (None, "false_alarm"):
        m = _evening_hourly()
        for d in range(20, 40):
            hours_with_visits(m, d, night, None)
        assert [f.route for f in hours_with_visits(m, 40, longer, outcome)] == [COMMUNITY]
        learned.append(longest_runs(m))
    alone, answered = learned
    assert (answered >= alone).all(), np.argwhere(answered < alone)


def test_a_gardens_next_hour_after_a_benign_answer_is_no_tap_opened_on_top() -> None:
    # Watering from 06:30 for an hour and a half at 14 L/min, read hourly: 7 L/min in the hour it starts (it alerts
    # then, a burst), 14 L/min in the next. The visit saw it running at 14 L/min and called it harmless: the next
    # hour is the same watering, not a second tap.
    m = _evening_hourly()
    day = [0.0] * 6 + [420.0, 840.0] + [0.0] * 16
    found = hours_with_visits(m, 20, day, "false_alarm")
    assert [(f.ts - 20 * DAY) / HOUR for f in found] == [7.0]


def test_a_tap_opened_on_top_after_the_visit_of_a_young_run_is_still_raised_at_once() -> None:
    m = _evening_hourly()
    day = [0.0] * 6 + [420.0, 840.0, 840.0 + 900.0] + [0.0] * 15  # 15 L/min more from 08:00: a second tap
    found = hours_with_visits(m, 20, day, "false_alarm")
    assert [((f.ts - 20 * DAY) / HOUR, f.route) for f in found] == [(7.0, COMMUNITY), (9.0, COMMUNITY)]
