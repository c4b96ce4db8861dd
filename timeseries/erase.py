"""Deleting a purged elder's series from InfluxDB, in every bucket tapwatch writes or the deployment fills.

The purge (:mod:`store.retention`) queues her in ``influx_deletions``; the
:class:`~timeseries.spool.InfluxWriter` thread calls :meth:`InfluxEraser.erase`
and drops the row once InfluxDB confirmed. Readings and findings carry her
``elder_id`` tag, and so do their hourly and daily aggregates (``GROUP BY *``);
dead letters name a meter in a field (no tags), so they are found by her meters
and deleted by their exact time. Alert events stay: they are the record of care,
kept in the store as well. Only what was written up to her purge goes: the deletion
may come long after it (InfluxDB down, a token that may not delete), and she may
have consented again meanwhile, her meter reporting anew.

InfluxDB 1.x deletes with InfluxQL ``DELETE`` on ``/query`` (every retention
policy of the database at once); 2.x and 3.x through ``/api/v2/delete``, one
bucket at a time. Which one answers is read from ``/ping``'s version header.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx

from timeseries.influx import InfluxConfig
from timeseries.influxql import InfluxQL, InfluxQueryError, quote
from timeseries.lines import row_point_ns

log = logging.getLogger(__name__)

#: The header every InfluxDB version sets on its answers ("1.6.7", "v2.7.10", "3.0.1").
VERSION_HEADER = "X-Influxdb-Version"
#: ``/api/v2/delete`` needs a range: from the first time InfluxDB holds; it ends at her purge.
EPOCH = "1970-01-01T00:00:00Z"
NS_PER_S = 1_000_000_000
#: Dead letters' DELETE statements per ``/query`` request (about 70 characters each, in the URL).
STATEMENTS_PER_REQUEST = 50


def major_version(version: object) -> int | None:
    """The major version in InfluxDB's version text; None when it names none.

    >>> [major_version(v) for v in ("1.6.7", "v2.7.10", "3.0.1", "", None, "OSS")]
    [1, 2, 3, None, None, None]
    """
    digits = str(version or "").strip().lstrip("vV").split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


def rfc3339_ns(ns: int) -> str:
    """An epoch time in ns as ``/api/v2/delete`` takes it, to the nanosecond.

    >>> rfc3339_ns(1_700_000_000_123_000_042)
    '2023-11-14T22:13:20.123000042Z'
    """
    seconds, fraction = divmod(ns, NS_PER_S)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def _predicate_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxEraser:
    """Deletes one elder's series; raises :class:`~timeseries.influxql.InfluxQueryError` until InfluxDB confirmed."""

    def __init__(self, config: InfluxConfig, query: InfluxQL) -> None:
        self.config = config
        self.query = query
        self.major: int | None = None  # read from /ping at the first deletion

    def erase(self, elder_id: str, meter_ids: Sequence[str], purged_at: float) -> None:
        """Her points of times up to ``purged_at`` (her purge): after it, only what she consented to again."""
        until_ns = int(purged_at * NS_PER_S)
        if self._major() == 1:
            self._erase_influxql(elder_id, meter_ids, until_ns)
        else:
            self._erase_v2(elder_id, meter_ids, until_ns)

    def _major(self) -> int:
        if self.major is None:
            try:
                resp = self.query.http.get("/ping")
            except httpx.HTTPError as exc:
                raise InfluxQueryError(f"{type(exc).__name__}: {exc}") from exc
            if resp.status_code >= 300:
                raise InfluxQueryError(f"/ping: HTTP {resp.status_code}: {resp.text[:300]}")
            # 2.x is the protocol tapwatch writes with (/api/v2/write): a server that names no version speaks it
            self.major = major_version(resp.headers.get(VERSION_HEADER)) or 2
        return self.major

    def _dead_letter_times(self, meter_ids: Sequence[str], until_ns: int) -> list[int]:
        """The times (ns) of up to a page of the dead letters naming her meters: the meter is a field, which no
        delete predicate can match. A page: past its max-row-limit InfluxDB answers part of them, refused."""
        if not meter_ids:
            return []
        named = " OR ".join(f'"meter_id" = {quote(meter_id)}' for meter_id in meter_ids)
        query = f'SELECT "row_id" FROM "dead_letters" WHERE ({named}) AND time <= {until_ns} LIMIT {self.query.PAGE}'
        series = self.query.select(query)
        return [row_point_ns(int(row["time"]), int(row["row_id"])) for rows in series for row in rows]

    def _erase_dead_letters(
        self, meter_ids: Sequence[str], until_ns: int, delete_points: Callable[[list[int]], None]
    ) -> None:
        """Page by page until none is left; a point found again after its deletion means it does not go."""
        deleted: set[int] = set()
        while times := self._dead_letter_times(meter_ids, until_ns):
            if deleted.intersection(times):
                raise InfluxQueryError("dead letters of her meters are still there after their deletion")
            delete_points(times)
            deleted.update(times)

    def _erase_influxql(self, elder_id: str, meter_ids: Sequence[str], until_ns: int) -> None:
        # one statement: every retention policy of the database (raw, hourly, daily) alike
        self.query.command(f'DELETE WHERE "elder_id" = {quote(elder_id)} AND time <= {until_ns}', in_database=True)
        self._erase_dead_letters(meter_ids, until_ns, self._delete_points_influxql)

    def _delete_points_influxql(self, times: list[int]) -> None:
        for k in range(0, len(times), STATEMENTS_PER_REQUEST):  # the statements travel in the URL
            statements = [
                f'DELETE FROM "dead_letters" WHERE time >= {ns} AND time <= {ns}'
                for ns in times[k : k + STATEMENTS_PER_REQUEST]
            ]
            self.query.command("; ".join(statements), in_database=True)

    def _erase_v2(self, elder_id: str, meter_ids: Sequence[str], until_ns: int) -> None:
        for bucket in self.config.buckets:
            self._delete_v2(bucket, f"elder_id={_predicate_string(elder_id)}", EPOCH, rfc3339_ns(until_ns))
        self._erase_dead_letters(meter_ids, until_ns, self._delete_points_v2)

    def _delete_points_v2(self, times: list[int]) -> None:
        for ns in times:  # one point each: start and stop are both inclusive
            self._delete_v2(self.config.bucket, '_measurement="dead_letters"', rfc3339_ns(ns), rfc3339_ns(ns))

    def _delete_v2(self, bucket: str, predicate: str, start: str, stop: str) -> None:
        headers = {"Authorization": f"Token {self.config.token}"} if self.config.token else {}
        try:
            resp = self.query.http.post(
                "/api/v2/delete",
                params={"org": self.config.org, "bucket": bucket},
                json={"start": start, "stop": stop, "predicate": predicate},
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise InfluxQueryError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code == 204:
            return
        if resp.status_code == 404 and "bucket" in resp.text.lower():
            log.info("InfluxDB has no bucket %r (no downsampling set up?): nothing to delete there", bucket)
            return
        raise InfluxQueryError(f"delete in {bucket}: HTTP {resp.status_code}: {resp.text[:300]}")
