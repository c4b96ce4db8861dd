"""InfluxDB backend against a real influxd (1.6, behind nginx mapping /api/v2/write) on loopback.

A month of 100 meters goes through the real pipeline, stager and writer while
influxd is SIGKILLed and restarted; InfluxDB must then hold exactly what SQLite
holds, and the API's history reader must answer the same from both.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine, func, insert, select

from alerts.manager import AlertManager
from core.domain import Finding
from engine.pipeline import Pipeline
from ingest.payload import RawMessage, parse_message
from store import open_store
from store.registry import meter_context
from store.schema import alert_events, alerts, dead_letters, influx_spool, readings
from tests.conftest import REPO, wait_until
from tests.helpers import message, register
from tests.influx_fixtures import (
    MISSING,
    RECENT_MIDNIGHT,
    InfluxServer,
    documented_statements,
    free_port,
    influx_config,
    influx_server,  # noqa: F401  (the fixture: influx)
    influx_writer,
    run_cq_once,
)
from timeseries.influx import InfluxConfig
from timeseries.influxql import InfluxQL, InfluxTimeseries
from timeseries.lines import line, to_ms
from timeseries.spool import InfluxStager, InfluxUnavailable, InfluxWriter
from timeseries.sql import SqlTimeseries

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

TZ = timezone(timedelta(hours=8))
T0 = RECENT_MIDNIGHT
DAYS = 30
METERS = 100


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(TZ).isoformat()


def month_of_messages(meters: int, days: int, seed: int = 8) -> list[RawMessage]:
    """Daily batches of half-hourly registers (as NB-IoT meters send them), in arrival order.

    With the faults of real data: one meter's register restarts, one meter misses
    a day, and one day's message is delivered twice.
    """
    rng = np.random.default_rng(seed)
    out: list[tuple[float, RawMessage]] = []
    for i in range(meters):
        use = rng.gamma(0.5, 6.0, size=days * 48).round(1)
        total = 1000.0 * i + np.cumsum(use)
        if i == 3:
            total[days * 24 :] -= total[days * 24] - 5.0  # meter replaced mid-month: the register restarts
        ts = T0 + 1800 * np.arange(1, days * 48 + 1)
        for day in range(days):
            if i == 7 and day == 10:
                continue  # a lost day
            sl = slice(day * 48, (day + 1) * 48)
            body = {
                "meter_id": f"M{i:03d}",
                "readings": [{"ts": _iso(t), "total_l": float(v)} for t, v in zip(ts[sl], total[sl], strict=True)],
                "battery_pct": float(90 - day),
                "rssi": -85.5,
            }
            arrival = float(ts[sl][-1]) + 60 + i
            raw = RawMessage("test", orjson.dumps(body), f"M{i:03d}", received_at=arrival)
            out.append((arrival, raw))
            if i == 11 and day == 5:
                out.append((arrival + 3600, RawMessage("test", raw.payload, raw.topic_meter_id, arrival + 3600)))
    out.sort(key=lambda pair: pair[0])
    return [raw for _, raw in out]


def _sql_totals(engine: Engine) -> dict[str, tuple[int, float, float]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(readings.c.meter_id, func.count(), func.sum(readings.c.total_l), func.sum(readings.c.usage_l))
            .group_by(readings.c.meter_id)
            .order_by(readings.c.meter_id)
        ).all()
    return {m: (n, float(t), float(u or 0.0)) for m, n, t, u in rows}


def _influx_totals(ql: InfluxQL) -> dict[str, tuple[int, float, float]]:
    out = {}
    for series in ql.select_tagged(
        'SELECT count("total_l"), sum("total_l"), sum("usage_l") FROM "readings" GROUP BY "meter_id"'
    ):
        (row,) = series[1]
        out[series[0]["meter_id"]] = (int(row["count"]), float(row["sum"]), float(row["sum_1"] or 0.0))
    return out


@pytest.mark.slow
def test_a_month_of_100_meters_survives_an_influxdb_crash(engine: Engine, influx: InfluxServer) -> None:
    for i in range(METERS):
        register(engine, f"E{i:03d}", f"M{i:03d}", community=f"大宁社区 {i % 5}", name=f"长者{i}")
    batches = month_of_messages(METERS, DAYS)
    now = [T0]
    pipeline = Pipeline(engine, AlertManager(), clock=lambda: now[0], stagers=[InfluxStager()])
    writer = influx_writer(engine, influx, status_every_s=0.5)
    thread = threading.Thread(target=writer.serve, daemon=True)
    thread.start()
    chunks = [batches[k : k + 100] for k in range(0, len(batches), 100)]
    try:
        for n, chunk in enumerate(chunks):
            now[0] = chunk[-1].received_at
            pipeline.process(chunk)
            if n == len(chunks) // 2:
                influx.kill()  # mid-stream crash: writes in flight fail, ingestion must go on
            if n == len(chunks) * 3 // 4:
                # The writer notices at its next write, which may still be to come when the pipeline gets here
                # (a quarter of the month goes through in well under a second on a fast machine): wait for it.
                assert wait_until(lambda: not writer.connected, 10), "the writer did not notice InfluxDB was down"
                pending, lag = writer.backlog()
                assert pending > 0 and lag > 0
                influx.start_influxd()
        assert wait_until(lambda: writer.pending == 0, 60), f"spool not drained: {writer.pending} rows left"
    finally:
        writer.stop()
        thread.join(10)
        writer.close()
    assert writer.connected

    sql = _sql_totals(engine)
    ql = InfluxQL(influx_config(influx))
    try:
        got = _influx_totals(ql)
    finally:
        ql.close()
    assert sum(n for n, _, _ in sql.values()) == METERS * DAYS * 48 - 48  # one lost day, the repeat dropped
    assert got.keys() == sql.keys()
    for meter, (n, total, usage) in sql.items():
        assert got[meter][0] == n, meter
        assert got[meter][1] == pytest.approx(total, rel=1e-12), meter
        assert got[meter][2] == pytest.approx(usage, rel=1e-12), meter

    _compare_history(engine, influx)
    _compare_api(engine, influx)


def _compare_history(engine: Engine, influx: InfluxServer) -> None:
    sql_ts, influx_ts = SqlTimeseries(engine), InfluxTimeseries(influx_config(influx))
    end = T0 + DAYS * 86400
    try:
        meters = [f"M{i:03d}" for i in range(METERS)]
        with ThreadPoolExecutor(4) as pool:  # the API reads from many threads too
            got_all = list(pool.map(lambda m: influx_ts.readings(m, T0, end), meters))
        for meter, got in zip(meters, got_all, strict=True):
            assert got == sql_ts.readings(meter, T0, end), meter
        for meter in ("M000", "M003", "M007", "M011", "M099"):
            for every in (3600, 86400):
                want = sql_ts.usage(meter, T0 - 86400, end, every, 8 * 3600)
                got = influx_ts.usage(meter, T0 - 86400, end, every, 8 * 3600)
                assert [(b["start"], b["readings"]) for b in got] == [(b["start"], b["readings"]) for b in want]
                assert [b["usage_l"] for b in got] == pytest.approx([b["usage_l"] for b in want], abs=1e-9)
        # a window that starts and ends inside local days
        want = sql_ts.usage("M005", T0 + 5 * 3600, T0 + 50 * 3600, 86400, 8 * 3600)
        got = influx_ts.usage("M005", T0 + 5 * 3600, T0 + 50 * 3600, 86400, 8 * 3600)
        assert [(b["start"], b["readings"]) for b in got] == [(b["start"], b["readings"]) for b in want]
        assert [b["readings"] for b in got] == [38, 48, 5]  # partial local days at both ends
        # pages counted and cut by InfluxDB (a page longer than one InfluxQL response too), as the SQL store does
        whole = sql_ts.readings("M003", T0, end)
        influx_ts.ql.PAGE = 500
        for offset, limit, newest_first in ((0, 10, False), (7, 1200, False), (3, 20, True), (len(whole) - 2, 9, True)):
            want_page = sql_ts.page("M003", T0, end, offset, limit, newest_first)
            assert influx_ts.page("M003", T0, end, offset, limit, newest_first) == want_page
            assert want_page == ((whole[::-1] if newest_first else whole)[offset : offset + limit], len(whole))
        assert influx_ts.fallbacks == 0
    finally:
        influx_ts.close()


def _compare_api(engine: Engine, influx: InfluxServer) -> None:
    """The API's history routes answer the same from InfluxDB as from SQLite."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from core.settings import get_settings
    from tests.api_fixtures import add_user

    _, token = add_user(engine, "admin-influx", "admin", [])
    headers = {"Authorization": f"Bearer {token}"}
    history = InfluxTimeseries(influx_config(influx))
    settings = get_settings()
    start, end = _iso(T0), _iso(T0 + DAYS * 86400)
    try:
        with (
            TestClient(create_app(settings, engine, timeseries=history)) as from_influx,
            TestClient(create_app(settings, engine, timeseries=SqlTimeseries(engine))) as from_sql,
        ):
            for path, params in (
                ("/meters/M003/usage", {"start": start, "end": end, "every": "day"}),
                ("/meters/M011/usage", {"start": start, "end": _iso(T0 + 3 * 86400), "every": "hour"}),
                ("/meters/M007/readings", {"start": start, "end": end, "limit": 10_000}),
            ):
                want = from_sql.get(path, params=params, headers=headers)
                assert want.status_code == 200, want.text
                got = from_influx.get(path, params=params, headers=headers)
                assert got.json() == want.json(), path
                assert want.json()["count"] > 0
    finally:
        history.close()


