"""A threshold backtest: what one elder's readings raised with the current thresholds, and with a proposal.

The readings of the elder's meters go once through each meter's step for
their intervals (the register does not depend on thresholds), then through
two monitors: the current thresholds over the whole history, and, from the
start of the counted period on, a copy of that monitor with the proposal set
on it, as ``set_thresholds`` sets it on a live monitor. The days before the
period (the warm-up) are therefore replayed once, and the proposal is judged
as if the operator had made it when the period began. Alerts follow the live
rule (:class:`~engine.alerting.OpenAlerts`: one community case per elder, one maintenance case per
meter, windows mute); what counts is the calls: the cases raised, and the community cases flapping
reopened (a reopen calls the cadre again: :func:`calls`).

:func:`prepare_all` and :func:`propose_all` do this for many elders; given two
processes they fork a child for half the elders (readings and prepared state are
inherited, not sent) and take its results back through a pipe: elders are
judged independently, so the alerts are the same as in one process.
"""

from __future__ import annotations

import bisect
import copy
import gc
import heapq
import logging
import os
import pickle
import select
import signal
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby, repeat
from operator import itemgetter
from typing import TypeVar

from alerts.grouping import COMMUNITY_CASE, HOLD_DOWNS, HoldDowns
from core.domain import Finding, Interval
from detect import MeterMonitor, Thresholds
from engine.alerting import RAISED, REOPENED, OpenAlerts
from engine.localtime import meter_zone, offsets
from engine.meter import register_litres
from engine.replay import Home, Reading
from ingest.register import RegisterTracker

log = logging.getLogger(__name__)

#: How long a preview waits for its forked half before doing that half itself.
CHILD_TIMEOUT_S = 120.0

_J = TypeVar("_J")
_R = TypeVar("_R")


@dataclass(slots=True)
class Outcome:
    """The alerts raised (not resolutions) in the counted period, oldest first per meter."""

    current: list[Finding] = field(default_factory=list)
    proposed: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class Prepared:
    """One elder's backtest up to the proposal: what the current thresholds raised, and where a proposal starts.

    ``at_start`` holds each meter's monitor as it stood when the period began (pickled, so every
    proposal starts from a fresh copy) with the meter's intervals of the period (packed); ``open_at_start``
    the elder's cases as they stood then. Nothing in it depends on a proposal: previews of several
    proposals over the same period share it.
    """

    home: Home
    start: float
    current: list[Finding] = field(default_factory=list)
    at_start: list[tuple[bytes, Packed]] = field(default_factory=list)
    open_at_start: OpenAlerts = field(default_factory=OpenAlerts)


class Packed:
    """One meter's intervals in columns: about 30 bytes an interval where the tuples take 170.

    A prepared community keeps its period's intervals for every further proposal; iterating
    gives the same intervals back, rebuilt in C (``map`` over ``zip``) as they are read.
    """

    __slots__ = ("ends", "meter_id", "offsets", "released", "starts", "statuses", "usages")

    def __init__(self, intervals: list[Interval], released: Mapping[float, float] | None = None) -> None:
        self.meter_id = intervals[0].meter_id if intervals else ""
        self.released = dict(released or {})  # held intervals: end -> the reading that released them
        self.starts = array("d", [i.start for i in intervals])
        self.ends = array("d", [i.end for i in intervals])
        usages = [i.usage_l for i in intervals]
        # Unknown use (a reset, a glitch) is None, which a float column cannot hold: keep those meters' list.
        self.usages: Sequence[float | None] = usages if None in usages else array("d", usages)  # type: ignore[type-var]
        self.statuses = [i.status for i in intervals]  # a few shared strings: a pointer each
        self.offsets = array("i", [i.utc_offset_s for i in intervals])

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self) -> Iterator[Interval]:
        columns = zip(repeat(self.meter_id), self.starts, self.ends, self.usages, self.statuses, self.offsets)
        return map(Interval._make, columns)


