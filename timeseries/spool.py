"""The InfluxDB spool: points staged with the readings, written to InfluxDB by a thread in each worker.

:class:`InfluxStager` adds line protocol to ``influx_spool`` inside the
readings transaction; :class:`InfluxWriter` (a thread) writes the spool to
``/api/v2/write`` in id order and deletes rows only after InfluxDB
acknowledged them. The writers of several workers share the spool, one
chunk at a time (see :meth:`InfluxWriter._drain_chunk`). A failed write
stays in the spool and is retried with backoff, so InfluxDB being down or
slow never stops ingestion and loses nothing.
The writer also mirrors the append-only ``alert_events`` and ``dead_letters``
tables by id, and spools a ``tapwatch_status`` point (spool and delivery lag)
for the dashboards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select

from core.domain import Finding
from core.metrics import Metrics
from core.retry import retry_after_s
from ingest.payload import ParsedMessage
from store import may_idle
from store.ops import insert_new
from store.schema import alert_events, dead_letters, influx_deletions, influx_spool, leases, outbox, readings
from timeseries.erase import InfluxEraser
from timeseries.influx import InfluxConfig
from timeseries.influxql import InfluxQL, InfluxQueryError
from timeseries.lines import alert_event_lines, dead_letter_lines, finding_lines, line, reading_lines, to_ms

log = logging.getLogger(__name__)

#: The ``leases`` row a writer locks while it sends a chunk of the spool (see InfluxWriter._drain_chunk).
SPOOL_LOCK = "influx-spool"
#: Purged elders whose series one pass deletes (a few requests to InfluxDB each).
ERASE_PER_PASS = 10
#: Up to this span of ids the spool's rows are counted; past it (a long InfluxDB outage) the span is the figure.
EXACT_BACKLOG = 100_000


def _as_stored(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows as the readings table holds them.

    A repeat of a stored reading reaches the stager marked ``late`` although the
    store kept the first one (insert-or-ignore); InfluxDB must get the stored
    row, or its point would overwrite the original. Only ``late`` rows can be
    repeats, so only they are looked up.
    """
    out: list[Mapping[str, Any]] = []
    for row in rows:
        if row["status"] == "late":
            stored = conn.execute(
                select(readings.c.ts, readings.c.total_l, readings.c.usage_l, readings.c.status).where(
                    readings.c.meter_id == row["meter_id"], readings.c.ts == row["ts"]
                )
            ).first()
            out.append(dict(stored._mapping) if stored is not None else row)
        else:
            out.append(row)
    return out


class InfluxStager:
    """The pipeline's :class:`~engine.pipeline.Stager` for InfluxDB: one spool row per message."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def stage(
        self,
        conn: Connection,
        context: Mapping[str, Any],
        rows: Sequence[Mapping[str, Any]],
        message: ParsedMessage,
        findings: Sequence[Finding],
    ) -> None:
        lines = reading_lines(context, _as_stored(conn, rows), message) + finding_lines(context, findings)
        if lines:
            conn.execute(insert(influx_spool).values(lines="\n".join(lines), created_at=self.clock()))


# -- the writer thread -------------------------------------------------------------------------


class InfluxUnavailable(Exception):
    """A write that may succeed later (server down, slow, overloaded, misconfigured)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class InfluxRejected(Exception):
    """InfluxDB refused the data itself (bad line, type conflict): retrying the same body cannot help."""


def _retry_after(exc: ApiException) -> float | None:
    """The seconds the answer's ``Retry-After`` asks for, within bounds (:func:`core.retry.retry_after_s`).

    >>> def busy(retry_after: str | None) -> ApiException:  # a 503 as influxdb-client raises it
    ...     exc = ApiException(status=503, reason="busy")
    ...     exc.headers = {} if retry_after is None else {"Retry-After": retry_after}
    ...     return exc
    >>> [_retry_after(busy(v)) for v in (None, "30", "86400", "-5", "nan")]
    [None, 30.0, 300.0, 0.0, None]
    """
    headers: Any = exc.headers or {}
    return retry_after_s(headers.get("Retry-After") if hasattr(headers, "get") else None)


