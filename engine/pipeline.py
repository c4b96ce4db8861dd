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
on fresh state, a few times, before the error goes up to the consumer. Meters
that another worker moves on at every try (one meter's flood shared out among
the workers) are set apart after two, so the batch's other meters commit.

A batch that fails for any other reason but an unavailable store (a message
the database refuses, a detector that trips on some input) is split in halves
until the one message at fault is set aside as a dead letter, with the error's
class as reason; the rest commit. So no message, however hostile, is
redelivered forever and blocks the other meters (docs/reliability.md).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from bisect import bisect_left, insort
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, case, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from alerts.daily import DailyNotes, FirstUse
from alerts.manager import AlertManager
from core.domain import Finding, Interval
from engine.budget import NOT_KEPT_LIKE, DeadLetterBudget, Spending, kept_for, with_not_kept
from engine.meterstate import MeterState, MeterStates, StaleState
from ingest.payload import ParsedMessage, PayloadError, RawMessage, parse_message, store_safe_text, valid_meter_id
from ingest.register import ACCEPTED, DENSE, LATE
from store import require_known_schema
from store.ops import ConcurrentWrite, execute_many, insert_batch_new
from store.schema import dead_letters, meters, readings

log = logging.getLogger(__name__)

DEAD_LETTER_PAYLOAD_MAX = 8192
#: The product's limit on a message's payload unless configured (TAPWATCH_MQTT_MAX_MESSAGE_BYTES).
MAX_MESSAGE_BYTES = 256 * 1024
#: SQLSTATE classes that say the database cannot work now (connection, resources, operator, system):
#: the batch waits with the broker. Any other failure is the batch's own and is bisected.
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58", "XX"})
#: The SQLSTATE class of a statement the schema does not fit (an undefined table or column, a privilege missing):
#: the same for every message, so never one message's fault (a newer release's migration, a grant revoked).
_SCHEMA_SQLSTATE_CLASS = "42"
#: How SQLite says the same (it has no SQLSTATE).
_SQLITE_SCHEMA_ERRORS = ("no such table", "no such column", "has no column named")
#: Attempts of one batch that keeps losing races to other workers before the error is raised.
RACE_ATTEMPTS = 8
#: Races lost before a batch commits its other meters' messages without those of the meters that keep moving.
CONTENDED_ATTEMPTS = 2
#: PostgreSQL's serialization failure and deadlock: the transaction may simply be run again.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})

# Per meter and batch: when it was last heard and its newest reading time (neither moved backwards: another
# worker may commit a message received earlier after this one), its battery and signal (kept when a message
# omits them, or when a later one was stored already), and its monitor's usual interval with the newest reading
# (the devices page's offline line, ``core.cadence.offline_line``). CASE, not max()/greatest(): one statement for
# SQLite and PostgreSQL.
_NEWER = meters.c.last_reading_ts.is_(None) | (meters.c.last_reading_ts < bindparam("newest"))
_LATER = meters.c.last_seen_at.is_(None) | (meters.c.last_seen_at <= bindparam("seen"))
_METER_SEEN = (
    update(meters)
    .where(meters.c.meter_id == bindparam("m"))
    .values(
        last_seen_at=case((_LATER, bindparam("seen")), else_=meters.c.last_seen_at),
        battery_pct=case(
            (_LATER, func.coalesce(bindparam("battery"), meters.c.battery_pct)), else_=meters.c.battery_pct
        ),
        rssi=case((_LATER, func.coalesce(bindparam("rssi"), meters.c.rssi)), else_=meters.c.rssi),
        last_reading_ts=case((_NEWER, bindparam("newest")), else_=meters.c.last_reading_ts),
        usual_interval_s=case((_NEWER, bindparam("usual")), else_=meters.c.usual_interval_s),
    )
)


