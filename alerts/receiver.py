"""A reference receiver for alert webhooks: what the grid platform does on its side.

It verifies the HMAC signature (refusing replays older than 5 minutes), drops
duplicate event ids, and keeps what it received. The demo uses it to stand in
for the platform; tests use it as a real HTTP peer on loopback, and as the
SMS gateway (whose bodies are ``{to, text}``, keyed by ``Idempotency-Key``).

During a secret rotation the platform accepts the current *and* the previous
secret (``secret=[new, old]``): whichever one the sender signs with, nothing
is refused (docs/deploy.md, "Rotating the webhook secret").

:class:`RobotReceiver` stands in for a WeCom or DingTalk group robot: it checks
the documented message format (and DingTalk's signature) and answers with
their ``{"errcode", "errmsg"}`` JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from alerts.events import SIGNATURE_HEADER, verify


def verify_any(secrets: Sequence[bytes], body: bytes, header: str, now: float) -> bool:
    """True if ``header`` is a fresh, valid signature under any of ``secrets`` (current and previous).

    >>> from alerts.events import sign
    >>> h = sign(b"old", b"{}", 1_000)
    >>> verify_any([b"new", b"old"], b"{}", h, now=1_010), verify_any([b"new"], b"{}", h, now=1_010)
    (True, False)
    """
    return any(verify(secret, body, header, now) for secret in secrets)


#: What a test's ``respond`` scripts: ``(status, headers)``, or ``(status, headers, body)``.
Answer = tuple[int, dict[str, str]] | tuple[int, dict[str, str], bytes]


class WebhookReceiver:
    """``start()`` serves on 127.0.0.1 (a free port unless given); ``events`` holds unique events in arrival order.

    ``respond`` lets a test script failures: it gets the event and returns
    ``(status, headers)``, or ``(status, headers, body)`` for an answer with a body; anything but 2xx means the
    event was not taken. A POST to any other path than :attr:`url`'s is answered 404, as a real server answers
    a wrong URL.
    """

    def __init__(
        self,
        secret: bytes | Sequence[bytes] | None = None,
        port: int = 0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        respond: Callable[[dict[str, Any]], Answer] | None = None,
    ) -> None:
        # One secret, or several while a rotation is under way (current first).
        self.secrets: list[bytes] | None = (
            None if secret is None else [secret] if isinstance(secret, bytes) else list(secret)
        )
        self.on_event = on_event
        self.respond = respond
        self.events: list[dict[str, Any]] = []
        self.deliveries = 0  # every accepted POST, duplicates included
        self.bad_signatures = 0
        self.incomplete = 0  # requests cut off before their body was complete (a sender killed mid-send)
        self.arrivals: list[str] = []  # ids of every accepted POST in order, duplicates included
        self.first_seen: dict[str, float] = {}  # id -> wall time of its first accepted arrival
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/events"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per sender thread, as platforms allow
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = _content_length(self)
                if length is None:
                    return
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing to verify, nobody to answer
                    with receiver._lock:
                        receiver.incomplete += 1
                    self.close_connection = True
                    return
                headers: dict[str, str] = {}
                if urlsplit(self.path).path != urlsplit(receiver.url).path:
                    status, answer = 404, b"<html><body>404 Not Found</body></html>"
                else:
                    status, headers, answer = receiver.take(
                        body, self.headers.get(SIGNATURE_HEADER, ""), self.headers.get("Idempotency-Key", "")
                    )
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up (timeout) or died: it will send again under the same id

            def log_message(self, *_args: Any) -> None:  # keep test and demo output clean
                pass

        return Handler

    def take(self, body: bytes, signature: str, idempotency_key: str = "") -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of the answer to one POST to :attr:`url`."""
        if self.secrets is not None and not verify_any(self.secrets, body, signature, time.time()):
            with self._lock:
                self.bad_signatures += 1
            return 401, {}, b""
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, {}, b""
        if self.respond is not None:
            status, headers, *answer = self.respond(event)
            if not 200 <= status < 300:
                return status, headers, answer[0] if answer else b""
        key = str(event.get("id") or idempotency_key)
        with self._lock:
            self.deliveries += 1
            self.arrivals.append(key)
            fresh = key not in self._seen
            if fresh:
                self._seen.add(key)
                self.first_seen[key] = time.time()
                self.events.append(event)
        if fresh and self.on_event is not None:
            self.on_event(event)
        return 204, {}, b""

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


#: DingTalk refuses a signed request whose timestamp is more than an hour off its clock.
DINGTALK_MAX_SKEW_MS = 3600 * 1000


