"""The replay loop: readings through each meter's :class:`~engine.meter.MeterStep`, alerts as live raises them.

``tapwatch replay`` feeds it a CSV file, the backtest route the stored readings
of a community, the same-alerts test the readings it also sends through the
live pipeline. State lives in memory for the length of a run: no broker, no
store. What it yields are the findings that open or close a case under the
live rule (:class:`~engine.alerting.OpenAlerts`: one community case per elder,
one maintenance case per meter); :meth:`Replayer.events` also says which
findings joined, reopened or cleared part of a case (:class:`CaseEvent`).

With an :class:`~engine.outcomes.OutcomeSchedule`, every community alert gets a
cadre's outcome a visit delay after it was raised, applied before the meter's
next reading as the live resolve applies it (:func:`engine.outcomes.apply_outcome`):
the case closes and the detectors learn from it, every kind the case held by then on
the meter that found it (:func:`alerts.grouping.taught`). A case the data closed
first learns from a visit only within the outcome window, as live.

A file has no receive times, so the live clock window (``engine.pipeline``: a reading
ahead of its arrival is dead-lettered, one older than the late window too) is applied
by the readings that follow: a reading more than the late window (``late_window_s``) past
its meter's newest one is held until the meter's next reading. If that one is older than
it by more than the late window, live would have refused one of the two: the held one,
in the future (a meter's clock wrong once), or the next one, too late; the held one is
refused (counted in ``Replayer.refused``, a :class:`Tally`),
otherwise both go on in order. Without this one reading dated years ahead made every later
reading of its meter late. Readings delivered hours
late, among newer ones, are read as live reads them (late).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from alerts.grouping import COMMUNITY_CASE, HOLD_DOWNS, HoldDowns, kinds_of, occurrences, taught
from core.domain import COMMUNITY, MAINTENANCE, WITHDRAWN, Finding
from detect import MeterMonitor, Thresholds
from engine.alerting import RAISED, REOPENED, RESOLVED, OpenAlerts, Window
from engine.localtime import meter_zone
from engine.meter import MeterStep
from engine.outcomes import OutcomeSchedule, Visit, apply_outcome
from ingest.csvsource import BadRow
from ingest.register import RegisterTracker

#: A reading as the loop takes it: (meter_id, ts, total_l, ...); a CSV row's written UTC offset is not used.
Reading = Sequence[Any]
#: As live (``TAPWATCH_LATE_WINDOW_HOURS``): a reading this far past its meter's newest one waits for the next before
#: it is read (a meter back from days out, or one whose clock ran ahead), and is refused if the next is this much older.
LATE_WINDOW_S = 72 * 3600.0
#: Why a held reading was refused, as live words its dead letter.
IN_THE_FUTURE = "timestamp in the future (meter clock wrong?)"
#: Malformed rows and refused readings kept to show (the first ones); the rest are counted. A file may hold
#: millions of either (an export written without UTC offsets): kept whole, they held 200 bytes a row to the end.
KEPT_EXAMPLES = 10

T = TypeVar("T")


@dataclass(slots=True)
class Tally(Generic[T]):
    """How many of something a file held, and the first ``KEPT_EXAMPLES`` of them to show.

    >>> bad = Tally[int]()
    >>> for line in range(2, 30):
    ...     bad.add(line)
    >>> bad.count, bad.examples[:3], len(bad.examples)
    (28, [2, 3, 4], 10)
    """

    count: int = 0
    examples: list[T] = field(default_factory=list)

    def add(self, item: T) -> None:
        self.count += 1
        if len(self.examples) < KEPT_EXAMPLES:
            self.examples.append(item)

    def __bool__(self) -> bool:
        return self.count > 0


@dataclass(frozen=True, slots=True)
class Home:
    """What a replay knows of a meter's elder: who (alerts group per elder), the zone, thresholds, windows.

    A meter without a home in a replay is its own elder, in the replay's default zone, with its thresholds.
    """

    elder_id: str
    tz: str | None = None
    thresholds: Thresholds | None = None
    windows: tuple[Window, ...] = ()  # away and snooze windows, as the store holds them
    #: (old meter, new meter) for each meter replaced (``POST /elders/{id}/meter``): live, the new one took on the
    #: routine the old one had learned (:func:`engine.meterstate.carry_routine`); a backtest does the same.
    replaced: tuple[tuple[str, str], ...] = ()
    #: When her consent was given back after being withdrawn: live, her meters' routine and register were erased
    #: and her readings dropped meanwhile, so monitoring started afresh, as for a new elder; a backtest does the same.
    restarts: tuple[float, ...] = ()

    @property
    def away(self) -> list[tuple[float, float]]:
        """The windows the monitor itself knows (it expects no one home in them)."""
        return [(start, end) for start, end, kind in self.windows if kind == "away"]


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """What one finding did to the cases of a replay (:meth:`engine.alerting.OpenAlerts.admit`)."""

    finding: Finding
    action: str  # raised, joined, reopened, cleared, resolved
    case: int  # the case's number in this replay (1 for the first case raised)
    route: str  # the case's: community or maintenance
    kinds: tuple[str, ...]  # every kind the case has held, first one first
    occurrences: int  # findings the case grouped
    rose: bool = False  # joined: the case's severity rose (live, that re-notifies and escalates)


class Replayer:
    """Feeds readings meter by meter through the per-meter step; keeps the open alerts like the live store."""

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        default_tz: str = "Asia/Shanghai",
        homes: Mapping[str, Home] | None = None,
        outcomes: OutcomeSchedule | None = None,
        hold_downs: HoldDowns = HOLD_DOWNS,
        late_window_s: float = LATE_WINDOW_S,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.default_tz = default_tz
        self.homes: Mapping[str, Home] = homes or {}
        self.meters: dict[str, MeterStep] = {}
        self.alerts = OpenAlerts(hold_downs)
        self.readings = 0
        self.malformed: Tally[BadRow] = Tally()  # rows that are no reading
        self.outcomes = outcomes
        self.late_window_s = late_window_s
        self.held: dict[str, Reading] = {}  # per meter, a reading far past its newest, until the next one comes
        self.refused: Tally[Reading] = Tally()  # readings the next one showed were in the future (``IN_THE_FUTURE``)
        #: Readings older than their meter's newest one read before them (a file not in time order): read late,
        #: as live reads a late delivery (no usage counted). Counted so that a file sorted wrong is told.
        self.late: Tally[Reading] = Tally()

    def home(self, meter_id: str) -> Home:
        return self.homes.get(meter_id) or Home(meter_id)

    def meter(self, meter_id: str) -> MeterStep:
        """The meter's step, made on its first reading."""
        step = self.meters.get(meter_id)
        if step is None:
            home = self.home(meter_id)
            monitor = MeterMonitor(meter_id, home.thresholds or self.thresholds)
            if home.windows:
                monitor.set_away(home.away)  # the live monitor knows the elder's away windows too
            step = MeterStep(RegisterTracker(meter_id), monitor, meter_zone(home.tz, self.default_tz))
            self.meters[meter_id] = step
        return step

    def feed(self, reading: Reading) -> Iterator[Finding]:
        """One reading; the findings that open or close an alert (call :meth:`finish` after the last one)."""
        self.readings += 1
        for findings in self._arrive(self.meter(reading[0]), reading):
            yield from self._admitted(findings)

    def finish(self) -> Iterator[Finding]:
        """After the last reading of :meth:`feed`: the findings of the readings still held, and those a snooze held
        whose snooze the readings outlasted."""
        for findings in self._release():
            yield from self._admitted(findings)
        yield from self._opening(self._snoozes_over())

    def run(self, rows: Iterable[Reading | BadRow]) -> Iterator[Finding]:
        """The findings that open or close a case, reading by reading."""
        for findings in self.findings(rows):
            yield from self._admitted(findings)
        yield from self._opening(self._snoozes_over())

    def events(self, rows: Iterable[Reading | BadRow]) -> Iterator[CaseEvent]:
        """Every finding that raised, joined, reopened, cleared or resolved a case, reading by reading."""
        for findings in self.findings(rows):
            yield from self._cased(findings)
        yield from self._snoozes_over()

    def findings(self, rows: Iterable[Reading | BadRow]) -> Iterator[list[Finding]]:
        """Every monitor's findings before the alert rule: each reading's non-empty list.

        Malformed rows are tallied in ``malformed`` (a :class:`Tally`). This loop
        runs once per reading of files with millions of them: since files come grouped by meter, the
        meter's step is looked up only when the meter changes, and a reading goes the long way
        (:meth:`_arrive`) only when it lies more than the late window past its meter's newest, or its
        meter holds one.
        """
        current: object = None  # no meter yet: the first reading looks its meter up
        read = None  # the current meter's ``MeterStep.findings``
        step = None
        newest = -math.inf  # the current meter's newest reading; -inf: its next reading goes the long way
        hold_after = self.late_window_s
        pending = self.outcomes.pending if self.outcomes is not None else None
        queue = None
        # Readings are counted in a local and added to ``self.readings`` before every yield (whoever reads it
        # then sees every reading so far) and at the end.
        count = 0
        try:
            for row in rows:
                if isinstance(row, BadRow):
                    self.malformed.add(row)
                    continue
                count += 1
                meter_id = row[0]
                if meter_id != current or read is None:
                    step = self.meter(meter_id)
                    read = step.findings
                    current = meter_id
                    newest = self._newest(step)
                    queue = pending.get(meter_id) if pending is not None else None
                ts = row[1]
                if ts < newest:
                    self.late.add(row)
                if ts - newest > hold_after:
                    arrived = self._arrive(step, row)  # type: ignore[arg-type]
                    newest = self._newest(step)  # type: ignore[arg-type]
                    self.readings += count
                    count = 0
                    yield from arrived
                    continue
                if pending is not None:
                    if queue is None:
                        queue = pending.get(meter_id)
                    if queue and queue[0][0] <= ts:
                        self._visits(step, ts)  # type: ignore[arg-type]
                found = read(ts, row[2])
                if ts > newest:
                    newest = ts
                if found:
                    self.readings += count
                    count = 0
                    yield found
        finally:
            self.readings += count
        yield from self._release()

    def _newest(self, step: MeterStep) -> float:
        """The meter's newest reading read; -inf if it has none or holds one (its next reading settles it)."""
        newest = step.tracker.newest
        return -math.inf if newest is None or step.meter_id in self.held else newest

    def _arrive(self, step: MeterStep, reading: Reading) -> list[list[Finding]]:
        """A reading by the long way: it settles the meter's held one, and is held itself if far past the newest."""
        found: list[list[Finding]] = []
        held = self.held.pop(step.meter_id, None)
        if held is not None:
            if reading[1] < held[1] - self.late_window_s:
                self.refused.add(held)  # the meter's next reading came from days before it: it was in the future
            else:
                found.append(self._read(step, held))
        newest = step.tracker.newest
        if newest is not None and reading[1] - newest > self.late_window_s:
            self.held[step.meter_id] = reading
        else:
            found.append(self._read(step, reading))
        return [findings for findings in found if findings]

    def _read(self, step: MeterStep, reading: Reading) -> list[Finding]:
        if self.outcomes is not None:
            self._visits(step, reading[1])
        return step.findings(reading[1], reading[2])

    def _release(self) -> Iterator[list[Finding]]:
        """The readings still held at the end: nothing came to refute them."""
        while self.held:
            meter_id, reading = next(iter(self.held.items()))
            del self.held[meter_id]
            findings = self._read(self.meters[meter_id], reading)
            if findings:
                yield findings

    def _admitted(self, findings: list[Finding]) -> Iterator[Finding]:
        yield from self._opening(self._cased(findings))

    @staticmethod
    def _opening(events: Iterable[CaseEvent]) -> Iterator[Finding]:
        """The findings of ``events`` that open or close a case."""
        for event in events:
            if event.action in (RAISED, RESOLVED):
                yield event.finding

    def _cased(self, findings: list[Finding]) -> Iterator[CaseEvent]:
        for finding in findings:
            home = self.home(finding.meter_id)
            # A finding a snooze held, its snooze over by this one's data time, goes first (live: the runner's pass).
            for admitted, action in self.alerts.admitted(home.elder_id, finding, home.windows):
                if action is not None:
                    yield self._event(admitted, action)

    def _event(self, finding: Finding, action: str) -> CaseEvent:
        """What ``finding`` did (``action``) to the case it touched (the book's last), told to the cadres' visits."""
        case = self.alerts.last
        if self.outcomes is not None:
            note_case(self.outcomes, action, finding, case)
        route = COMMUNITY if case["case_key"] == COMMUNITY_CASE else MAINTENANCE
        kinds = tuple(kinds_of(case))
        return CaseEvent(finding, action, case["number"], route, kinds, occurrences(case), self.alerts.rose)

    def _snoozes_over(self) -> Iterator[CaseEvent]:
        """After the last reading: the findings a snooze held whose snooze ended by their meter's newest reading
        (live, the escalation runner has raised them by then), though no finding of their elder came after it."""
        for elder_id, meter_id, _kind in list(self.alerts.held):
            step = self.meters.get(meter_id)
            newest = step.tracker.newest if step is not None else None
            if newest is None:
                continue
            for finding, action in self.alerts.release(elder_id, newest, self.home(meter_id).windows):
                if action is not None:
                    yield self._event(finding, action)

    def _visits(self, step: MeterStep, now: float) -> None:
        """The cadres' outcomes due by data time ``now`` on this meter: the alert closes, the meters learn."""
        assert self.outcomes is not None
        elder_id = self.home(step.meter_id).elder_id
        for visit in self.outcomes.due(step.meter_id, now):
            if make_visit(self.alerts, elder_id, visit, self.meters.get):
                self.outcomes.applied[visit.outcome] += 1


