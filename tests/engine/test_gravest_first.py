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


def test_an_outage_that_also_raised_a_silence_closes_its_meter_offline_case_when_the_meter_reports_again() -> None:
    """The reading after a 12 h outage raises meter_offline, clears it (the meter reports again) and raises
    the silence the outage hid. Ordering the raised findings gravest first moved meter_offline's raise past
    its own clear: the clear found no case, then the raise opened a maintenance case nothing would close,
    live and in replay ("the meter sent no data for over 6 h" for a meter reporting every half hour)."""
    from engine.replay import Replayer

    start, step = 1_767_542_400.0, 1800.0  # 2026-01-05 00:00 in Shanghai
    rows, total = [], 0.0
    for k in range(48 * 20):  # 20 days of water from 07:00 to 22:00
        total += 5.0 if 14 <= k % 48 < 44 else 0.0
        rows.append(("M1", start + k * step, total))
    back = rows[-1][1] + 12.5 * 3600.0  # the meter sends nothing for 12.5 h, its register unchanged: back at noon
    for k in range(48 * 3):
        total += 5.0 if 14 <= k % 48 < 44 else 0.0  # and no water until 19:00
        rows.append(("M1", back + k * step, total))
    replayer = Replayer(default_tz="Asia/Shanghai")
    offline = [(e.action, e.finding.resolved) for e in replayer.events(rows) if e.finding.kind == "meter_offline"]
    assert offline == [("raised", False), ("resolved", True)]
    assert not any(key.startswith("maintenance") for _, key in replayer.alerts.cases)
