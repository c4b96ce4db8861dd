"""The live pipeline: a batch of meter messages in, one store transaction out.

For each batch: validate (dead-letter what is unusable), turn readings into
intervals (``ingest.register``), run each meter's monitor (``detect``), and
apply findings as alerts (``alerts.manager``). Readings, detector checkpoints,
alerts and their delivery jobs commit together; only then are the MQTT
messages acknowledged, so a crash at any point loses nothing and repeats
nothing: the broker redelivers, and the restored trackers drop duplicates.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, bindparam, case, func, insert, select, update

from alerts.manager import AlertManager
from detect import MeterMonitor
from ingest.payload import ParsedMessage, PayloadError, parse_message
from ingest.register import ACCEPTED, RegisterTracker
from tapwatch.domain import Finding
from tapwatch.registry import away_for, effective_thresholds, meter_context
from tapwatch.store.ops import insert_ignore, upsert
from tapwatch.store.schema import dead_letters, detector_state, meters, readings

log = logging.getLogger(__name__)

DEAD_LETTER_PAYLOAD_MAX = 8192

# Per meter and batch: when it was last heard, its battery and signal (kept when
# a message omits them), and its newest reading time (never moved backwards).
_NEWER = meters.c.last_reading_ts.is_(None) | (meters.c.last_reading_ts < bindparam("newest"))
_METER_SEEN = (
    update(meters)
    .where(meters.c.meter_id == bindparam("m"))
    .values(
        last_seen_at=bindparam("seen"),
        battery_pct=func.coalesce(bindparam("battery"), meters.c.battery_pct),
        rssi=func.coalesce(bindparam("rssi"), meters.c.rssi),
        last_reading_ts=case(
            (_NEWER, bindparam("newest")),
            else_=meters.c.last_reading_ts,
        ),
    )
)


@dataclass(slots=True)
class RawMessage:
    """A message as it came off the wire; ``topic_meter_id`` is parsed from the topic."""

    source: str
    payload: bytes
    topic_meter_id: str | None = None
    received_at: float = 0.0


class Stager(Protocol):
    """Something that must happen in the same transaction as the readings (e.g. the InfluxDB spool)."""

    def stage(
        self,
        conn: Connection,
        context: Mapping[str, Any],
        rows: Sequence[Mapping[str, Any]],
        message: ParsedMessage,
        findings: Sequence[Finding],
    ) -> None: ...


@dataclass(slots=True)
class MeterState:
    context: dict[str, Any]
    tracker: RegisterTracker
    monitor: MeterMonitor
    version: int = 0


@dataclass(slots=True)
class _Pending:
    """What one batch will write, gathered so each table gets one bulk statement."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    staged: list[tuple[Mapping[str, Any], list[dict[str, Any]], ParsedMessage, list[Finding]]] = field(
        default_factory=list
    )


@dataclass(slots=True)
class BatchResult:
    readings_in: int = 0
    readings_stored: int = 0
    dead_letters: int = 0
    findings: list[Finding] = field(default_factory=list)
    alerts_touched: list[str] = field(default_factory=list)


