"""A real InfluxDB on loopback for tests and benchmarks: Debian's influxd 1.6 behind nginx.

InfluxDB 1.6 has no ``/api/v2/write``; nginx maps it to ``/write`` the way
InfluxDB 1.8's compatibility endpoint does (``bucket`` becomes ``db``), and
passes ``/query`` and ``/ping`` through. So the writer talks the 2.x protocol
and the reader InfluxQL, as in production. Both processes keep their data and
ports across :meth:`InfluxServer.kill` / :meth:`InfluxServer.start`.

Import the fixture into a test module with ``from tests.influx_fixtures import influx_server  # noqa: F401``;
it is named ``influx`` in test signatures.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from timeseries.influx import InfluxConfig
from timeseries.lines import to_ms
from timeseries.spool import InfluxWriter

REPO = Path(__file__).resolve().parents[1]
#: A local midnight (UTC+8) about six weeks back: recent enough for any retention policy the tests create.
RECENT_MIDNIGHT = (time.time() + 8 * 3600) // 86400 * 86400 - 8 * 3600 - 42 * 86400

INFLUXD = shutil.which("influxd")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
MISSING = (
    None
    if INFLUXD and NGINX
    else "influxd and nginx are needed for the InfluxDB tests (make test installs Debian's influxdb and nginx)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _influxd_config(root: Path, http_port: int, rpc_port: int, max_row_limit: int) -> str:
    return f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-row-limit = {max_row_limit}
[logging]
  level = "error"
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
"""