def test_service_keeps_ingesting_and_reports_the_lag_while_influxdb_is_down(
    mosquitto: Any, influx: InfluxServer, tmp_path: Path, db_url: str
) -> None:
    from core.settings import get_settings
    from tapwatch.service import Service

    settings = get_settings(
        data_dir=tmp_path,
        database_url=db_url,
        mqtt_url=mosquitto.url,
        mqtt_client_id="t-influx",
        influx_url=influx.url,
        influx_bucket=influx.database,
        influx_flush_s=0.05,
    )
    service = Service(settings)
    assert isinstance(service.timeseries, InfluxTimeseries)
    assert service.influx_writer is not None
    service.influx_writer.backoff_s = (0.1, 0.5)
    register(service.engine, "E1", "M1")
    base = time.time() // 1800 * 1800 - 48 * 1800
    service.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-influx")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()

    def send(first: int, last: int) -> None:
        for k in range(first, last):
            info = pub.publish("tapwatch/meters/M1/readings", message("M1", [(base + k * 1800, 100.0 + k)]), qos=1)
            info.wait_for_publish(5)

    try:
        assert wait_until(service.consumer.connected.is_set, 10)
        send(0, 10)
        assert wait_until(lambda: service.readiness()["influx"]["pending"] == 0 and _count(service.engine) == 10, 15)
        assert service.readiness()["influx"]["connected"] is True

        influx.kill()
        send(10, 20)
        assert wait_until(lambda: _count(service.engine) == 20, 15), "ingestion stopped while InfluxDB was down"
        assert wait_until(lambda: service.readiness()["influx"]["connected"] is False, 10)
        ready = service.readiness()
        assert ready["ready"] is True
        assert ready["influx"]["pending"] > 0 and ready["influx"]["lag_s"] >= 0
        # the API's history stays available from the relational store meanwhile
        assert len(service.timeseries.readings("M1", base, base + 20 * 1800)) == 20
        assert service.timeseries.fallbacks > 0
        metrics = service.metrics.registry.get_sample_value("tapwatch_influx_pending")
        assert metrics is not None and metrics > 0

        influx.start_influxd()
        assert wait_until(lambda: service.readiness()["influx"]["pending"] == 0, 30)
        assert service.readiness()["influx"]["connected"] is True
        history = InfluxTimeseries(influx_config(influx))
        try:
            got = history.readings("M1", base, base + 20 * 1800)
        finally:
            history.close()
        assert [r["total_l"] for r in got] == [100.0 + k for k in range(20)]
    finally:
        pub.loop_stop()
        pub.disconnect()
        service.stop()


