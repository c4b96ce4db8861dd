"""Per-meter detection state: loaded in bulk, checkpointed now and then, caught up from stored readings.

Readings commit with every batch; a meter's detector state is written less
often (once its readings have moved ``checkpoint_interval_s`` of data time past
the last checkpoint, whenever it raised or cleared an alert, and at shutdown),
because serialising it is the costliest step of ingest. Data time, not wall
time: a reload then replays a bounded number of readings, and a burst of
back-to-back ticks (a backlog, a replay, the demo) costs what live meters do. On
load, a checkpoint is caught up by replaying the meter's stored readings that
came after it, so a crash between checkpoints loses nothing: the state ends
exactly where the last committed batch left it.

Each meter's register and monitor form its :class:`engine.meter.MeterStep`, the
step replay, the backtest and eval run too; its zone is the elder's, else the
configured one (:func:`engine.localtime.meter_zone`). A checkpoint records the
zone and the thresholds it was made under: the catch-up judges the readings
since as they were judged live, and a change made since applies from the
meter's next reading.

Several workers may hold the same meter (a shared subscription hands its
readings to any of them). Each committed batch moves the meter's
``meters.state_version`` on with a conditional update (``WHERE state_version =
<the one we loaded>``); a worker whose cached version is no longer the stored one reloads the meter
before using it, and a batch that lost the race is rolled back and retried
on fresh state (:class:`StaleState`). No update is ever lost, whatever the
broker's distribution; with a sticky distribution the cache is always fresh.
"""

from __future__ import annotations

import io
import logging
import pickle
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from alerts.grouping import taught
from core.domain import Finding
from core.thresholds import Thresholds
from detect import MeterMonitor
from detect.baseflow import BaseFlow
from detect.compact import held_once
from detect.daily import DailyModel
from detect.flow import FlowModel
from detect.rules import LowUseWindowRule
from detect.silence import SilenceModel
from engine.localtime import meter_zone
from engine.meter import MeterStep, Step
from engine.outcomes import apply_outcome
from ingest.register import ACCEPTED, LATE, RegisterTracker
from store.ops import InQuery, execute_many, upsert
from store.registry import thresholds_from_rows
from store.schema import away_windows, detector_state, elders, meters, readings, thresholds
from store.versions import in_chunks

log = logging.getLogger(__name__)

#: Before the newest reading (or the current silence's start), the reach of an away window that ended then: the
#: day holding the reading began at most a day (25 h on the night the clocks go back) before it.
AWAY_REACH_MARGIN_S = 2 * 86400.0


class StaleState(Exception):
    """Another worker committed some of these meters since this worker loaded them: retry on fresh state."""

    def __init__(self, meter_ids: Iterable[str], loaded: Mapping[str, int] | None = None) -> None:
        self.meter_ids = sorted(meter_ids)
        self.loaded = dict(loaded or {})  # the version each meter was loaded at: which moved is known after rollback
        shown = ", ".join(self.meter_ids[:5]) + (" ..." if len(self.meter_ids) > 5 else "")
        super().__init__(f"detector state of {len(self.meter_ids)} meter(s) moved on elsewhere: {shown}")


_VERSIONS = InQuery(
    lambda in_list: select(meters.c.meter_id, meters.c.state_version).where(meters.c.meter_id.in_(in_list))
)
_BUMP = (
    update(meters)
    .where(meters.c.meter_id == bindparam("m"), meters.c.state_version == bindparam("old"))
    .values(state_version=bindparam("new"))
)


@dataclass(slots=True)
class MeterState:
    """A cached meter: its elder (``context``), its step (register and monitor) and its checkpoint's progress."""

    context: dict[str, Any]
    meter: MeterStep
    version: int = 0
    checkpointed_ts: float = 0.0  # data time the stored checkpoint reached
    dirty: bool = False
    # False: no stored checkpoint holds this state's thresholds and zone (none yet, or a change since): the next
    # commit writes one, and a reload then starts there.
    has_checkpoint: bool = False

    @property
    def tracker(self) -> RegisterTracker:
        return self.meter.tracker

    @property
    def monitor(self) -> MeterMonitor:
        assert self.meter.monitor is not None  # a live meter always has one
        return self.meter.monitor


