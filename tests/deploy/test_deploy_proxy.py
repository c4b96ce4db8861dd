"""deploy/nginx/tapwatch.conf, run with Debian's nginx and TLS from a throwaway CA, in front of a real API.

The shipped file is used as it is, with only Docker's DNS server, the API's port, the ports nginx listens on and
the certificate directory rewritten to loopback and a temp dir; a small DNS server here answers for the service
name ``tapwatch`` as Docker's does in the compose network: HTTP redirects to HTTPS, the API and login answer
through it, live alerts stream through it, /metrics stays inside, oversized bodies stop at the proxy, and a
tapwatch container recreated at another address is found there.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from api.main import create_app
from core.settings import get_settings
from tests.api_fixtures import ELDER_A, ELDER_B, PASSWORD, USERS, add_elder, add_user, raise_alert
from tests.conftest import REPO, free_port, wait_until
from tests.helpers import certificates, first_event

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(
    NGINX is None or shutil.which("openssl") is None, reason="needs Debian's nginx and openssl"
)


class ServiceDns:
    """Docker's DNS server of the compose network, for one name: ``tapwatch`` is at ``address`` (A records only)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                query, client = self.sock.recvfrom(512)
            except OSError:  # closed
                return
            self.sock.sendto(self._answer(query), client)

    def _answer(self, query: bytes) -> bytes:
        end = 12
        labels = []
        while query[end]:
            labels.append(query[end + 1 : end + 1 + query[end]].decode("ascii").lower())
            end += 1 + query[end]
        qtype = struct.unpack("!H", query[end + 1 : end + 3])[0]
        question = query[12 : end + 5]
        known = labels == ["tapwatch"] and qtype == 1
        # a response to this id, recursion available; NXDOMAIN for any other name
        head = query[:2] + struct.pack("!HHHHH", 0x8180 if labels == ["tapwatch"] else 0x8183, 1, int(known), 0, 0)
        answer = b""
        if known:  # a pointer to the question's name, A, IN, a TTL of 1 s, four bytes of address
            answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(self.address)
        return head + question + answer

    def close(self) -> None:
        self.sock.close()


@dataclass
class Proxy:
    https: str
    http: str
    tls: ssl.SSLContext
    tokens: dict[str, str]
    dns: ServiceDns
    api_port: int
    engine: Engine
    root: Path
    servers: list[tuple[uvicorn.Server, threading.Thread]] = field(default_factory=list)