def _nginx_config(root: Path, port: int, influx_port: int, proxy_page_port: int) -> str:
    temp = "\n".join(
        f"  {name}_temp_path {root}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log error;
events {{ worker_connections 256; }}
http {{
  access_log off;
{temp}
  client_max_body_size 256m;
  # workers may not write into a root-owned 0700 temp dir: keep bodies in memory and stream them
  client_body_buffer_size 64m;
  proxy_request_buffering off;
  proxy_buffering off;
  upstream influx {{ server 127.0.0.1:{influx_port}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    # InfluxDB 1.8's /api/v2/write: the bucket is the database; the trailing "?" drops the original arguments
    location = /api/v2/write {{
      rewrite ^ /write?db=$arg_bucket&precision=$arg_precision? break;
      proxy_pass http://influx;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location = /query {{ proxy_pass http://influx; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location = /ping {{ proxy_pass http://influx; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
  # a proxy in the way that answers 200 with its own HTML page (a login portal, a maintenance notice)
  server {{
    listen 127.0.0.1:{proxy_page_port};
    location / {{ default_type text/html; return 200 "<html><body><h1>Please sign in</h1></body></html>"; }}
  }}
}}
"""


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


class InfluxServer:
    """influxd + nginx in ``root``; :attr:`url` is nginx (what tapwatch talks to)."""

    def __init__(self, root: Path, database: str = "tapwatch", max_row_limit: int = 10000) -> None:
        self.root = root
        self.database = database
        self.influx_port = free_port()
        self.rpc_port = free_port()
        self.port = free_port()
        self.proxy_page_port = free_port()
        for sub in ("influx", "nginx"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.influx_conf = root / "influx" / "influxdb.conf"
        self.influx_conf.write_text(_influxd_config(root / "influx", self.influx_port, self.rpc_port, max_row_limit))
        self.nginx_conf = root / "nginx" / "nginx.conf"
        self.nginx_conf.write_text(_nginx_config(root / "nginx", self.port, self.influx_port, self.proxy_page_port))
        self.influxd: subprocess.Popen[bytes] | None = None
        self.nginx: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proxy_page_url(self) -> str:
        """A misconfigured proxy in front of InfluxDB: every request gets ``200`` and an HTML page."""
        return f"http://127.0.0.1:{self.proxy_page_port}"

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.influx_port}"

    def start(self) -> None:
        if self.nginx is None:
            log = (self.root / "nginx" / "stderr.log").open("ab")
            self.nginx = subprocess.Popen(
                [str(NGINX), "-p", str(self.root / "nginx"), "-c", str(self.nginx_conf)], stderr=log, stdout=log
            )
        self.start_influxd()
        _wait(self._nginx_ok, 15, "nginx")
        self.command(f'CREATE DATABASE "{self.database}"')

    def start_influxd(self) -> None:
        log = (self.root / "influx" / "stderr.log").open("ab")
        self.influxd = subprocess.Popen([str(INFLUXD), "-config", str(self.influx_conf)], stderr=log, stdout=log)
        _wait(self._influx_ok, 30, "influxd")

    def _influx_ok(self) -> bool:
        if self.influxd is not None and self.influxd.poll() is not None:
            raise RuntimeError(f"influxd exited with {self.influxd.returncode}; see {self.root}/influx/stderr.log")
        try:
            return httpx.get(f"{self.direct_url}/ping", timeout=1).status_code == 204
        except httpx.HTTPError:
            return False

    def _nginx_ok(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=1).status_code == 204
        except httpx.HTTPError:
            return False

    def command(self, q: str) -> None:
        resp = httpx.post(f"{self.direct_url}/query", params={"q": q}, timeout=10)
        resp.raise_for_status()

    def kill(self) -> None:
        """SIGKILL influxd (a crash, not a shutdown); nginx stays and answers 502 meanwhile."""
        if self.influxd is not None and self.influxd.poll() is None:
            self.influxd.send_signal(signal.SIGKILL)
            self.influxd.wait(10)
        self.influxd = None

    def pause(self) -> None:
        """SIGSTOP influxd: connections are accepted by the kernel but never answered (a hung server)."""
        assert self.influxd is not None
        self.influxd.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.influxd is not None
        self.influxd.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.influxd is not None and self.influxd.poll() is None:
            self.influxd.send_signal(signal.SIGCONT)  # a paused process would not see SIGTERM
            self.influxd.terminate()
            try:
                self.influxd.wait(10)
            except subprocess.TimeoutExpired:
                self.influxd.kill()
                self.influxd.wait(5)
        self.influxd = None
        if self.nginx is not None and self.nginx.poll() is None:
            os.kill(self.nginx.pid, signal.SIGQUIT)  # graceful nginx stop
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait(5)
        self.nginx = None


@pytest.fixture(name="influx")
def influx_server(tmp_path: Path) -> Iterator[InfluxServer]:
    """A fresh InfluxDB (behind its nginx) for one test, stopped after it."""
    if MISSING:
        pytest.skip(MISSING)
    server = InfluxServer(tmp_path / "influx")
    server.start()
    yield server
    server.stop()


def influx_config(server: InfluxServer) -> InfluxConfig:
    """tapwatch's settings for ``server``'s database."""
    return InfluxConfig(url=server.url, bucket=server.database)


def influx_writer(engine: Engine, server: InfluxServer, **kw: Any) -> InfluxWriter:
    """A writer from ``engine``'s spool to ``server``, flushing and retrying quickly (test pace)."""
    kw.setdefault("flush_s", 0.05)
    kw.setdefault("backoff_s", (0.1, 0.5))
    return InfluxWriter(engine, influx_config(server), **kw)


def documented_statements() -> list[str]:
    """The retention policies and continuous queries docs/influx.md tells a 1.x deployment to create."""
    text = (REPO / "docs" / "influx.md").read_text(encoding="utf-8")
    block = text.split("<!-- influxql-retention", 1)[1].split("<!-- /influxql-retention -->", 1)[0]
    body = block.split("```sql", 1)[1].split("```", 1)[0]
    return [line.strip() for line in body.splitlines() if line.strip()]


def run_cq_once(server: InfluxServer, statement: str, start: float, end: float) -> None:
    """What a continuous query does on schedule, over one explicit time range."""
    select_into = re.search(r"BEGIN (SELECT .*) END$", statement)
    assert select_into, statement
    query = select_into.group(1).replace(
        " GROUP BY ", f" WHERE time >= {to_ms(start)}ms AND time < {to_ms(end)}ms GROUP BY ", 1
    )
    resp = httpx.post(f"{server.direct_url}/query", params={"db": server.database, "q": query}, timeout=30)
    assert resp.status_code == 200 and "error" not in resp.text, resp.text