def test_a_hung_influxdb_delays_points_but_never_ingestion(engine: Engine, influx: InfluxServer) -> None:
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager(), stagers=[InfluxStager()])
    base = time.time() // 1800 * 1800 - 40 * 1800
    config = InfluxConfig(url=influx.url, bucket=influx.database, timeout_s=1.0)
    writer = InfluxWriter(engine, config, flush_s=0.05, backoff_s=(0.1, 0.3), status_every_s=0)
    thread = threading.Thread(target=writer.serve, daemon=True)
    thread.start()
    influx.pause()
    try:
        for k in range(20):
            started = time.monotonic()
            pipeline.process([RawMessage("test", message("M1", [(base + k * 1800, 50.0 + k)]))])
            assert time.monotonic() - started < 2, "a hung InfluxDB held up the readings transaction"
        assert wait_until(lambda: writer.last_error is not None and not writer.connected, 10)
        assert writer.pending > 0
    finally:
        influx.resume()
    try:
        assert wait_until(lambda: writer.pending == 0, 30)
    finally:
        writer.stop()
        thread.join(10)
        writer.close()
    history = InfluxTimeseries(influx_config(influx))
    try:
        assert [r["total_l"] for r in history.readings("M1", base, base + 20 * 1800)] == [50.0 + k for k in range(20)]
    finally:
        history.close()


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(readings)).scalar_one())


def test_points_influxdb_refuses_become_dead_letters_and_the_rest_is_written(
    engine: Engine, influx: InfluxServer
) -> None:
    good = [line("readings", {"meter_id": "M1"}, {"total_l": float(k)}, to_ms(T0 + k)) for k in range(5)]
    bad = line("readings", {"meter_id": "M1"}, {"total_l": "not a number"}, to_ms(T0 + 99))
    with engine.begin() as conn:
        for point in [*good[:2], bad, *good[2:]]:
            conn.execute(insert(influx_spool).values(lines=point, created_at=time.time()))
    writer = influx_writer(engine, influx, mirror=False, status_every_s=0)
    try:
        assert writer.drain(20)
    finally:
        writer.close()
    assert writer.rejected_rows == 1
    with engine.connect() as conn:
        parked = conn.execute(select(dead_letters.c.source, dead_letters.c.payload)).all()
    assert parked == [("influx-spool", bad)]
    ql = InfluxQL(influx_config(influx))
    try:
        assert ql.select('SELECT count("total_l") FROM "readings"')[0][0]["count"] == 5
    finally:
        ql.close()


def _connections_to(port: int) -> int:
    """Established TCP connections to ``port`` on loopback: a writer's HTTP client opens one for its first write."""
    count = 0
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


@contextmanager
def _second_pass_while_the_first_waits(
    influx: InfluxServer, first: InfluxWriter, second: InfluxWriter
) -> Iterator[threading.Thread]:
    """InfluxDB paused: the first writer's request hangs, then the second writer makes its pass (or hangs too).

    Yields the second pass's thread; on the way out InfluxDB resumes and both passes end.
    """
    influx.pause()
    threads = [threading.Thread(target=writer.run_once, daemon=True) for writer in (first, second)]
    try:
        threads[0].start()
        assert wait_until(lambda: _connections_to(influx.port) == 1, 10)
        threads[1].start()
        assert wait_until(lambda: _connections_to(influx.port) == 2 or not threads[1].is_alive(), 10)
        yield threads[1]
    finally:
        influx.resume()
        for thread in threads:
            thread.join(30)


