"""The ``tapwatch`` command: run the monitor, the demo, the simulator, replays and evaluations.

Each subcommand lives in a module that is imported only when that subcommand runs
(:data:`COMMANDS` names the module and the one-line help ``tapwatch --help`` lists),
so ``tapwatch --help`` answers at once instead of loading river, scipy, numpy and
the database stack first. To add a subcommand: write ``add_parser(subparsers)`` in
its module (registering the same name and help) and add a :class:`Command` row here;
``tests/test_cli.py`` checks that the two agree.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapwatch import __version__

if TYPE_CHECKING:
    from tapwatch.settings import Settings

log = logging.getLogger("tapwatch")


def get_settings() -> Settings:
    """The process settings.

    Imported on first use, not at start: pydantic-settings alone takes ~0.1 s to
    import, a third of what ``tapwatch --help`` may take.
    """
    from tapwatch.settings import get_settings as load

    return load()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("amqtt", "transitions", "uvicorn.access", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(settings: Settings, service: Any) -> None:
    """Serve the API (and dashboard) in this thread until interrupted or terminated."""
    import uvicorn

    from api.main import create_app

    app = create_app(settings, service.engine, service)
    server = uvicorn.Server(api_server_config(app, settings))
    _shutdown.server = server
    if _shutdown.requested.is_set():  # SIGTERM came while starting: stop without serving
        return
    server.run()


def api_server_config(app: Any, settings: Settings) -> Any:
    """uvicorn's configuration for the API.

    ``proxy_headers`` off: uvicorn would otherwise believe ``X-Forwarded-For`` from
    loopback; the API reads it itself, from ``settings.trusted_proxies`` only
    (``api.security.client_address``).
    """
    import uvicorn

    return uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="warning", proxy_headers=False)


class _Shutdown:
    """SIGTERM handling that never raises inside arbitrary code: it only asks the server to stop.

    uvicorn handles SIGTERM itself while it runs and then re-raises it to this handler; a
    SIGTERM during start-up is remembered and stops the server before it starts. Either way
    ``serve`` returns and the caller's clean-up (finish the batch, save state) runs.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.server: Any = None

    def __call__(self, _signum: int, _frame: object) -> None:
        self.requested.set()
        if self.server is not None:
            self.server.should_exit = True


_shutdown = _Shutdown()


def cmd_run(args: argparse.Namespace) -> int:
    from tapwatch.service import Service

    settings = get_settings()
    service = Service(settings)
    service.start()
    print(
        f"tapwatch {__version__}: API and dashboard on http://{settings.api_host}:{settings.api_port}/",
        flush=True,
    )
    try:
        serve(settings, service)
    finally:
        service.stop()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from tapwatch.store import open_store

    settings = get_settings()
    open_store(settings.effective_database_url).dispose()
    print(f"database at {settings.effective_database_url} is up to date")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Register elders from an elders.json file (the simulator writes one), or update the ones registered.

    Each record is checked as ``POST /elders`` checks it (the same model) and stored in its own
    transaction; a bad record is named on stderr and makes the exit status 1, the others still count.
    """
    from pydantic import ValidationError

    from api.audit import record as audit
    from api.models import ElderCreate
    from tapwatch.registry import RegistryError, upsert_elder
    from tapwatch.store import open_store
    from tapwatch.store.versions import mark_changed

    try:
        records = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(records, list):
        print(f"{args.file}: expected a JSON list of elder records", file=sys.stderr)
        return 2
    engine = open_store(get_settings().effective_database_url)
    added = unchanged = bad = 0
    updated: list[str] = []
    for number, raw in enumerate(records, start=1):
        elder_id = raw.get("elder_id") if isinstance(raw, dict) else None
        label = f"record {number}" + (f" ({elder_id})" if elder_id else "")
        try:
            elder = ElderCreate.model_validate(raw)
        except ValidationError as exc:
            bad += 1
            print(f"{label}: {_validation_errors(exc)}", file=sys.stderr)
            continue
        # Only the fields the record gives: one left out of the file keeps its stored value on an update.
        values = elder.model_dump(exclude={"meter_id"}, exclude_unset=True)
        try:
            with engine.begin() as conn:
                changed = upsert_elder(conn, values, elder.meter_id, time.time())
                if changed != {}:
                    audit(
                        conn,
                        actor=REGISTER_ACTOR,
                        action="elder.create" if changed is None else "elder.update",
                        target=f"elder:{elder.elder_id}",
                        community=elder.community,
                        new={"meter_id": elder.meter_id, "community": elder.community}
                        if changed is None
                        else {"fields": sorted(changed)},  # which fields, never the contacts themselves
                        reason=f"tapwatch register {Path(args.file).name}",
                    )
                    mark_changed(conn, [elder.meter_id])
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
    from tapwatch.retention import RetentionPolicy, purge
    from tapwatch.store import open_store

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


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its name, the help ``tapwatch --help`` lists, and where it is defined."""

    name: str
    help: str
    module: str  # imported only when this subcommand runs (or by build_parser() with no selection)
    register: str = "add_parser"  # the module's function that adds it to the subparsers


