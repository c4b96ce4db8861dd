"""``tapwatch broker-credentials``: Mosquitto accounts and topic ACL for every registered meter.

The registry is the source of truth: each active meter (neither it nor its elder
retired) gets an account named after its meter id that may publish only to its
own readings topic; the monitor's account reads every meter. One run writes, into
``--out DIR``:

- ``passwd``: a Mosquitto password file (PBKDF2-SHA512, the ``$7$`` format
  Mosquitto 2 reads), mode 0600;
- ``acl``: the topic ACL, one ``user`` block per account;
- ``new-credentials-<UTC time>Z.csv``: ``meter_id,password`` for the accounts this run
  created or rotated, mode 0600, to hand to the meters' platform once.

Rerunning keeps the passwords of meters that already have an account (their
meters would otherwise be locked out), adds new meters, drops retired ones and
replaces the passwords of meters named with ``--rotate``. Plain passwords exist
only in the CSV of the run that made them.

A run owns the accounts of the monitor and of the meters the registry knows (retired ones too: the registry
never forgets a meter); any other account in ``passwd`` (a district's monitoring probe, the demo's
``simulator``, added by hand with ``mosquitto_passwd``) and its ``user`` block in ``acl`` are kept as they
stand. By name, not between marks: Mosquitto's password file has no comments to mark with.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from core.settings import Settings, get_settings
from store import open_store
from store.schema import elders, meters
from tapwatch.usercli import require_existing_sqlite

# The demo's account that may publish for every meter: never generated here (docs/deploy.md).
SIMULATOR_ACCOUNT = "simulator"
# Mosquitto usernames end at ":" in the password file; topic ACLs treat "+", "#" and "/" as structure.
_SAFE_ACCOUNT = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: On the public listeners a client's id is its username (deploy/mosquitto/mosquitto.conf), and client ids are one
#: namespace across listeners: a meter account named as one of tapwatch's connections (the workers ``tapwatch-1``,
#: ``tapwatch-2`` of docs/scaling.md, each with its ``-alerts`` channel) would drop it. Meter ids starting so (in any
#: case) get no account.
CLIENT_ID_PREFIX = "tapwatch"
# Mosquitto's own default: the passwords are 128 random bits, so a slow hash adds nothing but
# CPU on every meter's connect.
PBKDF2_ITERATIONS = 101


@dataclass
class Result:
    """What a run wrote: counts for the summary line, refused meters with the reason."""

    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    by_hand: list[str] = field(default_factory=list)  # accounts not the run's, kept as they stand
    credentials_file: Path | None = None


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A Mosquitto 2 password hash: ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>``."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def active_meter_ids(conn: Connection) -> list[str]:
    """Meters in service: the meter and its elder both not retired."""
    query = (
        select(meters.c.meter_id)
        .join(elders, elders.c.elder_id == meters.c.elder_id)
        .where(meters.c.retired_at.is_(None), elders.c.retired_at.is_(None))
        .order_by(meters.c.meter_id)
    )
    return list(conn.execute(query).scalars())


def registered_meter_ids(conn: Connection) -> set[str]:
    """Every meter the registry knows, retired or not: their accounts are the run's to write or drop."""
    return set(conn.execute(select(meters.c.meter_id)).scalars())


def read_password_file(path: Path) -> dict[str, str]:
    """``username -> hash`` of an existing password file; empty when there is none."""
    return {name: hashed for name, (hashed, _line) in _password_lines(path).items()}


