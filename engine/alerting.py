"""Which findings open, join or close a case: the live alert manager's rule, kept in memory for replays.

The live rule (:meth:`alerts.lifecycle.Lifecycle.apply`, behind `AlertManager.apply`), with the grouping
of :mod:`alerts.grouping` applied by the same functions: one open community case per elder, whichever of
the elder's meters found it (a second community kind joins it, its severity rising to the more severe);
one maintenance case per meter (its findings join it, or reopen it when the data closed it within the
maintenance hold-down of data time, counting occurrences); a resolution clears its kind on the case,
and the case closes when every kind it holds has cleared. A finding inside a snooze window, or an
absence finding inside an away window, raises and joins nothing (device findings are never muted): the
one rule :func:`alerts.muting.muted_by`, which the live manager asks too. A silence or a running tap a
snooze muted is held until the snooze ends (:func:`alerts.muting.held_until`), dropped if the detector
clears its kind first, and admitted at the snooze's end (its start kept) once the data reach that time
(:meth:`OpenAlerts.admitted`, :meth:`OpenAlerts.release`), as live's escalation runner does with
:meth:`alerts.lifecycle.Lifecycle.release`. A community condition that
comes back within the flap hold-down (data time) of the data closing its case reopens that case, as
live (:func:`alerts.grouping.reopens`): one case, one visit; a person's outcome ends the grouping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from alerts.grouping import (
    COMMUNITY_CASE,
    HOLD_DOWNS,
    MAINTENANCE_CASE,
    HoldDowns,
    active_kinds,
    case_key,
    clear_order,
    cleared,
    joined,
    reopens,
    repeats,
    rises,
    severity,
    stale,
    started,
)
from alerts.muting import Window, held_until, muted_by
from core.domain import WITHDRAWN, Finding

__all__ = ["RAISED", "OpenAlerts", "Window"]

#: What a finding did to the cases (:meth:`OpenAlerts.admit`).
RAISED, JOINED, REOPENED, CLEARED, RESOLVED = "raised", "joined", "reopened", "cleared", "resolved"


class OpenAlerts:
    """The cases of a replay: the open ones per elder and case key, and the last closed one of each.

    A case is a dict shaped as the store's row where the grouping rule reads it (``kind``,
    ``meter_id``, ``severity``, ``data_ts``, ``details``, ``case_key``), with ``finding`` (the
    finding that raised it: its cadre's visit is the case's), ``number`` (the replay's count of
    cases when it was raised) and ``by_data`` (closed by the data, no person's outcome on it).

    >>> book = OpenAlerts()
    >>> book.admit("E1", Finding("M1", "no_activity", "high", 100.0, "", ""))
    'raised'
    >>> book.admit("E1", Finding("M1", "continuous_flow", "high", 200.0, "", ""))
    'joined'
    >>> book.admit("E1", Finding("M1", "no_activity", "high", 300.0, "", "", resolved=True))
    'cleared'
    >>> book.admit("E1", Finding("M1", "continuous_flow", "high", 400.0, "", "", resolved=True))
    'resolved'
    >>> [book.admit("E1", Finding("M1", "meter_offline", "low", t, "", "", resolved=r))
    ...  for t, r in ((1e4, False), (2e4, True), (9e4, False))]
    ['raised', 'resolved', 'reopened']
    >>> book.last["details"]["occurrences"], book.cases_raised
    (2, 2)
    >>> [book.admit("E1", Finding("M1", "no_activity", "high", t, "", "", resolved=r))  # flapping
    ...  for t, r in ((1e5, False), (1.1e5, True), (1.2e5, False), (1.3e5, True), (2e5, False))]
    ['raised', 'resolved', 'reopened', 'resolved', 'raised']

    A silence a snooze muted is held, and raised at the snooze's end once the data get there:

    >>> snooze = [(5e5, 6e5, "snooze")]
    >>> book.admit("E2", Finding("M2", "no_activity", "high", 5.5e5, "", ""), snooze) is None
    True
    >>> [(f.ts, action) for f, action in book.admitted("E2", Finding("M2", "no_activity", "high", 7e5, "", "",
    ...  resolved=True), snooze)]
    [(600000.0, 'raised'), (700000.0, 'resolved')]
    """

    __slots__ = ("cases", "cases_raised", "closed", "held", "hold_downs", "last", "rose")

    def __init__(self, hold_downs: HoldDowns = HOLD_DOWNS) -> None:
        self.hold_downs = hold_downs
        self.cases: dict[tuple[str, str], dict[str, Any]] = {}  # open cases by (elder, case key)
        self.closed: dict[tuple[str, str], dict[str, Any]] = {}  # the last closed case by (elder, case key)
        self.cases_raised = 0
        self.last: dict[str, Any] = {}  # the case the last admitted finding touched
        self.rose = False  # the last admitted finding raised its case's severity (live: re-notified, escalated)
        # Findings a snooze muted, to admit at its end (live: the store's held_findings), by (elder, meter, kind).
        self.held: dict[tuple[str, str, str], tuple[Finding, float]] = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OpenAlerts):
            return NotImplemented
        mine = (self.cases, self.closed, self.cases_raised, self.hold_downs, self.held)
        return mine == (other.cases, other.closed, other.cases_raised, other.hold_downs, other.held)

    __hash__ = None  # type: ignore[assignment]

    @property
    def open(self) -> set[tuple[str, str]]:
        """(elder, kind) of every kind still active in an open case."""
        return {(elder, kind) for (elder, _), case in self.cases.items() for kind in active_kinds(case)}

    def admitted(
        self, elder_id: str, finding: Finding, windows: Iterable[Window] = ()
    ) -> Iterator[tuple[Finding, str | None]]:
        """:meth:`admit` ``finding``, after the findings of ``elder_id`` held by a snooze that ended by its data time
        (:meth:`release`): each finding admitted with what it did, in turn (:attr:`last` and :attr:`rose` are its
        own as it is yielded)."""
        windows = tuple(windows)  # read for each finding
        if self.held:
            yield from self.release(elder_id, finding.ts, windows)
        yield finding, self.admit(elder_id, finding, windows)

    def release(
        self, elder_id: str, until: float, windows: Iterable[Window] = ()
    ) -> Iterator[tuple[Finding, str | None]]:
        """Admit the findings of ``elder_id`` a snooze held whose snooze ended by data time ``until``, oldest end
        first, each at the snooze's end with its start kept (live: :meth:`alerts.lifecycle.Lifecycle.release`); a
        window begun meanwhile holds it again. Yields each with what it did."""
        windows = tuple(windows)
        due = sorted((at, key) for key, (_, at) in self.held.items() if key[0] == elder_id and at <= until)
        for at, key in due:
            finding = self.held.pop(key)[0]
            released = dataclasses.replace(finding, ts=max(finding.ts, at))
            yield released, self.admit(elder_id, released, windows)

    def admit(self, elder_id: str, finding: Finding, windows: Iterable[Window] = ()) -> str | None:
        """What ``finding`` does to ``elder_id``'s cases (raised, joined, reopened, cleared, resolved), or None.

        A silence or a running tap a snooze mutes is held (:attr:`held`) until it ends; :meth:`admitted` admits it
        then, unless its kind cleared on its meter first."""
        self.rose = False
        if finding.resolved:
            if self.held:  # it ended inside the snooze that muted it: nothing to raise at its end
                self.held.pop((elder_id, finding.meter_id, finding.kind), None)
            return self._clear(elder_id, finding)
        key = case_key(finding)
        case = self.cases.get((elder_id, key))
        if case is not None and repeats(case, finding):
            return None
        muting = tuple(windows)  # read twice
        if muting and muted_by(finding, muting) is not None:
            until = held_until(finding, muting)
            if until is not None:  # still going on when the snooze ends: admitted then (the newest per meter, kind)
                self.held[(elder_id, finding.meter_id, finding.kind)] = (finding, until)
            return None
        if case is not None:
            before = severity(case)
            case["details"] = joined(case, finding)
            case["severity"] = severity(case)
            self.last, self.rose = case, rises(before, case["severity"])
            return JOINED
        last = self.closed.get((elder_id, key))
        if last is not None and stale(last, finding):
            return None
        if last is not None and reopens(last, finding, self.hold_downs):
            del self.closed[(elder_id, key)]
            last["details"] = joined(last, finding)
            # Its ``finding`` stays the one that raised it: the cadre's visit of the case is still to come.
            last.update(severity=finding.severity, data_ts=finding.ts, by_data=False)
            self.cases[(elder_id, key)] = self.last = last
            return REOPENED
        self.cases_raised += 1
        case = {
            "kind": finding.kind,
            "meter_id": finding.meter_id,
            "severity": finding.severity,
            "data_ts": finding.ts,
            "details": started(finding, {}),
            "case_key": key,
            "finding": finding,
            "number": self.cases_raised,
            "by_data": False,
        }
        self.cases[(elder_id, key)] = self.last = case
        return RAISED

    def _clear(self, elder_id: str, finding: Finding) -> str | None:
        keys = ((elder_id, MAINTENANCE_CASE + finding.meter_id), (elder_id, COMMUNITY_CASE))
        case = clear_order([self.cases[k] for k in keys if k in self.cases], finding)
        if case is None:
            return None
        case["details"] = cleared(case, finding.kind, finding.ts, withdrawn=bool(finding.details.get(WITHDRAWN)))
        self.last = case
        if active_kinds(case):
            case["severity"] = severity(case)
            return CLEARED
        self._close(elder_id, case, by_data=True)
        return RESOLVED

    def resolve_by_person(self, elder_id: str, finding: Finding) -> bool:
        """A person resolved the case ``finding`` raised (a cadre's outcome in a replay); False if it is closed.

        A case the data closed takes the person's outcome all the same (the replay's visits come
        within the outcome window, as live): it is no longer the data's, and flapping cannot reopen it.
        """
        key = (elder_id, case_key(finding))
        case = self.cases.get(key)
        if case is None or case["finding"] is not finding:
            closed = self.closed.get(key)
            if closed is not None and closed["finding"] is finding:
                closed["by_data"] = False  # live: Lifecycle.record_outcome
            return False
        self._close(elder_id, case, by_data=False)
        return True

    def _close(self, elder_id: str, case: dict[str, Any], by_data: bool) -> None:
        key = (elder_id, case["case_key"])
        del self.cases[key]
        case["by_data"] = by_data  # a person's resolution ends the grouping
        self.closed[key] = case
