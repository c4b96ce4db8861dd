"""Small builders shared by tests: messages, registrations, readings through the pipeline, a monitor process's
environment, store totals, the API's routes (which are public, which need a token)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import numpy as np
import orjson
import paho.mqtt.client as mqtt
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, create_engine, func, select, text
from starlette.routing import Mount

from alerts.manager import AlertManager
from core.domain import Finding, Interval
from detect import MeterMonitor
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store import alembic_config, open_store
from store.registry import register_elder
from store.schema import alerts, readings
from tests.conftest import REPO
from tests.processes import Mosquitto, free_port

SHANGHAI = timezone(timedelta(hours=8))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(SHANGHAI).isoformat()


def message(meter_id: str, readings: list[tuple[float, float]], **extra: Any) -> bytes:
    body = {
        "meter_id": meter_id,
        "readings": [{"ts": iso(ts), "total_l": total} for ts, total in readings],
        **extra,
    }
    return orjson.dumps(body)


def register(engine: Any, elder_id: str, meter_id: str, community: str = "大宁社区", name: str = "王秀兰") -> None:
    with engine.begin() as conn:
        register_elder(
            conn,
            {"elder_id": elder_id, "name": name, "community": community, "building": "3号楼", "room": "502"},
            meter_id,
            time.time(),
        )


HOUR = 3600.0


def ingest(engine: Engine, meter_id: str, readings: list[tuple[float, float]]) -> None:
    """Through the real pipeline, as if the meter had sent them."""
    pipeline = Pipeline(engine, AlertManager(), late_window_s=90 * 86400)
    for i in range(0, len(readings), 200):
        pipeline.process([RawMessage("test", message(meter_id, readings[i : i + 200]))])


def daily_pattern(days: int, end: float) -> list[tuple[float, float]]:
    """Half-hourly register: 20 L in the half hour after 07:00 Shanghai time every day, nothing else."""
    start = (end // 86400 - days) * 86400 - 8 * HOUR  # a local midnight
    out, total = [], 0.0
    for k in range((days + 2) * 48):  # past ``end`` whatever the hour: the cut below stops at ``end``
        ts = start + (k + 1) * 1800
        if (k % 48) == 14:
            total += 20.0
        out.append((ts, total))
    return [(ts, total) for ts, total in out if ts <= end]


def this_tree(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (by default this process's) for a subprocess that runs tapwatch code, with the tree under test
    first on its path: else it imports the tree the venv's editable install points to, from a git worktree not
    the one tested."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def monitor_env(tmp: Path, broker: Mosquitto, client_id: str, webhook: str) -> dict[str, str]:
    """The environment of a `tapwatch run` process on ``broker`` with its store under ``tmp``."""
    return {
        **this_tree(),
        "TAPWATCH_DATA_DIR": str(tmp),
        "TAPWATCH_DATABASE_URL": f"sqlite:///{tmp / 'crash.db'}",
        "TAPWATCH_MQTT_URL": broker.url,
        "TAPWATCH_MQTT_CLIENT_ID": client_id,
        "TAPWATCH_API_PORT": str(free_port()),
        "TAPWATCH_WEBHOOK_URL": webhook,
        "TAPWATCH_WEBHOOK_SECRET": "test-secret",
        "TAPWATCH_LATE_WINDOW_HOURS": str(24 * 365 * 5),  # the scenario is historical data
        "TAPWATCH_OFFLINE_CHECK_S": "100000",  # wall-clock silence checks would not be comparable
    }


class Worker:
    """A `tapwatch run` process with ``env``, its output appended to ``log``; killed and started again at will."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        handle = self.log.open("ab")
        command = [sys.executable, "-m", "tapwatch.cli", "run"]
        return subprocess.Popen(command, env=self.env, stdout=handle, stderr=handle)

    def subscribed(self) -> bool:
        """The worker's SUBACK is logged: the broker hands it its share from here on."""
        return "subscribed to" in self.log.read_text(errors="replace")

    def kill_and_restart(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        time.sleep(1.0)  # down for a moment: the broker queues its share meanwhile
        self.proc = self._start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


#: The revision :func:`migrate_as_a_newer_release` gives the store: one this release does not know.
NEWER_REVISION = "0020_newer"


def migrate_as_a_newer_release(engine: Engine, migrated: bool) -> None:
    """The store as a newer release's migration leaves it (``migrated``: a column this release writes renamed, the
    revision moved past this release's), or back as this release knows it (its backup restored)."""
    head = str(ScriptDirectory.from_config(alembic_config()).get_current_head())
    was, now, revision = ("rssi", "rssi_dbm", NEWER_REVISION) if migrated else ("rssi_dbm", "rssi", head)
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE meters RENAME COLUMN {was} TO {now}"))
        conn.execute(text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision})