def test_two_workers_draining_one_spool_write_each_row_once(any_engine: Engine, influx: InfluxServer) -> None:
    """Every worker runs a writer on the one spool: a backlog is not sent N times, nor a refused row parked twice."""
    good = [line("readings", {"meter_id": "M1"}, {"total_l": float(k)}, to_ms(T0 + k)) for k in range(4)]
    bad = line("readings", {"meter_id": "M1"}, {"total_l": "not a number"}, to_ms(T0 + 99))
    with any_engine.begin() as conn:
        for point in [*good[:2], bad, *good[2:]]:
            conn.execute(insert(influx_spool).values(lines=point, created_at=time.time()))
    config = InfluxConfig(url=influx.url, bucket=influx.database, timeout_s=60.0)
    first, second = (
        InfluxWriter(any_engine, config, mirror=False, status_every_s=0, backoff_s=(0.1, 0.5)) for _ in range(2)
    )
    # A slow InfluxDB (the backlog case): the first writer's request hangs while the second one looks at the spool.
    with _second_pass_while_the_first_waits(influx, first, second):
        pass
    try:
        assert first.drain(20) and second.drain(20)
    finally:
        first.close()
        second.close()
    with any_engine.connect() as conn:
        parked = conn.execute(select(dead_letters.c.source, dead_letters.c.payload)).all()
    assert parked == [("influx-spool", bad)], "one refused row became two dead letters"
    assert first.rejected_rows + second.rejected_rows == 1
    if any_engine.dialect.name == "postgresql":  # the multi-worker store: each row is claimed by one writer
        assert first.points_written + second.points_written == len(good), "the backlog went to InfluxDB twice"
    ql = InfluxQL(influx_config(influx))
    try:
        assert ql.select('SELECT count("total_l") FROM "readings"')[0][0]["count"] == len(good)
    finally:
        ql.close()


def test_a_point_spooled_twice_keeps_its_later_value_when_workers_share_the_spool(
    postgres_server: Any, influx: InfluxServer
) -> None:
    """A held reading is spooled when it comes and again once settled: the settled point must land last."""
    engine = open_store(postgres_server.new_database())
    held = line("readings", {"meter_id": "M1"}, {"total_l": 10.0, "status": "held"}, to_ms(T0))
    settled = line("readings", {"meter_id": "M1"}, {"total_l": 10.0, "status": "glitch"}, to_ms(T0))
    with engine.begin() as conn:
        for point in (held, settled):
            conn.execute(insert(influx_spool).values(lines=point, created_at=time.time()))
    config = InfluxConfig(url=influx.url, bucket=influx.database, timeout_s=60.0)
    first, second = (InfluxWriter(engine, config, batch_size=1, mirror=False, status_every_s=0) for _ in range(2))
    with _second_pass_while_the_first_waits(influx, first, second) as second_pass:
        # had the second writer sent the later row now, InfluxDB could apply it before the earlier one
        assert not second_pass.is_alive(), "a second writer sent rows behind a chunk still on its way"
    try:
        assert first.drain(20) and second.drain(20)
    finally:
        first.close()
        second.close()
        engine.dispose()
    ql = InfluxQL(influx_config(influx))
    try:
        assert [r["status"] for r in ql.select('SELECT "status" FROM "readings"')[0]] == ["glitch"]
    finally:
        ql.close()


def test_connected_means_influxdb_answered_not_that_a_pass_had_nothing_to_write(
    engine: Engine, influx: InfluxServer
) -> None:
    def spool(point: str) -> None:
        with engine.begin() as conn:
            conn.execute(insert(influx_spool).values(lines=point, created_at=time.time()))

    influx.kill()
    writer = influx_writer(engine, influx, mirror=False, status_every_s=0)
    try:
        assert writer.run_once() is False  # an empty spool: InfluxDB was asked nothing
        assert writer.connected is False, "/readyz said connected to an InfluxDB that is down"
        spool(line("readings", {"meter_id": "M1"}, {"total_l": 1.0}, to_ms(T0)))
        with pytest.raises(InfluxUnavailable):
            writer.run_once()
        assert writer.connected is False

        influx.start_influxd()
        assert wait_until(lambda: writer.drain(1), 30)
        assert writer.connected is True and writer.pending == 0
        # a refusal is an answer too: InfluxDB is up, the row is parked, not retried
        spool(line("readings", {"meter_id": "M1"}, {"total_l": "not a number"}, to_ms(T0 + 1)))
        writer.connected = False
        assert writer.run_once() is True
        assert writer.connected is True and writer.rejected_rows == 1
    finally:
        writer.close()


