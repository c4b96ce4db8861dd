"""InfluxDB time series: spool points with the readings, drain the spool to InfluxDB, read history back.

Write path: :class:`InfluxStager` adds line protocol to ``influx_spool`` inside
the readings transaction; :class:`InfluxWriter` (a thread) writes the spool to
``/api/v2/write`` in id order and deletes rows only after InfluxDB
acknowledged them. A failed write stays in the spool and is retried with
backoff, so InfluxDB being down or slow never stops ingestion and loses nothing.
Points are idempotent (same series and time overwrite), so a retry after a lost
acknowledgement repeats nothing visible. The writer also mirrors the append-only
``alert_events`` and ``dead_letters`` tables by id, and spools a
``tapwatch_status`` point (spool and delivery lag) for the dashboards.

Read path: :class:`InfluxTimeseries` answers the API's history queries with
InfluxQL over ``/query``, which InfluxDB 1.x, 2.x and 3.x all serve.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from sqlalchemy import Connection, Engine, delete, func, insert, select

from core.domain import Finding
from core.metrics import Metrics
from core.settings import Settings
from ingest.payload import ParsedMessage
from store.schema import alert_events, alerts, dead_letters, influx_spool, outbox, readings
from timeseries.sql import Timeseries

log = logging.getLogger(__name__)

MS = 1000
NS_PER_MS = 1_000_000

# -- line protocol -----------------------------------------------------------------------


def _tag(value: object) -> str:
    # InfluxDB unescapes only backslash-comma, -equals and -space in tag values: a backslash cannot be carried
    text = str(value).replace("\n", " ").replace("\r", " ").replace("\\", "/")
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _str_field(value: object) -> str:
    text = str(value).replace("\n", " ").replace("\r", " ")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fields(values: Mapping[str, object]) -> str:
    """Field set; None and non-finite numbers are left out (InfluxDB has no null)."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int):
            parts.append(f"{key}={value}i")
        elif isinstance(value, float):
            if math.isfinite(value):
                parts.append(f"{key}={value!r}")
        else:
            parts.append(f"{key}={_str_field(value)}")
    return ",".join(parts)


def line(measurement: str, tags: Mapping[str, object], fields: Mapping[str, object], ts_ms: int) -> str | None:
    """One point in line protocol; None when no field has a value.

    >>> line("readings", {"meter_id": "m 1"}, {"total_l": 12.0, "usage_l": None, "status": "ok"}, 1000)
    'readings,meter_id=m\\\\ 1 total_l=12.0,status="ok" 1000'
    """
    field_set = _fields(fields)
    if not field_set:
        return None
    tag_set = "".join(f",{k}={_tag(v)}" for k, v in sorted(tags.items()) if v is not None and v != "")
    return f"{measurement.replace(',', '_').replace(' ', '_')}{tag_set} {field_set} {int(ts_ms)}"


def to_ms(ts: float) -> int:
    return round(ts * MS)


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


# -- write path: staging inside the readings transaction ------------------------------------


def _float_field(key: str, value: object) -> str:
    if value is None:
        return ""
    number = float(value)  # type: ignore[arg-type]
    return f",{key}={number!r}" if math.isfinite(number) else ""


def reading_lines(context: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], message: ParsedMessage) -> list[str]:
    """One ``readings`` point per row; the hot path of the stager, so the shared parts are built once."""
    tags = {"meter_id": message.meter_id, "elder_id": context.get("elder_id"), "community": context.get("community")}
    head = "readings" + "".join(f",{k}={_tag(v)}" for k, v in sorted(tags.items()) if v is not None and v != "")
    device = _float_field("battery_pct", message.battery_pct) + _float_field("rssi", message.rssi)
    out = []
    for row in rows:
        total = float(row["total_l"])
        if not math.isfinite(total):
            continue
        usage = _float_field("usage_l", row["usage_l"])
        out.append(f"{head} total_l={total!r}{usage}{device},status={_str_field(row['status'])} {to_ms(row['ts'])}")
    return out


def finding_lines(context: Mapping[str, Any], findings: Sequence[Finding]) -> list[str]:
    out = []
    for f in findings:
        # resolved is a tag so that a raise and a resolve at one data time stay two points
        tags = {
            "meter_id": f.meter_id,
            "elder_id": context.get("elder_id"),
            "community": context.get("community"),
            "kind": f.kind,
            "resolved": "true" if f.resolved else "false",
        }
        point = line("findings", tags, {"score": float(f.score), "severity": f.severity, "basis": f.basis}, to_ms(f.ts))
        if point:
            out.append(point)
    return out


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
    """The pipeline's :class:`~tapwatch.pipeline.Stager` for InfluxDB: one spool row per message."""

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