def note_case(schedule: OutcomeSchedule, action: str, finding: Finding, case: Mapping[str, Any]) -> None:
    """What a finding did to its case, told to the cadres' visits (replay and eval alike).

    A raised community case gets a visit; the data closing it first marks that visit as to a closed
    case (it still counts within the outcome window, as live), the detector withdrawing it (a misread reading)
    drops the visit (live, the cadre is told no water ran) if the withdrawn kind raised it: a case another kind
    raised (a silence the misreading joined and cleared) was worked for that kind, and its visit stays, the
    case closed by the data; flapping that reopens it makes it open again: the reopened case keeps its one
    visit, it gets none of its own.
    """
    if action == RAISED:
        schedule.raised(finding, case)
    elif action == RESOLVED and finding.details.get(WITHDRAWN) and case["finding"].kind == finding.kind:
        schedule.withdraw(case["finding"])
    elif action == RESOLVED:
        schedule.closed(case["finding"], finding.ts)
    elif action == REOPENED:
        schedule.reopened(case["finding"])


def make_visit(
    book: OpenAlerts,
    elder_id: str,
    visit: Visit,
    target: Callable[[str], MeterStep | MeterMonitor | None],
    offset_at: Callable[[float], int] | None = None,
) -> bool:
    """A cadre's visit due in a replay: the case closes (or takes the outcome), the meters learn; False if nothing.

    Every kind the case held is taught, each on the meter that found it (:func:`alerts.grouping.taught`;
    ``target`` gives a meter's step or monitor; a bare monitor reads the alert's local hours with
    ``offset_at(its time)``, the UTC offset then, as a step does: not the visit's, an hour off on the
    night the clocks change), as a person's resolution does live (:func:`engine.meterstate.teach_outcome`).
    """
    # Still open: the person closes the case it raised. Closed by the data: the outcome ends its grouping.
    book.resolve_by_person(elder_id, visit.finding)
    lessons: list[Finding | Mapping[str, Any]] = [visit.finding]
    if visit.case is not None:
        lessons = [*taught(visit.case)]
    learned = False
    for lesson in lessons:
        meter_id = lesson.meter_id if isinstance(lesson, Finding) else str(lesson["meter_id"])
        meter = target(meter_id)
        offset = None
        if offset_at is not None:
            offset = offset_at(lesson.ts if isinstance(lesson, Finding) else float(lesson["data_ts"]))
        if meter is not None and apply_outcome(meter, lesson, visit.outcome, visit.at, offset):
            learned = True
    return learned