def intervals_of(
    readings: Iterable[Reading],
    tz: str,
    released: dict[str, dict[float, float]] | None = None,
    restarts: Sequence[float] = (),
) -> dict[str, list[Interval]]:
    """Each meter's intervals from (meter_id, ts, total_l) readings in time order per meter, read in ``tz``.

    ``released``, when given, gets per meter the intervals of a reading that closed several (the register
    held them until it: a step steeper than any tap), by end, with that reading's time: live raises
    their findings only then (:meth:`engine.meter.MeterStep.push`). From each time in ``restarts`` (sorted:
    the elder's consent given back, :class:`engine.replay.Home`) a meter's register starts afresh, as live forgot it.

    What :meth:`engine.meter.MeterStep.push` makes of each reading without a monitor: the
    meter's register, given the zone's offset then. It is called here directly, a run of one
    meter's readings at a time, without a step and its record per reading (a third of the time
    registering took, about 1 s of CPU in a cold preview of 1,000 elders x 30 days).
    """
    offset_at = offsets(tz)
    trackers: dict[str, RegisterTracker] = {}
    epochs: dict[str, int] = {}  # per meter, the restarts before its last reading
    out: dict[str, list[Interval]] = {}
    for meter_id, run in groupby(readings, key=itemgetter(0)):
        tracker = trackers.get(meter_id)
        if tracker is None:
            tracker = trackers[meter_id] = RegisterTracker(meter_id)
            out[meter_id] = []
        push, extend = tracker.push, out[meter_id].extend
        for _, ts, total_l in run:
            if restarts and epochs.setdefault(meter_id, epoch := bisect.bisect_right(restarts, ts)) != epoch:
                # Readings before a restart, and this one after it: a new register from this reading on.
                epochs[meter_id] = epoch
                tracker = trackers[meter_id] = RegisterTracker(meter_id)
                push = tracker.push
            if total_l % 1.0:  # as ``MeterStep.push`` takes it: to the millilitre the register counted
                total_l = register_litres(total_l)
            made = push(ts, total_l, offset_at(ts))[1]
            if made:
                extend(made)
                if released is not None and len(made) > 1:
                    held = released.setdefault(meter_id, {})
                    for interval in made:
                        held[interval.end] = ts
    return out


def prepare(
    home: Home,
    readings: Iterable[Reading],
    start: float,
    default_tz: str,
    hold_downs: HoldDowns = HOLD_DOWNS,
) -> Prepared:
    """Replay one elder's readings with the current thresholds (``home.thresholds``), noting the state at ``start``.

    ``hold_downs``: the flap and maintenance hold-downs (live: ``HoldDowns.from_settings``).
    """
    prepared = Prepared(home, start)
    book = OpenAlerts(hold_downs)
    warmups: list[_Meter] = []
    periods: list[tuple[list[Interval], Mapping[float, float]]] = []
    released: dict[str, dict[float, float]] = {}
    for meter_id, intervals in intervals_of(readings, meter_zone(home.tz, default_tz), released, home.restarts).items():
        monitor = MeterMonitor(meter_id, home.thresholds or Thresholds())
        monitor.set_away(home.away)  # the live monitor knows the elder's away windows too
        split = bisect.bisect_left(intervals, start, key=_end)
        held = released.get(meter_id, {})
        warmups.append((monitor, intervals[:split], held))
        periods.append((intervals[split:], held))
    # As the warm-up left them: a meter that replaced another in it has taken on the routine the other learned.
    monitors = _run_all(warmups, book, home, start, None)
    # The warm-up is done for every meter of the elder: a proposal would take over from here.
    prepared.open_at_start = copy.deepcopy(book)
    for monitor, (period, releases) in zip(monitors, periods, strict=True):
        packed = Packed(period, {end: at for end, at in releases.items() if end >= start})
        prepared.at_start.append((pickle.dumps(monitor, protocol=pickle.HIGHEST_PROTOCOL), packed))
    meters = [(monitor, period, held) for monitor, (period, held) in zip(monitors, periods, strict=True)]
    _run_all(meters, book, home, start, prepared.current)
    return prepared


def propose(prepared: Prepared, proposal: Thresholds) -> list[Finding]:
    """The alerts ``proposal`` raises in the period, set on each monitor as it stood at the start."""
    if proposal == (prepared.home.thresholds or Thresholds()):
        return list(prepared.current)  # setting the thresholds in force changes nothing
    book = copy.deepcopy(prepared.open_at_start)
    raised: list[Finding] = []
    trials: list[_Meter] = []
    for blob, period in prepared.at_start:
        trial: MeterMonitor = pickle.loads(blob)  # our own pickle, made in prepare
        trial.set_thresholds(proposal)
        trials.append((trial, period, period.released))
    _run_all(trials, book, prepared.home, prepared.start, raised)
    return raised


def prepare_all(
    elders: Sequence[tuple[Home, Sequence[Reading]]],
    start: float,
    default_tz: str,
    processes: int = 1,
    hold_downs: HoldDowns = HOLD_DOWNS,
) -> list[Prepared]:
    """Each elder prepared (:func:`prepare`) from its readings, in ``processes`` (1 or 2) processes."""

    def work(some: Sequence[tuple[Home, Sequence[Reading]]]) -> list[Prepared]:
        return [prepare(home, rows, start, default_tz, hold_downs) for home, rows in some]

    return in_halves(elders, work, processes)


def propose_all(prepared: Sequence[Prepared], trials: Sequence[Thresholds], processes: int = 1) -> list[list[Finding]]:
    """Each elder's alerts under its trial thresholds (:func:`propose`), in ``processes`` (1 or 2) processes."""
    jobs = list(zip(prepared, trials, strict=True))
    return in_halves(jobs, lambda some: [propose(p, t) for p, t in some], processes)


