"""A reference receiver for alert webhooks: what the grid platform does on its side.

It verifies the HMAC signature (refusing replays older than 5 minutes), drops
duplicate event ids, and keeps what it received. The demo uses it to stand in
for the platform; tests use it as a real HTTP peer on loopback, and as the
SMS gateway (whose bodies are ``{to, text}``, keyed by ``Idempotency-Key``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from alerts.events import SIGNATURE_HEADER, verify


class WebhookReceiver:
    """``start()`` serves on 127.0.0.1 (a free port unless given); ``events`` holds unique events in arrival order.

    ``respond`` lets a test script failures: it gets the event and returns
    ``(status, headers)``; anything but 2xx means the event was not taken.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        port: int = 0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        respond: Callable[[dict[str, Any]], tuple[int, dict[str, str]]] | None = None,
    ) -> None:
        self.secret = secret
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
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing to verify, nobody to answer
                    with receiver._lock:
                        receiver.incomplete += 1
                    self.close_connection = True
                    return
                status, headers = receiver.take(
                    body, self.headers.get(SIGNATURE_HEADER, ""), self.headers.get("Idempotency-Key", "")
                )
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up (timeout) or died: it will send again under the same id

            def log_message(self, *_args: Any) -> None:  # keep test and demo output clean
                pass

        return Handler

    def take(self, body: bytes, signature: str, idempotency_key: str = "") -> tuple[int, dict[str, str]]:
        if self.secret is not None and not verify(self.secret, body, signature, time.time()):
            with self._lock:
                self.bad_signatures += 1
            return 401, {}
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, {}
        if self.respond is not None:
            status, headers = self.respond(event)
            if not 200 <= status < 300:
                return status, headers
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
        return 204, {}

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    """A sender that dies or hangs up mid-connection is normal here (it sends again): no traceback for it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
