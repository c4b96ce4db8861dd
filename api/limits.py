"""Request bodies are bounded before they are read: an ASGI middleware in front of every route.

* A ``Content-Length`` over ``max_body_bytes`` answers 413 at once, unread.
* A body without ``Content-Length`` (chunked) is counted as it streams in; the
  byte that crosses the limit ends it with 413.
* A body sent without credentials (no ``Authorization`` header, no
  ``access_token`` query) to any route but the login answers 401 unread: every
  route that takes a body needs a token, so there is nothing to read it for.

A URL whose path or query holds a NUL character answers 400 (:class:`RefuseNul`):
PostgreSQL cannot compare or store one, so it would fail as a 500 in any route.

Body refusals are ``application/problem+json`` like every other error and counted in
``tapwatch_request_bodies_refused_total``. The server closes a connection
whose body it did not read, so a refused upload costs the monitor no memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem

#: Routes that take a body without a token: the password login (a small form).
NO_TOKEN_BODY_PATHS = frozenset({"/auth/token"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """Refuse bodies over ``max_bytes`` and bodies without credentials, before the app reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_refusal: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refusal = on_refusal or (lambda _reason: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        length = _content_length(headers.get(b"content-length"))
        has_body = (length is None and b"transfer-encoding" in headers) or bool(length)
        if length is not None and length > self.max_bytes:
            await self._refuse(scope, send, 413, "too_large", f"the request body is larger than {self.max_bytes} bytes")
            return
        if has_body and scope.get("path") not in NO_TOKEN_BODY_PATHS and not _has_credentials(scope, headers):
            await self._refuse(scope, send, 401, "no_credentials", "a bearer token is required")
            return
        if length is None and has_body:
            receive = self._counting(receive)
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except BodyTooLarge as exc:  # raised while the body streamed in, outside any route's handler
            if started:
                raise
            await self._refuse(scope, send, 413, "", str(exc.detail))

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    self.on_refusal("too_large")
                    raise BodyTooLarge(self.max_bytes)
            return message

        return counted

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str, detail: str) -> None:
        if reason:  # empty: already counted where it was found
            self.on_refusal(reason)
        title = "Content Too Large" if status == 413 else "Unauthorized"
        response = problem(status, title, detail)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        response.headers["Connection"] = "close"  # the unread body is not worth reading to keep the connection

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)


class RefuseNul:
    """Answer 400 to a URL whose path or query holds a NUL (``%00``), before any route compares it in the store."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))
        ):
            response = problem(400, "Bad Request", "the URL holds a NUL character (%00)")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _content_length(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return max(0, int(value))
    except ValueError:
        return None


def _has_credentials(scope: Scope, headers: dict[bytes, Any]) -> bool:
    if headers.get(b"authorization", b"").strip():
        return True
    return b"access_token=" in scope.get("query_string", b"")
