"""The live pipeline: a batch of meter messages in, one store transaction out.

For each batch: validate (dead-letter what is unusable), turn readings into
intervals (``ingest.register``), run each meter's monitor (``detect``), and
apply findings as alerts (``alerts.manager``). Readings, alerts and their
delivery jobs commit together; only then are the MQTT messages acknowledged,
so a crash at any point loses nothing and repeats nothing: the broker
redelivers, and state rebuilt from the last checkpoint plus the stored
readings drops the duplicates (see ``engine.meterstate``).

Several pipelines (workers) may share one store: a batch that raced another
worker for a meter, or for an alert row, is rolled back and processed again
on fresh state, a few times, before the error goes up to the consumer.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, case, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from alerts.daily import DailyNotes, FirstUse
from alerts.manager import AlertManager
from core.domain import Finding, Interval
from engine.meterstate import MeterState, MeterStates, StaleState
from ingest.payload import ParsedMessage, PayloadError, RawMessage, parse_message
from ingest.register import ACCEPTED, LATE
from store.ops import ConcurrentWrite, execute_many, insert_batch_new
from store.schema import dead_letters, meters, readings

log = logging.getLogger(__name__)

DEAD_LETTER_PAYLOAD_MAX = 8192
#: Attempts of one batch that keeps losing races to other workers before the error is raised.
RACE_ATTEMPTS = 8
#: PostgreSQL's serialization failure and deadlock: the transaction may simply be run again.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})

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
        last_reading_ts=case((_NEWER, bindparam("newest")), else_=meters.c.last_reading_ts),
    )
)


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
class _Pending:
    """What one batch will write, gathered so each table gets one bulk statement."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    staged: list[tuple[Mapping[str, Any], list[dict[str, Any]], ParsedMessage, list[Finding]]] = field(
        default_factory=list
    )
    touched: dict[str, MeterState] = field(default_factory=dict)
    changed: dict[str, MeterState] = field(default_factory=dict)  # stored a new reading or applied a finding
    alerted: set[str] = field(default_factory=set)  # meters whose findings touched alerts: checkpoint now
    withheld: set[str] = field(default_factory=set)  # registered meters of elders without consent
    first_uses: dict[str, FirstUse] = field(default_factory=dict)  # elder_id -> today's first use (daily note)


@dataclass(slots=True)
class BatchResult:
    readings_in: int = 0
    readings_stored: int = 0
    readings_withheld: int = 0  # dropped unread: the elder has not consented to monitoring
    dead_letters: int = 0
    findings: list[Finding] = field(default_factory=list)
    alerts_touched: list[str] = field(default_factory=list)