def in_halves(jobs: Sequence[_J], work: Callable[[Sequence[_J]], list[_R]], processes: int) -> list[_R]:
    """``work(jobs)``, with 2 processes as ``work`` of the first half here and of the second in a forked child.

    Elders are judged independently, so the split changes no answer. The child inherits everything
    (nothing is sent to it), sends its results back pickled and exits. Should the child fail, this
    process does its half too.
    """
    if processes < 2 or len(jobs) < 2 or not hasattr(os, "fork"):
        with collection_paused():
            return work(jobs)
    half = len(jobs) // 2
    read_fd, write_fd = os.pipe()
    # A collection in the child would touch every inherited object and so copy the whole heap:
    # frozen objects are never collected (the parent unfreezes them once the child is forked).
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the child: work, send, and leave without running any of the parent's exit handlers
        code = 1
        try:
            gc.disable()
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as out:
                out.write(pickle.dumps(work(jobs[half:]), protocol=pickle.HIGHEST_PROTOCOL))
            code = 0
        finally:
            os._exit(code)
    gc.unfreeze()
    os.close(write_fd)
    with collection_paused():  # the child, too, works without the collector (above)
        mine = work(jobs[:half])
        sent = _read_child(read_fd, pid, CHILD_TIMEOUT_S)
        _, exit_status = os.waitpid(pid, 0)
        if exit_status == 0 and sent:
            theirs: list[_R] = pickle.loads(sent)  # our own child's pickle
            return mine + theirs
        log.warning("backtest child process ended with status %s: doing its half here", exit_status)
        return mine + work(jobs[half:])


_pauses = 0
_collecting_before = True
_pauses_lock = threading.Lock()


@contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the block runs (back on when the last such block ends).

    A backtest makes millions of tuples (readings, intervals) that hold no cycles; every 700 of
    them the collector runs, and each of its full passes walks the whole growing heap: that was
    two thirds of registering readings (3.6 s of CPU where 1.1 s registers, 1,000 elders x 30
    days). The forked child runs without it already. Several previews may pause at once (threads):
    the collector comes back, as it was before the first, when the last ends.
    """
    global _pauses, _collecting_before
    with _pauses_lock:
        if _pauses == 0:
            _collecting_before = gc.isenabled()
        _pauses += 1
        gc.disable()
    try:
        yield
    finally:
        with _pauses_lock:
            _pauses -= 1
            if _pauses == 0 and _collecting_before:
                gc.enable()


def _read_child(read_fd: int, pid: int, timeout_s: float) -> bytes:
    """All the child sends, or nothing if it has not finished within ``timeout_s`` (it is then killed).

    A child forked from a threaded server could block on a lock another thread held at the fork;
    the preview must then still answer, from this process alone.
    """
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    with os.fdopen(read_fd, "rb", buffering=0) as answer:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([answer], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                return b""
            chunk = answer.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def backtest(home: Home, proposal: Thresholds, readings: Iterable[Reading], start: float, default_tz: str) -> Outcome:
    """One elder's alerts from ``start`` on, with ``home.thresholds`` and with ``proposal`` in force from ``start``."""
    prepared = prepare(home, readings, start, default_tz)
    return Outcome(prepared.current, propose(prepared, proposal))


def calls(action: str | None, book: OpenAlerts) -> bool:
    """What a finding did (:meth:`OpenAlerts.admit`) calls someone anew: a case raised, or a community case
    reopened by flapping (re-notified, escalated afresh; a maintenance case's occurrence calls no cadre)."""
    return action == RAISED or (action == REOPENED and book.last["case_key"] == COMMUNITY_CASE)


def _end(interval: Interval) -> float:
    return interval.end


#: A meter's monitor, its intervals, and its held intervals' release times (:func:`intervals_of`).
_Meter = tuple[MeterMonitor, Iterable[Interval], Mapping[float, float]]


