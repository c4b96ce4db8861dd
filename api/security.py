"""The caller behind a bearer token, roles, the login rate limit and the client address.

Users, passwords and tokens live in :mod:`store.users` (shared with
the CLI); this module turns a token into a :class:`Principal` and keeps the
HTTP-side defences: :class:`LoginLimiter` and :func:`client_address`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import orjson
from sqlalchemy import ColumnElement, Connection, Engine, delete, false, insert, select, update
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.ops import upsert
from store.schema import api_tokens, login_failures, login_familiar, users
from store.users import (
    ALL_COMMUNITIES,
    burn_password_check,
    token_hash,
    verify_password,
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user, their role and the communities they are assigned."""

    user_id: int
    username: str
    role: str
    communities: tuple[str, ...]
    token_id: int | None = None

    @property
    def all_communities(self) -> bool:
        return self.role == "admin" or ALL_COMMUNITIES in self.communities

    def sees(self, community: str | None) -> bool:
        if self.all_communities:
            return True
        return community is not None and community in self.communities

    def community_filter(self, column: Any) -> ColumnElement[bool] | None:
        """A WHERE clause limiting ``column`` to the caller's communities; ``None`` when unlimited."""
        if self.all_communities:
            return None
        if not self.communities:
            return false()
        return column.in_(self.communities)


#: The header of every answer to a caller with a token: a tag of her role and communities as they are now. A
#: client that kept them from the sign-in (the dashboard) sees it change after an admin changed them, and asks
#: ``GET /me`` again; the API itself uses the current ones on every request.
ACCESS_HEADER = "X-Tapwatch-Access"


def access_tag(principal: Principal) -> str:
    """A short tag of the caller's role and communities: equal for equal rights, in any order of communities.

    >>> ab, ba, a = (Principal(1, "li", "cadre", c) for c in (("A", "B"), ("B", "A"), ("A",)))
    >>> access_tag(ab) == access_tag(ba) != access_tag(a)
    True
    """
    rights = orjson.dumps([principal.role, sorted(set(principal.communities))])
    return hashlib.sha256(rights).hexdigest()[:16]


