"""``tapwatch user`` and ``tapwatch token``: create API users and long-lived API keys.

Wire into the CLI with ``usercli.add_parsers(sub)``. Each command opens the
configured store; the ``*_in`` functions take an engine, for tests and scripts.
Passwords are read from stdin or a prompt, never from the command line; a
token is printed once and only its hash is stored.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from sqlalchemy import Engine, select

from core.settings import get_settings
from store import open_store
from store.audit import record
from store.schema import users
from store.users import ROLES, create_user, issue_token, new_token

DEFAULT_KEY_DAYS = 365.0


def add_parsers(subparsers: Any) -> None:
    user = subparsers.add_parser(
        "user", help="Create and list API users.", description="Manage the users of the API and dashboard."
    )
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = user_sub.add_parser(
        "create",
        help="Create a user with a role and communities.",
        description="Create a user. The password is read from stdin (--password-stdin) or prompted for; "
        "without either, the user can only use API keys (tapwatch token create).",
    )
    p.add_argument("name", help="username (letters, digits, . _ - @)")
    p.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    p.add_argument(
        "--community",
        dest="communities",
        action="append",
        default=[],
        metavar="C",
        help="a community assigned to the user (repeatable); '*' for all",
    )
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(func=cmd_user_create)
    p = user_sub.add_parser("list", help="List users.", description="List users with role and communities.")
    p.set_defaults(func=cmd_user_list)

    token = subparsers.add_parser(
        "token", help="Create long-lived API keys.", description="Manage API keys (bearer tokens)."
    )
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = token_sub.add_parser(
        "create",
        help="Create an API key for a user; it is printed once.",
        description="Create an API key for USER (for example the grid platform). It is printed once; "
        "only its SHA-256 is stored.",
    )
    p.add_argument("--user", required=True, help="the user the key acts as")
    p.add_argument("--name", default="api-key", help="a label for the key (default api-key)")
    p.add_argument(
        "--days", type=float, default=DEFAULT_KEY_DAYS, help=f"days until it expires (default {DEFAULT_KEY_DAYS:g})"
    )
    p.set_defaults(func=cmd_token_create)


def _engine() -> Engine:
    return open_store(get_settings().effective_database_url)


def _read_password(from_stdin: bool, stdin: IO[str]) -> str | None:
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise ValueError("the passwords differ")
        return first
    return None


def create_user_in(
    engine: Engine, name: str, role: str, communities: Sequence[str], password: str | None, out: IO[str]
) -> int:
    if password is not None and len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
    with engine.begin() as conn:
        user_id = create_user(
            conn,
            username=name,
            password=password if password is not None else new_token(),  # unknown to anyone: API keys only
            role=role,
            communities=communities,
            now=time.time(),
        )
        record(
            conn,
            actor="cli",
            action="user.create",
            target=f"user:{name}",
            community=None,
            new={"role": role, "communities": sorted(set(communities))},
        )
    note = "" if password is not None else " (no password: use `tapwatch token create`)"
    out.write(f"created user {name} ({role}; communities: {', '.join(communities) or 'none'}){note}\n")
    return user_id


def list_users_in(engine: Engine, out: IO[str]) -> int:
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.username)).all()
    for row in rows:
        state = " disabled" if row.disabled else ""
        out.write(f"{row.username}\t{row.role}\t{','.join(row.communities or []) or '-'}{state}\n")
    return len(rows)


def create_token_in(engine: Engine, username: str, name: str, days: float, out: IO[str]) -> str:
    if days <= 0:
        raise ValueError("--days must be positive")
    with engine.begin() as conn:
        user_id = conn.execute(
            select(users.c.user_id).where(users.c.username == username, users.c.disabled.is_(False))
        ).scalar_one_or_none()
        if user_id is None:
            raise ValueError(f"no active user {username!r}")
        token, token_id = issue_token(conn, int(user_id), name, time.time(), days * 86400)
        record(
            conn,
            actor="cli",
            action="token.create",
            target=f"user:{username}",
            community=None,
            new={"token_id": token_id, "name": name, "days": days},
        )
    out.write(token + "\n")
    print(f"API key {name!r} for {username}, valid {days:g} days; shown only now.", file=sys.stderr)
    return token


def cmd_user_create(args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin, sys.stdin)
    engine = _engine()
    try:
        create_user_in(engine, args.name, args.role, args.communities, password, sys.stdout)
    finally:
        engine.dispose()
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        list_users_in(engine, sys.stdout)
    finally:
        engine.dispose()
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        create_token_in(engine, args.user, args.name, args.days, sys.stdout)
    finally:
        engine.dispose()
    return 0