def _run_all(
    meters: Sequence[_Meter],
    book: OpenAlerts,
    home: Home,
    start: float,
    raised: list[Finding] | None,
) -> list[MeterMonitor]:
    """Each meter's intervals through its monitor; an elder's several meters in time order, as live sees them.

    Their findings meet in the elder's one community case, so which came first matters. Returns each
    meter's monitor as it stands after: a meter that replaced another (``home.replaced``) starts, at its
    first interval, from the routine the other learned (:func:`_carried`), as live carried it over; one whose
    elder's consent came back since its last interval (``home.restarts``) starts afresh (:func:`_afresh`).
    """
    monitors = [monitor for monitor, _, _ in meters]
    if len(meters) == 1 and not home.restarts:
        newest = _run(*meters[0], book, home, start, raised)
    else:
        replaced = {new: old for old, new in home.replaced}
        position = {monitor.meter_id: k for k, monitor in enumerate(monitors)}
        tagged = [zip(repeat(k), intervals, strict=False) for k, (_, intervals, _) in enumerate(meters)]
        newest = None
        for k, interval in heapq.merge(*tagged, key=lambda pair: pair[1].end):
            before = position.get(replaced.get(monitors[k].meter_id, ""))
            predecessor = None if before is None else monitors[before]
            monitor = monitors[k] = _monitor_for(monitors[k], interval.start, home, book, predecessor)
            newest = _run(monitor, (interval,), meters[k][2], book, home, start, raised)
    if book.held and newest is not None:
        # Snoozes the readings outlasted with no finding after them: live, the escalation runner raised their held
        # findings by then.
        for admitted, action in book.release(home.elder_id, newest, home.windows):
            _count(admitted, action, book, start, raised)
    return monitors


def _restart_before(restarts: Sequence[float], last_end: float | None, start: float) -> float | None:
    """The newest of ``restarts`` after ``last_end`` (a monitor's last interval) and by ``start`` (its next), if any.

    >>> _restart_before([10.0, 20.0], 5.0, 25.0), _restart_before([10.0], 12.0, 25.0), _restart_before([10.0], None, 25)
    (20.0, None, None)
    """
    k = bisect.bisect_right(restarts, start)
    if last_end is None or not k or restarts[k - 1] <= last_end:
        return None
    return restarts[k - 1]


def _afresh(monitor: MeterMonitor, home: Home, book: OpenAlerts, restart: float) -> MeterMonitor:
    """A new monitor for ``monitor``'s meter, as for a new elder, her cases from before ``restart`` closed.

    Live, withdrawing her consent erased what her meters had learned and closed her cases (``PATCH /elders``):
    when it is given back she is judged as a new elder, in its learning week (:func:`store.registry.set_consent`).
    """
    for (elder_id, _), case in list(book.cases.items()):
        if elder_id == home.elder_id and case["data_ts"] < restart:
            book.resolve_by_person(elder_id, case["finding"])
    fresh = MeterMonitor(monitor.meter_id, monitor.thresholds)
    fresh.set_away(home.away)
    return fresh


def _monitor_for(
    monitor: MeterMonitor, start: float, home: Home, book: OpenAlerts, predecessor: MeterMonitor | None
) -> MeterMonitor:
    """The monitor that judges ``monitor``'s meter from an interval starting at ``start`` on, as live would.

    A replacement meter (``predecessor``: the monitor of the meter it replaced) takes on at its first interval
    the routine the other learned (:func:`_carried`); a meter whose elder's consent came back since its last
    interval (or, for a replacement, since its predecessor's) starts afresh (:func:`_afresh`).
    """
    if monitor.first_ts is None and predecessor is not None:
        restart = _restart_before(home.restarts, predecessor.last_end, start)
        return _carried(monitor, predecessor) if restart is None else _afresh(monitor, home, book, restart)
    restart = _restart_before(home.restarts, monitor.last_end, start)
    return monitor if restart is None else _afresh(monitor, home, book, restart)


def _carried(fresh: MeterMonitor, old: MeterMonitor | None) -> MeterMonitor:
    """A replacement meter's monitor, from the monitor of the meter it replaced (``old``) as it stands now.

    :func:`engine.meterstate.carry_routine` does it live when the meter is replaced: ``fresh`` stays when the old
    meter learned nothing (no reading of it replayed).
    """
    if old is None or old.first_ts is None:
        return fresh
    return old.for_replacement(fresh.meter_id)


def _count(finding: Finding, action: str | None, book: OpenAlerts, start: float, raised: list[Finding] | None) -> None:
    """``finding`` did ``action``: in ``raised`` if that calls someone within the period."""
    if raised is not None and finding.ts >= start and calls(action, book):
        raised.append(finding)


def _run(
    monitor: MeterMonitor,
    intervals: Iterable[Interval],
    held: Mapping[float, float],
    book: OpenAlerts,
    home: Home,
    start: float,
    raised: list[Finding] | None,
) -> float | None:
    """The intervals through the monitor, their findings through the book; the end of the last interval, if any."""
    update = monitor.update
    interval = None
    for interval in intervals:
        found = update(interval)
        if found:
            if held:
                at = held.get(interval.end)
                if at is not None:
                    for finding in found:
                        finding.ts = max(finding.ts, at)
            for finding in found:
                # A finding a snooze held, its snooze over by this one's data time, goes first (live: the runner).
                for admitted, action in book.admitted(home.elder_id, finding, home.windows):
                    _count(admitted, action, book, start, raised)
    return None if interval is None else interval.end