class MeterStates:
    """The cache of per-meter state for one worker."""

    def __init__(
        self,
        default_tz: str = "Asia/Shanghai",
        checkpoint_interval_s: float = 21600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.default_tz = default_tz
        self.checkpoint_interval_s = checkpoint_interval_s
        self.clock = clock
        self._cache: dict[str, MeterState] = {}
        self.replayed = 0  # readings replayed to catch checkpoints up (a restart figure)

    def get(self, meter_id: str) -> MeterState | None:
        return self._cache.get(meter_id)

    def moved(self, conn: Connection, lost: StaleState) -> set[str]:
        """The meters of a lost race whose stored version is no longer the one they were loaded at (after the
        rollback: moved on by another worker, or an operator's change)."""
        if not lost.loaded:
            return set()
        stored = dict(_VERSIONS.rows(conn, list(lost.loaded)))
        return {meter_id for meter_id, version in lost.loaded.items() if stored.get(meter_id, version) != version}

    def evict(self, meter_ids: Iterable[str] | None = None) -> None:
        if meter_ids is None:
            self._cache.clear()
        else:
            for meter_id in meter_ids:
                self._cache.pop(meter_id, None)

    def __len__(self) -> int:
        return len(self._cache)

    # -- one reading ----------------------------------------------------------------

    def advance(self, state: MeterState, ts: float, total_l: float) -> Step:
        """Push one reading through the meter's step (register tracker and monitor)."""
        step = state.meter.push(ts, total_l)
        if step.status in (ACCEPTED, LATE):
            state.dirty = True
        return step

    def step_for(self, context: dict[str, Any], tracker: RegisterTracker, monitor: MeterMonitor) -> MeterStep:
        """The meter's step, reading in its elder's zone (else this worker's default)."""
        return MeterStep(tracker, monitor, self.zone_of(context))

    def zone_of(self, context: Mapping[str, Any]) -> str:
        """The zone a meter's readings are read in now: its elder's, else this worker's default."""
        return meter_zone(context.get("tz"), self.default_tz)

    # -- loading -------------------------------------------------------------------------

    def load(
        self, conn: Connection, meter_ids: Iterable[str], on_findings: Callable[[MeterState, list[Finding]], None]
    ) -> set[str]:
        """Bring every active, consented meter of ``meter_ids`` into the cache, fresh (others stay out).

        Returns the active meters among them whose elder has not consented to monitoring: they stay
        out, and the caller drops their readings unread (``registry.set_consent``).
        """
        meter_ids = set(meter_ids)
        self._drop_stale(conn, [m for m in meter_ids if m in self._cache])
        wanted = [m for m in meter_ids if m not in self._cache]
        withheld: set[str] = set()
        for chunk in in_chunks(wanted):
            withheld |= self._load_chunk(conn, chunk, on_findings)
        return withheld

    def drop_moved(self, conn: Connection) -> int:
        """Evict every cached meter moved on since it was loaded; returns how many.

        A meter is checked when a batch or the silent-meter check asks for it; one retired or replaced (its
        version moved on by the change) is never asked for again, so its state stayed in the cache for the
        worker's life, one more per meter retired.
        """
        before = len(self._cache)
        self._drop_stale(conn, list(self._cache))
        return before - len(self._cache)

    def _drop_stale(self, conn: Connection, cached: list[str]) -> None:
        """Evict cached meters another worker (or an operator's change) has moved on since we loaded them."""
        if cached:
            stored = dict(_VERSIONS.rows(conn, cached))
            self.evict(m for m in cached if stored.get(m, 0) != self._cache[m].version)

    def _load_chunk(
        self, conn: Connection, meter_ids: list[str], on_findings: Callable[[MeterState, list[Finding]], None]
    ) -> set[str]:
        contexts = _contexts(conn, meter_ids)
        withheld = {meter_id for meter_id, context in contexts.items() if not context.pop("consent")}
        for meter_id in withheld:
            del contexts[meter_id]
        if not contexts:
            return withheld
        limits = _thresholds(conn, contexts.values())
        away = _away(conn, [c["elder_id"] for c in contexts.values()])
        checkpoints = dict(
            conn.execute(
                select(detector_state.c.meter_id, detector_state.c.state).where(
                    detector_state.c.meter_id.in_(list(contexts))
                )
            ).all()
        )
        for meter_id, context in contexts.items():
            tracker = RegisterTracker(meter_id)
            version = int(context.pop("state_version"))
            zone = judged_in = self.zone_of(context)
            monitor = None
            if meter_id in checkpoints:
                monitor, judged_in = _unpickle(conn, meter_id, checkpoints[meter_id], tracker, zone)
            # One that cannot be read is as good as none: the meter's next commit replaces it, or every
            # reload until it is due would start the meter cold again, forgetting what it learned since.
            readable = monitor is not None
            if monitor is None:
                monitor = MeterMonitor(meter_id, thresholds=limits[context["elder_id"]])
            monitor.set_away(away.get(context["elder_id"], []))
            state = MeterState(
                context,
                MeterStep(tracker, monitor, judged_in),
                version,
                checkpointed_ts=tracker.newest or 0.0,
                has_checkpoint=readable,
            )
            self._cache[meter_id] = state
            if _behind(tracker, context.get("last_reading_ts")):
                # Under the thresholds and in the zone the checkpoint holds: the readings since were judged so
                # when they came. Under a change made since, a stretch that raised nothing live raised and cleared
                # a case for hours already past (or had its days and hours moved); the change applies from the
                # meter's next reading.
                self._catch_up(conn, state, on_findings)
            monitor.set_away(_away_in_reach(list(monitor.away), monitor, tracker))
            self._set_thresholds(state, limits[context["elder_id"]])
            self._set_zone(state, zone)
        return withheld

    @staticmethod
    def _set_thresholds(state: MeterState, limits: Thresholds) -> None:
        """The thresholds in force now on a loaded meter; a change since its checkpoint is written with its next commit.

        Until then a reload catches up under the checkpoint's thresholds again: no reading has been judged
        under the new ones yet, and the first that is commits the checkpoint that starts them.
        """
        monitor = state.monitor
        changed = monitor.thresholds != limits
        monitor.set_thresholds(limits)  # also when unchanged: its models' copies kept in step (older checkpoints)
        if changed:
            state.has_checkpoint = False

    @staticmethod
    def _set_zone(state: MeterState, zone: str) -> None:
        """The zone in force now on a loaded meter (its elder's moved): written with its next commit, as thresholds."""
        if state.meter.tz != zone:
            state.meter = MeterStep(state.tracker, state.monitor, zone)
            state.has_checkpoint = False

    def _catch_up(
        self, conn: Connection, state: MeterState, on_findings: Callable[[MeterState, list[Finding]], None]
    ) -> None:
        tracker = state.tracker
        newest = tracker.newest
        query = select(readings.c.ts, readings.c.total_l).where(
            readings.c.meter_id == tracker.meter_id, readings.c.status != "late"
        )
        if newest is not None:
            query = query.where(readings.c.ts > newest)
        findings: list[Finding] = []
        # A stored reading was taken when it was stored, each row's use counted from the one before: readings
        # under a minute apart kept by a version before the spacing rule are taken again, else the next reading's
        # use would be counted from the one before them, the skipped reading's litres stored twice (the detectors
        # join intervals that short anyway).
        limits = tracker.limits
        tracker.limits = replace(limits, min_spacing_s=0.0)
        try:
            for ts, total_l in conn.execute(query.order_by(readings.c.ts)):
                findings.extend(self.advance(state, ts, total_l).findings)
                self.replayed += 1
        finally:
            tracker.limits = limits
        if findings:
            on_findings(state, findings)

    # -- checkpoints -------------------------------------------------------------------------

    def commit(self, conn: Connection, states: Iterable[MeterState], force: Iterable[str] = ()) -> int:
        """Move each state's stored version on, writing those whose checkpoint is due (or forced).

        Raises :class:`StaleState` if another worker moved any of them on first (the caller rolls back
        and retries). Returns how many checkpoints were written.
        """
        now = self.clock()
        forced = set(force)
        bumps: list[dict[str, Any]] = []
        checkpoints: list[dict[str, Any]] = []
        for state in states:
            meter_id = state.tracker.meter_id
            bumps.append({"m": meter_id, "old": state.version, "new": state.version + 1})
            state.version += 1
            newest = state.tracker.newest or 0.0
            due = state.dirty and (meter_id in forced or newest - state.checkpointed_ts >= self.checkpoint_interval_s)
            if due or not state.has_checkpoint:
                checkpoints.append({"meter_id": meter_id, "state": _pickle(state), "updated_at": now})
                state.checkpointed_ts, state.dirty, state.has_checkpoint = newest, False, True
        if bumps and execute_many(conn, _BUMP, bumps).rowcount != len(bumps):
            # Which ones is not told by a bulk update: the whole batch is retried on fresh state.
            raise StaleState((b["m"] for b in bumps), {b["m"]: b["old"] for b in bumps})
        # Only the winner of the version bump gets here, so checkpoints are written without a race.
        upsert(conn, detector_state, checkpoints, keys=["meter_id"])
        return len(checkpoints)

    def flush(self, conn_factory: Callable[[], Any], states: Iterable[MeterState]) -> int:
        """Checkpoint each of ``states`` in its own transaction (graceful shutdown); returns how many.

        A state another worker has moved on is dropped, not written: the store already holds newer work.
        """
        written = 0
        for state in list(states):
            try:
                with conn_factory() as conn:
                    written += self.commit(conn, [state], force=[state.tracker.meter_id])
            except StaleState:
                self.evict([state.tracker.meter_id])
        return written

    def dirty(self) -> list[MeterState]:
        return [s for s in self._cache.values() if s.dirty]


def carry_routine(conn: Connection, old_meter_id: str, new_meter_id: str, default_tz: str, now: float) -> bool:
    """Give a replacement meter the routine its home's old meter learned; True if there was one.

    Call it before the old meter is retired. Its checkpoint is caught up from its stored readings
    first (findings of that replay were applied when the readings came in), so the new meter
    starts from everything learned up to the swap, with a fresh register
    (:meth:`detect.MeterMonitor.for_replacement`). Without it a new meter would spend weeks
    learning again on the cold-start rules, with an elder who has not changed.
    """
    states = MeterStates(default_tz)
    states.load(conn, [old_meter_id], lambda _state, _findings: None)
    old = states.get(old_meter_id)
    if old is None or old.monitor.first_ts is None:
        return False
    new = MeterState(
        old.context,
        states.step_for(old.context, RegisterTracker(new_meter_id), old.monitor.for_replacement(new_meter_id)),
    )
    upsert(conn, detector_state, [{"meter_id": new_meter_id, "state": _pickle(new), "updated_at": now}], ["meter_id"])
    return True


def teach_outcome(conn: Connection, alert: Mapping[str, Any], outcome: str, default_tz: str) -> bool:
    """The meters that found ``alert``'s kinds learn what a person found, in the caller's transaction; True if any did.

    The live side of the closed loop (:func:`engine.outcomes.apply_outcome`, the path replay and eval
    take too): every kind the case held is taught with its own episode (:func:`alerts.grouping.taught`:
    a flow that joined a silence's case ends its run's episode too), each on the meter that found it.
    Each meter's checkpoint is loaded and caught up, taught, and written back with its version moved on,
    so a worker holding the meter reloads it before its next batch. Raises :class:`StaleState` if a worker
    committed one of them meanwhile (the caller rolls back; retrying is safe).
    """
    lessons = taught(alert)
    states = MeterStates(default_tz)
    # Their findings were applied when their readings came.
    states.load(conn, {str(lesson["meter_id"]) for lesson in lessons}, lambda _state, _findings: None)
    learned: dict[str, MeterState] = {}
    for lesson in lessons:
        state = states.get(str(lesson["meter_id"]))
        # A retired or withheld meter, or an outcome that teaches that kind nothing (device kinds), is skipped.
        if state is not None and apply_outcome(state.meter, lesson, outcome):
            state.dirty = True
            learned[state.tracker.meter_id] = state
    if learned:
        states.commit(conn, learned.values(), force=learned)
    return bool(learned)


def _unpickle(
    conn: Connection, meter_id: str, blob: bytes, tracker: RegisterTracker, zone: str
) -> tuple[MeterMonitor | None, str]:
    """The checkpointed monitor and the zone it was made in, restoring ``tracker``; no monitor if it cannot be read.

    A checkpoint from an older tapwatch (or a damaged one) must not stop ingest: the meter restarts
    cold from its newest stored reading (no replay of history, which would raise old alerts again).
    One from before the zone was recorded is taken as made in ``zone``, the meter's zone now.
    """
    try:
        tracker_state, monitor, recorded = load_checkpoint(blob)
        tracker.restore(tracker_state)
        return monitor, meter_zone(recorded, zone)
    except Exception as exc:
        # Whatever an old or damaged pickle raises (a module since moved or renamed: ImportError), else the
        # batch fails on it and every reading of the meter is set aside as a dead letter, for good.
        log.warning("checkpoint of meter %s unreadable (%s): it restarts cold from its newest reading", meter_id, exc)
    newest = conn.execute(
        select(readings.c.ts, readings.c.total_l)
        .where(readings.c.meter_id == meter_id, readings.c.status != "late")
        .order_by(readings.c.ts.desc())
        .limit(1)
    ).first()
    if newest is not None:
        tracker.restore((float(newest.ts), float(newest.total_l), None, 0.0))
    return None, zone


#: Every class a checkpoint holds (``_pickle``), as unpickling names them: the only ones a checkpoint may name.
_CHECKPOINT_CLASSES = frozenset(
    (cls.__module__, cls.__qualname__)
    for cls in (MeterMonitor, SilenceModel, FlowModel, DailyModel, BaseFlow, LowUseWindowRule, Thresholds, array)
) | {("array", "_array_reconstructor")}


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickles a checkpoint, refusing any class or function it does not hold.

    A checkpoint is read from the store, and a plain unpickle runs whatever its bytes name: a row written by anyone
    able to write to the store would have run code in every worker that loaded that meter.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CHECKPOINT_CLASSES:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which no checkpoint holds")
        return super().find_class(module, name)


def load_checkpoint(blob: bytes) -> tuple[Any, MeterMonitor, Any]:
    """A stored checkpoint's register state, monitor and zone (None: before zones were recorded).

    Raises (``pickle.UnpicklingError``, ``ValueError``, ...) on one that is not this release's: it names another
    class, or holds a value of another kind than this release's monitors do (damage, or a newer release's layout of
    as many values). Checked here, before a reading touches it: such a value failed the batch of the first reading
    to touch it, and every reading of the meter after it was set aside as a dead letter.
    """
    tracker_state, monitor, *recorded = _CheckpointUnpickler(io.BytesIO(_checked(blob))).load()
    if not isinstance(monitor, MeterMonitor):
        raise ValueError(f"a {type(monitor).__name__} where its monitor was expected")
    monitor.check_loaded()
    return _sharing_times(tracker_state, monitor), monitor, recorded[0] if recorded else None


def _sharing_times(tracker_state: Any, monitor: MeterMonitor) -> Any:
    """The register's state holding the monitor's objects for the values both hold (its last reading is the end of
    the monitor's last interval, their usual interval is the same): unpickling made two of each."""
    if not isinstance(tracker_state, tuple) or len(tracker_state) < 5:
        return tracker_state  # an older checkpoint, or not a register's state: checked by ``RegisterTracker.restore``
    last_ts, *middle, usual_s = tracker_state[:5]
    return (
        held_once(last_ts, monitor.last_end),
        *middle,
        held_once(usual_s, monitor.usual_s),
        *tracker_state[5:],
    )


#: Ends a checkpoint: this marker and the CRC-32 of the pickle before it. After the pickle, where unpickling stops,
#: so a release before it reads the checkpoint as ever (a rollback starts no meter cold for it).
_SEALED = b"TWc1"
_SEAL = len(_SEALED) + 4


def _sealed(pickled: bytes) -> bytes:
    return pickled + _SEALED + zlib.crc32(pickled).to_bytes(4, "big")


def _checked(blob: bytes) -> bytes:
    """The pickle of a checkpoint whose CRC matches it; ``ValueError`` for one damaged since it was written.

    A flipped bit unpickled as another learned value, silently, or made the unpickler grow its memo to gigabytes
    (a BUILD opcode turned LONG_BINPUT), the worker killed for memory at every load of the meter. A checkpoint
    without the seal (written before it) is unpickled as it is.
    """
    if blob[-_SEAL:-4] != _SEALED:
        return blob
    pickled = blob[:-_SEAL]
    if zlib.crc32(pickled).to_bytes(4, "big") != blob[-4:]:
        raise ValueError("damaged since it was written (its CRC does not match)")
    return pickled


def _pickle(state: MeterState) -> bytes:
    return _sealed(
        pickle.dumps((state.tracker.state(), state.monitor, state.meter.tz), protocol=pickle.HIGHEST_PROTOCOL)
    )


def _behind(tracker: RegisterTracker, last_reading_ts: float | None) -> bool:
    if last_reading_ts is None:
        return False
    newest = tracker.newest
    return newest is None or last_reading_ts > newest


def _contexts(conn: Connection, meter_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        select(
            meters.c.meter_id,
            meters.c.last_reading_ts,
            meters.c.state_version,
            elders.c.elder_id,
            elders.c.name,
            elders.c.community,
            elders.c.building,
            elders.c.room,
            elders.c.tz,
            elders.c.consent,
        )
        .join(elders, elders.c.elder_id == meters.c.elder_id)
        .where(meters.c.meter_id.in_(meter_ids), meters.c.retired_at.is_(None), elders.c.retired_at.is_(None))
    )
    return {row.meter_id: dict(row._mapping) for row in rows}


def _thresholds(conn: Connection, contexts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    contexts = list(contexts)
    communities = {c["community"] for c in contexts}
    elder_ids = {c["elder_id"] for c in contexts}
    rows = conn.execute(
        select(thresholds.c.scope, thresholds.c.scope_id, thresholds.c.name, thresholds.c.value).where(
            (thresholds.c.scope == "global")
            | ((thresholds.c.scope == "community") & thresholds.c.scope_id.in_(communities))
            | ((thresholds.c.scope == "elder") & thresholds.c.scope_id.in_(elder_ids))
        )
    ).all()
    out = {}
    for c in contexts:
        mine = [
            (r.scope, r.name, r.value)
            for r in rows
            if r.scope == "global"
            or (r.scope == "community" and r.scope_id == c["community"])
            or (r.scope == "elder" and r.scope_id == c["elder_id"])
        ]
        out[c["elder_id"]] = thresholds_from_rows(mine)[0]
    return out


def _away_in_reach(
    windows: list[tuple[float, float]], monitor: MeterMonitor, tracker: RegisterTracker
) -> list[tuple[float, float]]:
    """The away windows that can still touch what the meter judges from here on (its readings caught up).

    The monitor holds its windows in its state, pickled with every checkpoint: an elder away every weekend had
    them all, 20 bytes each, so after a year of them a checkpoint passed the 4 KB a meter may take. The monitor
    asks them about readings after its newest (a late one is not judged), the day that holds it, and the silence
    going on (since its start, which may be weeks back); a window that ended before all of those and
    :data:`AWAY_REACH_MARGIN_S` more is never asked about again. A meter that never read keeps them all.
    """
    reach = tracker.newest
    if reach is None:
        return windows
    if monitor.sil_start is not None:
        reach = min(reach, monitor.sil_start)
    return [window for window in windows if window[1] > reach - AWAY_REACH_MARGIN_S]


def _away(conn: Connection, elder_ids: list[str]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    rows = conn.execute(
        select(away_windows.c.elder_id, away_windows.c.start_ts, away_windows.c.end_ts).where(
            away_windows.c.elder_id.in_(elder_ids), away_windows.c.kind == "away"
        )
    )
    for row in rows:
        out.setdefault(row.elder_id, []).append((float(row.start_ts), float(row.end_ts)))
    return out