class AccessHeader:
    """Tags each answer to a caller known by her token (``scope["state"]["caller"]``, set where the token was
    looked up) with :data:`ACCESS_HEADER`: errors and streams as well."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            caller = (scope.get("state") or {}).get("caller")
            if message["type"] == "http.response.start" and isinstance(caller, Principal):
                header = (ACCESS_HEADER.lower().encode(), access_tag(caller).encode())
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, tagged)


def principal_for_token(conn: Connection, token: str, now: float) -> Principal | None:
    """The enabled user behind an unexpired token, or ``None``."""
    return _principal_where(conn, api_tokens.c.token_hash == token_hash(token), now)


def principal_for_token_id(conn: Connection, token_id: int, now: float) -> Principal | None:
    """The same look-up by token id: live streams re-check their caller with it (revoked, disabled, changed)."""
    return _principal_where(conn, api_tokens.c.token_id == token_id, now)


def _principal_where(conn: Connection, which: ColumnElement[bool], now: float) -> Principal | None:
    row = conn.execute(
        select(
            api_tokens.c.token_id,
            api_tokens.c.last_used_at,
            users.c.user_id,
            users.c.username,
            users.c.role,
            users.c.communities,
        )
        .join(users, users.c.user_id == api_tokens.c.user_id)
        .where(
            which,
            users.c.disabled.is_(False),
            (api_tokens.c.expires_at.is_(None)) | (api_tokens.c.expires_at > now),
        )
    ).first()
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at > 60:  # one write a minute at most
        conn.execute(update(api_tokens).where(api_tokens.c.token_id == row.token_id).values(last_used_at=now))
    return Principal(
        user_id=int(row.user_id),
        username=row.username,
        role=row.role,
        communities=tuple(row.communities or ()),
        token_id=int(row.token_id),
    )


def authenticate(conn: Connection, username: str, password: str) -> Principal | None:
    checked = check_login(conn, username, password)
    return None if checked is None else checked[0]


def check_login(conn: Connection, username: str, password: str) -> tuple[Principal, str] | None:
    """The enabled user ``username`` if ``password`` is hers, with the hash it was checked against: her token is
    issued only while that hash is still hers (:func:`store.users.issue_login_token`)."""
    row = conn.execute(select(users).where(users.c.username == username)).first()
    if row is None or row.disabled:
        burn_password_check(password)
        return None
    if not verify_password(password, row.password_hash):
        return None
    return Principal(int(row.user_id), row.username, row.role, tuple(row.communities or ())), row.password_hash


class LoginLimiter:
    """Slows password guessing down without letting anyone lock a user out; shared by every API worker.

    * Per **username**, whatever the address: after ``max_failures`` failures in
      ``window_s`` each further try waits twice as long as the one before
      (1 s, 2 s, 4 s ...), never longer than ``backoff_max_s``. A pause, not a
      lock: the right password is accepted once the wait is over.
    * An address the user **logged in from before** (within ``remember_s``) is
      not slowed by strangers' failures for that username: it has its own count
      of ``max_failures`` per window. So guessing a known cadre's password from
      elsewhere cannot keep her out.
    * Per **address** across usernames (``per_address`` failures per window), and
      for **all** unknown addresses together (``global_failures`` per window):
      spraying many usernames is refused before any password is checked, which
      also caps the CPU that scrypt checks can take from ingest.

    The counts live in the store (``login_failures``, ``login_familiar``), not in
    a process: N API workers allow what one allows, and a restart forgets nothing.
    Each call is its own short transaction, so a failure counts even though the
    request that saw it fails. Times are wall-clock epoch seconds, which every
    worker shares. ``retry_after`` says how long to wait (0: try now); only real
    failures count, so being refused does not lengthen the wait.
    """

    def __init__(
        self,
        engine: Engine,
        max_failures: int,
        window_s: float,
        *,
        backoff_max_s: float = 60.0,
        per_address: int = 20,
        global_failures: int = 200,
        remember_s: float = 30 * 86400.0,
        first_pause_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.max_failures = max_failures
        self.window_s = window_s
        self.backoff_max_s = backoff_max_s
        self.per_address = per_address
        self.global_failures = global_failures
        self.remember_s = remember_s
        self.first_pause_s = first_pause_s

    def retry_after(self, username: str, address: str, now: float | None = None) -> int:
        """Seconds to wait before ``username`` may try from ``address``; 0 when a login may be tried now."""
        now = time.time() if now is None else now
        since = now - self.window_s
        f = login_failures.c
        with self.engine.connect() as conn:
            if self._is_familiar(conn, username, address, now):
                pair = (f.username == username) & (f.address == address) & f.familiar & ~f.forgiven
                waits = [self._full_window_wait(self._times(conn, since, pair, self.max_failures), self.max_failures)]
            else:
                mine = (f.username == username) & ~f.forgiven
                by_address = self._times(conn, since, (f.address == address) & ~f.familiar, self.per_address)
                everyone = self._times(conn, since, ~f.familiar, self.global_failures)
                by_user = self._times(conn, since, mine & ~f.familiar, self.max_failures + 32)
                waits = [
                    self._full_window_wait(by_address, self.per_address),
                    self._full_window_wait(everyone, self.global_failures),
                    self._backoff_wait(by_user),
                ]
        wait = max(waits) - now
        return 0 if wait <= 0 else max(1, math.ceil(wait))

    def failed(self, username: str, address: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            # What left the window no longer counts: the table holds one window of failures.
            conn.execute(delete(login_failures).where(login_failures.c.at <= now - self.window_s))
            familiar = self._is_familiar(conn, username, address, now)
            conn.execute(
                insert(login_failures).values(
                    username=username, address=address, familiar=familiar, forgiven=False, at=now
                )
            )

    def succeeded(self, username: str, address: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        f, known = login_failures.c, login_familiar.c
        with self.engine.begin() as conn:
            conn.execute(delete(login_familiar).where(known.until <= now))
            # An upsert: two logins at once (a double tap) would both insert the pair, and one fail on its key.
            remembered = {"username": username, "address": address, "until": now + self.remember_s}
            upsert(conn, login_familiar, [remembered], keys=["username", "address"])
            # Her own pause ends; the failures still count against the addresses they came from.
            mine = (f.username == username) & (~f.familiar | (f.address == address))
            conn.execute(update(login_failures).where(mine).values(forgiven=True))

    @staticmethod
    def _is_familiar(conn: Connection, username: str, address: str, now: float) -> bool:
        known = login_familiar.c
        where = (known.username == username) & (known.address == address) & (known.until > now)
        return conn.execute(select(known.until).where(where)).first() is not None

    @staticmethod
    def _times(conn: Connection, since: float, which: ColumnElement[bool], newest: int) -> list[float]:
        """Failure times inside the window, oldest first; only the ``newest`` that can matter."""
        at = login_failures.c.at
        query = select(at).where(which, at > since).order_by(at.desc()).limit(newest)
        return sorted(conn.execute(query).scalars())

    def _full_window_wait(self, recent: list[float], limit: int) -> float:
        """A sliding window: with ``limit`` failures inside it, wait until the oldest of them leaves."""
        return recent[-limit] + self.window_s if len(recent) >= limit else 0.0

    def _backoff_wait(self, recent: list[float]) -> float:
        beyond = len(recent) - self.max_failures
        if beyond < 0:
            return 0.0
        return recent[-1] + min(self.backoff_max_s, self.first_pause_s * 2.0**beyond)


def trusted_networks(addresses: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The proxies whose ``X-Forwarded-For`` is believed (addresses or CIDR blocks)."""
    return tuple(ipaddress.ip_network(a, strict=False) for a in addresses)


