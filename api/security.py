"""Who is calling: principals from bearer tokens or passwords, and the login rate limit.

Roles, password and token hashing, creating users and issuing keys live in
:mod:`store.users`, below both the API and the CLI; this module turns them
into a :class:`Principal` for a request.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, false, select, update

from store.schema import api_tokens, users
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


def principal_for_token(conn: Connection, token: str, now: float) -> Principal | None:
    """The enabled user behind an unexpired token, or ``None``."""
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
            api_tokens.c.token_hash == token_hash(token),
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
    row = conn.execute(select(users).where(users.c.username == username)).first()
    if row is None or row.disabled:
        burn_password_check(password)
        return None
    if not verify_password(password, row.password_hash):
        return None
    return Principal(int(row.user_id), row.username, row.role, tuple(row.communities or ()))


class LoginLimiter:
    """At most ``max_failures`` failed logins per (username, client) in ``window_s``; in memory."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: tuple[str, str], now: float | None = None) -> int:
        """Seconds to wait before trying again; 0 when a login may be tried now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._prune(key, now)
            if len(failures) < self.max_failures:
                return 0
            return max(1, int(failures[0] + self.window_s - now + 0.999))

    def failed(self, key: tuple[str, str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(key, now).append(now)

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _prune(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if len(self._failures) > 100_000:  # bound memory under a spray of usernames
            for stale in [k for k, v in self._failures.items() if not v]:
                del self._failures[stale]
        return failures


_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s]+")


class RedactTokens(logging.Filter):
    """Hide ``?access_token=`` (used by EventSource clients) in access logs: secrets never reach the logs.

    >>> args = ("GET", "/alerts/stream?access_token=abc&x=1")
    >>> record = logging.LogRecord("uvicorn.access", 20, "", 0, "%s %s", args, None)
    >>> RedactTokens().filter(record), record.getMessage()
    (True, 'GET /alerts/stream?access_token=***&x=1')
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_IN_URL.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _TOKEN_IN_URL.sub(r"\1***", record.msg)
        return True


def redact_access_logs(logger_name: str = "uvicorn.access") -> None:
    """Install :class:`RedactTokens` on the access logger once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


def roles_text(roles: Iterable[str]) -> str:
    return ", ".join(sorted(roles))