def _password_lines(path: Path) -> dict[str, tuple[str, str]]:
    """``username -> (hash, the line as it stands)`` of an existing password file."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, hashed = line.partition(":")
        if sep and name and not line.startswith("#"):
            out[name] = (hashed, line)
    return out


def acl_blocks_of_others(path: Path, ours: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """The lines of ``acl`` a run keeps: those before its first ``user`` line that are not comments (topics for
    anonymous clients, ``pattern`` lines), and the ``user`` blocks of accounts not ``ours``; each block with the
    comment and blank lines just above its ``user`` line."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    preamble: list[str] = []
    blocks: list[str] = []
    above: list[str] = []  # comments and blank lines, which go with the next user line if one follows
    keeping: bool | None = None  # None: before the first user line
    for line in lines:
        words = line.split()
        if not words or line.lstrip().startswith("#"):
            above.append(line)
            continue
        if words[0] == "user":
            keeping = len(words) < 2 or not ours(words[1])
            blocks += above if keeping else []
        elif keeping is None:
            preamble.append(line)
        elif keeping:
            blocks += above
        above = []
        if keeping:
            blocks.append(line)
    while blocks and not blocks[0].strip():  # one blank line goes between them and the run's lines, not more each run
        blocks.pop(0)
    return preamble, blocks


