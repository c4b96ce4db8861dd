"""Two findings raised by one reading open one case at the graver one's severity and kind (session 16).

On the real homes a day's routine change and a silence's alert came from the same reading: the case was raised
low, as a routine change, and re-notified at once as high when the silence joined it; the cadre's headline was
"routine change" for what may be a fall.
"""

from __future__ import annotations

from core.domain import Finding, Interval
from detect import MeterMonitor
from engine.alerting import JOINED, RAISED, OpenAlerts


class _OneReading(MeterMonitor):
    """The monitor's own ``update``, its detectors finding in one reading what the real homes' reading found."""

    def _unknown(self, x: Interval, out: list[Finding]) -> None:  # a reading of unknown use: update returns here
        out.append(Finding(self.meter_id, "routine_change", "low", x.end, "作息变化", "routine change"))
        out.append(Finding(self.meter_id, "no_activity", "high", x.end, "未用水", "no water", since=x.end - 36000))


def test_the_case_opens_under_the_gravest_finding_of_the_reading_and_the_other_joins_without_a_second_call() -> None:
    book = OpenAlerts()
    found = _OneReading("M1").update(Interval("M1", 0.0, 1800.0, None, "reset", 0))
    actions = []
    for f in found:
        actions.append((book.admit("E1", f), book.rose))
    assert actions == [(RAISED, False), (JOINED, False)]  # no rise: no re-notification
    (case,) = book.cases.values()
    assert (case["kind"], case["severity"]) == ("no_activity", "high")
