"""Users, passwords and API tokens in the store: the one place the API and the CLI manage them.

Below both the API (which authenticates callers with these) and the CLI
(``tapwatch user``/``tapwatch token``, the demo's accounts).

Passwords are hashed with scrypt (standard library) and a per-user salt, and
must pass :func:`password_problem`. Tokens are random opaque strings; the store
keeps only their SHA-256, so a leaked database cannot be replayed as
credentials. Disabling a user or changing their password revokes their tokens.
Functions here work in the caller's transaction and write no audit entry: the
caller audits with :func:`store.audit.record` (its actor is known there).

>>> stored = hash_password("correct horse")
>>> verify_password("correct horse", stored), verify_password("wrong", stored)
(True, False)
>>> len(token_hash("abc")), token_hash("abc") == token_hash("abc")
(64, True)
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import Any, Final, Literal, get_args

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.domain import check_plain_text
from store.registry import registered_communities
from store.schema import api_tokens, users

Role = Literal["admin", "operator", "cadre", "platform"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
ALL_COMMUNITIES: Final = "*"
USERNAME: Final = re.compile(r"[A-Za-z0-9_.@\-]{3,64}")
#: Names tapwatch itself acts under (lower case, compared case-insensitively): ``tapwatch`` closes the cases the
#: data ends (alerts.cases.SYSTEM_ACTOR; a person's case closed under it reads as the data's), ``cli`` and
#: ``retention`` are actors in the audit trail. A person taking one would pass for the system.
RESERVED_USERNAMES: Final = frozenset({"tapwatch", "cli", "retention"})
MIN_PASSWORD: Final = 10

#: Passwords too common to allow whatever their length (lower case, compared case-insensitively).
COMMON_PASSWORDS: Final = frozenset(
    {
        "1234567890",
        "12345678910",
        "123456789012",
        "0123456789",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "qwertyuiop",
        "qwertyuiop123",
        "asdfghjkl1",
        "password123",
        "password1234",
        "passw0rd123",
        "iloveyou123",
        "admin123456",
        "administrator",
        "changeme123",
        "letmein1234",
        "welcome1234",
        "woaini1314520",
        "a123456789",
        "abc1234567",
        "abcd123456",
        "abcdefghij",
        "qazwsxedcrfv",
        "zxcvbnm123",
        "tapwatch123",
        "tapwatch2026",
    }
)

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


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be a user's; ``None`` when it can.

    >>> username_problem("li.cadre"), username_problem("li"), username_problem("TapWatch")
    (None, 'a username is 3-64 letters, digits or . _ - @', "the username 'TapWatch' is reserved for tapwatch itself")
    """
    if not USERNAME.fullmatch(username):
        return "a username is 3-64 letters, digits or . _ - @"
    if username.lower() in RESERVED_USERNAMES:
        return f"the username {username!r} is reserved for tapwatch itself"
    return None


def password_problem(username: str, password: str) -> str | None:
    """Why ``password`` is too weak for ``username``; ``None`` when it will do.

    >>> password_problem("li.cadre", "aaaaaaaaaaaa")
    'the password repeats too few characters'
    >>> password_problem("li.cadre", "li.cadre-2026!")
    'the password must not contain the username'
    >>> password_problem("li.cadre", "Password123")
    'the password is too common'
    >>> password_problem("li.cadre", "blue kettle on a cold stove") is None
    True
    """
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    lowered = password.lower()
    if username and username.lower() in lowered:
        return "the password must not contain the username"
    if len(set(password)) < 4 or _repeats_a_short_unit(password):
        return "the password repeats too few characters"
    if lowered in COMMON_PASSWORDS:
        return "the password is too common"
    return None


