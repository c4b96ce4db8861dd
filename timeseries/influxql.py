"""Reading history back from InfluxDB with InfluxQL over ``/query`` (InfluxDB 1.x, 2.x and 3.x all serve it).

:class:`InfluxTimeseries` answers the API's history queries (the
:class:`timeseries.sql.Timeseries` protocol) and falls back to the relational
store when InfluxDB cannot answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from alerts.breaker import CircuitBreaker
from timeseries.influx import InfluxConfig
from timeseries.lines import MS, to_ms
from timeseries.sql import SlotUse, Timeseries, slot_use_of

log = logging.getLogger(__name__)


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


class InfluxQueryError(Exception):
    pass


class InfluxTimeout(InfluxQueryError):
    """InfluxDB did not answer in time: hung, overloaded, or a host that drops packets."""


class InfluxSkipped(InfluxQueryError):
    """Not asked: a read timed out a moment ago (the circuit is open)."""


T = TypeVar("T")


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
        except httpx.TimeoutException as exc:
            raise InfluxTimeout(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise InfluxQueryError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            raise InfluxQueryError(f"HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            return self._series(resp.json())
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            # A 200 that is not InfluxDB's answer: a proxy's HTML page, a body cut off on the way
            raise InfluxQueryError(f"not an InfluxDB answer ({type(exc).__name__}): {resp.text[:300]}") from exc

    @staticmethod
    def _series(body: dict[str, Any]) -> list[tuple[dict[str, str], list[dict[str, Any]]]]:
        out = []
        for result in body.get("results", []):
            if "error" in result:
                raise InfluxQueryError(result["error"])
            for series in result.get("series", []):
                if series.get("partial") or result.get("partial"):
                    # past its max-row-limit InfluxDB sends the first rows and drops the rest: not the answer
                    raise InfluxQueryError("partial answer: more rows than InfluxDB's max-row-limit")
                cols = series["columns"]
                rows = [dict(zip(cols, values, strict=True)) for values in series["values"]]
                out.append((series.get("tags") or {}, rows))
        return out

    def command(self, query: str, *, in_database: bool = False) -> None:
        """A statement that changes something (CREATE DATABASE, retention policies, DELETE): POST.

        ``in_database``: the statement acts on the configured database (``DELETE`` names none itself).
        """
        params = {"q": query, **({"db": self.config.db} if in_database else {}), **self._auth}
        try:
            resp = self.http.post("/query", params=params)
            failed = resp.status_code >= 400 or any("error" in r for r in resp.json().get("results", []))
        except httpx.HTTPError as exc:
            raise InfluxQueryError(f"{type(exc).__name__}: {exc}") from exc
        except (ValueError, AttributeError, TypeError) as exc:  # not InfluxDB's answer: a proxy's page
            raise InfluxQueryError(f"not an InfluxDB answer: {resp.text[:300]}") from exc
        if failed:
            raise InfluxQueryError(f"HTTP {resp.status_code}: {resp.text[:300]}")


def quote(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxTimeseries:
    """The API's :class:`~timeseries.sql.Timeseries` from InfluxDB.

    With a ``fallback`` (the relational store, which keeps every reading too),
    history stays available while InfluxDB is down; ``fallbacks`` counts those answers.
    After a read timed out, reads skip InfluxDB for ``READ_COOLDOWN_S``, then
    one probe goes out at a time (:class:`~alerts.breaker.CircuitBreaker`).
    """

    READ_COOLDOWN_S = 30.0

    def __init__(
        self, config: InfluxConfig, fallback: Timeseries | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ql = InfluxQL(config)
        self.fallback = fallback
        self.fallbacks = 0
        # a hung InfluxDB would otherwise hold every history request for the whole timeout before the fallback
        self.breaker = CircuitBreaker(threshold=1, cooldown_s=self.READ_COOLDOWN_S, clock=clock)

    def close(self) -> None:
        self.ql.close()

    def readings(self, meter_id: str, start: float, end: float) -> list[dict[str, Any]]:
        try:
            return self._ask(lambda: self._readings(meter_id, start, end))
        except InfluxQueryError as exc:
            return self._fall_back(exc).readings(meter_id, start, end)

    def page(
        self, meter_id: str, start: float, end: float, offset: int, limit: int, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int]:
        try:
            return self._ask(lambda: self._page(meter_id, start, end, offset, limit, newest_first))
        except InfluxQueryError as exc:
            return self._fall_back(exc).page(meter_id, start, end, offset, limit, newest_first)

    def slot_use(self, meter_id: str, start: float, end: float, shift_s: int, max_interval_s: float) -> SlotUse:
        # InfluxQL has no pairing of a reading with the one before it: read whole, as the routine always was.
        return slot_use_of(self.readings(meter_id, start, end), shift_s, max_interval_s)

    def usage(self, meter_id: str, start: float, end: float, every_s: int, utc_offset_s: int) -> list[dict[str, Any]]:
        try:
            return self._ask(lambda: self._usage(meter_id, start, end, every_s, utc_offset_s))
        except InfluxQueryError as exc:
            return self._fall_back(exc).usage(meter_id, start, end, every_s, utc_offset_s)

    def _ask(self, read: Callable[[], T]) -> T:
        if not self.breaker.allow():
            raise InfluxSkipped("not asked: a recent read timed out (one probe at a time after the pause)")
        try:
            result = read()
        except InfluxTimeout:
            self.breaker.record(False)
            raise
        except BaseException:  # InfluxDB (or a proxy before it) answered in time, or a bug: not a hang
            self.breaker.release()
            raise
        self.breaker.record(True)
        return result

    def _fall_back(self, exc: InfluxQueryError) -> Timeseries:
        if self.fallback is None:
            raise exc
        # the timeout that opened the circuit was logged; the reads it skips meanwhile are not news
        level = logging.DEBUG if isinstance(exc, InfluxSkipped) else logging.WARNING
        log.log(level, "InfluxDB query failed, answering from the relational store: %s", exc)
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
            out.extend(self._reading(r) for r in rows if r["total_l"] is not None)
            if len(rows) < self.ql.PAGE:
                return out
            lower = f"time > {rows[-1]['time']}ms"

    def _page(
        self, meter_id: str, start: float, end: float, offset: int, limit: int, newest_first: bool
    ) -> tuple[list[dict[str, Any]], int]:
        # Counted and cut by InfluxDB, not read whole: a meter read every minute holds 134,000 readings in the
        # 93 days a request may span (docs/reliability.md).
        where = f'WHERE "meter_id" = {quote(meter_id)} AND time >= {to_ms(start)}ms AND time <= {to_ms(end)}ms'
        counted = self.ql.select(f'SELECT count("total_l") AS n FROM "readings" {where}')
        count = int(counted[0][0]["n"]) if counted and counted[0] else 0
        order = "DESC" if newest_first else "ASC"
        out: list[dict[str, Any]] = []
        while len(out) < limit and offset + len(out) < count:  # in pieces: 1.x caps rows per response
            size = min(self.ql.PAGE, limit - len(out))
            series = self.ql.select(
                f'SELECT "total_l", "usage_l", "status" FROM "readings" {where} '
                f"ORDER BY time {order} LIMIT {size} OFFSET {offset + len(out)}"
            )
            rows = series[0] if series else []
            out.extend(self._reading(r) for r in rows)
            if len(rows) < size:
                break
        return [r for r in out if r["total_l"] is not None], count

    @staticmethod
    def _reading(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "ts": row["time"] / MS,
            "total_l": _float(row["total_l"]),
            "usage_l": _float(row["usage_l"]),
            "status": row["status"],
        }

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
