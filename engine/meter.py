"""The per-meter step: one reading in; its register status, the intervals it closed, the findings out.

A meter's register (:class:`ingest.register.RegisterTracker`) turns readings
into intervals of use in the meter's local time (:mod:`engine.localtime`), and
its monitor (:class:`detect.MeterMonitor`) turns intervals into findings. The
live pipeline, replay, the backtest and eval push every reading through
:meth:`MeterStep.push`; eval, which runs other detectors on the same intervals,
makes steps without a monitor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from core.domain import Finding, Interval
from detect import MeterMonitor
from engine.localtime import QUARTER_S, offsets, quarter_offsets
from ingest.register import RegisterTracker

#: Builds a :class:`Step` from a tuple without the named tuple's Python-level ``__new__``/``_make``: once per reading.
_new = tuple.__new__
#: Registers count no finer than a millilitre: a total is taken to the millilitre, in thousandths.
_ML_PER_L = 1000.0


def register_litres(total_l: float) -> float:
    """A register's total (L) to the millilitre: what it counted, not the float a reading in m³ became.

    A register in cubic metres with three decimals counts whole litres, but ``total_m3 * 1000`` is a hair off
    them: 128.003 m³ less 128.000 m³ was 2.99999999998 L, under the 3 L that close a silence case, and a leak's
    10 L and 11 L by turns were a litre and a hair apart, no longer flat (found 3 h in, not 1.5 h).

    >>> 128.003 * 1000.0 - 128.000 * 1000.0 < 3.0, register_litres(128.003 * 1000.0) - register_litres(128000.0)
    (True, 3.0)
    >>> register_litres(12345.6), register_litres(351583.0)
    (12345.6, 351583.0)

    Most registers count whole litres, where there is nothing to take off: callers test ``total_l % 1.0`` first
    (once per reading, without this call).
    """
    return round(total_l * _ML_PER_L) / _ML_PER_L


class Step(NamedTuple):  # one per reading: a named tuple is the cheapest record to build
    """What one reading did: its register status, the intervals it closed, what detection found."""

    status: str
    intervals: list[Interval]
    findings: list[Finding]


class MeterStep:
    """One meter's register and monitor, reading its readings in zone ``tz``."""

    __slots__ = ("monitor", "offset_at", "quarters", "tracker", "tz")

    def __init__(self, tracker: RegisterTracker, monitor: MeterMonitor | None, tz: str) -> None:
        self.tracker = tracker
        self.monitor = monitor
        self.tz = tz  # a live checkpoint records it: readings replayed from there are read as they were live
        self.offset_at: Callable[[float], int] = offsets(tz)
        self.quarters = quarter_offsets(tz)  # what ``offset_at`` remembers: a hit is looked up without a call

    @property
    def meter_id(self) -> str:
        return self.tracker.meter_id

    def push(self, ts: float, total_l: float) -> Step:
        """Take one reading (``ts`` epoch seconds, ``total_l`` the register in litres)."""
        offset = self.quarters.get(ts // QUARTER_S)
        if offset is None:
            offset = self.offset_at(ts)
        if total_l % 1.0:  # not whole litres (a register in m³): to the millilitre it counted
            total_l = register_litres(total_l)
        status, intervals = self.tracker.push(ts, total_l, offset)
        return _new(Step, (status, intervals, self._detect(intervals, ts)))

    def findings(self, ts: float, total_l: float) -> list[Finding]:
        """What :meth:`push` finds, alone: replay's loop reads nothing else, so it builds no :class:`Step`."""
        offset = self.quarters.get(ts // QUARTER_S)  # ``offset_at(ts)`` for a quarter hour it remembers, without a call
        if offset is None:
            offset = self.offset_at(ts)
        if total_l % 1.0:
            total_l = register_litres(total_l)
        intervals = self.tracker.push(ts, total_l, offset)[1]
        if len(intervals) == 1 and self.monitor is not None:  # the common case, without the call to ``_detect``
            return self.monitor.update(intervals[0])
        return self._detect(intervals, ts)

    def _detect(self, intervals: list[Interval], ts: float) -> list[Finding]:
        """The monitor's findings on the intervals a reading at ``ts`` closed."""
        monitor = self.monitor
        if not intervals or monitor is None:
            return []
        if len(intervals) == 1:  # the common case: the monitor's own new list is the step's
            return monitor.update(intervals[0])
        findings: list[Finding] = []
        for interval in intervals:
            findings.extend(monitor.update(interval))
        for finding in findings:
            # An interval the register held (a step steeper than any tap) is known only now: live, its
            # findings are raised at this reading, so replay stamps them here too.
            finding.ts = max(finding.ts, ts)
        return findings
