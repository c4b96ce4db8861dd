"""The ``tapwatch`` command: run the monitor, the demo, the simulator, replays and evaluations.

Each subcommand lives in a module that is imported only when that subcommand runs
(:data:`COMMANDS` names the module and the one-line help ``tapwatch --help`` lists),
so ``tapwatch --help`` answers at once instead of loading river, scipy, numpy and
the database stack first. To add a subcommand: write ``add_parser(subparsers)`` in
its module (registering the same name and help) and add a :class:`Command` row here;
``tests/app/test_cli.py`` checks that the two agree.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from core import __version__
from tapwatch.shutdown import shutdown

log = logging.getLogger("tapwatch")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("amqtt", "transitions", "uvicorn.access", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its name, the help ``tapwatch --help`` lists, and where it is defined."""

    name: str
    help: str
    module: str  # imported only when this subcommand runs (or by build_parser() with no selection)
    register: str = "add_parser"  # the module's function that adds it to the subparsers


COMMANDS: tuple[Command, ...] = (
    Command("run", "Run the monitor: ingest from MQTT, detect, alert, serve the API.", "tapwatch.serving"),
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
    Command(
        "report",
        "Print what the cadres found on the cases raised: false calls per elder-month, per community.",
        "tapwatch.reportcli",
    ),
    Command("user", "Create, list, reset and disable API users.", "tapwatch.usercli", "add_parsers"),
    Command("token", "Create, list and revoke API keys.", "tapwatch.usercli", "add_parsers"),
    Command(
        "broker-credentials",
        "Write the Mosquitto password file and ACL for every registered meter.",
        "tapwatch.brokercreds",
    ),
    Command("migrate", "Create or upgrade the database schema.", "tapwatch.storecli", "add_parsers"),
    Command("register", "Register elders and meters from an elders.json file.", "tapwatch.storecli", "add_parsers"),
    Command(
        "purge",
        "Delete what is past its retention: old readings, dead letters and delivered alert jobs, and the "
        "personal data of elders retired or without consent.",
        "tapwatch.storecli",
        "add_parsers",
    ),
)


#: The commands that obey :data:`tapwatch.shutdown.shutdown` (stop serving, finish the batch in hand, save
#: state). Any other keeps SIGTERM's default and ends at once: the handler would only be a flag nobody reads.
STOPS_CLEANLY_ON_SIGTERM = frozenset({"run", "demo"})


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


def _message(exc: Exception) -> str:
    """What was wrong, in one line; a setting is named by its variable, never quoted: it may be a secret."""
    from pydantic import ValidationError  # already loaded when a model raised it

    if not isinstance(exc, ValidationError):
        return str(exc)
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field, *inner = [str(part) for part in error["loc"]] or ["settings"]
        if exc.title == "Settings" and error["loc"]:
            field = f"TAPWATCH_{field.upper()}"
        where = "".join([field, *(f"[{part}]" for part in inner)])
        problems.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(problems)


def _store_unreachable(exc: Exception, store_url: str | None = None) -> str | None:
    """One line for a store that could not be used (down, wrong host or port, refused login); else None.

    ``store_url`` is the store the command used when it is not the settings' (``args.store_url``: the demo's
    own). SQLAlchemy is looked up, not imported: a command that failed before loading it has no such error.
    """
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, errors.OperationalError):
        return None
    from sqlalchemy.engine import make_url

    from core.settings import get_settings

    url = make_url(store_url or get_settings().effective_database_url)
    where = url.database if url.drivername.startswith("sqlite") else f"{url.host or 'localhost'}:{url.port or 5432}"
    reason = next(iter(str(exc.orig).strip().splitlines()), "") or type(exc.orig).__name__
    return f"cannot use the store at {where}: {without_passwords(reason)}"


#: Where a connection string holds a password: a URL's ``user:password@``, libpq's ``password=`` (quoted or not).
_PASSWORDS = (
    re.compile(r"(?P<keep>://[^/\s:@]*:)[^@\s]*(?=@)"),
    re.compile(r"(?P<keep>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE),
)


def without_passwords(text: str) -> str:
    """``text`` with every password a connection string in it holds masked; no other word is touched.

    Drivers do not quote the password, but a message is no place to find out. Masked where it stands, not
    by its value: a password of one letter replaced wherever that letter appears left nothing to read.

    >>> without_passwords("cannot parse postgresql://tapwatch:e@db:5432/t: connection refused")
    'cannot parse postgresql://tapwatch:***@db:5432/t: connection refused'
    >>> without_passwords("invalid dsn: host=db password='a b' user=e")
    'invalid dsn: host=db password=*** user=e'
    """
    for where in _PASSWORDS:
        text = where.sub(lambda found: f"{found['keep']}***", text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    args = build_parser(load=() if command is None else (command,)).parse_args(argv)
    _setup_logging(args.verbose)
    # uvicorn handles SIGTERM itself and then re-raises it to this handler.
    if args.command in STOPS_CLEANLY_ON_SIGTERM and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, shutdown)
    try:
        code = int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader had what it wanted (`tapwatch replay FILE | head`): nothing is wrong
        # Python flushes stdout again at exit: into the void, not into a second broken pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (ValueError, OSError) as exc:  # bad input, or a path that is missing or unusable
        print(f"tapwatch: error: {_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        unreachable = _store_unreachable(exc, getattr(args, "store_url", None))
        if unreachable is None:
            raise
        print(f"tapwatch: error: {unreachable}", file=sys.stderr)
        return 1
    if shutdown.requested.is_set():
        log.info("SIGTERM: stopped cleanly")
    return code


if __name__ == "__main__":
    sys.exit(main())
