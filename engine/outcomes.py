"""A person's outcome, taught to the meter that raised the alert: one code path for the API, replay and eval.

When a cadre resolves a case (``ok``, ``away``, ``false_alarm``, ``needed_help``,
``hospital``, ``device_fault``), the elder's detectors learn from it
(:meth:`detect.MeterMonitor.learn_outcome`): a benign silence or run becomes part
of the routine (bounded), a confirmed incident never does, and the detector's
episode ends so the next silence or run is judged afresh.

:func:`apply_outcome` takes the alert as the live store holds it (a row with
``kind``, ``since_ts``, ``data_ts``) or as replay raised it (a
:class:`~core.domain.Finding`). :class:`OutcomeSchedule` is the replay and
eval side of the contract (``tapwatch replay --outcomes``): a community alert
raised at data time t is resolved at t + the visit delay, ``needed_help`` if a
labelled incident of that meter has start <= t <= end + 2 h, else
``false_alarm``; the labels are read for nothing else.

The live rule for a case the data closed first (``use_resumed``, ``cleared``) holds
in replay and eval too: a person may still record what they found, and the meter
learns from it, only within the outcome window (``TAPWATCH_OUTCOME_WINDOW_DAYS``,
:data:`OUTCOME_WINDOW_DAYS`) after it closed; a visit later than that teaches nothing.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from core.domain import COMMUNITY, DEVICE_KINDS, Finding
from core.jsonfile import NotUtf8Text, load_json_file
from detect import MeterMonitor
from detect.monitor import PERSON_OUTCOMES
from engine.meter import MeterStep
from ingest.payload import TS_MAX, epoch_seconds

#: An incident's label still explains an alert raised this long after its end (the contract's 2 h).
LABEL_GRACE_S = 2 * 3600.0
#: A label without an end: an incident that did not end in the data (e.g. a death) explains this long.
OPEN_LABEL_S = 72 * 3600.0
#: How long after an alert a cadre's visit resolves it in a replay, by default (hours).
VISIT_DELAY_H = 1.0
#: How long after the data closed a case a person may still record its outcome (days; the setting's default).
OUTCOME_WINDOW_DAYS = 14.0

__all__ = [
    "OUTCOME_WINDOW_DAYS",
    "OutcomeSchedule",
    "Visit",
    "apply_outcome",
    "load_labels",
    "outcome_for",
    "within_window",
]


def within_window(closed_at: float | None, at: float, window_days: float = OUTCOME_WINDOW_DAYS) -> bool:
    """The live rule: a person's outcome at ``at`` counts if the case is open (``closed_at`` None) or the data
    closed it at most ``window_days`` before.

    >>> within_window(None, 1e9), within_window(0.0, 14 * 86400.0), within_window(0.0, 14 * 86400.0 + 1)
    (True, True, False)
    """
    return closed_at is None or at - closed_at <= window_days * 86400.0


def apply_outcome(
    target: MeterStep | MeterMonitor,
    alert: Finding | Mapping[str, Any],
    outcome: str,
    at: float | None = None,
    utc_offset_s: int | None = None,
) -> bool:
    """Teach the meter what a person found for ``alert``; False if the outcome teaches detection nothing.

    ``at`` is when the person resolved it (data time in a replay; only for the record, learning
    reads the alert's own times). The alert's local hour is read with ``utc_offset_s``, else with
    the step's zone (a bare monitor without an offset: UTC).

    >>> from core.domain import Finding
    >>> m = MeterMonitor("m1")
    >>> m.na_open = True  # as after a no_activity alert
    >>> alert = Finding("m1", "no_activity", "high", 50_400.0, "", "", since=0.0)
    >>> apply_outcome(m, alert, "false_alarm", at=54_000.0), m.na_open
    (True, False)
    >>> apply_outcome(m, {"kind": "meter_offline", "since_ts": None, "data_ts": 1.0}, "device_fault")
    False
    """
    if outcome not in PERSON_OUTCOMES:
        return False  # the system's own outcomes (use resumed, cleared) teach nothing
    if isinstance(alert, Finding):
        kind, since, ts, details = alert.kind, alert.since, alert.ts, alert.details
    else:
        kind, since, ts = alert["kind"], alert.get("since_ts"), float(alert["data_ts"])
        details = alert.get("details") or {}
    if kind in DEVICE_KINDS:
        return False
    if isinstance(target, MeterStep):
        monitor = target.monitor
        offset = target.offset_at(ts) if utc_offset_s is None else utc_offset_s
    else:
        monitor, offset = target, utc_offset_s or 0
    if monitor is None:
        return False
    lpm = details.get("lpm") if isinstance(details, Mapping) else None
    monitor.learn_outcome(kind, outcome, since, ts, offset, float(lpm) if isinstance(lpm, int | float) else None)
    return True


# ---------------------------------------------------------------------------- replay and eval
@dataclass(frozen=True, slots=True)
class Label:
    """A labelled incident of one meter (the simulator's ``labels.json`` rows with category incident)."""

    meter_id: str
    kind: str
    start: float
    end: float | None


def _epoch(value: Any) -> float:
    """Epoch seconds of a label's time: a number, or ISO 8601 with its UTC offset.

    A number past 2099 as seconds is read as milliseconds if it is a time of 2000-2099 so, else refused.
    Without an offset the time is refused, as the API refuses it: read in this machine's zone, the same
    file would give other outcomes on a server in UTC than on a laptop in Shanghai.
    """
    # A bool is an int in Python: "start": true was 1 s after the epoch, a label no alert falls in.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        shown = json.dumps(value, ensure_ascii=False)
        raise ValueError(f"{shown} is not a time (write epoch seconds or ISO 8601 with its UTC offset)")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"a number of {len(str(value))} digits is not a time") from None
        if not math.isfinite(seconds):  # JSON as Python reads it takes NaN and Infinity: no alert falls in those
            raise ValueError(f"{value!r} is not a time")
        if seconds < TS_MAX:  # seconds (small ones too: hand-written files count from 0)
            return seconds
        # Past 2099 as seconds: milliseconds, or no time. Read as seconds, no alert would fall in the label
        # and every visit would be taught false_alarm without a word.
        converted = epoch_seconds(seconds)
        if converted is None:
            raise ValueError(f"{value!r} is not a time of the years 2000-2099 in epoch seconds or milliseconds")
        return converted
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (write it as 2026-01-05T08:00:00+08:00)")
    return when.timestamp()


def load_labels(path: str | Path) -> list[Label]:
    """The incidents of a labels file: a JSON list of {meter_id, kind, start, end[, category]}.

    Times are epoch seconds or ISO 8601; a missing category means incident; other categories
    (life events) are left out, as are rows that are not objects with the fields.
    """
    try:
        rows = load_json_file(path)  # as Windows saves it too: UTF-16 (PowerShell's `>`), UTF-8 with BOM
    except NotUtf8Text as exc:  # which file, beside the readings the command also reads
        raise ValueError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of labels")
    out: list[Label] = []
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or not {"meter_id", "kind", "start"} <= row.keys():
            raise ValueError(f"{path}: label {k} needs meter_id, kind and start")
        # Another generator's 'Incident' is one too: skipped as a life event, every alert it explains is false_alarm.
        if str(row.get("category", "incident")).strip().lower() != "incident":
            continue
        end = row.get("end")
        try:
            start, stop = _epoch(row["start"]), None if end is None else _epoch(end)
            if stop is not None and stop < start:  # swapped: no alert falls in it, every one would be false_alarm
                raise ValueError(f"it ends ({end}) before it starts ({row['start']})")
            out.append(Label(str(row["meter_id"]), str(row["kind"]), start, stop))
        except ValueError as exc:  # a malformed or zoneless time: which label, in which file
            raise ValueError(f"{path}: label {k}: {exc}") from None
    return out


def outcome_for(labels: Iterable[Label], t: float) -> str:
    """The contract's outcome of an alert at ``t`` given its meter's incidents: needed_help or false_alarm."""
    for label in labels:
        end = label.start + OPEN_LABEL_S if label.end is None else label.end
        if label.start <= t <= end + LABEL_GRACE_S:
            return "needed_help"
    return "false_alarm"


class Visit(NamedTuple):
    """A cadre's visit due in a replay: when, the alert, the outcome, and when the data closed it (None: open).

    ``case``: the case the alert raised, as the replay keeps it (:class:`engine.alerting.OpenAlerts`), when
    the replay groups findings into cases: the visit teaches every kind it held by then, as live.
    """

    at: float
    finding: Finding
    outcome: str
    closed_at: float | None
    case: Mapping[str, Any] | None = None


class OutcomeSchedule:
    """Outcomes due in a replay: each community alert resolved by a visit ``delay_h`` after it was raised.

    A visit to an alert the data closed more than ``window_days`` before is dropped, as live
    refuses it (counted in ``expired``).

    >>> s = OutcomeSchedule([Label("m1", "fall", 1000.0, 5000.0)], delay_h=1.0)
    >>> s.raised(Finding("m1", "no_activity", "high", 2000.0, "", "", since=0.0))
    'needed_help'
    >>> s.raised(Finding("m1", "meter_offline", "low", 2000.0, "", ""))  # maintenance: no cadre visit
    >>> [(v.at, v.outcome) for v in s.due("m1", 5599.0)], len(s.due("m1", 5600.0))
    ([], 1)
    >>> late = OutcomeSchedule([], delay_h=24 * 20, window_days=14)
    >>> alert = Finding("m1", "no_activity", "high", 0.0, "", "", since=-50_000.0)
    >>> late.raised(alert)
    'false_alarm'
    >>> late.closed(alert, 3600.0)  # use resumed: the data closed its case
    1
    >>> late.due("m1", 20 * 86400.0), dict(late.expired)  # the visit came 20 days after: too late
    ([], {'false_alarm': 1})
    """

    def __init__(
        self, labels: Iterable[Label], delay_h: float = VISIT_DELAY_H, window_days: float = OUTCOME_WINDOW_DAYS
    ) -> None:
        self.delay_s = delay_h * 3600.0
        self.window_days = window_days
        self.labels: dict[str, list[Label]] = defaultdict(list)
        for label in labels:
            self.labels[label.meter_id].append(label)
        self.pending: dict[str, list[tuple[float, int, Finding, str, Mapping[str, Any] | None]]] = defaultdict(list)
        self._seq = 0
        self._closed: dict[int, float] = {}  # seq -> data time the data closed that alert
        self._withdrawn: set[int] = set()  # seqs of alerts the detector withdrew (a misreading): no visit
        self.applied: dict[str, int] = defaultdict(int)
        self.expired: dict[str, int] = defaultdict(int)  # outcomes dropped: closed too long before the visit
        self.withdrawn: dict[str, int] = defaultdict(int)  # visits dropped: the alert was withdrawn before them

    def raised(self, finding: Finding, case: Mapping[str, Any] | None = None) -> str | None:
        """Note an alert (and the case it raised, if cases are kept); its outcome (to be applied at
        ``finding.ts`` + the delay), None if no cadre visits."""
        if finding.resolved or finding.route != COMMUNITY:
            return None
        outcome = outcome_for(self.labels.get(finding.meter_id, ()), finding.ts)
        self._seq += 1
        visit = (finding.ts + self.delay_s, self._seq, finding, outcome, case)
        heapq.heappush(self.pending[finding.meter_id], visit)
        return outcome

    def closed(self, raised: Finding, at: float) -> int:
        """The data closed, at data time ``at``, the case ``raised`` opened (every kind that joined it has cleared);
        how many pending visits that closes (0 or 1)."""
        n = 0
        for _, seq, finding, _, _ in self.pending.get(raised.meter_id) or ():
            if finding is raised and seq not in self._closed:
                self._closed[seq] = at
                n += 1
        return n

    def withdraw(self, raised: Finding) -> int:
        """The detector withdrew the case ``raised`` opened (the reading behind it was a misreading): as live, where
        the cadre is told so, nobody visits it (a ``false_alarm`` would teach a run nobody drew); how many visits
        that drops (0 or 1)."""
        n = 0
        for _, seq, finding, _, _ in self.pending.get(raised.meter_id) or ():
            if finding is raised and seq not in self._withdrawn:
                self._withdrawn.add(seq)
                n += 1
        return n

    def reopened(self, raised: Finding) -> None:
        """Flapping reopened the case ``raised`` opened (:func:`alerts.grouping.reopens`): its visit is to an
        open case again, the one visit the case gets."""
        for _, seq, finding, _, _ in self.pending.get(raised.meter_id) or ():
            if finding is raised:
                self._closed.pop(seq, None)
                self._withdrawn.discard(seq)

    def due(self, meter_id: str, now: float) -> list[Visit]:
        """The visits of ``meter_id`` due by data time ``now``, oldest first (taken off the schedule).

        A visit to an alert the data closed more than the window before is dropped, as live refuses it, and
        one to an alert the detector withdrew before it, as no cadre goes to it live.
        """
        queue = self.pending.get(meter_id)
        out: list[Visit] = []
        while queue and queue[0][0] <= now:
            at, seq, finding, outcome, case = heapq.heappop(queue)
            closed_at = self._closed.pop(seq, None)
            if seq in self._withdrawn:
                self._withdrawn.discard(seq)
                self.withdrawn[outcome] += 1
            elif within_window(closed_at, at, self.window_days):
                out.append(Visit(at, finding, outcome, closed_at, case))
            else:
                self.expired[outcome] += 1
        return out