def test_readyz_names_the_influxdb_error_not_its_text(
    engine: Engine, influx: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    """/readyz is public: the writer's error there is its kind; hosts, ports, buckets and bodies are in the log."""
    point = line("readings", {"meter_id": "M1"}, {"total_l": 1.0}, to_ms(T0))
    with engine.begin() as conn:
        conn.execute(insert(influx_spool).values(lines=point, created_at=T0))
    unreachable = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", bucket="district7_elders", timeout_s=2.0)
    no_bucket = InfluxConfig(url=influx.url, bucket="district7_elders")
    for config, kind in ((unreachable, "NewConnectionError"), (no_bucket, "HTTP 404")):
        writer = InfluxWriter(engine, config, mirror=False, status_every_s=0, backoff_s=(0.05, 0.1))
        thread = threading.Thread(target=writer.serve, daemon=True)
        thread.start()
        try:
            assert wait_until(lambda w=writer: w.last_error is not None, 10)
        finally:
            writer.stop()
            thread.join(10)
            writer.close()
        status = writer.status()
        assert status["connected"] is False
        assert status["error"] == kind, f"/readyz shows {status['error']!r}"
        assert writer.last_error is not None and writer.last_error in caplog.text  # the whole text, for operators


def test_points_beyond_the_retention_policy_are_not_retried_forever(engine: Engine, influx: InfluxServer) -> None:
    influx.command(f'CREATE RETENTION POLICY "short" ON "{influx.database}" DURATION 1h REPLICATION 1 DEFAULT')
    old = line("readings", {"meter_id": "M1"}, {"total_l": 1.0}, int((time.time() - 86400) * 1000))
    with engine.begin() as conn:
        conn.execute(insert(influx_spool).values(lines=old, created_at=time.time()))
    writer = influx_writer(engine, influx, mirror=False, status_every_s=0)
    try:
        assert writer.drain(10)
    finally:
        writer.close()
    assert writer.rejected_rows == 0 and writer.pending == 0


def test_alert_events_and_dead_letters_are_mirrored_once(engine: Engine, influx: InfluxServer) -> None:
    register(engine, "E1", "M1")
    manager = AlertManager()
    with engine.begin() as conn:
        context = meter_context(conn, "M1")
        assert context is not None
        finding = Finding("M1", "no_activity", "high", T0, "十二小时没有用水", "No water for 12 h", score=3.5)
        assert manager.apply(conn, context, finding, T0 + 1)
    pipeline = Pipeline(engine, manager)
    pipeline.process([RawMessage("test", b"not json", "M1"), RawMessage("test", message("NOPE", [(T0, 1.0)]))])

    writer = influx_writer(engine, influx, status_every_s=0)
    try:
        assert writer.drain(20)
    finally:
        writer.close()
    ql = InfluxQL(influx_config(influx))

    def counts() -> tuple[int, int]:
        events = ql.select('SELECT count("row_id") FROM "alert_events"')
        letters = ql.select('SELECT count("row_id") FROM "dead_letters"')
        return int(events[0][0]["count"]), int(letters[0][0]["count"])

    try:
        with engine.connect() as conn:
            n_events = conn.execute(select(func.count()).select_from(alert_events)).scalar_one()
            n_letters = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
        assert n_events >= 1 and n_letters == 2
        assert counts() == (n_events, n_letters)
        raised = ql.select('SELECT "message_en", "kind" FROM "alert_events" WHERE "type" = \'raised\'')
        assert raised[0][0]["message_en"] == "No water for 12 h"

        # a restarted writer reads its cursor back from InfluxDB: nothing twice, new rows once
        pipeline.process([RawMessage("test", b"[]", "M1")])
        again = influx_writer(engine, influx, status_every_s=0)
        try:
            assert again.drain(20)
        finally:
            again.close()
        assert counts() == (n_events, n_letters + 1)
    finally:
        ql.close()


def test_a_dead_letter_committed_after_more_than_the_look_back_of_later_ones_is_mirrored(
    any_engine: Engine, influx: InfluxServer
) -> None:
    """On PostgreSQL an id is taken at insert and seen at commit: a worker's transaction that took id 1 and
    committed after another worker's burst of 150 dead letters (an unknown-meter flood) had its row left behind
    the mirror's look-back of 100 ids, and it never reached InfluxDB."""
    writer = influx_writer(any_engine, influx, status_every_s=0)

    def letter(k: int) -> dict[str, Any]:
        return {"received_at": time.time(), "source": "test", "meter_id": f"X{k}", "reason": "unknown", "payload": ""}

    try:
        with any_engine.connect() as slow:
            slow_tx = slow.begin()
            slow.execute(insert(dead_letters).values(letter(0)))  # takes the first id, not committed yet
            if any_engine.dialect.name == "sqlite":
                slow_tx.commit()  # SQLite serialises writers: ids are committed in order there
            with any_engine.begin() as conn:
                conn.execute(insert(dead_letters), [letter(k) for k in range(1, 151)])
            assert writer.drain(20)
            if slow_tx.is_active:
                slow_tx.commit()
                influx.kill()  # and the pass that finds it late cannot write it: the next one must
                with pytest.raises(InfluxUnavailable):
                    writer.run_once()
                influx.start_influxd()
        assert writer.drain(20)
    finally:
        writer.close()
    with any_engine.connect() as conn:
        stored = set(conn.execute(select(dead_letters.c.id)).scalars())
    ql = InfluxQL(influx_config(influx))
    try:
        mirrored = {int(row["row_id"]) for rows in ql.select('SELECT "row_id" FROM "dead_letters"') for row in rows}
    finally:
        ql.close()
    assert len(stored) == 151
    assert stored - mirrored == set(), "a dead letter committed late was never mirrored"


def test_dead_letters_after_retention_emptied_their_table_are_mirrored(
    any_engine: Engine, influx: InfluxServer
) -> None:
    """SQLite numbers a table's rows from its largest id: once retention had deleted every dead letter, the next
    ones took ids the mirror had passed long ago (its cursor, read back from InfluxDB at every start, too), and
    no dead letter reached InfluxDB until the old count was passed: the dashboards showed no bad payloads."""
    from store.retention import RetentionPolicy, purge

    def letters(at: float, n: int) -> None:
        row = {"received_at": at, "source": "test", "meter_id": "X", "reason": "unknown meter", "payload": ""}
        with any_engine.begin() as conn:
            conn.execute(insert(dead_letters), [row] * n)

    def mirrored() -> int:
        ql = InfluxQL(influx_config(influx))
        try:
            series = ql.select('SELECT count("row_id") FROM "dead_letters"')
        finally:
            ql.close()
        return int(series[0][0]["count"]) if series else 0

    letters(time.time() - 100 * 86400, 150)  # a burst at installation (more than the look-back), long past retention
    for restart in (False, True):
        writer = influx_writer(any_engine, influx, status_every_s=0)
        try:
            if not restart:
                assert writer.drain(20) and mirrored() == 150
                assert purge(any_engine, RetentionPolicy(dead_letter_days=90), time.time()).dead_letters == 150
                letters(time.time(), 1)
            else:
                letters(time.time(), 1)
            assert writer.drain(20)
        finally:
            writer.close()
    assert mirrored() == 152


def test_dead_letters_of_a_store_restored_from_an_older_backup_are_mirrored(
    any_engine: Engine, influx: InfluxServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A store restored from last night's backup numbers its next rows after the backup's, ids InfluxDB holds
    already for the rows the restore took back; the writer's cursor, read from InfluxDB at start, is past them,
    so the store's new dead letters were not mirrored until its ids had passed the lost day's."""
    row = {"received_at": time.time(), "source": "test", "meter_id": "X", "reason": "unknown meter", "payload": ""}
    with any_engine.begin() as conn:
        conn.execute(insert(dead_letters), [row] * 150)  # the day after the backup, lost with the restore
    writer = influx_writer(any_engine, influx, status_every_s=0)
    try:
        assert writer.drain(20)
    finally:
        writer.close()
    if any_engine.dialect.name == "sqlite":  # the store as the backup holds it: before that day
        restored = open_store(f"sqlite:///{tmp_path / 'restored.db'}")
    else:
        restored = open_store(request.getfixturevalue("postgres_server").new_database())
    try:
        with restored.begin() as conn:
            conn.execute(insert(dead_letters), [{**row, "received_at": time.time()}] * 3)
        writer = influx_writer(restored, influx, status_every_s=0)  # the monitor started on the restored store
        try:
            assert writer.drain(20)
        finally:
            writer.close()
    finally:
        restored.dispose()
    ql = InfluxQL(influx_config(influx))
    try:
        assert ql.select('SELECT count("row_id") FROM "dead_letters"')[0][0]["count"] == 153
    finally:
        ql.close()


def test_a_restarted_writer_does_not_mirror_an_event_again_under_its_alerts_new_severity(
    engine: Engine, influx: InfluxServer
) -> None:
    """The mirror's look-back must not re-send what InfluxDB holds: the alert's tags may have changed since."""
    register(engine, "E1", "M1")
    manager = AlertManager()
    with engine.begin() as conn:
        context = meter_context(conn, "M1")
        assert context is not None
        assert manager.apply(conn, context, Finding("M1", "low_usage", "medium", T0, "用水偏少", "Low use"), T0 + 1)
    writer = influx_writer(engine, influx, status_every_s=0)
    try:
        assert writer.drain(20)
    finally:
        writer.close()
    with engine.begin() as conn:  # a second finding joins the case and raises its severity
        finding = Finding("M1", "no_activity", "high", T0 + 60, "十二小时没有用水", "No water for 12 h")
        assert manager.apply(conn, context, finding, T0 + 61)
        assert conn.execute(select(alerts.c.severity)).scalar_one() == "high"
        n_events = conn.execute(select(func.count()).select_from(alert_events)).scalar_one()
    again = influx_writer(engine, influx, status_every_s=0)  # a restart: a deploy, a new worker
    try:
        assert again.drain(20)
    finally:
        again.close()
    ql = InfluxQL(influx_config(influx))
    try:
        raised = ql.select_tagged('SELECT "row_id" FROM "alert_events" WHERE "type" = \'raised\' GROUP BY "severity"')
        assert [(tags["severity"], len(rows)) for tags, rows in raised] == [("medium", 1)]
        assert ql.select('SELECT count("row_id") FROM "alert_events"')[0][0]["count"] == n_events
    finally:
        ql.close()


def test_two_workers_mirror_an_alert_event_once_though_its_alert_changed_between_their_passes(
    engine: Engine, influx: InfluxServer
) -> None:
    """Every worker's writer mirrors the events table: the second must not copy again what the first sent."""
    register(engine, "E1", "M1")
    manager = AlertManager()
    first, second = (influx_writer(engine, influx, status_every_s=0) for _ in range(2))
    try:
        for writer in (first, second):
            writer.run_once()  # both running: each has read its cursor from InfluxDB
        with engine.begin() as conn:
            context = meter_context(conn, "M1")
            assert context is not None
            assert manager.apply(conn, context, Finding("M1", "low_usage", "medium", T0, "用水偏少", "Low use"), T0 + 1)
        first.run_once()
        with engine.begin() as conn:  # before the second worker's pass, a second finding raises the severity
            finding = Finding("M1", "no_activity", "high", T0 + 60, "十二小时没有用水", "No water for 12 h")
            assert manager.apply(conn, context, finding, T0 + 61)
            n_events = conn.execute(select(func.count()).select_from(alert_events)).scalar_one()
        second.run_once()
        first.run_once()
    finally:
        first.close()
        second.close()
    ql = InfluxQL(influx_config(influx))
    try:
        raised = ql.select_tagged('SELECT "row_id" FROM "alert_events" WHERE "type" = \'raised\' GROUP BY "severity"')
        assert [(tags["severity"], len(rows)) for tags, rows in raised] == [("medium", 1)]
        assert ql.select('SELECT count("row_id") FROM "alert_events"')[0][0]["count"] == n_events
    finally:
        ql.close()


def test_tags_and_strings_round_trip_exactly(engine: Engine, influx: InfluxServer) -> None:
    community = '大宁 社区,3=A "x" \\'
    register(engine, "E1", "M1", community=community)
    pipeline = Pipeline(engine, AlertManager(), stagers=[InfluxStager()])
    base = time.time() // 1800 * 1800 - 3 * 1800
    pipeline.process([RawMessage("test", message("M1", [(base, 1.0), (base + 1800, 2.5)], battery_pct=55))])
    writer = influx_writer(engine, influx, mirror=False, status_every_s=0)
    ql = InfluxQL(influx_config(influx))
    try:
        assert writer.drain(10)
        tags = ql.select('SHOW TAG VALUES FROM "readings" WITH KEY = "community"')
        assert [r["value"] for r in tags[0]] == [community.replace("\\", "/")]  # backslashes cannot be tags
        rows = ql.select('SELECT "battery_pct", "usage_l", "status" FROM "readings" ORDER BY time')[0]
        assert [(r["battery_pct"], r["usage_l"], r["status"]) for r in rows] == [(55, None, "first"), (55, 1.5, "ok")]
    finally:
        writer.close()
        ql.close()


def test_documented_retention_policies_and_continuous_queries_downsample_correctly(
    engine: Engine, influx: InfluxServer
) -> None:
    statements = documented_statements()
    for statement in statements:
        influx.command(statement)
    for i in range(3):
        register(engine, f"E{i}", f"M{i:03d}")
    pipeline = Pipeline(engine, AlertManager(), clock=time.time, stagers=[InfluxStager()])
    messages = month_of_messages(3, 6)
    for k in range(0, len(messages), 50):
        pipeline.process(messages[k : k + 50])
    writer = influx_writer(engine, influx, mirror=False, status_every_s=0)
    try:
        assert writer.drain(30)
    finally:
        writer.close()
    end = T0 + 7 * 86400
    cqs = [s for s in statements if s.startswith("CREATE CONTINUOUS QUERY")]
    assert len(cqs) == 2
    for cq in cqs:  # hourly first: the daily one reads the hourly policy
        run_cq_once(influx, cq, T0 - 86400, end)

    sql_ts = SqlTimeseries(engine)
    ql = InfluxQL(influx_config(influx))
    try:
        for policy, every in (("hourly", 3600), ("daily", 86400)):
            for meter in ("M000", "M001"):
                rows = ql.select(
                    f'SELECT "usage_l", "readings" FROM "{influx.database}"."{policy}"."readings" '
                    f"WHERE \"meter_id\" = '{meter}'"
                )[0]
                want = sql_ts.usage(meter, T0 - 86400, end, every, 8 * 3600)
                assert [(r["time"] / 1000, r["readings"]) for r in rows] == [(b["start"], b["readings"]) for b in want]
                assert [r["usage_l"] or 0.0 for r in rows] == pytest.approx([b["usage_l"] for b in want])
    finally:
        ql.close()


def _grafana_queries() -> list[str]:
    dash = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "tapwatch.json").read_text(encoding="utf-8"))
    queries = [t["query"] for p in dash["panels"] for t in p["targets"]]
    queries += [a["query"] for a in dash["annotations"]["list"]]
    queries += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    constants = {f"${v['name']}": v["query"] for v in dash["templating"]["list"] if v["type"] == "constant"}
    # Grafana's interval for ten years on a panel is about a day; 1h would be 87600 buckets, past InfluxDB's
    # max-row-limit, and a partial answer is an error ($__interval_ms before $__interval, which begins it)
    macros = {
        "$timeFilter": "time > now() - 3650d",
        "$__interval_ms": str(86_400_000),
        "$__interval": "1d",
        "$community": ".*",
        "$elder": ".*",
        **constants,
    }
    out = []
    for query in queries:
        for macro, value in macros.items():
            query = query.replace(macro, value)
        out.append(query)
    return out