# -- write path: the writer thread ------------------------------------------------------------


class InfluxUnavailable(Exception):
    """A write that may succeed later (server down, slow, overloaded, misconfigured)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class InfluxRejected(Exception):
    """InfluxDB refused the data itself (bad line, type conflict): retrying the same body cannot help."""


@dataclass(slots=True, frozen=True)
class InfluxConfig:
    url: str
    token: str = field(default="", repr=False)  # never in logs or tracebacks
    org: str = "tapwatch"
    bucket: str = "tapwatch"
    database: str = ""  # InfluxQL database; default: the bucket
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxConfig:
        if not settings.influx_url:
            raise ValueError("influx_url is not set")
        token = settings.influx_token.get_secret_value() if settings.influx_token else ""
        return cls(
            url=settings.influx_url.rstrip("/"),
            token=token,
            org=settings.influx_org,
            bucket=settings.influx_bucket,
            database=settings.influx_database or settings.influx_bucket,
        )

    @property
    def db(self) -> str:
        return self.database or self.bucket


def _retry_after(exc: ApiException) -> float | None:
    headers: Any = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


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


def status_fields(conn: Connection, now: float) -> dict[str, float]:
    """Spool and delivery backlog, for the ``tapwatch_status`` point the dashboards chart."""
    spool_n, spool_oldest = conn.execute(select(func.count(), func.min(influx_spool.c.created_at))).one()
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


@dataclass(slots=True)
class _Mirror:
    """An append-only table copied to a measurement by row id; the cursor is re-read from InfluxDB at start.

    Ids are assigned at insert but become visible at commit, so on PostgreSQL a
    lower id can appear after a higher one was copied: each pass looks back
    ``lookback`` ids and sends the ones it has not sent (points are idempotent).
    """

    measurement: str
    rows: Callable[[Connection, int, int], list[tuple[int, str]]]
    cursor: int | None = None
    lookback: int = 100
    sent: set[int] = field(default_factory=set)


def _unique_ns(at: float, row_id: int) -> int:
    """Millisecond time with the row id in the sub-millisecond digits: rows in one millisecond stay distinct."""
    return to_ms(at) * NS_PER_MS + row_id % NS_PER_MS


def alert_event_lines(conn: Connection, after_id: int, limit: int) -> list[tuple[int, str]]:
    rows = conn.execute(
        select(
            alert_events.c.id,
            alert_events.c.alert_id,
            alert_events.c.seq,
            alert_events.c.type,
            alert_events.c.at,
            alert_events.c.actor,
            alerts.c.meter_id,
            alerts.c.elder_id,
            alerts.c.community,
            alerts.c.kind,
            alerts.c.severity,
            alerts.c.message_zh,
            alerts.c.message_en,
        )
        .join(alerts, alerts.c.alert_id == alert_events.c.alert_id)
        .where(alert_events.c.id > after_id)
        .order_by(alert_events.c.id)
        .limit(limit)
    ).all()
    out = []
    for r in rows:
        tags = {"community": r.community, "kind": r.kind, "severity": r.severity, "type": r.type}
        fields = {
            "row_id": int(r.id),
            "alert_id": r.alert_id,
            "seq": int(r.seq),
            "meter_id": r.meter_id,
            "elder_id": r.elder_id,
            "actor": r.actor,
            "message_zh": r.message_zh,
            "message_en": r.message_en,
        }
        point = line("alert_events", tags, fields, _unique_ns(r.at, int(r.id)))
        out.append((int(r.id), point or ""))
    return out


def dead_letter_lines(conn: Connection, after_id: int, limit: int) -> list[tuple[int, str]]:
    rows = conn.execute(
        select(dead_letters.c.id, dead_letters.c.received_at, dead_letters.c.meter_id, dead_letters.c.reason)
        .where(dead_letters.c.id > after_id)
        .order_by(dead_letters.c.id)
        .limit(limit)
    ).all()
    out = []
    for r in rows:
        # no tags: meter ids of dead letters are unvalidated input and must not create series
        fields = {"row_id": int(r.id), "meter_id": r.meter_id or "", "reason": r.reason[:256]}
        out.append((int(r.id), line("dead_letters", {}, fields, _unique_ns(r.received_at, int(r.id))) or ""))
    return out


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
        self.mirrors = (
            [_Mirror("alert_events", alert_event_lines), _Mirror("dead_letters", dead_letter_lines)] if mirror else []
        )
        self.connected = False
        self.last_error: str | None = None
        self.points_written = 0
        self.rejected_rows = 0
        self._next_status = 0.0
        self._points_per_row = 1.0
        self._stop = threading.Event()
        self._wake = threading.Event()

    # -- state for /readyz and metrics ----------------------------------------------------

    def backlog(self) -> tuple[int, float]:
        """(spool rows waiting, age in seconds of the oldest)."""
        with self.engine.connect() as conn:
            pending, oldest = conn.execute(select(func.count(), func.min(influx_spool.c.created_at))).one()
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
            out["error"] = self.last_error
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
                wait = exc.retry_after if exc.retry_after is not None else delay
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
        self._stage_status()
        busy = self._drain_chunk()
        for mirror in self.mirrors:
            busy = self._mirror(mirror) or busy
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
        # a row holds one message (one reading, or a day of them): fetch about batch_size points' worth of rows
        limit = max(1, min(self.batch_size, round(self.batch_size / self._points_per_row)))
        with self.engine.connect() as conn:
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
        self._write_rows(chunk)
        return True

    def _write_rows(self, chunk: list[tuple[int, str]]) -> None:
        body = "\n".join(lines for _, lines in chunk)
        try:
            self._write(body, WritePrecision.MS)
        except InfluxRejected as exc:
            if len(chunk) > 1:  # find the bad row(s): halves are written (idempotently) on their own
                half = len(chunk) // 2
                self._write_rows(chunk[:half])
                self._write_rows(chunk[half:])
                return
            self._reject(chunk[0], str(exc))
            return
        with self.engine.begin() as conn:
            conn.execute(delete(influx_spool).where(influx_spool.c.id.in_([row_id for row_id, _ in chunk])))
        self.points_written += body.count("\n") + 1
        if self.metrics is not None:
            self.metrics.influx_points_written.inc(body.count("\n") + 1)

    def _reject(self, row: tuple[int, str], reason: str) -> None:
        """A row InfluxDB refuses is kept as a dead letter (visible, replayable), not retried forever."""
        row_id, lines = row
        log.error("InfluxDB refused spool row %s, moved to dead letters: %s", row_id, reason)
        with self.engine.begin() as conn:
            conn.execute(
                insert(dead_letters).values(
                    received_at=self.clock(),
                    source="influx-spool",
                    meter_id=None,
                    reason=f"InfluxDB refused the points: {reason}"[:512],
                    payload=lines,
                )
            )
            conn.execute(delete(influx_spool).where(influx_spool.c.id == row_id))
        self.rejected_rows += 1

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
            if isinstance(mapped, _RetentionDropped):
                log.info("InfluxDB dropped points older than its retention policy: %s", mapped)
                return
            raise mapped from exc

    # -- mirrors ---------------------------------------------------------------------------

    def _mirror(self, mirror: _Mirror) -> bool:
        if mirror.cursor is None:
            mirror.cursor = self._max_row_id(mirror.measurement)
        floor = max(0, mirror.cursor - mirror.lookback)
        with self.engine.connect() as conn:
            rows = mirror.rows(conn, floor, self.batch_size + mirror.lookback)
        fresh = [(row_id, point) for row_id, point in rows if row_id not in mirror.sent and point]
        if not fresh:
            return False
        self._write("\n".join(point for _, point in fresh), WritePrecision.NS)
        mirror.sent.update(row_id for row_id, _ in fresh)
        mirror.cursor = max(mirror.cursor, max(row_id for row_id, _ in fresh))
        mirror.sent = {i for i in mirror.sent if i > mirror.cursor - mirror.lookback}
        return len(rows) >= self.batch_size + mirror.lookback

    def _max_row_id(self, measurement: str) -> int:
        try:
            series = self.query.select(f'SELECT max("row_id") FROM "{measurement}"')
        except InfluxQueryError as exc:
            raise InfluxUnavailable(f"cannot read the {measurement} cursor: {exc}") from exc
        for values in series:
            if values and values[0].get("max") is not None:
                return int(values[0]["max"])
        return 0


# -- read path ------------------------------------------------------------------------------


class InfluxQueryError(Exception):
    pass


class InfluxQL:
    """InfluxQL over HTTP ``/query``. 2.x/3.x: ``Authorization: Token``; 1.x: a token ``user:password``."""

    PAGE = 5000  # below InfluxDB 1.x's default max-row-limit (10000)

    def __init__(self, config: InfluxConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        headers: dict[str, str] = {}
        self._auth: dict[str, str] = {}
        if config.token and ":" in config.token:  # 1.x credentials: u/p work on every 1.x version
            user, _, password = config.token.partition(":")
            self._auth = {"u": user, "p": password}
        elif config.token:
            headers["Authorization"] = f"Token {config.token}"
        self.http = client or httpx.Client(base_url=config.url, headers=headers, timeout=config.timeout_s)

    def close(self) -> None:
        self.http.close()

    def select(self, query: str) -> list[list[dict[str, Any]]]:
        """Run one query; a list of series, each a list of rows (dicts), times in epoch milliseconds."""
        return [rows for _tags, rows in self.select_tagged(query)]

    def select_tagged(self, query: str) -> list[tuple[dict[str, str], list[dict[str, Any]]]]:
        """Like :meth:`select`, with each series' GROUP BY tags."""
        try:
            resp = self.http.get("/query", params={"db": self.config.db, "q": query, "epoch": "ms", **self._auth})
        except httpx.HTTPError as exc:
            raise InfluxQueryError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            raise InfluxQueryError(f"HTTP {resp.status_code}: {resp.text[:300]}")
        out = []
        for result in resp.json().get("results", []):
            if "error" in result:
                raise InfluxQueryError(result["error"])
            for series in result.get("series", []):
                cols = series["columns"]
                rows = [dict(zip(cols, values, strict=True)) for values in series["values"]]
                out.append((series.get("tags") or {}, rows))
        return out

    def command(self, query: str) -> None:
        """A statement that changes something (CREATE DATABASE, retention policies): POST."""
        resp = self.http.post("/query", params={"q": query, **self._auth})
        if resp.status_code >= 400 or any("error" in r for r in resp.json().get("results", [])):
            raise InfluxQueryError(f"HTTP {resp.status_code}: {resp.text[:300]}")