def _api(engine: Engine, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(
        uvicorn.Config(create_app(get_settings(sse_poll_s=0.1), engine), host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 10)
    return server, thread


def _stop(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(10)


#: The access log of the nginx image's own /etc/nginx/nginx.conf (its access.log is the container's stdout, which
#: ``docker compose logs`` keeps): the site's file is included after it, in its ``http`` block.
IMAGE_ACCESS_LOG = """
  log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                  '$status $body_bytes_sent "$http_referer" '
                  '"$http_user_agent" "$http_x_forwarded_for"';
  access_log {log} main;"""


def _nginx_config(root: Path, dns_port: int, api_port: int, http_port: int, https_port: int) -> Path:
    site = (REPO / "deploy" / "nginx" / "tapwatch.conf").read_text(encoding="utf-8")
    for old, new in (
        ("resolver 127.0.0.11 ", f"resolver 127.0.0.1:{dns_port} "),
        ("tapwatch:8000", f"tapwatch:{api_port}"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("/etc/nginx/certs", str(root / "certs")),
    ):
        assert old in site, f"deploy/nginx/tapwatch.conf no longer has {old!r}"
        site = site.replace(old, new)
    site = site.replace("/var/log/nginx/", f"{root}/")  # where the file logs to, if it names a log of its own
    (root / "site.conf").write_text(site, encoding="utf-8")
    temp = "\n".join(
        f"  {name}_temp_path {root}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = root / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\ndaemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log error;\n"
        + "events { worker_connections 256; }\n"
        + f"http {{\n{IMAGE_ACCESS_LOG.format(log=root / 'access.log')}\n{temp}\n  include {root}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    return main


@pytest.fixture
def proxy(tmp_path: Path, engine: Engine) -> Iterator[Proxy]:
    tokens = {name: add_user(engine, name, role, communities)[1] for name, (role, communities) in USERS.items()}
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    api_port, http_port, https_port = free_port(), free_port(), free_port()
    dns = ServiceDns("127.0.0.1")
    servers = [_api(engine, "127.0.0.1", api_port)]

    root = tmp_path / "nginx"
    (root / "certs").mkdir(parents=True)
    certificates(root / "certs")
    shutil.copy(root / "certs" / "server.crt", root / "certs" / "dashboard.crt")
    shutil.copy(root / "certs" / "server.key", root / "certs" / "dashboard.key")
    config = _nginx_config(root, dns.port, api_port, http_port, https_port)
    check = subprocess.run([str(NGINX), "-t", "-p", str(root), "-c", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen([str(NGINX), "-p", str(root), "-c", str(config)], stderr=subprocess.DEVNULL)
    tls = ssl.create_default_context(cafile=str(root / "certs" / "ca.crt"))
    https = f"https://127.0.0.1:{https_port}"

    def answering() -> bool:
        try:
            return httpx.get(f"{https}/healthz", verify=tls, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(answering, 10), (root / "error.log").read_text() if (root / "error.log").exists() else ""
        yield Proxy(https, f"http://127.0.0.1:{http_port}", tls, tokens, dns, api_port, engine, root, servers)
    finally:
        nginx.terminate()
        nginx.wait(10)
        for server in servers:
            _stop(*server)
        dns.close()


def test_plain_http_only_redirects_to_https(proxy: Proxy) -> None:
    response = httpx.get(f"{proxy.http}/elders?community=x", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"].startswith("https://") and response.headers["location"].endswith(
        "/elders?community=x"
    )


def test_login_and_api_answer_through_tls(proxy: Proxy) -> None:
    with httpx.Client(base_url=proxy.https, verify=proxy.tls, timeout=10) as client:
        login = client.post("/auth/token", data={"username": "cadre_a", "password": PASSWORD})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        elders = client.get("/elders", headers={"Authorization": f"Bearer {token}"})
        assert elders.status_code == 200
        assert [e["elder_id"] for e in elders.json()["data"]] == [ELDER_A["elder_id"]]
        assert "max-age" in elders.headers["strict-transport-security"]
        assert client.get("/metrics").status_code == 404, "the metrics are for Prometheus inside the stack"
        big = client.post("/elders", content=b"x" * (2 << 20), headers={"Authorization": f"Bearer {token}"})
        assert big.status_code == 413, "a 2 MiB body reached the API"


def test_live_alerts_stream_through_the_proxy(proxy: Proxy, engine: Engine) -> None:
    raised: list[str] = []
    with httpx.Client(verify=proxy.tls, timeout=10) as client:
        url = f"{proxy.https}/alerts/stream"
        with client.stream("GET", url, params={"access_token": proxy.tokens["cadre_a"]}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            raised.append(raise_alert(engine, ELDER_A["meter_id"]))
            event = first_event(response, 8)
    assert event["data"]["alert_id"] == raised[0]


def test_a_token_in_the_stream_url_is_not_written_to_the_access_log(proxy: Proxy, engine: Engine) -> None:
    """An EventSource client sends its token as ``?access_token=`` (docs/api.md); the API's own access log hides
    it (api.security.RedactTokens), but nginx logged the request line whole, token and all, to the container's
    stdout for anyone reading ``docker compose logs``: a token valid for hours, or an API key for a year."""
    token = proxy.tokens["cadre_a"]
    with httpx.Client(verify=proxy.tls, timeout=10) as client:
        url = f"{proxy.https}/alerts/stream"
        with client.stream("GET", url, params={"access_token": token}) as response:
            assert response.status_code == 200
        # the name percent-encoded, as the API reads it too
        assert client.get(f"{proxy.https}/healthz?access%5Ftoken={token}").status_code == 200

    logs = Path(proxy.root)

    def logged() -> str:
        return "".join(path.read_text(encoding="utf-8", errors="replace") for path in logs.glob("*access*.log"))

    assert wait_until(lambda: logged().count("/healthz") >= 1 and "/alerts/stream" in logged(), 20), logged()
    assert token not in logged()


def test_a_recreated_tapwatch_container_is_found_at_its_new_address(proxy: Proxy) -> None:
    """``docker compose up -d tapwatch`` (a changed .env, a new secret, an upgrade) recreates the container, and
    Docker gives it the network's next free address. nginx had looked ``tapwatch`` up once, at its start: every
    request went on to the old address (502, or a wait for the connect timeout) until nginx was restarted too."""
    old = proxy.servers.pop()
    proxy.servers.append(_api(proxy.engine, "127.0.0.2", proxy.api_port))
    proxy.dns.address = "127.0.0.2"
    _stop(*old)

    def answered_from_the_new_address() -> bool:
        try:
            return httpx.get(f"{proxy.https}/healthz", verify=proxy.tls, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(answered_from_the_new_address, 30), "nginx still sends requests to the old address"