def test_every_dashboard_query_runs_and_finds_what_tapwatch_writes(engine: Engine, influx: InfluxServer) -> None:
    register(engine, "E1", "M1", community="大宁社区")
    manager = AlertManager()
    stager = InfluxStager()
    base = time.time() // 1800 * 1800 - 10 * 1800
    pipeline = Pipeline(engine, manager, stagers=[stager])
    pipeline.process([RawMessage("test", message("M1", [(base + k * 1800, 10.0 + k) for k in range(10)]))])
    pipeline.process([RawMessage("test", b"{}", "M1")])  # a dead letter
    finding = Finding("M1", "no_activity", "high", base, "十二小时没有用水", "No water for 12 h", score=2.0)
    with engine.begin() as conn:
        context = meter_context(conn, "M1")
        assert context is not None
        assert manager.apply(conn, context, finding, time.time())
        stager.stage(conn, context, [], parse_message(message("M1", [(base, 10.0)])), [finding])
        resolved = Finding("M1", "no_activity", "low", base + 1800, "恢复用水", "Water use resumed", resolved=True)
        assert manager.apply(conn, context, resolved, time.time())
    writer = influx_writer(engine, influx, status_every_s=30)
    ql = InfluxQL(influx_config(influx))
    try:
        assert writer.drain(20)
        for query in _grafana_queries():
            assert ql.select(query), f"no data for the dashboard query: {query}"
    finally:
        writer.close()
        ql.close()