def _in_networks(address: str, networks: Sequence[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Any]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy that says who it forwards for.

    ``X-Forwarded-For`` is read right to left, skipping trusted proxies; the first
    other hop is the client. From any peer not in ``trusted`` the header is ignored,
    so nobody can pick the address their failed logins are counted against.

    >>> nets = trusted_networks(["10.0.0.0/8"])
    >>> client_address("10.0.0.5", "203.0.113.9, 10.0.0.7", nets)
    '203.0.113.9'
    >>> client_address("198.51.100.1", "203.0.113.9", nets)  # not a proxy of ours: header ignored
    '198.51.100.1'
    >>> client_address("127.0.0.1", "203.0.113.9", ())  # loopback is not trusted by default
    '127.0.0.1'
    """
    if not forwarded_for or not _in_networks(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _in_networks(hop, trusted):
            return hop[:64]
    return hops[0][:64] if hops else peer


#: A query parameter in a logged URL: its name (as sent, maybe percent-encoded) and value.
_QUERY_PARAM = re.compile(r"([?&])([^=&\s]+)=([^&\s]*)")


def _hide_token(match: re.Match[str]) -> str:
    # The name as the server reads it: ``access%5Ftoken`` authenticates as ``access_token`` does.
    if unquote_plus(match.group(2)) == "access_token":
        return f"{match.group(1)}{match.group(2)}=***"
    return match.group(0)


def _redacted(text: str) -> str:
    return _QUERY_PARAM.sub(_hide_token, text) if "=" in text else text


class RedactTokens(logging.Filter):
    """Hide ``?access_token=`` (used by EventSource clients) in access logs: secrets never reach the logs.

    >>> args = ("GET", "/alerts/stream?access_token=abc&x=1")
    >>> record = logging.LogRecord("uvicorn.access", 20, "", 0, "%s %s", args, None)
    >>> RedactTokens().filter(record), record.getMessage()
    (True, 'GET /alerts/stream?access_token=***&x=1')
    >>> _redacted("/alerts/stream?x=1&access%5Ftoken=abc&y=access_token")  # the name percent-encoded
    '/alerts/stream?x=1&access%5Ftoken=***&y=access_token'
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _redacted(record.msg)
        return True


def redact_access_logs(logger_name: str = "uvicorn.access") -> None:
    """Install :class:`RedactTokens` on the access logger once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


def roles_text(roles: Iterable[str]) -> str:
    return ", ".join(sorted(roles))