def _classify(exc: Exception) -> Exception:
    """Map a client error: retry later (InfluxUnavailable), refused (InfluxRejected), or dropped by retention."""
    if not isinstance(exc, ApiException):
        return InfluxUnavailable(f"{type(exc).__name__}: {exc}"[:300])
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
    body = " ".join(body.split())  # one line, also for an HTML error page from a proxy
    status = int(exc.status or 0)
    if status in (400, 413, 422) and "beyond retention" not in body:
        return InfluxRejected(f"HTTP {status}: {body[:300]}")
    if status in (400, 422):  # only "points beyond retention policy dropped": InfluxDB chose to drop them
        return _RetentionDropped(body[:300])
    # 429/503 ask us to slow down; 5xx, 401/403 (token) and 404 (bucket) may be fixed by an operator
    return InfluxUnavailable(f"HTTP {status}: {body[:300]}", _retry_after(exc))


class _RetentionDropped(Exception):
    pass


def spool_backlog(conn: Connection) -> tuple[int, float | None]:
    """(rows waiting, ``created_at`` of the oldest), from the id index: /readyz and /metrics ask at every call.

    Counting a spool of millions of rows reads it whole (0.4 s at 3 million on
    PostgreSQL, bench/bench_spool_backlog.py); past :data:`EXACT_BACKLOG` ids
    the span of ids stands for the count (rows settled out of order and ids
    of rolled-back transactions make it a little high). The writer sends rows
    in id order, so the first id's row is the oldest one waiting.
    """
    first = conn.execute(select(influx_spool.c.id, influx_spool.c.created_at).order_by(influx_spool.c.id).limit(1))
    row = first.first()
    if row is None:
        return 0, None
    low, oldest = row
    last = conn.execute(select(influx_spool.c.id).order_by(influx_spool.c.id.desc()).limit(1)).scalar_one_or_none()
    high = last if last is not None else low  # sent and deleted in between
    span = high - low + 1
    if span > EXACT_BACKLOG:
        return span, oldest
    count = select(func.count()).where(influx_spool.c.id >= low, influx_spool.c.id <= high)
    return int(conn.execute(count).scalar_one()), oldest


def status_fields(conn: Connection, now: float) -> dict[str, float]:
    """Spool and delivery backlog, for the ``tapwatch_status`` point the dashboards chart."""
    spool_n, spool_oldest = spool_backlog(conn)
    out_n, out_oldest = conn.execute(
        select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.status == "pending")
    ).one()
    parked = conn.execute(select(func.count()).where(outbox.c.status == "parked")).scalar_one()
    return {
        "spool_pending": float(spool_n),
        "spool_lag_s": max(0.0, now - spool_oldest) if spool_oldest is not None else 0.0,
        "delivery_pending": float(out_n),
        "delivery_parked": float(parked),
        "delivery_lag_s": max(0.0, now - out_oldest) if out_oldest is not None else 0.0,
    }


#: How long an id the mirror passed without finding its row is looked for again: a transaction that took an
#: id commits within seconds; one not seen by then was rolled back (PostgreSQL never reuses a sequence's ids).
HOLE_WAIT_S = 3600.0
#: How far below the newest row read a pass looks for such ids (a huge jump of the sequence is no set of
#: transactions in flight).
MAX_HOLES = 10_000


@dataclass(slots=True)
class _Mirror:
    """An append-only table copied to a measurement by row id; the cursor is re-read from InfluxDB at start.

    Ids are assigned at insert but become visible at commit, so on PostgreSQL a
    lower id can appear after a higher one was copied: each pass looks back
    ``lookback`` ids and sends the ones it has not sent (points are idempotent),
    and asks again for each id it passed without a row (``holes``, id: when
    first missed) until :data:`HOLE_WAIT_S`: a burst of more than ``lookback``
    rows committed meanwhile by other workers would otherwise leave it behind.
    """

    measurement: str
    rows: Callable[..., list[tuple[int, str]]]  # (conn, after_id, limit, ids=None): timeseries.lines
    table: Table
    cursor: int | None = None
    lookback: int = 100
    sent: set[int] = field(default_factory=set)
    holes: dict[int, float] = field(default_factory=dict)