def alert_set(url: str) -> set[tuple[str, str, float]]:
    """Every alert in the store at ``url`` as (elder, kind, data time)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(alerts.c.elder_id, alerts.c.kind, alerts.c.data_ts)).all()
    engine.dispose()
    return {(r.elder_id, r.kind, round(r.data_ts, 3)) for r in rows}


def total_usage(url: str) -> float:
    """The litres of every stored reading at ``url``."""
    engine = create_engine(url)
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(readings.c.usage_l))).scalar_one()
    engine.dispose()
    return float(total or 0.0)


def register_simulated(url: str, sim: Any) -> None:
    """Register every simulated elder (and meter) in the store at ``url``."""
    engine = open_store(url)
    with engine.begin() as conn:
        for elder in sim.elders:
            register_elder(conn, elder, elder["meter_id"], 0.0)
    engine.dispose()


#: Starting points for the atheris fuzzer (tests/fuzz_payload.py).
FUZZ_SEEDS = [
    b'{"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_l": 123456.0}], "battery_pct": 87}',
    b'{"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:30:00Z", "total_m3": 1.5}], "rssi": -95}',
]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def certificates(d: Path) -> None:
    """A test CA and a server certificate for 127.0.0.1 in ``d`` (ca.crt, server.crt, server.key)."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=tapwatch test CA",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    for name in ("ca.crt", "server.crt", "server.key"):
        (d / name).chmod(0o644)


def first_event(response: httpx.Response, deadline_s: float) -> dict[str, Any]:
    """The next server-sent event on ``response`` (event, id, data), within ``deadline_s``."""
    return next_event(response.iter_lines(), deadline_s)


def next_event(lines: Iterator[str], deadline_s: float = float("inf")) -> dict[str, Any]:
    """The next server-sent event in a stream's ``lines`` (event, id, data), within ``deadline_s``."""
    event: dict[str, Any] = {}
    deadline = time.monotonic() + deadline_s
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line.startswith("event: "):
            event["event"] = line[7:]
        elif line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])
        elif line == "" and "data" in event:
            return event
    raise AssertionError("no event arrived")


