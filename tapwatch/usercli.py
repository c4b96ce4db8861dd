"""``tapwatch user`` and ``tapwatch token``: API users and their tokens and long-lived API keys.

Wire into the CLI with ``usercli.add_parsers(sub)``. Each command opens the
configured store; the ``*_in`` functions take an engine, for tests and scripts.
The rules are :mod:`store.users`' (the API uses the same ones); every
change is audited with the actor ``cli``. Passwords are read from stdin or a
prompt, never from the command line; a token is printed once and only its hash
is stored. A user is always named positionally (``user create NAME``,
``token create NAME``); ``token create --user NAME`` still works.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import make_url

from core.settings import get_settings
from store import audit, open_store
from store.schema import users
from store.users import (
    ROLES,
    check_password,
    community_names,
    create_user,
    disable_user,
    issue_token_for,
    list_tokens,
    new_user_problem,
    no_community_problem,
    revoke_token,
    set_password,
    unknown_communities_problem,
)

DEFAULT_KEY_DAYS = 365.0
#: Longest key lifetime: NaN would be stored as NULL (never expires), and a far date breaks `token list`.
MAX_KEY_DAYS = 3650.0


def add_parsers(subparsers: Any) -> None:
    _user_parsers(subparsers)
    _token_parsers(subparsers)


def _user_parsers(subparsers: Any) -> None:
    user = subparsers.add_parser(
        "user",
        help="Create, list, reset and disable API users.",
        description="Manage the users of the API and dashboard.",
    )
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = user_sub.add_parser(
        "create",
        help="Create a user with a role and communities.",
        description="Create a user. The password is read from stdin (--password-stdin) or prompted for at a "
        "terminal; with stdin not a terminal (< /dev/null), the user gets none and can only use API keys "
        "(tapwatch token create).",
    )
    p.add_argument("name", help="username (letters, digits, . _ - @)")
    p.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    p.add_argument(
        "--community",
        dest="communities",
        action="append",
        default=[],
        metavar="C",
        help="a community assigned to the user (repeatable); '*' for all; at least one unless --role admin",
    )
    p.add_argument(
        "--allow-new-community",
        action="store_true",
        help="accept a community no elder belongs to yet (set up before its elders are registered); without it "
        "such a community is refused, naming the closest known: a typo would give a login that sees nothing",
    )
    _password_flag(p)
    p.set_defaults(func=cmd_user_create)
    p = user_sub.add_parser("list", help="List users.", description="List users with role and communities.")
    p.set_defaults(func=cmd_user_list)
    p = user_sub.add_parser(
        "reset-password",
        help="Set a new password; the user's tokens are revoked.",
        description="Set NAME's password (read from stdin with --password-stdin, or prompted for). "
        "Every token and API key of the user is revoked.",
    )
    p.add_argument("name", help="the username")
    _password_flag(p)
    p.set_defaults(func=cmd_user_reset_password)
    p = user_sub.add_parser(
        "disable",
        help="Disable a user; their tokens are revoked.",
        description="Disable NAME: logins are refused and every token and API key of the user is revoked "
        "(live alert streams end within a poll).",
    )
    p.add_argument("name", help="the username")
    p.set_defaults(func=cmd_user_disable)


def _token_parsers(subparsers: Any) -> None:
    token = subparsers.add_parser(
        "token", help="Create, list and revoke API keys.", description="Manage API keys (bearer tokens)."
    )
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = token_sub.add_parser(
        "create",
        help="Create an API key for a user; it is printed once.",
        description="Create an API key for USER (for example the grid platform). It is printed once; "
        "only its SHA-256 is stored.",
    )
    p.add_argument("name_arg", nargs="?", metavar="USER", help="the user the key acts as")
    p.add_argument("--user", dest="user_flag", metavar="USER", help="the same, as a flag (older form)")
    p.add_argument("--name", default="api-key", help="a label for the key (default api-key)")
    p.add_argument(
        "--days",
        type=float,
        default=DEFAULT_KEY_DAYS,
        help=f"days until it expires (default {DEFAULT_KEY_DAYS:g}, at most {MAX_KEY_DAYS:g})",
    )
    p.set_defaults(func=cmd_token_create)
    p = token_sub.add_parser(
        "list",
        help="List valid tokens and API keys (never their values).",
        description="List tokens that have not expired: id, user, role, label, created, expires, last used.",
    )
    p.add_argument("--user", dest="user_flag", metavar="USER", help="only this user's tokens")
    p.set_defaults(func=cmd_token_list)
    p = token_sub.add_parser(
        "revoke", help="Revoke one token or API key by id.", description="Revoke token ID (see tapwatch token list)."
    )
    p.add_argument("token_id", type=int, metavar="ID", help="the token id")
    p.set_defaults(func=cmd_token_revoke)


def _password_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")


class NoStore(SystemExit):
    """The configured SQLite store does not exist: users made there would be in a database nobody runs."""


def _engine() -> Engine:
    url = get_settings().effective_database_url
    require_existing_sqlite(url)
    return open_store(url)


def require_existing_sqlite(url: str, create_flag: str | None = None) -> None:
    """Refuse to create an empty SQLite store as a side effect of managing users.

    A user made in a new ``var/tapwatch.db`` while the monitor (or the demo, in ``var/demo/``) runs on
    another store cannot sign in, and nothing said why. PostgreSQL URLs name a server that must exist.
    ``create_flag`` names the option of the calling command that creates the store on purpose.
    """
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    if not path.exists():
        zh_flag = f"，或加 {create_flag} 在此创建它" if create_flag else ""
        en_flag = f", or give {create_flag} to create it here" if create_flag else ""
        raise NoStore(
            f"没有找到数据库 {path}：请设置 TAPWATCH_DATA_DIR（演示用 var/demo）或 TAPWATCH_DATABASE_URL，"
            f"或先运行 tapwatch migrate 创建它{zh_flag}。\n"
            f"no store at {path}: set TAPWATCH_DATA_DIR (the demo uses var/demo) or TAPWATCH_DATABASE_URL, "
            f"or run `tapwatch migrate` first to create it{en_flag}."
        )


def _read_password(from_stdin: bool, stdin: IO[str]) -> str | None:
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    if stdin.isatty():
        try:
            first = getpass.getpass("password: ")
            again = getpass.getpass("again: ")
        except EOFError:  # Ctrl-D at the prompt: nothing typed is no password to set, said in one line
            raise ValueError("no password typed (end of input at the prompt): nothing was changed") from None
        if first != again:
            raise ValueError("the passwords differ")
        return first
    return None


def create_user_in(
    engine: Engine,
    name: str,
    role: str,
    communities: Sequence[str],
    password: str | None,
    out: IO[str],
    *,
    allow_new_community: bool = False,
) -> int:
    """Create the user; a community no elder belongs to is refused unless ``allow_new_community``."""
    with engine.begin() as conn:
        check_new_user(conn, name, role, communities, allow_new_community=allow_new_community)
        user_id = create_user(
            conn, username=name, password=password, role=role, communities=communities, now=time.time()
        )
        audit.record(
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


def check_new_user(
    conn: Connection, name: str, role: str, communities: Sequence[str], *, allow_new_community: bool = False
) -> None:
    """``ValueError`` with the reason when the user cannot be made, whatever the password: ask for it after this."""
    if (problem := new_user_problem(conn, name, role)) is not None:
        raise ValueError(problem)
    if (words := no_community_problem(role, communities)) is not None:
        raise ValueError(f"{words[get_settings().language]} (--community NAME)")
    community_names(communities)  # an empty name
    if not allow_new_community and (problem := unknown_communities_problem(conn, communities)) is not None:
        raise ValueError(
            f"{problem}: to set a community up before its elders are registered, give --allow-new-community"
        )


def list_users_in(engine: Engine, out: IO[str]) -> int:
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.username)).all()
    for row in rows:
        state = " disabled" if row.disabled else ""
        out.write(f"{row.username}\t{row.role}\t{','.join(row.communities or []) or '-'}{state}\n")
    return len(rows)


def reset_password_in(engine: Engine, name: str, password: str, out: IO[str]) -> int:
    check_password(name, password)  # before the store is touched: the reason is the answer
    with engine.begin() as conn:
        revoked = set_password(conn, name, password)
        audit.record(
            conn,
            actor="cli",
            action="user.update",
            target=f"user:{name}",
            community=None,
            new={"password": "changed", "tokens_revoked": revoked},
        )
    out.write(f"password of {name} changed; {revoked} tokens revoked\n")
    return revoked


def disable_user_in(engine: Engine, name: str, out: IO[str]) -> int:
    with engine.begin() as conn:
        revoked = disable_user(conn, name)
        audit.record(
            conn,
            actor="cli",
            action="user.update",
            target=f"user:{name}",
            community=None,
            new={"disabled": True, "tokens_revoked": revoked},
        )
    out.write(f"user {name} disabled; {revoked} tokens revoked\n")
    return revoked


def create_token_in(engine: Engine, username: str, name: str, days: float, out: IO[str]) -> str:
    if not 0 < days <= MAX_KEY_DAYS:  # also refuses NaN
        raise ValueError(f"--days must be more than 0 and at most {MAX_KEY_DAYS:g}")
    with engine.begin() as conn:
        token, token_id = issue_token_for(conn, username, name, time.time(), days * 86400)
        audit.record(
            conn,
            actor="cli",
            action="token.create",
            target=f"user:{username}",
            community=None,
            new={"token_id": token_id, "name": name, "days": days},
        )
    out.write(token + "\n")
    print(f"API key {name!r} (id {token_id}) for {username}, valid {days:g} days; shown only now.", file=sys.stderr)
    return token


def _when(ts: float | None, tz: ZoneInfo) -> str:
    """The minute of ``ts`` in ``tz`` with its offset (``2026-12-08T03:29+08:00``), or ``-``."""
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="minutes") if ts is not None else "-"


def list_tokens_in(engine: Engine, username: str | None, out: IO[str], tz: str = "Asia/Shanghai") -> int:
    """The valid tokens, one per line, their times in ``tz`` (the operator's zone, as on the dashboard)."""
    with engine.connect() as conn:
        found = list_tokens(conn, username=username, now=time.time())
    out.write("id\tuser\trole\tname\tcreated\texpires\tlast used\n")
    zone = ZoneInfo(tz)
    for t in found:
        when = "\t".join(_when(t[k], zone) for k in ("created_at", "expires_at", "last_used_at"))
        out.write(f"{t['token_id']}\t{t['username']}\t{t['role']}\t{t['name']}\t{when}\n")
    return len(found)


def revoke_token_in(engine: Engine, token_id: int, out: IO[str]) -> None:
    with engine.begin() as conn:
        token = revoke_token(conn, token_id)
        if token is None:
            raise ValueError(f"no token {token_id}")
        audit.record(
            conn,
            actor="cli",
            action="token.revoke",
            target=f"user:{token['username']}",
            community=None,
            old={"token_id": token_id, "name": token["name"]},
        )
    out.write(f"revoked token {token_id} ({token['name']!r} of {token['username']})\n")


def _with_engine(work: Callable[[Engine], object]) -> int:
    engine = _engine()
    try:
        work(engine)
    finally:
        engine.dispose()
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    # The store, the name, the role and the communities are checked before the password is asked for: a refusal
    # after it was typed twice wastes it (create_user_in checks them again, in the transaction that makes the user).
    return _with_engine(lambda e: _create_user_then_ask(e, args))


def _create_user_then_ask(engine: Engine, args: argparse.Namespace) -> int:
    new = args.name, args.role, args.communities
    with engine.connect() as conn:
        check_new_user(conn, *new, allow_new_community=args.allow_new_community)
    password = _read_password(args.password_stdin, sys.stdin)
    return create_user_in(engine, *new, password, sys.stdout, allow_new_community=args.allow_new_community)


def cmd_user_list(args: argparse.Namespace) -> int:
    return _with_engine(lambda e: list_users_in(e, sys.stdout))


def cmd_user_reset_password(args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin, sys.stdin)
    if password is None:
        raise ValueError("give the new password on stdin with --password-stdin, or run in a terminal")
    return _with_engine(lambda e: reset_password_in(e, args.name, password, sys.stdout))


def cmd_user_disable(args: argparse.Namespace) -> int:
    return _with_engine(lambda e: disable_user_in(e, args.name, sys.stdout))


def cmd_token_create(args: argparse.Namespace) -> int:
    if args.name_arg and args.user_flag and args.name_arg != args.user_flag:
        raise ValueError("give the user once: `token create NAME` (or the older --user NAME)")
    username = args.name_arg or args.user_flag
    if not username:
        raise ValueError("which user? `tapwatch token create NAME`")
    return _with_engine(lambda e: create_token_in(e, username, args.name, args.days, sys.stdout))


def cmd_token_list(args: argparse.Namespace) -> int:
    return _with_engine(lambda e: list_tokens_in(e, args.user_flag, sys.stdout, get_settings().timezone))


def cmd_token_revoke(args: argparse.Namespace) -> int:
    return _with_engine(lambda e: revoke_token_in(e, args.token_id, sys.stdout))