def _repeats_a_short_unit(password: str) -> bool:
    """``abcabcabcabc`` or ``12121212121``: a unit of up to 4 characters repeated."""
    return any(
        (password[:unit] * (len(password) // unit + 1))[: len(password)] == password
        for unit in range(1, min(4, len(password) // 2) + 1)
    )


def check_password(username: str, password: str) -> None:
    """Raise ``ValueError`` with the reason when :func:`password_problem` finds one."""
    problem = password_problem(username, password)
    if problem is not None:
        raise ValueError(problem)


def community_names(communities: Sequence[str]) -> list[str]:
    """A user's communities as elders carry them: trimmed, one line each, none empty; sorted, once each.

    ``" 大宁社区 "`` would match no elder (their community names are trimmed), and the user would see nothing.

    >>> community_names([" 大宁社区 ", "*", "大宁社区"])
    ['*', '大宁社区']
    >>> community_names(["  "])
    Traceback (most recent call last):
    ValueError: a community name cannot be empty
    """
    names = set()
    for name in communities:
        name = check_plain_text(name.strip())
        if not name:
            raise ValueError("a community name cannot be empty")
        names.add(name)
    return sorted(names)


def known_communities(conn: Connection) -> set[str]:
    """The communities an elder belongs to (retired ones too), and those set up for a user before any elder."""
    known = registered_communities(conn)
    for given in conn.execute(select(users.c.communities)).scalars():
        known.update(given or [])
    known.discard(ALL_COMMUNITIES)
    return known


def unknown_communities_problem(conn: Connection, communities: Sequence[str]) -> str | None:
    """What is wrong with giving a user ``communities`` none of whose elders exist, with the closest known names.

    A typo ("大宁社" for 大宁社区) gave a cadre a login that saw nothing, and nobody was told. ``None`` when each
    is known (or ``*``). The caller adds how to set a community up on purpose before its elders are registered.
    """
    known = known_communities(conn)
    unknown = [name for name in community_names(communities) if name != ALL_COMMUNITIES and name not in known]
    if not unknown:
        return None
    said = []
    for name in unknown:
        closest = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"closest known: {', '.join(closest)}" if closest else f"known: {', '.join(sorted(known)[:5]) or 'none'}"
        said.append(f"{name!r} ({hint})")
    return f"no elder belongs to community {'; '.join(said)}"


def no_community_problem(role: str, communities: Sequence[str]) -> dict[str, str] | None:
    """Why a user of ``role`` cannot be given no community, in Chinese and English; ``None`` when they can.

    Everyone but an admin sees elders through their communities: a cadre, operator or platform user with none
    had a login that saw nothing, as a community no elder belongs to gave (:func:`unknown_communities_problem`).

    >>> no_community_problem("admin", []) is None, no_community_problem("cadre", ["*"]) is None
    (True, True)
    >>> print(no_community_problem("cadre", [])["en"])
    a cadre user needs at least one community ('*' for all of them): with none the login sees nothing; ...
    """
    if role == "admin" or communities:
        return None
    return {
        "zh": (
            f"{role} 用户必须指定至少一个社区（'*' 表示全部社区）：没有社区的账号什么也看不到；"
            "只有 admin 可以不指定社区"
        ),
        "en": (
            f"a {role} user needs at least one community ('*' for all of them): with none the login sees nothing;"
            " only an admin may have none"
        ),
    }


def new_user_problem(conn: Connection, username: str, role: str) -> str | None:
    """Why a user ``username`` with ``role`` cannot be made, all but the password; ``None`` when it can.

    Checked before a password is asked for (``tapwatch user create``): a refusal after it was typed twice
    wastes it.
    """
    if role not in ROLES:
        return f"unknown role {role!r}; choose one of {', '.join(ROLES)}"
    if (problem := username_problem(username)) is not None:
        return problem
    if find_user(conn, username) is not None:
        return f"user {username!r} already exists"
    if (alike := _user_alike(conn, username)) is not None:
        return f"user {username!r} differs only in case from {alike!r}, who already exists: choose another name"
    return None


def _user_alike(conn: Connection, username: str) -> str | None:
    """The name of a user that ``username`` equals ignoring case, or ``None``.

    "li.cadre" and "Li.Cadre" read as one person in the audit trail and at login. Names are ASCII
    (:data:`USERNAME`), so SQL ``lower`` folds them alike on SQLite and PostgreSQL. Stores that already hold
    look-alikes keep them; only new ones are refused.
    """
    query = select(users.c.username).where(func.lower(users.c.username) == username.lower()).limit(1)
    return conn.execute(query).scalar_one_or_none()


def create_user(
    conn: Connection,
    *,
    username: str,
    password: str | None,
    role: str,
    communities: Sequence[str],
    now: float,
) -> int:
    """Insert a user; ``ValueError`` for an unknown role, a bad username, a weak password or a taken username.

    Without a password the user gets a random one nobody knows: they can only use API keys.
    """
    if (problem := new_user_problem(conn, username, role)) is not None:
        raise ValueError(problem)
    if password is not None:
        check_password(username, password)
    values = {
        "username": username,
        "password_hash": hash_password(password if password is not None else new_token()),
        "role": role,
        "communities": community_names(communities),
        "created_at": now,
        "disabled": False,
    }
    try:
        result = conn.execute(insert(users).values(**values))
    except IntegrityError:  # another command or request made the same username after our look-up
        raise ValueError(f"user {username!r} already exists") from None
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def find_user(conn: Connection, username: str) -> Any:
    """The user row named ``username``, or ``None``."""
    return conn.execute(select(users).where(users.c.username == username)).first()


def _require_user(conn: Connection, username: str) -> Any:
    row = find_user(conn, username)
    if row is None:
        raise ValueError(f"no user {username!r}")
    return row


def set_password(conn: Connection, username: str, password: str) -> int:
    """Change a user's password (policy checked) and revoke their tokens; returns the tokens revoked."""
    row = _require_user(conn, username)
    check_password(username, password)
    conn.execute(update(users).where(users.c.user_id == row.user_id).values(password_hash=hash_password(password)))
    return revoke_user_tokens(conn, int(row.user_id))


def disable_user(conn: Connection, username: str) -> int:
    """Disable a user and revoke their tokens; returns the tokens revoked."""
    row = _require_user(conn, username)
    conn.execute(update(users).where(users.c.user_id == row.user_id).values(disabled=True))
    return revoke_user_tokens(conn, int(row.user_id))


def revoke_user_tokens(conn: Connection, user_id: int) -> int:
    return int(conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id)).rowcount)


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


def hold_user(conn: Connection, which: ColumnElement[bool]) -> None:
    """Wait for any other change of the user to commit, and hold the others off until this transaction ends: a
    token issued after this sees a new password or a disable made at the same time (PostgreSQL's row lock; the
    write lock on SQLite)."""
    conn.execute(update(users).where(which).values(user_id=users.c.user_id))


def issue_login_token(
    conn: Connection, user_id: int, checked_hash: str, now: float, ttl_s: float
) -> tuple[str, int] | None:
    """A login's token, if the user is still enabled with the password hash the login checked; else None.

    A login checks the password, then issues its token in a transaction of its own: a new password or disabling
    her, committed in between, revoked the tokens there were and not this one, valid for its whole lifetime (and
    again once she was enabled). Her row is held first, so a reset under way is waited for and then seen.
    """
    hold_user(conn, users.c.user_id == user_id)
    row = conn.execute(select(users.c.password_hash, users.c.disabled).where(users.c.user_id == user_id)).first()
    if row is None or row.disabled or row.password_hash != checked_hash:
        return None
    return issue_token(conn, user_id, "login", now, ttl_s)


def issue_token_for(conn: Connection, username: str, name: str, now: float, ttl_s: float) -> tuple[str, int]:
    """A token for an enabled user named ``username``; ``ValueError`` when there is none.

    Her row is held first (:func:`hold_user`): a disable under way is waited for and then seen, not read past
    and outlived by this token.
    """
    hold_user(conn, users.c.username == username)
    row = find_user(conn, username)
    if row is None or row.disabled:
        raise ValueError(f"no active user {username!r}")
    return issue_token(conn, int(row.user_id), name, now, ttl_s)


def list_tokens(
    conn: Connection, *, username: str | None = None, token_id: int | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    """Tokens (never their hashes): id, user, role, name, created, expires, last used; unexpired only if ``now``."""
    query = (
        select(
            api_tokens.c.token_id,
            users.c.username,
            users.c.role,
            api_tokens.c.name,
            api_tokens.c.created_at,
            api_tokens.c.expires_at,
            api_tokens.c.last_used_at,
        )
        .join(users, users.c.user_id == api_tokens.c.user_id)
        .order_by(api_tokens.c.token_id)
    )
    if username is not None:
        query = query.where(users.c.username == username)
    if token_id is not None:
        query = query.where(api_tokens.c.token_id == token_id)
    if now is not None:
        query = query.where(api_tokens.c.expires_at.is_(None) | (api_tokens.c.expires_at > now))
    return [dict(row._mapping) for row in conn.execute(query)]


def revoke_token(conn: Connection, token_id: int) -> dict[str, Any] | None:
    """Delete one token; returns what it was (as :func:`list_tokens` shows it), or ``None`` if there is none."""
    found = list_tokens(conn, token_id=token_id)
    if not found:
        return None
    conn.execute(delete(api_tokens).where(api_tokens.c.token_id == token_id))
    return found[0]
