"""A purged elder's time series leave InfluxDB: every bucket (retention policy) the deployment writes or fills.

The purge (``store.retention``, ``elder.purge``) runs in a store transaction and InfluxDB may be down then; the
writer thread deletes her series once InfluxDB answers. InfluxDB 1.x is the real 1.6 of the fixtures, with the
retention policies and aggregates of docs/influx.md; 2.x is a recording HTTP receiver on 127.0.0.1, as no 2.x
server runs here.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, insert, select

from alerts.manager import AlertManager
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.registry import retire_elder
from store.retention import DAY_S, RetentionPolicy, purge
from store.schema import influx_deletions, influx_spool
from tests.conftest import wait_until
from tests.helpers import message, register
from tests.influx_fixtures import (
    MISSING,
    RECENT_MIDNIGHT,
    InfluxServer,
    documented_statements,
    influx_config,
    influx_server,  # noqa: F401  (the fixture: influx)
    influx_writer,
    run_cq_once,
)
from timeseries.influx import InfluxConfig
from timeseries.influxql import InfluxQL, quote
from timeseries.spool import InfluxStager, InfluxUnavailable, InfluxWriter

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

T0 = RECENT_MIDNIGHT  # a local midnight about six weeks back


def _two_elders_in_influx(engine: Engine, influx: InfluxServer) -> None:
    """E1 (to be purged) and E2, two days of readings each, a dead letter from each meter, hourly and daily
    aggregates as the documented continuous queries make them."""
    for statement in documented_statements():
        influx.command(statement)
    pipeline = Pipeline(engine, AlertManager(), late_window_s=60 * DAY_S, clock=time.time, stagers=[InfluxStager()])
    for elder_id, meter_id in (("E1", "M1"), ("E2", "M2")):
        register(engine, elder_id, meter_id)
        pipeline.process([RawMessage("test", message(meter_id, [(T0 + k * 1800, 10.0 + k) for k in range(96)]))])
        pipeline.process([RawMessage("test", b"not json", meter_id)])  # a dead letter naming her meter
    writer = influx_writer(engine, influx, status_every_s=0)
    try:
        assert writer.drain(30)
    finally:
        writer.close()
    for statement in documented_statements()[3:]:
        run_cq_once(influx, statement, T0 - DAY_S, T0 + 3 * DAY_S)


def _points(ql: InfluxQL, elder_id: str, meter_id: str) -> dict[str, int]:
    """How many of her points each place holds."""
    db = ql.config.db
    out = {}
    for policy in ("raw", "hourly", "daily"):
        series = ql.select(
            f'SELECT count("total_l") FROM "{db}"."{policy}"."readings" WHERE "elder_id" = \'{elder_id}\''
        )
        out[policy] = int(series[0][0]["count"]) if series else 0
    letters = ql.select(f'SELECT count("row_id") FROM "dead_letters" WHERE "meter_id" = {quote(meter_id)}')
    out["dead_letters"] = int(letters[0][0]["count"]) if letters else 0
    return out


def _pass(writer: InfluxWriter) -> bool:
    """One writer pass; InfluxDB may still be starting."""
    with contextlib.suppress(InfluxUnavailable):
        writer.run_once()
    return True


def test_a_purged_elders_series_leave_every_retention_policy_once_influxdb_is_back(
    engine: Engine, influx: InfluxServer
) -> None:
    _two_elders_in_influx(engine, influx)
    ql = InfluxQL(influx_config(influx))
    writer = influx_writer(engine, influx, status_every_s=0, mirror=False)  # the deletions alone
    try:
        before = _points(ql, "E1", "M1")
        assert before["raw"] == 96 and before["hourly"] > 0 and before["daily"] > 0 and before["dead_letters"] == 1
        kept = _points(ql, "E2", "M2")
        assert kept == {"raw": 96, "hourly": before["hourly"], "daily": before["daily"], "dead_letters": 1}
        with engine.begin() as conn:
            retire_elder(conn, "E1", time.time())
        influx.kill()  # down during the purge and the writer's next pass
        assert purge(engine, RetentionPolicy(personal_days=90), time.time() + 91 * DAY_S).elders == 1
        writer.run_once()  # the deletion fails: retried on its own backoff, the spool's passes go on
        with engine.connect() as conn:  # still to do, in the store
            assert conn.execute(select(influx_deletions.c.elder_id)).scalars().all() == ["E1"]
        influx.start_influxd()
        gone = {"raw": 0, "hourly": 0, "daily": 0, "dead_letters": 0}
        assert wait_until(lambda: _pass(writer) and _points(ql, "E1", "M1") == gone, 30), _points(ql, "E1", "M1")
        assert _points(ql, "E2", "M2") == kept
        with engine.connect() as conn:
            assert conn.execute(select(influx_deletions)).first() is None
    finally:
        writer.close()
        ql.close()


class _Influx2(BaseHTTPRequestHandler):
    """InfluxDB 2.x as far as the writer's deletions go: /ping, /query (one dead letter of M1), /api/v2/*."""

    requests: list[dict[str, Any]]
    refused_bucket = ""  # deletions there are answered 403 (a token that may not write it)

    def log_message(self, *args: Any) -> None:
        pass

    def _record(self) -> dict[str, Any]:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = {
            "method": self.command,
            "path": url.path,
            "query": {k: v[0] for k, v in parse_qs(url.query).items()},
            "auth": self.headers.get("Authorization"),
            "json": json.loads(body) if url.path == "/api/v2/delete" else None,
        }
        self.requests.append(request)
        return request

    def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("X-Influxdb-Version", "v2.7.10")
        self.send_header("Content-Length", str(len(data)))
        if data:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        request = self._record()
        if request["path"] == "/query":
            row = [1_700_000_000_123, 42]  # ms; the row id fills the sub-millisecond digits
            letters = {"name": "dead_letters", "columns": ["time", "row_id"], "values": [row]}
            deleted = any(r["json"] and r["json"]["predicate"] == '_measurement="dead_letters"' for r in self.requests)
            hit = "M1" in request["query"].get("q", "") and not deleted
            self._answer(200, {"results": [{"statement_id": 0, **({"series": [letters]} if hit else {})}]})
        else:
            self._answer(204)

    def do_POST(self) -> None:
        request = self._record()
        if request["path"] == "/api/v2/delete" and request["query"].get("bucket") == self.refused_bucket:
            self._answer(403, {"code": "forbidden", "message": "insufficient permissions for delete"})
        else:
            self._answer(204)