# A reading the register held (a step steeper than any tap, or one off the scale) was stored before the
# next reading told what it was: that reading's row gets the held interval's use and status.
_SETTLED = (
    update(readings)
    .where(readings.c.meter_id == bindparam("m"), readings.c.ts == bindparam("held"))
    .values(usage_l=bindparam("usage"), status=bindparam("settled"))
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
    settled: list[dict[str, Any]] = field(default_factory=list)  # rows of held readings the register now settled
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    staged: list[tuple[Mapping[str, Any], list[dict[str, Any]], ParsedMessage, list[Finding], list[dict[str, Any]]]] = (
        field(default_factory=list)
    )
    touched: dict[str, MeterState] = field(default_factory=dict)
    changed: dict[str, MeterState] = field(default_factory=dict)  # stored a new reading or applied a finding
    alerted: set[str] = field(default_factory=set)  # meters whose findings touched alerts: checkpoint now
    withheld: set[str] = field(default_factory=set)  # registered meters of elders without consent
    first_uses: dict[str, FirstUse] = field(default_factory=dict)  # elder_id -> today's first use (daily note)
    retained_letters: list[dict[str, Any]] = field(default_factory=list)  # of retained messages: kept if new
    letters: Spending = field(default_factory=Spending)  # of the dead-letter budget, charged at commit


@dataclass(slots=True)
class BatchResult:
    readings_in: int = 0
    readings_stored: int = 0
    readings_withheld: int = 0  # dropped unread: the elder has not consented to monitoring
    readings_thinned: int = 0  # too close to another reading of the meter (RegisterLimits.min_spacing_s): not kept
    dead_letters: int = 0
    dead_letters_not_kept: int = 0  # over their source's dead-letter budget (engine.budget): counted, not stored
    set_aside: int = 0  # messages the store refused, isolated by bisecting their batch and dead-lettered
    qos0_messages: int = 0  # sent at QoS 0: lost if they arrive while the monitor is down (meters must use QoS 1)
    findings: list[Finding] = field(default_factory=list)
    alerts_touched: list[str] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        """Fold ``other`` (a part of the same batch) into this result."""
        self.add_counts(other)
        self.findings.extend(other.findings)
        self.alerts_touched.extend(other.alerts_touched)

    def add_counts(self, other: BatchResult) -> None:
        """Add ``other``'s counters, not its findings: the pipeline's totals keep counts only (bounded memory)."""
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


#: Every counter of a :class:`BatchResult`: what a part adds to its batch, and a batch to the pipeline's totals.
_COUNTERS = tuple(f.name for f in fields(BatchResult) if f.name not in ("findings", "alerts_touched"))


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
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        dead_letter_budget: DeadLetterBudget | None = None,
    ) -> None:
        self.engine = engine
        self.alerts = alert_manager
        # The daily "平安" note goes out on the contact channels the alerts use (alerts.daily).
        self.daily = daily if daily is not None else DailyNotes(alert_manager.contact, alert_manager.language)
        self.stagers = tuple(stagers)
        self.late_window_s = late_window_s
        self.future_tolerance_s = future_tolerance_s
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.dead_letter_budget = dead_letter_budget if dead_letter_budget is not None else DeadLetterBudget()
        self._letters_unwarned, self._letters_warned_at = 0, float("-inf")
        self.states = MeterStates(default_tz, checkpoint_interval_s, clock)
        self.totals = BatchResult()
        self.races = 0  # batches run again after losing a race to another worker
        self.watermark = 0.0  # newest data time seen, for accelerated (demo) clocks
        # The ingest worker and the silent-meter checks share the state cache.
        self._lock = threading.RLock()

    # -- public ---------------------------------------------------------------

    def process(self, batch: Iterable[RawMessage]) -> BatchResult:
        """Process and commit one batch.

        If the store is unavailable nothing is kept and the error is raised (the broker keeps the
        messages). Any other failure is the fault of some message in the batch: the batch is split
        until that message is isolated and dead-lettered, and the rest is committed.
        """
        messages = list(batch)
        try:
            return self._process_part(messages)
        except Exception as exc:
            if _schema_mismatch(exc) or _poisoned(exc):
                # Before blaming a message: a newer release may have migrated the store under this worker (a rolling
                # upgrade), whose rows it cannot write (a column renamed, a new one required); then none is at fault.
                require_known_schema(self.engine)
            if not _poisoned(exc):
                raise
            log.warning(
                "a batch of %d message(s) failed (%s); splitting it to set the message at fault aside",
                len(messages),
                type(exc).__name__,
            )
            return self._bisect(messages, exc)

    def _process_part(self, messages: list[RawMessage]) -> BatchResult:
        try:
            result = self._with_retries(
                lambda conn, result, pending: self._process(conn, messages, result, pending), messages
            )
        except _Contended as contended:
            # Another worker keeps committing these meters (one meter's flood shared out among the workers):
            # the other meters' messages must not wait for them, nor fail with them after the last try.
            log.info("meter(s) %s moved on in another worker on every try: the batch's other meters first", contended)
            result = self._process_part(contended.rest)
            result.add(self._process_part(contended.theirs))
        return result

    def _bisect(self, messages: list[RawMessage], exc: Exception) -> BatchResult:
        """Commit what can be committed of a failed batch, in order; dead-letter the messages at fault."""
        if not messages:
            raise exc  # nothing to blame: the fault is not a message's
        if len(messages) == 1:
            return self._set_aside(messages[0], exc)
        total = BatchResult()
        half = len(messages) // 2
        for part in (messages[:half], messages[half:]):
            try:
                total.add(self._process_part(part))
            except Exception as part_exc:
                if not _poisoned(part_exc):
                    raise
                total.add(self._bisect(part, part_exc))
        return total

    def _set_aside(self, message: RawMessage, exc: Exception) -> BatchResult:
        """Dead-letter the one message a transaction failed on; the error's text goes to the log only."""
        log.warning("message from %s set aside as a dead letter: %s", store_safe_text(message.source, 256), exc)
        reason = f"the store refused this message ({type(exc).__name__})"

        def work(conn: Connection, result: BatchResult, pending: _Pending) -> None:
            self._dead_letter(pending, message, reason, message.topic_meter_id)
            self._flush(conn, pending, result)
            result.set_aside = 1

        return self._with_retries(work)

    def tick(self, now: float, offline_after_s: float) -> BatchResult:
        """Clock-driven checks (silent meters); commits the alerts they raise."""
        return self._with_retries(lambda conn, result, pending: self._tick(conn, now, offline_after_s, result, pending))

    def forget_moved(self) -> int:
        """Drop from the cache the meters moved on since they were loaded (retired ones among them, never asked
        for again); returns how many. Those still in use are loaded afresh when next asked for, as they would be."""
        with self._lock, self.engine.connect() as conn:
            return self.states.drop_moved(conn)

    def flush_checkpoints(self) -> int:
        """Write every state that changed since its checkpoint (graceful shutdown)."""
        with self._lock:
            return self.states.flush(self.engine.begin, self.states.dirty())

    # -- transactions ------------------------------------------------------------------

    def _with_retries(
        self, work: Callable[[Connection, BatchResult, _Pending], None], messages: list[RawMessage] | None = None
    ) -> BatchResult:
        """Run ``work`` in one transaction, again on fresh state while it loses races to other workers.

        Given the batch's ``messages``, raises :class:`_Contended` once some but not all of their meters have
        moved on elsewhere ``CONTENDED_ATTEMPTS`` times in a row.
        """
        attempt = 1
        while True:
            try:
                return self._run_once(work)
            except Exception as exc:
                if attempt == RACE_ATTEMPTS or not _lost_a_race(exc):
                    raise
                if messages is not None and attempt >= CONTENDED_ATTEMPTS and isinstance(exc, StaleState):
                    with self.engine.connect() as conn:
                        moved = self.states.moved(conn, exc)
                    contended = _Contended.among(messages, moved)
                    if contended is not None:
                        raise contended from exc
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
            if pending.letters.by_source:
                self._charge_letters(pending.letters, result)
        self.totals.add_counts(result)
        return result

    def _charge_letters(self, spending: Spending, result: BatchResult) -> None:
        """The batch committed: charge its dead letters to the budget; warn of those not kept once a minute."""
        now = self.clock()
        self.dead_letter_budget.charge(spending, now)
        result.dead_letters_not_kept = spending.not_kept
        if not result.dead_letters_not_kept:
            return
        self._letters_unwarned += result.dead_letters_not_kept
        if now - self._letters_warned_at >= 60:
            noisiest = max(spending.by_source, key=lambda source: spending.by_source[source].not_kept)
            log.warning(
                "%d dead letter(s) not kept since the last warning: over their topic's budget (most of this batch's "
                "from %s); tapwatch_dead_letters_not_kept counts them",
                self._letters_unwarned,
                noisiest,
            )
            self._letters_unwarned, self._letters_warned_at = 0, now

    def _process(self, conn: Connection, messages: list[RawMessage], result: BatchResult, pending: _Pending) -> None:
        result.qos0_messages = sum(1 for m in messages if m.qos == 0)
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
            size = message.size or len(message.payload)
            if size > self.max_message_bytes:  # never parsed: dead-lettered from its first bytes
                reason = f"too large: {size} bytes (limit {self.max_message_bytes})"
                self._dead_letter(pending, message, reason, message.topic_meter_id)
                continue
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
        settled: list[dict[str, Any]] = []  # rows of held readings stored earlier, now settled
        used: list[Interval] = []  # intervals with use, for the daily note
        newest: float | None = None  # of the readings inside the time window: only those move the meter's state
        for reading in parsed.readings:
            result.readings_in += 1
            if reading.ts > received + self.future_tolerance_s:
                rejected.append(f"{reading.ts:.0f}: timestamp in the future (meter clock wrong?)")
                continue
            if reading.ts < received - self.late_window_s:
                rejected.append(f"{reading.ts:.0f}: older than the late window")
                continue
            held_ts, held_total = state.tracker.suspect_ts, state.tracker.suspect_total
            step = self.states.advance(state, reading.ts, reading.total_l)
            if step.status == DENSE:
                # Not stored: the meter's last reading time stays one the store holds (else every load of its
                # state would look for readings past it to catch up on).
                result.readings_thinned += 1
                continue
            newest = reading.ts if newest is None else max(newest, reading.ts)
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
            held = step.intervals[:-1]  # ends at the reading the register held, stored when it came
            if held_ts is not None and last is not None and last.start < held_ts < last.end:
                # The held reading and this one both erratic: one unknown stretch across the held reading.
                held = [last._replace(end=held_ts, usage_l=None)]
            for interval in held:
                settled.append(
                    {
                        "meter_id": parsed.meter_id,
                        "ts": interval.end,
                        "total_l": held_total,
                        "usage_l": interval.usage_l,
                        "status": interval.status,
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
        pending.settled.extend(settled)
        if used:
            self._note_first_use(state, used, pending)
        if newest is not None:  # a message whose every reading was rejected says nothing about the meter
            # A retained message is replayed by the broker on every subscription, long after the meter sent it:
            # it was heard no later than its newest reading, which keeps a replay from moving last_seen_at (a
            # silent meter looking heard) and, through it, from setting battery and signal back to its own.
            seen = min(received, newest) if message.retained else received
            self._note_meter(pending, parsed, seen, newest, state.monitor.usual_s)
        self._apply(conn, state, findings, result, pending)
        if self.stagers:
            pending.staged.append((state.context, rows, parsed, findings, settled))

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
    def _note_meter(pending: _Pending, parsed: ParsedMessage, received: float, newest: float, usual: float) -> None:
        seen = pending.meters.setdefault(
            parsed.meter_id,
            {"m": parsed.meter_id, "seen": received, "battery": None, "rssi": None, "newest": newest, "usual": usual},
        )
        seen["seen"] = max(seen["seen"], received)
        seen["newest"] = max(seen["newest"], newest)
        seen["usual"] = usual  # as the monitor stands after this message: it took the readings in order
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
        if pending.retained_letters:
            self._keep_new_retained(conn, pending)
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
        if any(row["status"] == "late" for row in pending.readings):
            self._thin_late(conn, pending, result)
        inserted = insert_batch_new(conn, readings, pending.readings)
        result.readings_stored += len(inserted)
        for meter_id, _ts in inserted:  # redeliveries of stored readings leave the version alone
            pending.changed[meter_id] = pending.touched[meter_id]
        if pending.settled:  # after the inserts: a held reading may have come in this same batch
            settled = [
                {"m": r["meter_id"], "held": r["ts"], "usage": r["usage_l"], "settled": r["status"]}
                for r in pending.settled
            ]
            execute_many(conn, _SETTLED, settled)
        if pending.meters:
            execute_many(conn, _METER_SEEN, list(pending.meters.values()))
        for context, rows, parsed, findings, settled in pending.staged:
            # Stagers see only readings new to the store (not redeliveries of stored ones), and held ones settled.
            new_rows = [r for r in rows if (r["meter_id"], r["ts"]) in inserted] + settled
            for stager in self.stagers:
                stager.stage(conn, context, new_rows, parsed, findings)

    @staticmethod
    def _thin_late(conn: Connection, pending: _Pending, result: BatchResult) -> None:
        """Keep a late reading only if no reading of its meter lies within the meter's spacing of it.

        The register thins readings in time order (``DENSE``) but cannot see those older than its newest:
        without this, a meter sending readings a millisecond apart inside the late window would store every one.
        """
        late: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        in_order: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in pending.readings:
            (late if row["status"] == "late" else in_order)[row["meter_id"]].append(row)
        dropped: set[int] = set()
        for meter_id, rows in late.items():
            spacing = pending.touched[meter_id].tracker.limits.min_spacing_s
            rows.sort(key=lambda row: row["ts"])
            lo, hi = rows[0]["ts"] - spacing, rows[-1]["ts"] + spacing
            near = select(readings.c.ts).where(readings.c.meter_id == meter_id, readings.c.ts.between(lo, hi))
            taken = sorted([*conn.execute(near).scalars(), *(row["ts"] for row in in_order.get(meter_id, ()))])
            for row in rows:
                ts, k = row["ts"], bisect_left(taken, row["ts"])
                if k < len(taken) and taken[k] == ts:
                    dropped.add(id(row))  # stored already (a redelivery): not thinned, just not new
                elif (k < len(taken) and taken[k] - ts < spacing) or (k and ts - taken[k - 1] < spacing):
                    dropped.add(id(row))
                    result.readings_thinned += 1
                else:
                    insort(taken, ts)
        if dropped:
            pending.readings = [row for row in pending.readings if id(row) not in dropped]

    def _keep_new_retained(self, conn: Connection, pending: _Pending) -> None:
        """Retained messages come again after every reconnect: dead-letter each (topic, reason, payload) once.

        A letter kept just after its topic went over budget has a count of letters not kept added to its reason
        (engine.budget.with_not_kept): its replays are recognised all the same. Only a letter kept for the first
        time is charged to its topic's budget: a replay dropped here costs none.
        """
        retained, pending.retained_letters = pending.retained_letters, []
        stored = self._stored_reasons(conn, retained)
        new = []
        for letter in retained:
            kept = stored[letter["source"], letter["payload"]]
            if not any(kept_for(reason, letter["reason"]) for reason in kept):
                new.append(letter)
                kept.add(letter["reason"])  # the same message twice in this batch (two subscriptions): kept once
        if len(new) < len(retained):
            log.debug("%d retained message(s) dead-lettered before: not again", len(retained) - len(new))
        for letter in new:
            self._keep_within_budget(pending, letter)

    @staticmethod
    def _stored_reasons(conn: Connection, letters: list[dict[str, Any]]) -> defaultdict[tuple[str, str], set[str]]:
        """The reasons stored with each (source, payload) of ``letters`` that may be theirs, in one query."""
        # Answering only with possible matches: a topic may hold many other dead letters.
        keys = list({(x["source"], x["payload"]) for x in letters})
        reasons = list({x["reason"] for x in letters})
        columns = (dead_letters.c.source, dead_letters.c.payload, dead_letters.c.reason)
        query = (
            select(*columns)
            .distinct()
            .where(tuple_(dead_letters.c.source, dead_letters.c.payload).in_(keys))
            .where(or_(dead_letters.c.reason.in_(reasons), dead_letters.c.reason.like(NOT_KEPT_LIKE)))
        )
        stored: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        for source, payload, reason in conn.execute(query):
            stored[source, payload].add(reason)
        return stored

    def _dead_letter(self, pending: _Pending, message: RawMessage, reason: str, meter_id: str | None) -> None:
        # Every text field made safe for any store (no NUL, no lone surrogate), and the meter id
        # kept only if it is a valid one: a dead letter must never be what fails the batch.
        letter = {
            "received_at": message.received_at,
            "source": store_safe_text(message.source, 256),
            "meter_id": meter_id if valid_meter_id(meter_id) else None,
            "reason": store_safe_text(reason, 512),
            "payload": store_safe_text(message.payload, DEAD_LETTER_PAYLOAD_MAX),
        }
        if message.retained:
            pending.retained_letters.append(letter)  # kept, and charged, only if new (_keep_new_retained)
        else:
            self._keep_within_budget(pending, letter)
        # Per message at debug level: a flood of bad messages must not become a flood of log lines.
        log.debug("dead-lettered message from %s: %s", message.source, reason)

    def _keep_within_budget(self, pending: _Pending, letter: dict[str, Any]) -> None:
        """Keep ``letter`` if its topic's dead-letter budget allows, saying how many before it were not kept."""
        earlier = self.dead_letter_budget.allows(letter["source"], self.clock(), pending.letters)
        if earlier is None:
            return  # counted: one account sending junk at full speed must not fill the disk
        if earlier:
            letter["reason"] = with_not_kept(letter["reason"], earlier)
        pending.dead_letters.append(letter)


class _Contended(Exception):
    """Some meters of a batch moved on in another worker on every try: commit the others without them."""

    def __init__(self, meter_ids: set[str], theirs: list[RawMessage], rest: list[RawMessage]) -> None:
        self.theirs, self.rest = theirs, rest  # the messages of those meters, and the others
        super().__init__(", ".join(sorted(meter_ids)[:5]))

    @classmethod
    def among(cls, messages: list[RawMessage], moved: set[str]) -> _Contended | None:
        """The batch split by whether its message's meter moved on; None unless some did and some did not."""
        # One look-up per message: a topic naming no meter has its payload parsed for it once, not per question.
        theirs: list[RawMessage] = []
        rest: list[RawMessage] = []
        for message in messages:
            (theirs if _meter_of(message) in moved else rest).append(message)
        return cls(moved, theirs, rest) if theirs and rest else None


def _meter_of(message: RawMessage) -> str | None:
    """The meter whose state a message moves: its topic's (a message claiming another is dead-lettered)."""
    if message.topic_meter_id is not None:
        return message.topic_meter_id
    try:
        return parse_message(message.payload, None).meter_id
    except PayloadError:
        return None


def repair_future_reading_times(engine: Engine, now: float, tolerance_s: float) -> int:
    """Set back the last reading time of meters whose time lies ahead: written by versions before issue 20.

    Those versions moved ``last_reading_ts`` with readings they then rejected (a meter clock in 2100
    or 9999), which kept the meter out of the silence checks and broke pages reading the time. The
    newest stored reading is the truth (NULL when there is none). Returns the meters repaired.
    """
    newest = select(func.max(readings.c.ts)).where(readings.c.meter_id == meters.c.meter_id).scalar_subquery()
    with engine.begin() as conn:
        repaired = conn.execute(
            update(meters).where(meters.c.last_reading_ts > now + tolerance_s).values(last_reading_ts=newest)
        ).rowcount
    if repaired:
        log.warning("set back the last reading time of %d meter(s) that lay in the future", repaired)
    return int(repaired or 0)


def _poisoned(exc: BaseException) -> bool:
    """True when a batch failed for a reason of its own (a message), not a store that cannot work now."""
    if isinstance(exc, StaleState | ConcurrentWrite):
        return False  # lost races over and over: the batch is fine, try it again later
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or _schema_mismatch(exc):
            return False
        state = getattr(exc.orig, "sqlstate", None)
        if state:
            return state[:2] not in _UNAVAILABLE_SQLSTATE_CLASSES and state not in _RETRYABLE_SQLSTATES
        # No SQLSTATE (SQLite, or a driver's own check such as psycopg refusing a NUL): SQLite's
        # OperationalError is a locked, full or unreadable database, not a message's fault.
        return not isinstance(exc, OperationalError | InterfaceError)
    return not isinstance(exc, OSError | DisconnectionError | PoolTimeout)


def _schema_mismatch(exc: BaseException) -> bool:
    """True when the store's schema does not fit this tapwatch's statements (see ``_SCHEMA_SQLSTATE_CLASS``)."""
    if not isinstance(exc, DBAPIError):
        return False
    state = getattr(exc.orig, "sqlstate", None)
    if state:
        return str(state).startswith(_SCHEMA_SQLSTATE_CLASS)
    return isinstance(exc, OperationalError) and any(said in str(exc.orig) for said in _SQLITE_SCHEMA_ERRORS)


def _lost_a_race(exc: BaseException) -> bool:
    """True for errors another worker's concurrent commit causes, which a rerun on fresh state resolves."""
    if isinstance(exc, StaleState | ConcurrentWrite | IntegrityError):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
