"""Users and API keys in the store: roles, password hashing, token hashing, creating users and issuing keys.

Below both the API (which authenticates callers with these) and the CLI
(``tapwatch user``/``tapwatch token``, the demo's accounts).

Passwords are hashed with scrypt (standard library) and a per-user salt.
Tokens are random opaque strings; the store keeps only their SHA-256, so a
leaked database cannot be replayed as credentials.

>>> stored = hash_password("correct horse")
>>> verify_password("correct horse", stored), verify_password("wrong", stored)
(True, False)
>>> len(token_hash("abc")), token_hash("abc") == token_hash("abc")
(64, True)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import Final, Literal, get_args

from sqlalchemy import Connection, insert, select

from store.schema import api_tokens, users

Role = Literal["admin", "operator", "cadre", "platform"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
ALL_COMMUNITIES: Final = "*"
USERNAME: Final = re.compile(r"[A-Za-z0-9_.@\-]{3,64}")

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_DUMMY_HASH: Final = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "="


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def burn_password_check(password: str) -> None:
    """Spend the same time as a real check, so unknown usernames do not answer faster."""
    verify_password(password, _DUMMY_HASH)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(conn: Connection, user_id: int, name: str, now: float, ttl_s: float | None) -> tuple[str, int]:
    """Store a new token's hash; returns the token (shown once) and its id."""
    token = new_token()
    result = conn.execute(
        insert(api_tokens).values(
            user_id=user_id,
            name=name[:128],
            token_hash=token_hash(token),
            created_at=now,
            expires_at=now + ttl_s if ttl_s is not None else None,
        )
    )
    return token, int(result.inserted_primary_key[0])  # type: ignore[index]


def create_user(
    conn: Connection, *, username: str, password: str, role: str, communities: Sequence[str], now: float
) -> int:
    """Insert a user; raises ``ValueError`` for an unknown role or a taken username."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not USERNAME.fullmatch(username):
        raise ValueError("a username is 3-64 letters, digits or . _ - @")
    if conn.execute(select(users.c.user_id).where(users.c.username == username)).first():
        raise ValueError(f"user {username!r} already exists")
    result = conn.execute(
        insert(users).values(
            username=username,
            password_hash=hash_password(password),
            role=role,
            communities=sorted(set(communities)),
            created_at=now,
            disabled=False,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]