def _took_spool_lock(conn: Connection) -> bool:
    """Lock the ``SPOOL_LOCK`` row of ``leases`` to the end of ``conn``'s transaction (PostgreSQL; SQLite serialises
    writers); False if another writer holds it. The transaction may idle while InfluxDB answers
    (:func:`store.may_idle`)."""
    may_idle(conn)
    lock = select(leases.c.name).where(leases.c.name == SPOOL_LOCK).with_for_update(skip_locked=True)
    return conn.execute(lock).first() is not None


class InfluxWriter:
    """Drains ``influx_spool`` to InfluxDB; at-least-once, never drops a batch. Run :meth:`serve` in a thread."""

    def __init__(
        self,
        engine: Engine,
        config: InfluxConfig,
        *,
        batch_size: int = 5000,
        flush_s: float = 1.0,
        metrics: Metrics | None = None,
        status_every_s: float = 30.0,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        mirror: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.config = config
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.metrics = metrics
        self.status_every_s = status_every_s
        self.backoff_s = backoff_s
        self.clock = clock
        self.client = InfluxDBClient(
            url=config.url, token=config.token, org=config.org, timeout=int(config.timeout_s * 1000)
        )
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)
        self.query = InfluxQL(config)
        self.eraser = InfluxEraser(config, self.query)
        self.mirrors = (
            [
                _Mirror("alert_events", alert_event_lines, alert_events),
                _Mirror("dead_letters", dead_letter_lines, dead_letters),
            ]
            if mirror
            else []
        )
        self.connected = False  # InfluxDB answered the last time it was asked (not: the last pass raised nothing)
        self.last_error: str | None = None
        self._answered = False  # InfluxDB answered during the current pass
        self.points_written = 0
        self.rejected_rows = 0
        self._next_status = 0.0
        self._points_per_row = 1.0
        self._lock_row = False  # the SPOOL_LOCK row is known to exist
        self._erase_after = 0.0  # monotonic time before which a failed deletion is not tried again
        self._erase_delay = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()

    # -- state for /readyz and metrics ----------------------------------------------------

    def backlog(self) -> tuple[int, float]:
        """(spool rows waiting, age in seconds of the oldest)."""
        with self.engine.connect() as conn:
            pending, oldest = spool_backlog(conn)
        lag = max(0.0, self.clock() - oldest) if oldest is not None else 0.0
        if self.metrics is not None:
            self.metrics.influx_pending.set(pending)
            self.metrics.influx_lag.set(lag)
            self.metrics.influx_connected.set(1 if self.connected else 0)
        return int(pending), lag

    @property
    def pending(self) -> int:
        return self.backlog()[0]

    @property
    def lag_s(self) -> float:
        return self.backlog()[1]

    def status(self) -> dict[str, Any]:
        pending, lag = self.backlog()
        out: dict[str, Any] = {"connected": self.connected, "pending": pending, "lag_s": round(lag, 1)}
        if self.last_error and not self.connected:
            # /readyz is public: the kind ("HTTP 401", the exception's class) only; hosts, buckets, bodies are logged
            out["error"] = self.last_error.split(":", 1)[0]
        return out

    # -- loop -----------------------------------------------------------------------------

    def serve(self) -> None:
        delay = self.backoff_s[0]
        while not self._stop.is_set():
            try:
                busy = self.run_once()
                delay = self.backoff_s[0]
            except InfluxUnavailable as exc:
                self._failed(str(exc))
                # Asked to wait (429, 503): at least the first backoff, or "0" would retry in a tight loop.
                wait = max(exc.retry_after, self.backoff_s[0]) if exc.retry_after is not None else delay
                delay = min(delay * 2, self.backoff_s[1])
                self._stop.wait(wait)
                continue
            except Exception as exc:  # e.g. the relational store is briefly unavailable: retry, keep the thread
                log.exception("InfluxDB writer pass failed")
                self._failed(f"{type(exc).__name__}: {exc}"[:300])
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            if not busy:
                self._wake.wait(self.flush_s)
                self._wake.clear()

    def _failed(self, reason: str) -> None:
        if self.connected or reason != self.last_error:
            log.warning("InfluxDB write failed, will retry (spool keeps the data): %s", reason)
        self.connected = False
        self.last_error = reason
        if self.metrics is not None:
            self.metrics.influx_write_errors.inc()
            self.metrics.influx_connected.set(0)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        self.client.close()
        self.query.close()

    def run_once(self) -> bool:
        """One pass: status point, one spool chunk, mirrors. True when there may be more to do at once."""
        self._answered = False
        self._stage_status()
        busy = self._drain_chunk()
        for mirror in self.mirrors:
            busy = self._mirror(mirror) or busy
        busy = self._erase_purged() or busy
        if self._answered:
            # A pass that had nothing to write asked InfluxDB nothing: it keeps what the last answer said.
            self.connected = True
            if self.metrics is not None:
                self.metrics.influx_connected.set(1)
        return busy

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Write until the spool is empty (tests, benchmarks, graceful stop); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if not self.run_once() and self.pending == 0:
                    return True
            except InfluxUnavailable:
                time.sleep(self.backoff_s[0])
        return False

    def _stage_status(self) -> None:
        now = self.clock()
        if self.status_every_s <= 0 or now < self._next_status:
            return
        self._next_status = now + self.status_every_s
        with self.engine.begin() as conn:
            point = line("tapwatch_status", {}, status_fields(conn, now), to_ms(now))
            if point:
                conn.execute(insert(influx_spool).values(lines=point, created_at=now))

    # -- spool ----------------------------------------------------------------------------

    def _drain_chunk(self) -> bool:
        """Write the spool's next chunk, if no other writer is sending one (every worker runs a writer on the spool).

        One writer at a time, so the rows reach InfluxDB in id order (a point
        spooled twice, a held reading and then its settled value, keeps the
        later one) and a backlog is sent once: on PostgreSQL a writer holds a
        lock on the ``influx-spool`` row of ``leases`` until its chunk is
        settled; the others skip the pass. SQLite has no row locks but
        serialises writers: a row is deleted (and a refused one dead-lettered)
        by the writer whose ``DELETE`` still finds it. Nothing is written to the
        store before InfluxDB answered: SQLite's write lock must never wait on
        InfluxDB, or ingestion would.
        """
        if not self._lock_row:
            with self.engine.begin() as conn:
                insert_new(conn, leases, [{"name": SPOOL_LOCK, "owner": "", "until": 0.0}])
            self._lock_row = True
        # a row holds one message (one reading, or a day of them): fetch about batch_size points' worth of rows
        limit = max(1, min(self.batch_size, round(self.batch_size / self._points_per_row)))
        written: list[tuple[int, str]] = []
        refused: list[tuple[int, str, str]] = []
        unavailable: InfluxUnavailable | None = None
        with self.engine.begin() as conn:
            if not _took_spool_lock(conn):
                return False  # another writer is sending a chunk: rows after it could reach InfluxDB first
            rows = conn.execute(
                select(influx_spool.c.id, influx_spool.c.lines).order_by(influx_spool.c.id).limit(limit)
            ).all()
            if not rows:
                return False
            chunk: list[tuple[int, str]] = []
            points = 0
            for row_id, lines in rows:
                chunk.append((int(row_id), lines))
                points += lines.count("\n") + 1
                if points >= self.batch_size:
                    break
            self._points_per_row = points / len(chunk)
            try:
                self._write_rows(chunk, written, refused)
            except InfluxUnavailable as exc:  # what InfluxDB took before it went away is still settled
                unavailable = exc
            rejected = self._settle(conn, written, refused)
        n = sum(lines.count("\n") + 1 for _, lines in written)
        self.points_written += n
        self.rejected_rows += rejected
        if self.metrics is not None:
            self.metrics.influx_points_written.inc(n)
        if unavailable is not None:
            raise unavailable
        return True

    def _write_rows(
        self, chunk: list[tuple[int, str]], written: list[tuple[int, str]], refused: list[tuple[int, str, str]]
    ) -> None:
        body = "\n".join(lines for _, lines in chunk)
        try:
            self._write(body, WritePrecision.MS)
        except InfluxRejected as exc:
            if len(chunk) > 1:  # find the bad row(s): halves are written (idempotently) on their own
                half = len(chunk) // 2
                self._write_rows(chunk[:half], written, refused)
                self._write_rows(chunk[half:], written, refused)
                return
            refused.append((*chunk[0], str(exc)))
            return
        written.extend(chunk)

    def _settle(self, conn: Connection, written: list[tuple[int, str]], refused: list[tuple[int, str, str]]) -> int:
        """Delete what InfluxDB took; park what it refused. Returns how many rows this writer dead-lettered."""
        if written:
            conn.execute(delete(influx_spool).where(influx_spool.c.id.in_([row_id for row_id, _ in written])))
        parked = 0
        for row_id, lines, reason in refused:
            # A row InfluxDB refuses is kept as a dead letter (visible, replayable), not retried forever;
            # by the one writer that removes it from the spool.
            if conn.execute(delete(influx_spool).where(influx_spool.c.id == row_id)).rowcount != 1:
                continue
            log.error("InfluxDB refused spool row %s, moved to dead letters: %s", row_id, reason)
            conn.execute(
                insert(dead_letters).values(
                    received_at=self.clock(),
                    source="influx-spool",
                    meter_id=None,
                    reason=f"InfluxDB refused the points: {reason}"[:512],
                    payload=lines,
                )
            )
            parked += 1
        return parked

    def _write(self, body: str, precision: str) -> None:
        try:
            self.write_api.write(
                bucket=self.config.bucket,
                org=self.config.org,
                record=body,
                write_precision=precision,  # type: ignore[arg-type]  # the client's enum values are str
            )
        except Exception as exc:
            mapped = _classify(exc)
            if isinstance(mapped, InfluxRejected | _RetentionDropped):
                self._answered = True  # a refusal is an answer: InfluxDB is up
            if isinstance(mapped, _RetentionDropped):
                log.info("InfluxDB dropped points older than its retention policy: %s", mapped)
                return
            raise mapped from exc
        self._answered = True

    # -- purged elders ---------------------------------------------------------------------

    def _erase_purged(self) -> bool:
        """Delete the series of the elders the purge queued (``influx_deletions``), oldest first; a row leaves the
        queue once InfluxDB confirmed, so one queued while InfluxDB was down is deleted when it is back.

        Under the spool's lock: a chunk another worker's writer is sending may hold her points, read before the
        purge dropped them from the spool, and must land before the deletion, not after it; while it is sending,
        this pass leaves the deletion to it (its next step) or to the next pass. Nothing is written to the store
        before InfluxDB answered (see :meth:`_drain_chunk`). A deletion that fails (InfluxDB down, a token that
        may not write the daily bucket) is retried on its own backoff: the spool goes on at its pace meanwhile.
        """
        if time.monotonic() < self._erase_after:
            return False
        queued = select(influx_deletions).order_by(influx_deletions.c.id).limit(1)
        for _ in range(ERASE_PER_PASS):
            with self.engine.connect() as conn:
                if conn.execute(queued).first() is None:  # the common case: no lock taken
                    return False
            with self.engine.begin() as conn:
                if not _took_spool_lock(conn):
                    return False
                row = conn.execute(queued).first()
                if row is None:  # another writer deleted her meanwhile
                    return False
                try:
                    self.eraser.erase(row.elder_id, list(row.meter_ids), row.created_at)  # up to her purge
                except InfluxQueryError as exc:
                    self._erase_failed(row.elder_id, exc)
                    return False
                self._answered = True
                conn.execute(delete(influx_deletions).where(influx_deletions.c.id == row.id))
            self._erase_delay = 0.0
            log.info("deleted purged elder %s's series from InfluxDB", row.elder_id)
        return True

    def _erase_failed(self, elder_id: str, exc: Exception) -> None:
        self._erase_delay = min(max(self._erase_delay * 2, self.backoff_s[0]), self.backoff_s[1])
        self._erase_after = time.monotonic() + self._erase_delay
        log.warning("cannot delete purged elder %s's series from InfluxDB yet, will retry: %s", elder_id, exc)

    # -- mirrors ---------------------------------------------------------------------------

    def _mirror(self, mirror: _Mirror) -> bool:
        if mirror.cursor is None:
            with self.engine.connect() as conn:
                newest = conn.execute(select(func.max(mirror.table.c.id))).scalar() or 0
            # A store restored from a backup numbers its next rows after the backup's, ids InfluxDB may hold for
            # rows the restore took back: what comes after this store's newest row is new, whatever InfluxDB holds.
            mirror.cursor = min(self._max_row_id(mirror.measurement), int(newest))
        floor = max(0, mirror.cursor - mirror.lookback)
        now = self.clock()
        mirror.holes = {i: at for i, at in mirror.holes.items() if at > now - HOLE_WAIT_S}
        with self.engine.connect() as conn:
            rows = mirror.rows(conn, floor, self.batch_size + mirror.lookback)
            behind = sorted(i for i in mirror.holes if i <= floor)
            late = [
                row
                for ids in (behind[k : k + 1000] for k in range(0, len(behind), 1000))  # an IN list any store takes
                for row in mirror.rows(conn, ids[0] - 1, len(ids), ids)
            ]
        seen = {row_id for row_id, _ in rows}
        if rows:  # every id up to the last row read that has no row yet is in a transaction, or rolled back
            # (not the ids far below the first row read: rows purged long ago, or never used by a sequence)
            low = max(mirror.cursor, rows[0][0] - mirror.lookback, rows[-1][0] - MAX_HOLES - 1)
            for row_id in range(low + 1, rows[-1][0]):
                if row_id not in seen:
                    mirror.holes.setdefault(row_id, now)
        found = seen | {row_id for row_id, _ in late}
        fresh = [(row_id, point) for row_id, point in [*late, *rows] if row_id not in mirror.sent and point]
        if not fresh:
            mirror.holes = {i: at for i, at in mirror.holes.items() if i not in found}
            return False
        # Not what InfluxDB holds already (this writer's look-back after a restart, another worker's writer):
        # an event's tags are its alert's current severity and community, so a copy sent after they changed
        # would be a second point, in another series.
        held = self._held_row_ids(mirror.measurement, fresh)
        unsent = [point for row_id, point in fresh if row_id not in held]
        if unsent:
            self._write("\n".join(unsent), WritePrecision.NS)
        mirror.sent.update(row_id for row_id, _ in fresh)
        mirror.cursor = max(mirror.cursor, max(row_id for row_id, _ in fresh))
        mirror.sent = {i for i in mirror.sent if i > mirror.cursor - mirror.lookback}
        # only once sent: a pass whose write failed leaves them to the next one
        mirror.holes = {i: at for i, at in mirror.holes.items() if i not in found}
        return len(rows) >= self.batch_size + mirror.lookback

    def _held_row_ids(self, measurement: str, fresh: list[tuple[int, str]]) -> set[int]:
        """Which of these rows InfluxDB holds; asked over their time span only (points carry their time in ns)."""
        since = min(int(point.rsplit(" ", 1)[1]) for _, point in fresh)
        low, high = min(row_id for row_id, _ in fresh), max(row_id for row_id, _ in fresh)
        try:
            series = self.query.select(
                f'SELECT "row_id" FROM "{measurement}" WHERE time >= {since} AND "row_id" >= {low} '
                f'AND "row_id" <= {high}'
            )
        except InfluxQueryError as exc:
            raise InfluxUnavailable(f"cannot read the {measurement} row ids: {exc}") from exc
        self._answered = True
        return {int(row["row_id"]) for rows in series for row in rows}

    def _max_row_id(self, measurement: str) -> int:
        try:
            series = self.query.select(f'SELECT max("row_id") FROM "{measurement}"')
        except InfluxQueryError as exc:
            raise InfluxUnavailable(f"cannot read the {measurement} cursor: {exc}") from exc
        self._answered = True
        for values in series:
            if values and values[0].get("max") is not None:
                return int(values[0]["max"])
        return 0