def quote(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxTimeseries:
    """The API's :class:`~timeseries.sql.Timeseries` from InfluxDB.

    With a ``fallback`` (the relational store, which keeps every reading too),
    history stays available while InfluxDB is down; ``fallbacks`` counts those answers.
    """

    def __init__(self, config: InfluxConfig, fallback: Timeseries | None = None) -> None:
        self.ql = InfluxQL(config)
        self.fallback = fallback
        self.fallbacks = 0

    def close(self) -> None:
        self.ql.close()

    def readings(self, meter_id: str, start: float, end: float) -> list[dict[str, Any]]:
        try:
            return self._readings(meter_id, start, end)
        except InfluxQueryError as exc:
            return self._fall_back(exc).readings(meter_id, start, end)

    def usage(self, meter_id: str, start: float, end: float, every_s: int, utc_offset_s: int) -> list[dict[str, Any]]:
        try:
            return self._usage(meter_id, start, end, every_s, utc_offset_s)
        except InfluxQueryError as exc:
            return self._fall_back(exc).usage(meter_id, start, end, every_s, utc_offset_s)

    def _fall_back(self, exc: InfluxQueryError) -> Timeseries:
        if self.fallback is None:
            raise exc
        log.warning("InfluxDB query failed, answering from the relational store: %s", exc)
        self.fallbacks += 1
        return self.fallback

    def _readings(self, meter_id: str, start: float, end: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        lower = f"time >= {to_ms(start)}ms"
        while True:  # page by time: 1.x caps rows per response
            series = self.ql.select(
                f'SELECT "total_l", "usage_l", "status" FROM "readings" WHERE "meter_id" = {quote(meter_id)} '
                f"AND {lower} AND time <= {to_ms(end)}ms ORDER BY time ASC LIMIT {self.ql.PAGE}"
            )
            rows = series[0] if series else []
            out.extend(
                {
                    "ts": r["time"] / MS,
                    "total_l": float(r["total_l"]),
                    "usage_l": _float(r["usage_l"]),
                    "status": r["status"],
                }
                for r in rows
                if r["total_l"] is not None
            )
            if len(rows) < self.ql.PAGE:
                return out
            lower = f"time > {rows[-1]['time']}ms"

    def _usage(self, meter_id: str, start: float, end: float, every_s: int, utc_offset_s: int) -> list[dict[str, Any]]:
        # InfluxQL buckets start at multiples of the interval since the epoch, shifted by the offset:
        # local midnight at UTC+8 is epoch-aligned minus 8 h.
        offset = (-utc_offset_s) % every_s
        series = self.ql.select(
            f'SELECT sum("usage_l") AS usage_l, count("total_l") AS readings FROM "readings" '
            f'WHERE "meter_id" = {quote(meter_id)} AND time >= {to_ms(start)}ms AND time <= {to_ms(end)}ms '
            f"GROUP BY time({every_s}s, {offset}s) fill(none)"
        )
        rows = series[0] if series else []
        return [
            {"start": r["time"] / MS, "usage_l": float(r["usage_l"] or 0.0), "readings": int(r["readings"])}
            for r in rows
            if r["readings"]
        ]