#: Public by declaration (api.main.DESCRIPTION and api.dashboard): health, metrics, login, the docs, the page.
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/auth/token"),
    ("GET", "/openapi.json"),
    ("HEAD", "/openapi.json"),
    ("GET", "/docs"),
    ("HEAD", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("HEAD", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("HEAD", "/redoc"),
    ("GET", "/"),  # the dashboard page: it holds no data, everything on it comes from the API with a token
    ("HEAD", "/"),
}
PUBLIC_MOUNTS = {"/static", "/docs-static"}  # the dashboard's scripts and styles; Swagger UI and ReDoc files


def every_route(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, included routers flattened as the OpenAPI generator sees them."""
    contexts: Any = getattr(fastapi.routing, "iter_route_contexts", lambda routes: routes)(app.routes)
    for route in contexts:
        original = getattr(route, "original_route", route)
        if isinstance(original, Mount):
            yield "MOUNT", original.path
            continue
        for method in sorted(route.methods or ()):
            yield method, route.path


def protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [r for r in every_route(app) if r not in PUBLIC_ROUTES and r[0] != "MOUNT"]


def unprotected_mounts(app: FastAPI) -> list[str]:
    return [path for method, path in every_route(app) if method == "MOUNT" and path not in PUBLIC_MOUNTS]


def flow_alerts(m: MeterMonitor, start: float, step: float, litres: list[float]) -> list[Finding]:
    """Feed ``m`` intervals of ``step`` seconds from ``start`` drawing ``litres``; the open flow findings."""
    found: list[Finding] = []
    for k, used in enumerate(litres):
        found += m.update(Interval(m.meter_id, start + k * step, start + (k + 1) * step, used, "ok", 0))
    return [f for f in found if f.kind == "continuous_flow" and not f.resolved]


def evening_meter(meter_id: str = "m1", days: int = 20) -> MeterMonitor:
    """A monitor that learned an elder who uses water in the evening only (40 L at 19:00 and 19:30), read every
    half hour for ``days`` days from time 0."""
    monitor = MeterMonitor(meter_id)
    day, slot = 86400, 1800
    for d in range(days):
        for k in range(48):
            t = d * day + k * slot
            monitor.update(Interval(meter_id, t, t + slot, 40.0 if k in (38, 39) else 0.0, "ok", 0))
    return monitor


def hours_with_visits(m: MeterMonitor, day: int, litres: list[float], outcome: str | None) -> list[Finding]:
    """Hourly readings of ``litres`` from local midnight of ``day`` (UTC offset 0); each open flow alert answered
    ``outcome`` an hour later, before the reading that ends then (as ``tapwatch eval`` applies visits; None: no
    visit). The open flow alerts raised."""
    day_s, hour_s = 86400.0, 3600.0
    raised: list[Finding] = []
    due: list[Finding] = []
    for k, used in enumerate(litres):
        end = day * day_s + (k + 1) * hour_s
        for f in [f for f in due if f.ts + hour_s <= end]:
            m.learn_outcome(f.kind, outcome or "", f.since, f.ts, 0, f.details["lpm"])
            due.remove(f)
        found = m.update(Interval(m.meter_id, end - hour_s, end, used, "ok", 0))
        found = [f for f in found if f.kind == "continuous_flow" and not f.resolved]
        raised += found
        if outcome is not None:
            due += found
    return raised


def longest_runs(m: MeterMonitor) -> np.ndarray:
    """The flow model's longest learned runs (h), one row per level, one column per local hour (a copy)."""
    levels = len(m.flow.levels)
    return np.frombuffer(m.flow._state, dtype=np.float32)[: 24 * levels].reshape(levels, 24).copy()


def checkpoint_from_before(m: MeterMonitor, group: dict[str, object]) -> tuple[object, ...]:
    """``m``'s state as a checkpoint written before ``group`` of its slots (and every group added since) existed.

    ``group`` is one of ``detect.monitor._ADDED_SLOTS`` (newest first), so a slot added later leaves these tests as
    they are.
    """
    from detect import monitor as monitor_module

    added = monitor_module._ADDED_SLOTS
    missing = {name for later in added[: added.index(group) + 1] for name in later}
    return tuple(v for n, v in zip(MeterMonitor.__slots__, m.__getstate__(), strict=True) if n not in missing)


def silence_then_misreading(routine: Sequence[int], start: float = 0.0) -> list[tuple[float, float]]:
    """(ts, total) from ``start`` (a local midnight): 35 days with 12 L in each half-hour slot of ``routine``, then a
    day without water whose 11:00 reading is 300 L too high (a misreading: the register goes back down after it)."""
    total, readings = 5000.0, []
    for k in range(36 * 48):
        total += 12.0 if k % 48 in routine and k < 35 * 48 else 0.0
        readings.append((start + k * 1800.0, total + 300.0 if k == 35 * 48 + 22 else total))
    return readings


def rows_passed_over(engine: Engine, table: str, statements: list[tuple[str, Any]]) -> list[str]:
    """The statements that read rows of ``table`` only to drop them: PostgreSQL's rows removed by a filter (run with
    EXPLAIN ANALYZE, a count, not a time), SQLite's search of an index on a range alone, its equalities left out."""

    def pg_removed(node: dict[str, Any]) -> int:
        here = node.get("Rows Removed by Filter", 0) if node.get("Relation Name") == table else 0
        return int(here) + sum(pg_removed(child) for child in node.get("Plans", []))

    out = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            if conn.dialect.name == "sqlite":
                plan = [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
                # A bare "SEARCH t" is the min()/max() of the rowid: one row read.
                mine = [
                    s for s in plan if s.startswith((f"SCAN {table}", f"SEARCH {table}")) and s != f"SEARCH {table}"
                ]
                if any("=?" not in step for step in mine):
                    out.append(f"{statement} {plan}")
            else:
                explained = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
                removed = pg_removed(explained.scalar_one()[0]["Plan"])
                if removed:
                    out.append(f"{statement} (passed over {removed} rows)")
    return out


@contextmanager
def mqtt_publisher(mosquitto: Mosquitto, client_id: str) -> Iterator[mqtt.Client]:
    """A connected MQTT 3.1.1 client of the test's broker (the meters' side), its network loop running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()