COMMANDS: tuple[Command, ...] = (
    Command("run", "Run the monitor: ingest from MQTT, detect, alert, serve the API.", __name__, "add_parsers"),
    Command("demo", "Run the whole monitor on embedded defaults with simulated elders (one falls).", "tapwatch.demo"),
    Command(
        "simulate", "Simulate elders' water meters (readings + ground-truth labels) to files or MQTT.", "simulator.cli"
    ),
    Command(
        "replay",
        "Replay a readings CSV through the detectors and print the alerts as JSON lines.",
        "tapwatch.replay",
    ),
    Command(
        "eval",
        "Score tapwatch, river's HalfSpaceTrees, the fixed rules and the oracle side by side on labelled data.",
        "tapwatch.evaluate",
    ),
    Command("user", "Create, list, reset and disable API users.", "tapwatch.usercli", "add_parsers"),
    Command("token", "Create, list and revoke API keys.", "tapwatch.usercli", "add_parsers"),
    Command(
        "broker-credentials",
        "Write the Mosquitto password file and ACL for every registered meter.",
        "tapwatch.brokercreds",
    ),
    Command("migrate", "Create or upgrade the database schema.", __name__, "add_parsers"),
    Command("register", "Register elders and meters from an elders.json file.", __name__, "add_parsers"),
    Command(
        "purge",
        "Delete readings, dead letters and delivered alert jobs past their retention.",
        __name__,
        "add_parsers",
    ),
)


def add_parsers(sub: Any) -> None:
    """The subcommands defined in this module (they import what they need when they run)."""
    p = sub.add_parser(
        "run",
        help="Run the monitor: ingest from MQTT, detect, alert, serve the API.",
        description="Run the monitor with the configured broker and store, and serve the API.",
    )
    p.set_defaults(func=cmd_run)
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


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``tapwatch`` parser; ``load`` names the subcommands whose modules are imported (default: all).

    Subcommands not loaded are listed with their help but take no arguments: ``main``
    loads the one on the command line, so only its module is imported.
    """
    parser = argparse.ArgumentParser(
        prog="tapwatch",
        description="Water-use anomaly monitor for elders who live alone. Settings come from TAPWATCH_* "
        "environment variables or a .env file (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"tapwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = [c for c in COMMANDS if load is None or c.name in load]
    for module, register in dict.fromkeys((c.module, c.register) for c in wanted):  # once per module, in order
        getattr(importlib.import_module(module), register)(sub)
    for command in COMMANDS:
        if command.name not in sub.choices:
            sub.add_parser(command.name, help=command.help, add_help=False)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the global options take no values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    args = build_parser(load=() if command is None else (command,)).parse_args(argv)
    _setup_logging(args.verbose)
    # uvicorn handles SIGTERM itself and then re-raises it to this handler.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _shutdown)
    try:
        code = int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as exc:
        print(f"tapwatch: error: {exc}", file=sys.stderr)
        return 2
    if _shutdown.requested.is_set():
        log.info("SIGTERM: stopped cleanly")
    return code


if __name__ == "__main__":
    sys.exit(main())