class RobotReceiver:
    """A stand-in WeCom (``kind="wecom"``) or DingTalk (``kind="dingtalk"``) group robot on 127.0.0.1.

    Checks what the real robots check: the key in the URL (WeCom ``key``, DingTalk
    ``access_token``), a JSON body of a known ``msgtype`` with its required fields,
    and for DingTalk with a ``secret`` the ``timestamp``/``sign`` pair. It answers
    HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``, or the robots' own error
    codes (300001 bad token, 310000 sign mismatch or, with a ``keyword`` set (DingTalk's 自定义关键词), a
    message without it, 93000 bad key, 40008 bad message). ``errcodes`` scripts answers: each request takes
    the next code (e.g. ``[45009]`` for one rate limit) until the list is empty. ``messages``
    holds the accepted bodies; ``refused`` counts the rest.
    """

    def __init__(self, kind: str, key: str = "test-key", secret: str | None = None, keyword: str | None = None) -> None:
        if kind not in ("wecom", "dingtalk"):
            raise ValueError(f"unknown robot kind {kind!r}")
        self.kind = kind
        self.key = key
        self.secret = secret
        self.keyword = keyword
        self.errcodes: list[int] = []
        self.messages: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if self.kind == "wecom":
            return f"http://{host!s}:{port}/cgi-bin/webhook/send?key={self.key}"
        return f"http://{host!s}:{port}/robot/send?access_token={self.key}"

    def check(self, path_and_query: str, body: bytes, now_ms: int) -> tuple[int, str]:
        """``(errcode, errmsg)`` for one request, as the real robot would judge it."""
        parts = urlsplit(path_and_query)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        key_name = "key" if self.kind == "wecom" else "access_token"
        if not hmac.compare_digest(query.get(key_name, ""), self.key):
            return (93000, "invalid webhook url") if self.kind == "wecom" else (300001, "token is not exist")
        if self.kind == "dingtalk" and self.secret is not None and not self._signed(query, now_ms):
            return 310000, "sign not match"
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 40008, "invalid message type"
        if not _well_formed(self.kind, message):
            return 40008, "invalid message type"
        if self.keyword is not None and self.keyword not in body.decode():
            return 310000, "keywords not in content"
        return 0, "ok"

    def _signed(self, query: dict[str, str], now_ms: int) -> bool:
        assert self.secret is not None
        try:
            timestamp = int(query["timestamp"])
            given = base64.b64decode(query["sign"], validate=True)  # parse_qs already undid the urlencoding
        except (KeyError, ValueError):
            return False
        if abs(now_ms - timestamp) > DINGTALK_MAX_SKEW_MS:
            return False
        expected = hmac.new(self.secret.encode(), f"{timestamp}\n{self.secret}".encode(), hashlib.sha256).digest()
        return hmac.compare_digest(expected, given)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = _content_length(self)
                if length is None:
                    return
                body = self.rfile.read(length)
                code, message = receiver.check(self.path, body, int(time.time() * 1000))
                with receiver._lock:
                    if code == 0 and receiver.errcodes:
                        code, message = receiver.errcodes.pop(0), "scripted failure"
                    if code == 0:
                        receiver.messages.append(orjson.loads(body))
                    else:
                        receiver.refused.append((code, message))
                answer = orjson.dumps({"errcode": code, "errmsg": message})
                self.send_response(200)  # the robots answer 200 and put the verdict in errcode
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler

    def start(self) -> RobotReceiver:
        threading.Thread(target=self._server.serve_forever, name=f"{self.kind}-robot", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _content_length(handler: BaseHTTPRequestHandler) -> int | None:
    """The request's body length; None once a length that is no count of bytes has been answered 400.

    ``int("abc")`` raised in the handler (no answer, a traceback) and ``-1`` read until the sender hung up.
    """
    try:
        length = int(handler.headers.get("Content-Length", 0))
    except ValueError:
        length = -1
    if length >= 0:
        return length
    handler.send_response(400)
    handler.send_header("Content-Length", "0")
    handler.end_headers()
    handler.close_connection = True
    return None


def _well_formed(kind: str, message: Any) -> bool:
    """The documented shapes: ``text.content``; WeCom ``markdown.content``; DingTalk ``markdown.title`` + ``.text``.

    >>> _well_formed("wecom", {"msgtype": "markdown", "markdown": {"content": "x"}})
    True
    >>> _well_formed("dingtalk", {"msgtype": "markdown", "markdown": {"content": "x"}})
    False
    """
    if not isinstance(message, dict):
        return False
    msgtype = message.get("msgtype")
    part = message.get(msgtype) if isinstance(msgtype, str) else None
    if not isinstance(part, dict):
        return False
    if msgtype == "text":
        return _nonempty(part, "content")
    if msgtype == "markdown" and kind == "wecom":
        return _nonempty(part, "content") and len(part["content"].encode()) <= 4096
    if msgtype == "markdown":
        return _nonempty(part, "title") and _nonempty(part, "text")
    return False


def _nonempty(part: dict[str, Any], field: str) -> bool:
    return isinstance(part.get(field), str) and bool(part[field].strip())


class _QuietServer(ThreadingHTTPServer):
    """A sender that dies or hangs up mid-connection is normal here (it sends again): no traceback for it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