def acl_text(meter_ids: Iterable[str], settings: Settings, service_account: str) -> str:
    """The ACL: the monitor reads all meters and writes alerts; each meter writes only its own topic."""
    prefix, alerts = settings.mqtt_topic_prefix, settings.mqtt_alert_prefix
    lines = [
        "# Generated by `tapwatch broker-credentials` from the registry; rerun it rather than edit. The blocks of",
        "# accounts added by hand (not the monitor's, not meters of the registry) are kept, after these.",
        "",
        f"user {service_account}",
        f"topic read {prefix}/#",
        f"topic readwrite {alerts}/#",
        "topic read $SYS/#",
    ]
    for meter_id in meter_ids:
        lines += ["", f"user {meter_id}", f"topic write {prefix}/{meter_id}/readings"]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` whole (a broker reloading mid-write never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _write_new(out_dir: Path, stem: str, text: str, mode: int) -> Path:
    """Write ``text`` to a new file ``stem.csv`` (``stem_2.csv``, ... if taken); never over another file.

    A run within the same second as the last one (a script registering meters in steps) replaced its CSV, and
    the passwords in it existed nowhere else. The suffix sorts after the plain name: ``cat *.csv`` reads in order.
    """
    number = 1
    while True:
        path = out_dir / (f"{stem}.csv" if number == 1 else f"{stem}_{number}.csv")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            number += 1
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        return path


def write_credentials(
    out_dir: Path,
    meter_ids: Iterable[str],
    settings: Settings,
    *,
    rotate: Iterable[str] = (),
    registered: Iterable[str] = (),
    now: float | None = None,
) -> Result:
    """Write ``passwd``, ``acl`` and the CSV of new passwords for ``meter_ids`` into ``out_dir``.

    ``registered``: every meter the registry knows, retired ones too; their accounts are the run's to drop.
    Any other account, not the monitor's, was added by hand: kept, with its ACL block.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    login = settings.mqtt_login  # what the monitor logs in with: the settings, or the broker URL's user:password
    service_account = login.username or "tapwatch"
    reserved = {service_account, SIMULATOR_ACCOUNT}
    meter_ids = list(meter_ids)
    known = set(meter_ids) | set(registered)
    ours = lambda name: name == service_account or name in known  # noqa: E731
    accounts = _password_lines(out_dir / "passwd")
    existing = {name: hashed for name, (hashed, _line) in accounts.items() if ours(name)}
    by_hand = [line for name, (_hash, line) in sorted(accounts.items()) if not ours(name)]
    to_rotate = set(rotate)
    result = Result(by_hand=sorted(name for name in accounts if not ours(name)))
    hashes: dict[str, str] = {}
    new_passwords: dict[str, str] = {}
    client_ids = {settings.mqtt_client_id, f"{settings.mqtt_client_id}-alerts"}
    for meter_id in meter_ids:
        if meter_id in reserved:
            result.refused[meter_id] = "the name of a service account"
        elif meter_id in client_ids or meter_id.lower().startswith(CLIENT_ID_PREFIX):
            result.refused[meter_id] = "a client id of tapwatch's own connections (tapwatch-...)"
        elif not _SAFE_ACCOUNT.fullmatch(meter_id):
            result.refused[meter_id] = "not usable as a broker account (only letters, digits, . _ -)"
        elif meter_id in existing and meter_id not in to_rotate:
            hashes[meter_id] = existing[meter_id]
            result.kept.append(meter_id)
        else:
            new_passwords[meter_id] = secrets.token_hex(16)
            hashes[meter_id] = hash_password(new_passwords[meter_id])
            result.created.append(meter_id)
    result.removed = sorted(set(existing) - set(hashes) - reserved)

    lines = by_hand.copy()
    if login.password is not None:
        lines.append(f"{service_account}:{hash_password(login.password)}")
    lines += [f"{name}:{hashed}" for name, hashed in sorted(hashes.items())]
    if new_passwords:
        # UTC, said so with its Z, as the backups name theirs (deploy/backup/tapwatch-backup.sh)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        result.credentials_file = _write_new(out_dir, f"new-credentials-{stamp}", _csv(new_passwords), 0o600)
    _write(out_dir / "passwd", "".join(line + "\n" for line in lines), 0o600)
    preamble, blocks = acl_blocks_of_others(out_dir / "acl", ours)
    acl = "".join(line + "\n" for line in preamble) + acl_text(sorted(hashes), settings, service_account)
    _write(out_dir / "acl", acl + "".join(line + "\n" for line in ["", *blocks] if blocks), 0o644)
    return result


def _csv(passwords: Mapping[str, str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([["meter_id", "password"], *sorted(passwords.items())])
    return buffer.getvalue()


def cmd_broker_credentials(args: argparse.Namespace) -> int:
    settings = get_settings()
    # A new, empty store would list no meters, and passwd would be rewritten without any of them.
    require_existing_sqlite(settings.effective_database_url)
    engine = open_store(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            meter_ids = active_meter_ids(conn)
            registered = registered_meter_ids(conn)
    finally:
        engine.dispose()
    unknown = set(args.rotate) - set(meter_ids)
    if unknown:
        raise ValueError(f"--rotate names meters that are not registered and active: {', '.join(sorted(unknown))}")
    result = write_credentials(Path(args.out), meter_ids, settings, rotate=args.rotate, registered=registered)
    for meter_id, reason in result.refused.items():
        print(f"tapwatch: meter {meter_id!r} has no broker account: {reason}", file=sys.stderr)
    print(
        f"{len(result.created)} new or rotated, {len(result.kept)} kept, {len(result.removed)} removed "
        f"({', '.join(result.removed) or 'none'}); wrote {args.out}/passwd and {args.out}/acl"
    )
    if result.by_hand:
        print(f"kept as they stand, not meters of the registry (added by hand): {', '.join(result.by_hand)}")
    if result.credentials_file is not None:
        print(f"new passwords: {result.credentials_file} (hand them to the meters' platform, then delete the file)")
    if settings.mqtt_login.password is None:
        print(
            "TAPWATCH_MQTT_PASSWORD is not set (nor a password in TAPWATCH_MQTT_URL): "
            "the monitor's own account is not in the password file"
        )
    return 1 if result.refused else 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "broker-credentials",
        help="Write the Mosquitto password file and ACL for every registered meter.",
        description="Write DIR/passwd and DIR/acl from the registry: one account per active meter, allowed to "
        "publish only to its own readings topic, and the monitor's account (TAPWATCH_MQTT_USERNAME), allowed to "
        "read them all. Existing meters keep their passwords; new passwords go to DIR/new-credentials-*.csv.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory for passwd, acl and the CSV")
    p.add_argument(
        "--rotate", action="append", default=[], metavar="METER_ID", help="give this meter a new password (repeatable)"
    )
    p.set_defaults(func=cmd_broker_credentials)