def _stored_readings(engine: Engine, influx: InfluxServer | None, n: int) -> float:
    """``n`` half-hourly readings of M1 through the pipeline (and into InfluxDB, given one); the first ts."""
    register(engine, "E1", "M1")
    base = time.time() // 1800 * 1800 - (n + 1) * 1800
    pipeline = Pipeline(engine, AlertManager(), stagers=[InfluxStager()] if influx is not None else [])
    pipeline.process([RawMessage("test", message("M1", [(base + k * 1800, 10.0 + k) for k in range(n)]))])
    if influx is not None:
        writer = influx_writer(engine, influx, mirror=False, status_every_s=0)
        try:
            assert writer.drain(20)
        finally:
            writer.close()
    return base


def test_a_proxy_page_instead_of_influxdb_is_answered_from_the_relational_store(
    engine: Engine, influx: InfluxServer
) -> None:
    """A 200 that is not InfluxDB's JSON (a proxy's HTML page) is a failed query, not a 500 for the API."""
    base = _stored_readings(engine, None, 6)
    sql = SqlTimeseries(engine)
    config = InfluxConfig(url=influx.proxy_page_url, bucket=influx.database)
    history = InfluxTimeseries(config, fallback=sql)
    try:
        assert history.readings("M1", base, base + 6 * 1800) == sql.readings("M1", base, base + 6 * 1800)
        assert history.usage("M1", base, base + 6 * 1800, 3600, 8 * 3600) == sql.usage(
            "M1", base, base + 6 * 1800, 3600, 8 * 3600
        )
        assert history.fallbacks == 2
    finally:
        history.close()