class Pipeline:
    """Owns the per-meter state cache; one instance per ingest worker. Thread-safe."""

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
        checkpoint_interval_s: float = 21600.0,
        daily: DailyNotes | None = None,
    ) -> None:
        self.engine = engine
        self.alerts = alert_manager
        # The daily "平安" note goes out on the contact channels the alerts use (alerts.daily).
        self.daily = daily if daily is not None else DailyNotes(alert_manager.contact, alert_manager.language)
        self.stagers = tuple(stagers)
        self.late_window_s = late_window_s
        self.future_tolerance_s = future_tolerance_s
        self.clock = clock
        self.states = MeterStates(default_tz, checkpoint_interval_s, clock)
        self.totals = BatchResult()
        self.races = 0  # batches run again after losing a race to another worker
        self.watermark = 0.0  # newest data time seen, for accelerated (demo) clocks
        # The ingest worker and the silent-meter checks share the state cache.
        self._lock = threading.RLock()

    # -- public ---------------------------------------------------------------

    def process(self, batch: Iterable[RawMessage]) -> BatchResult:
        """Process and commit one batch; on any store error nothing is kept and the error is raised."""
        messages = list(batch)
        return self._with_retries(lambda conn, result, pending: self._process(conn, messages, result, pending))

    def tick(self, now: float, offline_after_s: float) -> BatchResult:
        """Clock-driven checks (silent meters); commits the alerts they raise."""
        return self._with_retries(lambda conn, result, pending: self._tick(conn, now, offline_after_s, result, pending))

    def flush_checkpoints(self) -> int:
        """Write every state that changed since its checkpoint (graceful shutdown)."""
        with self._lock:
            return self.states.flush(self.engine.begin, self.states.dirty())

    # -- transactions ------------------------------------------------------------------

    def _with_retries(self, work: Callable[[Connection, BatchResult, _Pending], None]) -> BatchResult:
        """Run ``work`` in one transaction, again on fresh state while it loses races to other workers."""
        attempt = 1
        while True:
            try:
                return self._run_once(work)
            except Exception as exc:
                if attempt == RACE_ATTEMPTS or not _lost_a_race(exc):
                    raise
                self.races += 1
                log.debug("batch lost a race to another worker (attempt %d): %s", attempt, exc)
                time.sleep(random.uniform(0, 0.02 * attempt))  # jitter: the racers do not collide again
                attempt += 1

    def _run_once(self, work: Callable[[Connection, BatchResult, _Pending], None]) -> BatchResult:
        result, pending = BatchResult(), _Pending()
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    work(conn, result, pending)
            except Exception:
                # In-memory state ran ahead of the store: rebuild it from there next time.
                self.states.evict(pending.touched)
                raise
            self.daily.remember(pending.first_uses.values())  # committed: these days are done
        self._accumulate(result)
        return result

    def _process(self, conn: Connection, messages: list[RawMessage], result: BatchResult, pending: _Pending) -> None:
        parsed = self._parse_all(messages, pending)
        meter_ids = {p.meter_id for _, p in parsed}
        # The meters of elders without consent come back from the same look-up: their readings are dropped.
        pending.withheld = self.states.load(conn, meter_ids, self._replayed(conn, result, pending))
        for message, message_parsed in parsed:
            self._ingest(conn, message, message_parsed, result, pending)
        self._flush(conn, pending, result)
        self.daily.queue(conn, list(pending.first_uses.values()), self.clock())
        self.states.commit(conn, pending.changed.values(), force=pending.alerted)

    def _tick(
        self, conn: Connection, now: float, offline_after_s: float, result: BatchResult, pending: _Pending
    ) -> None:
        silent_ids = list(
            conn.execute(
                select(meters.c.meter_id).where(
                    meters.c.retired_at.is_(None), meters.c.last_reading_ts < now - offline_after_s
                )
            ).scalars()
        )
        self.states.load(conn, silent_ids, self._replayed(conn, result, pending))
        for meter_id in silent_ids:
            state = self.states.get(meter_id)
            if state is not None:
                self._apply(conn, state, state.monitor.tick(now), result, pending)
        self.states.commit(conn, pending.changed.values(), force=pending.alerted)

    # -- one batch ------------------------------------------------------------------

    def _parse_all(self, batch: Iterable[RawMessage], pending: _Pending) -> list[tuple[RawMessage, ParsedMessage]]:
        parsed = []
        for message in batch:
            if not message.received_at:
                message.received_at = self.clock()
            try:
                parsed.append((message, parse_message(message.payload, message.topic_meter_id)))
            except PayloadError as exc:
                self._dead_letter(pending, message, exc.reason, exc.meter_id)
        return parsed

    def _replayed(
        self, conn: Connection, result: BatchResult, pending: _Pending
    ) -> Callable[[MeterState, list[Finding]], None]:
        def on_findings(state: MeterState, findings: list[Finding]) -> None:
            self._apply(conn, state, findings, result, pending)

        return on_findings

    def _ingest(
        self, conn: Connection, message: RawMessage, parsed: ParsedMessage, result: BatchResult, pending: _Pending
    ) -> None:
        state = self.states.get(parsed.meter_id)
        if state is None and parsed.meter_id in pending.withheld:
            result.readings_in += len(parsed.readings)
            result.readings_withheld += len(parsed.readings)
            return
        if state is None:
            self._dead_letter(pending, message, "unknown meter (not registered)", parsed.meter_id)
            return
        pending.touched[parsed.meter_id] = state
        received = message.received_at
        rows: list[dict[str, Any]] = []
        findings: list[Finding] = []
        rejected: list[str] = []
        used: list[Interval] = []  # intervals with use, for the daily note
        for reading in parsed.readings:
            result.readings_in += 1
            if reading.ts > received + self.future_tolerance_s:
                rejected.append(f"{reading.ts:.0f}: timestamp in the future (meter clock wrong?)")
                continue
            if reading.ts < received - self.late_window_s:
                rejected.append(f"{reading.ts:.0f}: older than the late window")
                continue
            step = self.states.advance(state, reading.ts, reading.total_l)
            if step.status not in (ACCEPTED, LATE):
                continue  # duplicate or conflicting repeat: the first reading stands
            last = step.intervals[-1] if step.intervals else None
            status = last.status if last is not None else ("late" if step.status == LATE else "first")
            rows.append(
                {
                    "meter_id": parsed.meter_id,
                    "ts": reading.ts,
                    "total_l": reading.total_l,
                    "usage_l": last.usage_l if last is not None else None,
                    "status": status,
                    "received_at": received,
                }
            )
            findings.extend(step.findings)
            if step.intervals and self.daily.enabled:
                used.extend(step.intervals)
            self.watermark = max(self.watermark, reading.ts)
        if rejected:
            reason = "; ".join(rejected[:5]) + (f" (+{len(rejected) - 5} more)" if len(rejected) > 5 else "")
            self._dead_letter(pending, message, reason, parsed.meter_id)
        pending.readings.extend(rows)
        if used:
            self._note_first_use(state, used, pending)
        self._note_meter(pending, parsed, received)
        self._apply(conn, state, findings, result, pending)
        if self.stagers:
            pending.staged.append((state.context, rows, parsed, findings))

    def _note_first_use(self, state: MeterState, used: list[Interval], pending: _Pending) -> None:
        """Keep the elder's earliest use of today in this batch, unless their day is already done."""
        use = self.daily.first_use(state.context, used, self.clock())
        if use is None:
            return
        elder_id = str(state.context["elder_id"])
        earlier: FirstUse | None = pending.first_uses.get(elder_id)
        if earlier is None or use.ts < earlier.ts:
            pending.first_uses[elder_id] = use

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

    def _apply(
        self, conn: Connection, state: MeterState, findings: list[Finding], result: BatchResult, pending: _Pending
    ) -> None:
        if not findings:
            return
        now = self.clock()
        meter_id = state.tracker.meter_id
        pending.touched[meter_id] = pending.changed[meter_id] = state
        pending.alerted.add(meter_id)
        state.dirty = True
        for finding in findings:
            result.findings.append(finding)
            alert_id = self.alerts.apply(conn, state.context, finding, now)
            if alert_id:
                result.alerts_touched.append(alert_id)

    def _flush(self, conn: Connection, pending: _Pending, result: BatchResult) -> None:
        """One bulk statement per table for the whole batch."""
        if pending.dead_letters:
            conn.execute(insert(dead_letters), pending.dead_letters)
            result.dead_letters += len(pending.dead_letters)
            first = pending.dead_letters[0]
            log.info(
                "dead-lettered %d message(s) of this batch, e.g. from %s: %s",
                len(pending.dead_letters),
                first["source"],
                first["reason"],
            )
        inserted = insert_batch_new(conn, readings, pending.readings)
        result.readings_stored += len(inserted)
        for meter_id, _ts in inserted:  # redeliveries of stored readings leave the version alone
            pending.changed[meter_id] = pending.touched[meter_id]
        if pending.meters:
            execute_many(conn, _METER_SEEN, list(pending.meters.values()))
        for context, rows, parsed, findings in pending.staged:
            # Stagers see only readings new to the store (not redeliveries of stored ones).
            new_rows = [r for r in rows if (r["meter_id"], r["ts"]) in inserted]
            for stager in self.stagers:
                stager.stage(conn, context, new_rows, parsed, findings)

    @staticmethod
    def _dead_letter(pending: _Pending, message: RawMessage, reason: str, meter_id: str | None) -> None:
        text = message.payload[:DEAD_LETTER_PAYLOAD_MAX].decode("utf-8", errors="replace")
        pending.dead_letters.append(
            {
                "received_at": message.received_at,
                "source": message.source[:256],
                "meter_id": meter_id,
                "reason": reason[:512],
                "payload": text,
            }
        )
        # Per message at debug level: a flood of bad messages must not become a flood of log lines.
        log.debug("dead-lettered message from %s: %s", message.source, reason)

    def _accumulate(self, result: BatchResult) -> None:
        self.totals.readings_in += result.readings_in
        self.totals.readings_stored += result.readings_stored
        self.totals.readings_withheld += result.readings_withheld
        self.totals.dead_letters += result.dead_letters


def _lost_a_race(exc: BaseException) -> bool:
    """True for errors another worker's concurrent commit causes, which a rerun on fresh state resolves."""
    if isinstance(exc, StaleState | ConcurrentWrite | IntegrityError):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