@pytest.fixture
def influx2(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    refused = getattr(request, "param", "")
    handler = type("Recording", (_Influx2,), {"requests": requests, "refused_bucket": refused})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()
    server.server_close()


def test_on_influxdb_2_a_purged_elder_is_deleted_from_the_raw_hourly_and_daily_buckets(
    engine: Engine, influx2: tuple[str, list[dict[str, Any]]]
) -> None:
    """No InfluxDB 2.x runs here: the receiver records what the writer asks of ``/api/v2/delete``."""
    url, requests = influx2
    register(engine, "E1", "M1")
    with engine.begin() as conn:
        retire_elder(conn, "E1", time.time())
    purged_at = float(int(time.time() + 91 * DAY_S))  # a whole second
    assert purge(engine, RetentionPolicy(personal_days=90), purged_at).elders == 1
    writer = InfluxWriter(engine, InfluxConfig(url=url, token="tok", bucket="tapwatch"), mirror=False, status_every_s=0)
    try:
        writer.run_once()
        deletes = [r for r in requests if r["path"] == "/api/v2/delete"]
        assert {r["method"] for r in deletes} == {"POST"} and {r["auth"] for r in deletes} == {"Token tok"}
        by_elder = [r for r in deletes if r["json"]["predicate"] == 'elder_id="E1"']
        assert sorted(r["query"]["bucket"] for r in by_elder) == ["tapwatch", "tapwatch_daily", "tapwatch_hourly"]
        assert {r["query"]["org"] for r in deletes} == {"tapwatch"}
        purge_time = f"{datetime.fromtimestamp(purged_at, UTC):%Y-%m-%dT%H:%M:%S}.000000000Z"
        # what was written up to her purge (she may have consented again since)
        assert {(r["json"]["start"], r["json"]["stop"]) for r in by_elder} == {("1970-01-01T00:00:00Z", purge_time)}
        letters = [r for r in deletes if r["json"]["predicate"] == '_measurement="dead_letters"']
        exact = "2023-11-14T22:13:20.123000042Z"  # the dead letter's time to the nanosecond: that point only
        assert [(r["query"]["bucket"], r["json"]["start"], r["json"]["stop"]) for r in letters] == [
            ("tapwatch", exact, exact)
        ]
        with engine.connect() as conn:  # confirmed: off the queue
            assert conn.execute(select(influx_deletions)).first() is None
        asked = len(requests)
        writer.run_once()  # done: not asked again
        assert [r for r in requests[asked:] if r["path"] == "/api/v2/delete"] == []
    finally:
        writer.close()


@pytest.mark.parametrize("influx2", ["tapwatch_daily"], indirect=True)
def test_a_deletion_influxdb_keeps_refusing_does_not_hold_the_spool_back(
    engine: Engine, influx2: tuple[str, list[dict[str, Any]]]
) -> None:
    """A token that may not delete in the daily bucket: her deletion waits (queued, retried on its own backoff)
    while the spool is written at its pace, pass after pass. No InfluxDB 2.x runs here: a recording receiver."""
    url, requests = influx2
    register(engine, "E1", "M1")
    with engine.begin() as conn:
        retire_elder(conn, "E1", time.time())
    assert purge(engine, RetentionPolicy(personal_days=90), time.time() + 91 * DAY_S).elders == 1
    config = InfluxConfig(url=url, token="tok", bucket="tapwatch")
    writer = InfluxWriter(engine, config, mirror=False, status_every_s=0, backoff_s=(30.0, 60.0))
    try:
        for k in range(3):
            with engine.begin() as conn:
                conn.execute(insert(influx_spool).values(lines=f"readings,meter_id=M2 total_l={k}.0 {k}", created_at=0))
            writer.run_once()  # raises nothing: the refusal is the deletion's, not the spool's
            with engine.connect() as conn:
                assert conn.execute(select(influx_spool)).first() is None
        writes = [r for r in requests if r["path"] == "/api/v2/write"]
        refused = [r for r in requests if r["path"] == "/api/v2/delete" and r["query"]["bucket"] == "tapwatch_daily"]
        assert len(writes) == 3 and len(refused) == 1  # tried once, then left to its backoff
        with engine.connect() as conn:
            assert conn.execute(select(influx_deletions.c.elder_id)).scalars().all() == ["E1"]
    finally:
        writer.close()


def test_a_meter_with_more_dead_letters_than_influxdb_answers_at_once_loses_them_all(
    tmp_path: Path, engine: Engine
) -> None:
    """A meter sending garbage for weeks has thousands of dead letters, past InfluxDB 1.x's max-row-limit: asked for
    all at once, InfluxDB answers part of them (refused as an answer), so her deletion failed for good."""
    influx = InfluxServer(tmp_path / "influx", max_row_limit=10)
    influx.start()
    register(engine, "E1", "M1")
    register(engine, "E2", "M2")
    pipeline = Pipeline(engine, AlertManager())
    pipeline.process([RawMessage("test", f"garbage {k}".encode(), "M1") for k in range(12)])
    pipeline.process([RawMessage("test", b"garbage", "M2")])
    ql = InfluxQL(influx_config(influx))
    writer = influx_writer(engine, influx, status_every_s=0)
    writer.query.PAGE = 5  # below the server's max-row-limit, as the default 5000 is below 1.x's 10000
    try:
        assert writer.drain(20)
        count = 'SELECT count("row_id") FROM "dead_letters" WHERE "meter_id" = '
        assert ql.select(count + "'M1'")[0][0]["count"] == 12
        with engine.begin() as conn:
            retire_elder(conn, "E1", time.time())
        assert purge(engine, RetentionPolicy(personal_days=90), time.time() + 91 * DAY_S).elders == 1
        assert wait_until(lambda: _pass(writer) and not ql.select(count + "'M1'"), 20)
        assert ql.select(count + "'M2'")[0][0]["count"] == 1
    finally:
        writer.close()
        ql.close()
        influx.stop()


def _consent(engine: Engine, elder_id: str, given: bool, at: float) -> None:
    """Her consent withdrawn or given back, audited at ``at`` as ``PATCH /elders`` audits it."""
    from store import audit
    from store.registry import set_consent

    with engine.begin() as conn:
        set_consent(conn, elder_id, given)
        audit.record(
            conn, actor="op", action="elder.update", target=f"elder:{elder_id}", community="大宁社区",
            old={"consent": not given}, new={"consent": given}, at=at,
        )  # fmt: skip


def test_what_she_consented_to_after_her_purge_stays_when_the_deletion_comes_late(
    engine: Engine, influx: InfluxServer
) -> None:
    """The deletion is queued at her purge and made when InfluxDB answers and lets it (down, or a token that may
    not delete: retried for as long). She may consent again meanwhile and her meter report anew: the deletion took
    her whole series, what she consented to since as well. It takes what was written up to her purge."""
    for statement in documented_statements():
        influx.command(statement)
    withdrawn = T0 + 2 * DAY_S
    purged_at = withdrawn + 91 * DAY_S  # her data purged 90 days after her consent ended (a clock set ahead)
    before = Pipeline(engine, AlertManager(), late_window_s=60 * DAY_S, clock=time.time, stagers=[InfluxStager()])
    register(engine, "E1", "M1")
    before.process([RawMessage("test", message("M1", [(T0 + k * 1800, 10.0 + k) for k in range(48)]))])
    before.process([RawMessage("test", b"not json", "M1")])  # a dead letter naming her meter
    _consent(engine, "E1", False, withdrawn)
    assert purge(engine, RetentionPolicy(personal_days=90), purged_at).elders == 1
    _consent(engine, "E1", True, purged_at + 3600)
    since = purged_at + DAY_S
    after = Pipeline(engine, AlertManager(), late_window_s=DAY_S, clock=lambda: since + DAY_S, stagers=[InfluxStager()])
    after.process([RawMessage("test", message("M1", [(since + k * 1800, 500.0 + k) for k in range(24)]))])
    after.process([RawMessage("test", b"not json", "M1")])  # received after her purge too

    ql = InfluxQL(influx_config(influx))
    writer = influx_writer(engine, influx, status_every_s=0)  # the spool, then the deletion, in each pass
    try:
        assert wait_until(lambda: _pass(writer) and _queued(engine) == (0, 0), 30)
        series = ql.select('SELECT "total_l" FROM "readings" WHERE "elder_id" = \'E1\'')
        times = [row["time"] / 1000 for rows in series for row in rows]
        assert len(times) == 24 and min(times) >= since, (len(times), min(times, default=None))
        assert _points(ql, "E1", "M1")["dead_letters"] == 1  # the one received since
    finally:
        writer.close()
        ql.close()


def _queued(engine: Engine) -> tuple[int, int]:
    """Rows still to write and deletions still to make."""
    with engine.connect() as conn:
        spooled = len(conn.execute(select(influx_spool.c.id)).all())
        return spooled, len(conn.execute(select(influx_deletions.c.id)).all())