def test_a_history_cut_short_by_influxdbs_row_limit_is_answered_whole_from_the_relational_store(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past ``max-row-limit`` InfluxDB sends the first rows and ``partial``: the rest is not "no water used"."""
    influx = InfluxServer(tmp_path / "influx", max_row_limit=10)
    influx.start()
    try:
        base = _stored_readings(engine, influx, 30)
        sql = SqlTimeseries(engine)
        history = InfluxTimeseries(influx_config(influx), fallback=sql)
        try:
            got = history.readings("M1", base, base + 30 * 1800)
            assert len(got) == 30 and got == sql.readings("M1", base, base + 30 * 1800)
            hours = history.usage("M1", base, base + 30 * 1800, 3600, 8 * 3600)
            assert hours == sql.usage("M1", base, base + 30 * 1800, 3600, 8 * 3600) and len(hours) > 10
            assert history.fallbacks == 2
            assert "partial" in caplog.text  # the operator learns why history came from the relational store
        finally:
            history.close()
    finally:
        influx.stop()


def test_after_a_read_timed_out_history_skips_a_hung_influxdb_for_a_while_then_probes_once(
    engine: Engine, influx: InfluxServer
) -> None:
    """A hung InfluxDB must not hold every history request for the full timeout before the fallback answers."""
    base = _stored_readings(engine, influx, 6)
    sql = SqlTimeseries(engine)
    want = sql.readings("M1", base, base + 6 * 1800)
    now = [1000.0]
    config = InfluxConfig(url=influx.url, bucket=influx.database, timeout_s=1.0)
    history = InfluxTimeseries(config, fallback=sql, clock=lambda: now[0])
    sent: list[object] = []
    history.ql.http.event_hooks["request"].append(sent.append)  # what reached the wire, counted on the real client

    def read() -> list[dict[str, Any]]:
        return history.readings("M1", base, base + 6 * 1800)

    influx.pause()
    try:
        assert read() == want and history.fallbacks == 1 and len(sent) == 1  # waited for the timeout once
        assert read() == want and history.fallbacks == 2
        assert len(sent) == 1, "a second request waited on the InfluxDB that had just timed out"

        now[0] += 31  # the pause is over: one probe goes out, the others meanwhile answer from the fallback
        with ThreadPoolExecutor(1) as pool:
            probe = pool.submit(read)
            assert wait_until(lambda: len(sent) == 2, 10)
            assert read() == want and len(sent) == 2, "a second probe went out while the first one waited"
            assert probe.result(10) == want
    finally:
        influx.resume()
    now[0] += 31
    fallbacks = history.fallbacks
    try:
        assert read() == want and history.fallbacks == fallbacks  # InfluxDB answers again
        assert read() == want and history.fallbacks == fallbacks and len(sent) == 4
    finally:
        history.close()


def test_the_spool_backlog_for_readyz_and_metrics_does_not_read_a_big_spool_whole(postgres_server: Any) -> None:
    """/readyz and /metrics ask for the backlog at every call; a week of InfluxDB outage is millions of rows.

    The cost is read from PostgreSQL's plans of the statements backlog() runs, not
    from a clock (bench/bench_spool_backlog.py times it: 0.4 s at 3 million rows).
    """
    from sqlalchemy import event, text

    engine = open_store(postgres_server.new_database())
    writer = InfluxWriter(engine, InfluxConfig(url=f"http://127.0.0.1:{free_port()}"), mirror=False, status_every_s=0)
    try:
        with engine.begin() as conn:  # a small spool with a hole (a row settled out of order) is counted exactly
            for k in range(10):
                conn.execute(insert(influx_spool).values(lines=f"readings total_l={k} {k}", created_at=T0 + k))
            conn.execute(influx_spool.delete().where(influx_spool.c.lines == "readings total_l=3 3"))
        pending, lag = writer.backlog()
        assert pending == 9 and lag == pytest.approx(time.time() - T0, abs=60)

        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO influx_spool (lines, created_at) "
                    "SELECT 'readings,meter_id=M' || g || ' total_l=1 ' || g, :t0 + 100 + g "
                    "FROM generate_series(1, 200000) AS g"
                ),
                {"t0": T0},
            )
            conn.execute(text("ANALYZE influx_spool"))
        statements: list[tuple[str, Any]] = []

        def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
            statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", seen)
        try:
            pending, lag = writer.backlog()
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert 200_009 <= pending <= 200_010  # past EXACT_BACKLOG the span of ids: the hole may count
        assert lag == pytest.approx(time.time() - T0, abs=60)
        with engine.connect() as conn:
            for statement, parameters in statements:
                plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one()[0]["Plan"]
                assert plan["Total Cost"] < 100, (
                    f"backlog() reads the whole spool: {statement} costs {plan['Total Cost']}"
                )
    finally:
        writer.close()
        engine.dispose()
