"""``tapwatch migrate``, ``tapwatch register`` and ``tapwatch purge``: the store's own commands.

They need the store and the settings but not the detectors or the server, so
running one loads neither (the command table in :mod:`tapwatch.cli`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from core.settings import get_settings
from store import open_store
from store.registry import RegistryError, register_elder
from store.retention import RetentionPolicy, purge

log = logging.getLogger("tapwatch")


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    open_store(settings.effective_database_url).dispose()
    print(f"database at {settings.effective_database_url} is up to date")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Register elders from an elders.json file (the simulator writes one)."""
    engine = open_store(get_settings().effective_database_url)
    records = json.loads(Path(args.file).read_text(encoding="utf-8"))
    added = skipped = 0
    for record in records:
        try:
            with engine.begin() as conn:
                register_elder(conn, record, record["meter_id"], time.time())
            added += 1
        except RegistryError as exc:
            skipped += 1
            log.info("skipped: %s", exc)
    print(f"registered {added} elders ({skipped} already present)")
    engine.dispose()
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete what is past retention now (the running monitor also does it every few hours)."""
    settings = get_settings()
    policy = RetentionPolicy.from_settings(settings)
    engine = open_store(settings.effective_database_url)
    purged = purge(engine, policy, time.time())
    engine.dispose()
    print(
        f"purged {purged.readings} readings older than {policy.readings_days:g} days, "
        f"{purged.dead_letters} dead letters older than {policy.dead_letter_days:g} days, "
        f"{purged.delivered} delivered alert jobs older than {policy.delivered_days:g} days, "
        f"personal data of {purged.elders} elders retired or without consent for {policy.personal_days:g} days"
    )
    return 0


def add_parsers(sub: Any) -> None:
    """``migrate``, ``register`` and ``purge``."""
    p = sub.add_parser(
        "migrate",
        help="Create or upgrade the database schema.",
        description="Bring the configured database to the newest schema revision.",
    )
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser(
        "register",
        help="Register elders and meters from an elders.json file.",
        description="Register every elder in FILE (as written by `tapwatch simulate`).",
    )
    p.add_argument("file", help="elders.json: a list of elders, each with elder_id, name, community, meter_id")
    p.set_defaults(func=cmd_register)
    p = sub.add_parser(
        "purge",
        help="Delete readings, dead letters and delivered alert jobs past their retention.",
        description="Apply the retention settings (TAPWATCH_READINGS_RETENTION_DAYS and others) to the store once.",
    )
    p.set_defaults(func=cmd_purge)
