"""``tapwatch migrate``, ``tapwatch register`` and ``tapwatch purge``: the store's own commands.

They need the store and the settings but not the detectors or the server, so
running one loads neither (the command table in :mod:`tapwatch.cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api.models import ElderCreate
from core.jsonfile import load_json_file
from core.settings import get_settings
from ingest.csvsource import quoted
from ingest.payload import valid_meter_id
from store import create_store_engine, migrate_to, open_store, shown_store_url
from store.audit import record as record_audit
from store.audit import without_contacts
from store.registry import RegistryError, upsert_elder
from store.retention import RetentionPolicy, purge
from store.versions import mark_changed
from tapwatch.usercli import require_existing_sqlite

log = logging.getLogger("tapwatch")


def cmd_migrate(args: argparse.Namespace) -> int:
    """The schema at the newest revision, or at ``--to``'s (an older one: going back before an upgrade)."""
    engine = create_store_engine(get_settings().effective_database_url)
    try:
        was, now = migrate_to(engine, args.to or "head", drop_held_findings=args.drop_held_findings)
    finally:
        engine.dispose()
    where = shown_store_url(engine.url)
    if args.to:
        print(f"database at {where}: schema at revision {now} (was {was or 'none'})")
    else:
        print(f"database at {where} is up to date (schema revision {now}, was {was or 'none'})")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Register elders from an elders.json file (the simulator writes one), or update the ones registered.

    Each record is checked as ``POST /elders`` checks it (the same model) and stored in its own
    transaction; a bad record is named on stderr and makes the exit status 1, the others still count.
    Records giving one elder id twice are all refused (:func:`_repeated_elders`).
    """
    try:
        records = load_json_file(args.file)  # as Windows saves it too: UTF-16 (PowerShell's `>`), UTF-8 with BOM
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(records, list):
        print(f"{args.file}: expected a JSON list of elder records", file=sys.stderr)
        return 2
    url = get_settings().effective_database_url
    if not args.create_store:
        # Elders registered into a new store the monitor does not run on: their readings would be dead-lettered.
        require_existing_sqlite(url, create_flag="--create-store")
    # Here, not at the top: the alert stack pulls in the detectors, which `tapwatch purge --help` must not load.
    from alerts.manager import AlertManager

    engine = open_store(url)
    manager = AlertManager.from_settings(get_settings())  # a moved elder's open cases follow her, as events
    added = unchanged = bad = 0
    updated: list[str] = []
    repeated = _repeated_elders(records)
    for number, raw in enumerate(records, start=1):
        elder_id = raw.get("elder_id") if isinstance(raw, dict) else None
        label = f"record {number}" + (f" ({_elder_shown(elder_id)})" if elder_id else "")
        if number in repeated:
            bad += 1
            print(f"{label}: {repeated[number]}", file=sys.stderr)
            continue
        try:
            elder = ElderCreate.model_validate(raw)
        except ValidationError as exc:
            bad += 1
            print(f"{label}: {_validation_errors(exc)}", file=sys.stderr)
            continue
        # Only the fields the record gives: one left out of the file keeps its stored value on an update.
        values = elder.model_dump(exclude={"meter_id"}, exclude_unset=True)
        reason = f"tapwatch register {Path(args.file).name}"
        try:
            with engine.begin() as conn:
                # What changed, and her registration before: steps of her cases still queued are redone for her now.
                changed, was = upsert_elder(
                    conn, values, elder.meter_id, time.time(), actor=REGISTER_ACTOR, reason=reason
                )
                if changed != {}:
                    # An update names what each field was and became, as PATCH /elders does (never the contacts).
                    record_audit(
                        conn,
                        actor=REGISTER_ACTOR,
                        action="elder.create" if changed is None else "elder.update",
                        target=f"elder:{elder.elder_id}",
                        community=elder.community,
                        old=None if changed is None or was is None else without_contacts({k: was[k] for k in changed}),
                        new={"meter_id": elder.meter_id, "community": elder.community}
                        if changed is None
                        else without_contacts(changed),
                        reason=reason,
                    )
                    mark_changed(conn, [elder.meter_id])
                if changed and was is not None:  # her cases follow her: a move, a new door or name, a new time zone
                    manager.elder_changed(conn, elder.elder_id, was, changed, REGISTER_ACTOR, time.time())
        except RegistryError as exc:
            bad += 1
            print(f"{label}: {exc}", file=sys.stderr)
            continue
        if changed is None:
            added += 1
        elif changed:
            updated.append(f"{elder.elder_id} ({', '.join(sorted(changed))})")
        else:
            unchanged += 1
    engine.dispose()
    print(f"registered {added} elders, updated {len(updated)}, {unchanged} unchanged, {bad} refused")
    for line in updated:
        print(f"  updated {line}")
    return 1 if bad else 0


def _repeated_elders(records: list[Any]) -> dict[int, str]:
    """Records (by number, from 1) whose elder id another record of the file gives too, with why they are refused.

    Taken one after the other, the later record silently updated the elder the earlier one registered (another
    person's name and door under her id, a copy-paste): which is right cannot be told, so none of them is taken.
    """
    numbers: dict[str, list[int]] = {}
    for number, raw in enumerate(records, start=1):
        elder_id = raw.get("elder_id") if isinstance(raw, dict) else None
        if isinstance(elder_id, str):
            numbers.setdefault(elder_id, []).append(number)
    out: dict[int, str] = {}
    for elder_id, given in numbers.items():
        if len(given) > 1:
            why = f"elder {quoted(elder_id)} is given by records {', '.join(map(str, given))}: one record per elder"
            out.update(dict.fromkeys(given, why))
    return out


def _elder_shown(elder_id: object) -> str:
    """A record's elder id as its line on stderr names it: as written if it is an id, else quoted and cut short (a
    file's id is any text: a damaged file's megabyte, a terminal's control sequence)."""
    text = str(elder_id)
    return text if valid_meter_id(text) else quoted(text)  # an elder id's pattern is a meter id's


#: Who the audit log names for changes made by ``tapwatch register``.
REGISTER_ACTOR = "cli:register"


def _validation_errors(exc: Any) -> str:
    """pydantic's errors as one line: ``tz: unknown time zone 'Mars/Olympus'; meter_id: missing``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "record"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {'missing' if error['type'] == 'missing' else message}")
    return "; ".join(parts)


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete what is past retention now (the running monitor also does it every few hours)."""
    settings = get_settings()
    policy = RetentionPolicy.from_settings(settings)
    # A new, empty store has nothing to purge: "purged 0" would hide that the real one was not touched.
    require_existing_sqlite(settings.effective_database_url)
    engine = open_store(settings.effective_database_url)
    purged = purge(engine, policy, time.time())
    engine.dispose()
    print(
        f"purged {purged.readings} readings older than {policy.readings_days:g} days, "
        f"{purged.dead_letters} dead letters older than {policy.dead_letter_days:g} days, "
        f"{purged.delivered} delivered alert jobs older than {policy.delivered_days:g} days, "
        f"personal data of {purged.elders} elders retired or without consent for {policy.personal_days:g} days, "
        f"{purged.daily_notes} daily-note markers, {purged.tokens} expired login tokens, "
        f"{purged.checkpoints} checkpoints of meters replaced {policy.personal_days:g} days ago"
    )
    return 0


def add_parsers(sub: Any) -> None:
    """``migrate``, ``register`` and ``purge``."""
    p = sub.add_parser(
        "migrate",
        help="Create or upgrade the database schema.",
        description="Bring the configured database to the newest schema revision, or to --to's.",
    )
    p.add_argument(
        "--to",
        metavar="REVISION",
        help="the schema revision to bring the database to (default: the newest); an older one undoes the "
        "migrations since, dropping what they added: going back to the release before an upgrade, run it with the "
        "newer release, which knows how, every worker stopped (docs/deploy.md, Upgrade)",
    )
    p.add_argument(
        "--drop-held-findings",
        action="store_true",
        help="going back before revision 0015: drop the findings held through a snooze until its window ends "
        "(refused without it while there are any: they would call nobody)",
    )
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser(
        "register",
        help="Register elders and meters from an elders.json file.",
        description="Register every elder in FILE (as written by `tapwatch simulate`), or update the ones "
        "registered already (only the fields a record gives). Each record is checked as POST /elders checks it; a "
        "bad one is named and the others still count, with exit status 1.",
    )
    p.add_argument("file", help="elders.json: a list of elders, each with elder_id, name, community, meter_id")
    p.add_argument(
        "--create-store",
        action="store_true",
        help="create the SQLite store if it does not exist yet (registering before the first start); "
        "without it a missing store is an error",
    )
    p.set_defaults(func=cmd_register)
    p = sub.add_parser(
        "purge",
        help="Delete what is past its retention: old readings, dead letters and delivered alert jobs, and the "
        "personal data of elders retired or without consent.",
        description="Apply the retention settings to the store once, as the monitor does every "
        "TAPWATCH_RETENTION_CHECK_HOURS: readings older than TAPWATCH_READINGS_RETENTION_DAYS, dead letters and "
        "delivered alert jobs past theirs, and, for good, the personal data (name, address, contacts, away "
        "windows, learned routine, her own thresholds) of elders retired or without consent for "
        "TAPWATCH_PERSONAL_DATA_RETENTION_DAYS (docs/api.md, Privacy). Alerts, their history and the audit log stay.",
    )
    p.set_defaults(func=cmd_purge)