class Pipeline:
    """Owns the per-meter state cache; one instance per ingest worker."""

    def __init__(
        self,
        engine: Engine,
        alert_manager: AlertManager,
        *,
        late_window_s: float = 72 * 3600,
        future_tolerance_s: float = 900,
        clock: Callable[[], float] = time.time,
        stagers: Sequence[Stager] = (),
        default_tz: str = "Asia/Shanghai",
    ) -> None:
        self.engine = engine
        self.default_tz = default_tz
        self.stagers = tuple(stagers)
        self.alerts = alert_manager
        self.late_window_s = late_window_s
        self.future_tolerance_s = future_tolerance_s
        self.clock = clock
        self._meters: dict[str, MeterState] = {}
        self.totals = BatchResult()
        self.watermark = 0.0  # newest data time seen, for accelerated (demo) clocks

    # -- public ---------------------------------------------------------------

    def process(self, batch: Iterable[RawMessage]) -> BatchResult:
        """Process and commit one batch; on any store error nothing is kept and the error is raised."""
        result = BatchResult()
        touched: dict[str, MeterState] = {}
        pending = _Pending()
        try:
            with self.engine.begin() as conn:
                for message in batch:
                    self._process_message(conn, message, result, touched, pending)
                self._flush(conn, pending, result)
                self._checkpoint(conn, touched)
        except Exception:
            for meter_id in touched:  # in-memory state ran ahead of the store: reload it
                self._meters.pop(meter_id, None)
            raise
        self._accumulate(result)
        return result

    def tick(self, now: float, offline_after_s: float) -> BatchResult:
        """Clock-driven checks (silent meters); commits the alerts they raise."""
        result = BatchResult()
        touched: dict[str, MeterState] = {}
        cutoff = now - offline_after_s
        try:
            with self.engine.begin() as conn:
                silent = conn.execute(
                    select(meters.c.meter_id).where(meters.c.retired_at.is_(None), meters.c.last_reading_ts < cutoff)
                ).scalars()
                for meter_id in list(silent):
                    state = self._state(conn, meter_id)
                    if state is None:
                        continue
                    findings = state.monitor.tick(now)
                    if findings:
                        touched[meter_id] = state
                        self._apply(conn, state, findings, result)
                self._checkpoint(conn, touched)
        except Exception:
            for meter_id in touched:
                self._meters.pop(meter_id, None)
            raise
        self._accumulate(result)
        return result

    def invalidate(self, meter_id: str | None = None) -> None:
        """Forget cached registry data (after an API change); state reloads from the store."""
        if meter_id is None:
            self._meters.clear()
        else:
            self._meters.pop(meter_id, None)

    # -- one message ------------------------------------------------------------

    def _process_message(
        self,
        conn: Connection,
        message: RawMessage,
        result: BatchResult,
        touched: dict[str, MeterState],
        pending: _Pending,
    ) -> None:
        received = message.received_at or self.clock()
        try:
            parsed = parse_message(message.payload, message.topic_meter_id)
        except PayloadError as exc:
            self._dead_letter(pending, message, exc.reason, exc.meter_id, received)
            return
        state = self._state(conn, parsed.meter_id)
        if state is None:
            self._dead_letter(pending, message, "unknown meter (not registered)", parsed.meter_id, received)
            return
        touched[parsed.meter_id] = state
        self._ingest_readings(conn, state, parsed, message, received, result, pending)

    def _ingest_readings(
        self,
        conn: Connection,
        state: MeterState,
        parsed: ParsedMessage,
        message: RawMessage,
        received: float,
        result: BatchResult,
        pending: _Pending,
    ) -> None:
        rows: list[dict[str, Any]] = []
        findings: list[Finding] = []
        rejected: list[str] = []
        for reading in parsed.readings:
            result.readings_in += 1
            if reading.ts > received + self.future_tolerance_s:
                rejected.append(f"{reading.ts:.0f}: timestamp in the future (meter clock wrong?)")
                continue
            if reading.ts < received - self.late_window_s:
                rejected.append(f"{reading.ts:.0f}: older than the late window")
                continue
            # Slots of the day follow the elder's own clock, whatever offset the meter reports.
            offset = local_offset(state.context.get("tz") or self.default_tz, reading.ts)
            status, intervals = state.tracker.push(reading.ts, reading.total_l, offset)
            if status != ACCEPTED and status != "late":
                continue  # duplicate or conflicting repeat: the first reading stands
            usage = intervals[-1].usage_l if intervals else None
            row_status = intervals[-1].status if intervals else ("late" if status == "late" else "first")
            rows.append(
                {
                    "meter_id": parsed.meter_id,
                    "ts": reading.ts,
                    "total_l": reading.total_l,
                    "usage_l": usage,
                    "status": row_status,
                    "received_at": received,
                }
            )
            for interval in intervals:
                findings.extend(state.monitor.update(interval))
            self.watermark = max(self.watermark, reading.ts)
        if rejected:
            reason = "; ".join(rejected[:5]) + (f" (+{len(rejected) - 5} more)" if len(rejected) > 5 else "")
            self._dead_letter(pending, message, reason, parsed.meter_id, received)
        pending.readings.extend(rows)
        self._note_meter(pending, parsed, received)
        self._apply(conn, state, findings, result)
        if self.stagers:
            pending.staged.append((state.context, rows, parsed, findings))

    @staticmethod
    def _note_meter(pending: _Pending, parsed: ParsedMessage, received: float) -> None:
        newest = parsed.readings[-1].ts
        seen = pending.meters.setdefault(
            parsed.meter_id, {"m": parsed.meter_id, "seen": received, "battery": None, "rssi": None, "newest": newest}
        )
        seen["seen"] = max(seen["seen"], received)
        seen["newest"] = max(seen["newest"], newest)
        if parsed.battery_pct is not None:
            seen["battery"] = parsed.battery_pct
        if parsed.rssi is not None:
            seen["rssi"] = parsed.rssi

    def _flush(self, conn: Connection, pending: _Pending, result: BatchResult) -> None:
        """One bulk statement per table for the whole batch."""
        if pending.dead_letters:
            conn.execute(insert(dead_letters), pending.dead_letters)
            result.dead_letters += len(pending.dead_letters)
        result.readings_stored += insert_ignore(conn, readings, pending.readings)
        if pending.meters:
            conn.execute(_METER_SEEN, list(pending.meters.values()))
        for context, rows, parsed, findings in pending.staged:
            for stager in self.stagers:
                stager.stage(conn, context, rows, parsed, findings)

    def _apply(self, conn: Connection, state: MeterState, findings: list[Finding], result: BatchResult) -> None:
        now = self.clock()
        for finding in findings:
            result.findings.append(finding)
            alert_id = self.alerts.apply(conn, state.context, finding, now)
            if alert_id:
                result.alerts_touched.append(alert_id)

    @staticmethod
    def _dead_letter(pending: _Pending, message: RawMessage, reason: str, meter_id: str | None, at: float) -> None:
        text = message.payload[:DEAD_LETTER_PAYLOAD_MAX].decode("utf-8", errors="replace")
        pending.dead_letters.append(
            {
                "received_at": at,
                "source": message.source[:256],
                "meter_id": meter_id,
                "reason": reason[:512],
                "payload": text,
            }
        )
        log.info("dead-lettered message from %s: %s", message.source, reason)

    # -- per-meter state -------------------------------------------------------

    def _state(self, conn: Connection, meter_id: str) -> MeterState | None:
        state = self._meters.get(meter_id)
        if state is not None:
            return state
        context = meter_context(conn, meter_id)
        if context is None:
            return None
        limits, _sources = effective_thresholds(conn, context["elder_id"], context["community"])
        row = conn.execute(
            select(detector_state.c.state, detector_state.c.version).where(detector_state.c.meter_id == meter_id)
        ).first()
        tracker = RegisterTracker(meter_id)
        if row is not None:
            tracker_state, monitor = pickle.loads(row.state)  # our own checkpoint, written below
            tracker.restore(tracker_state)
            version = int(row.version)
        else:
            monitor, version = MeterMonitor(meter_id, thresholds=limits), 0
        monitor.set_thresholds(limits)
        monitor.set_away(away_for(conn, context["elder_id"]))
        state = MeterState(context, tracker, monitor, version)
        self._meters[meter_id] = state
        return state

    def _checkpoint(self, conn: Connection, touched: dict[str, MeterState]) -> None:
        now = self.clock()
        rows = []
        for meter_id, state in touched.items():
            state.version += 1
            blob = pickle.dumps((state.tracker.state(), state.monitor), protocol=pickle.HIGHEST_PROTOCOL)
            rows.append({"meter_id": meter_id, "version": state.version, "state": blob, "updated_at": now})
        upsert(conn, detector_state, rows, keys=["meter_id"])

    def _accumulate(self, result: BatchResult) -> None:
        self.totals.readings_in += result.readings_in
        self.totals.readings_stored += result.readings_stored
        self.totals.dead_letters += result.dead_letters


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("Asia/Shanghai")


def local_offset(tz_name: str, ts: float) -> int:
    """UTC offset in seconds of ``tz_name`` at ``ts`` (DST-aware).

    >>> local_offset("Asia/Shanghai", 0), local_offset("Europe/Madrid", 1_467_000_000)
    (28800, 7200)
    """
    offset = datetime.fromtimestamp(ts, UTC).astimezone(_zone(tz_name)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0
