"""``tapwatch simulate``: write simulated readings and labels to files, or publish them over MQTT."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.argtypes import number
from core.progress import Progress
from core.settings import check_ca_bundle, shown_url
from simulator.config import SimConfig
from simulator.core import simulate
from simulator.follow import follow
from simulator.publisher import PublishStats, publish


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="Simulate elders' water meters (readings + ground-truth labels) to files or MQTT.",
        description="Simulate elders living alone and their smart water meters, with labelled incidents, "
        "life events and meter faults. With --out, write readings.csv (meter_id,ts,total_l), labels.json, "
        "elders.json and simulation.json. With --mqtt, publish the real message format to a broker in "
        "accelerated time; with --mqtt and --follow, send what the meters delivered until now at once, then "
        "each reading when its meter sends it, in real time, until stopped (a live demo). Output is "
        "deterministic for a given --seed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _arguments(p)
    p.set_defaults(func=run)
    return p


DEFAULT_DAYS = 30
DEFAULT_START = "2026-01-05"
#: --follow's default start: two whole local days before today, all within the monitor's 72 h late window.
FOLLOW_HISTORY_DATES = 2
DEFAULT_SPEED = 1800.0
DEFAULT_HISTORY_DAYS = 1.0
DEFAULT_PREFIX = "tapwatch/meters"
#: Options that shape only what goes over MQTT: given without --mqtt they would be ignored, so they are refused.
MQTT_ONLY = ("speed", "history_days", "prefix", "ca", "follow")
#: Options --follow has no use for: it publishes an endless simulation in real time from now.
NOT_WITH_FOLLOW = ("days", "speed", "history_days", "out")


def _ca_bundle(text: str) -> str:
    try:
        check_ca_bundle(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--elders", type=int, default=100, help="number of elders (one meter each)")
    # --days and --start, like the MQTT-only options below, are absent unless given (SUPPRESS): --follow refuses
    # the one and sets its own default for the other.
    p.add_argument("--days", type=int, default=argparse.SUPPRESS, help=f"simulated days (default: {DEFAULT_DAYS})")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--start",
        default=argparse.SUPPRESS,
        help=f"first local date (simulation starts at its midnight) (default: {DEFAULT_START}; with --follow "
        f"the date {FOLLOW_HISTORY_DATES} days before today at UTC+8)",
    )
    p.add_argument("--out", metavar="DIR", help="write readings.csv, labels.json, elders.json here")
    p.add_argument("--mqtt", metavar="URL", help="publish to this broker, e.g. mqtt://127.0.0.1:1883")
    # MQTT-only options are absent unless given (SUPPRESS), so that one given without --mqtt can be refused
    # (_refuse_ignored) and --help shows the defaults applied with --mqtt rather than "None".
    p.add_argument(
        "--speed",
        type=number(0.0),
        default=argparse.SUPPRESS,
        help=f"MQTT: simulated seconds per wall second (0 = as fast as possible) (default: {DEFAULT_SPEED:g})",
    )
    p.add_argument(
        "--history-days",
        type=number(0.0),
        default=argparse.SUPPRESS,
        help=f"MQTT: days sent first, at once, so the monitor starts with learned routines "
        f"(default: {DEFAULT_HISTORY_DAYS:g})",
    )
    p.add_argument("--prefix", default=argparse.SUPPRESS, help=f"MQTT topic prefix (default: {DEFAULT_PREFIX})")
    p.add_argument(
        "--ca",
        metavar="FILE",
        type=_ca_bundle,
        default=argparse.SUPPRESS,
        help="MQTT: CA bundle to verify an mqtts:// broker's certificate with, e.g. the district's own CA "
        "(default: the system's CAs)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        default=argparse.SUPPRESS,
        help="MQTT: publish at once what the meters delivered from --start until now, then each reading when "
        "its meter sends it (each on its own minute of the half hour), in real time, until stopped "
        "(Ctrl-C, SIGTERM); the simulation goes on without end, a week at a time. Not with --days, --speed, "
        "--history-days or --out",
    )
    p.add_argument("--unit", choices=["l", "m3"], default="l", help="register unit in files and messages")
    p.add_argument("--batches", action="store_true", help="meters upload daily batches of 48 readings")
    p.add_argument("--no-incidents", action="store_true", help="no random incidents")
    p.add_argument("--no-events", action="store_true", help="no random life events (away, visits, illness...)")
    p.add_argument("--no-faults", action="store_true", help="clean meters: no faults")


def config_from_args(args: argparse.Namespace, now: float | None = None) -> SimConfig:
    """The simulation the options ask for (``now``: the clock --follow's default start is taken from)."""
    return SimConfig(
        elders=args.elders,
        days=getattr(args, "days", DEFAULT_DAYS),
        seed=args.seed,
        start=getattr(args, "start", None) or _default_start(args, time.time() if now is None else now),
        unit=args.unit,
        daily_batches=args.batches,
        random_incidents=not args.no_incidents,
        random_events=not args.no_events,
        faults=not args.no_faults,
    )


def _default_start(args: argparse.Namespace, now: float) -> str:
    if not getattr(args, "follow", False):
        return DEFAULT_START
    # The simulated elders live at UTC+8 (SimConfig.tz_offset_h): their dates, not the host's.
    today = (datetime.fromtimestamp(now, UTC) + timedelta(hours=SimConfig.tz_offset_h)).date()
    return (today - timedelta(days=FOLLOW_HISTORY_DATES)).isoformat()


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """The options of ``names`` given on the command line (absent, None or an unset flag's False are not)."""
    return [f"--{name.replace('_', '-')}" for name in names if not _left_out(getattr(args, name, None))]


def _left_out(value: object) -> bool:
    # By identity: `0.0 in (None, False)` is true (0 == False), which took `--speed 0` for an option left out.
    return value is None or value is False


def _named(options: list[str]) -> str:
    """``--a``, ``--a and --b``, ``--a, --b and --c``."""
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} and {options[-1]}"


def _them(options: list[str]) -> str:
    return "it" if len(options) == 1 else "them"


def _refuse_ignored(args: argparse.Namespace) -> None:
    """Refuse options that would change nothing, before minutes of simulating (tapwatch.cli: exit 2, one line)."""
    given = _given(args, MQTT_ONLY)
    if given and not args.mqtt:
        shape = "shapes" if len(given) == 1 else "shape"
        raise ValueError(
            f"{_named(given)} only {shape} what is published: give --mqtt URL too, or leave {_them(given)} out"
        )
    clashing = _given(args, NOT_WITH_FOLLOW)
    if getattr(args, "follow", False) and clashing:
        raise ValueError(
            f"--follow publishes an endless simulation in real time from now, without {_named(clashing)}: "
            f"leave {_them(clashing)} out (write files with a run of their own)"
        )
    if getattr(args, "ca", None) and not args.mqtt.startswith("mqtts://"):
        raise ValueError("--ca verifies a TLS broker: give an mqtts:// URL, or leave --ca out")


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.mqtt:
        print("tapwatch simulate: give --out DIR and/or --mqtt URL", file=sys.stderr)
        return 2
    _refuse_ignored(args)
    if getattr(args, "follow", False):
        return _follow(args)
    began = time.perf_counter()
    res = simulate(config_from_args(args), Progress("simulate", total=args.elders, unit="elders"))
    kinds = Counter(lab.kind for lab in res.labels)
    print(
        f"simulated {len(res.meter_ids)} meters x {res.config.days} days: {len(res.ts)} readings, "
        f"{len(res.labels)} labels ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) "
        f"in {time.perf_counter() - began:.1f} s",
        flush=True,
    )
    if args.out:
        res.write(args.out)
        print(
            f"wrote {args.out}/readings.csv, labels.json, elders.json, simulation.json "
            f"({time.perf_counter() - began:.1f} s)",
            flush=True,
        )
    if args.mqtt:
        speed = getattr(args, "speed", DEFAULT_SPEED)
        stats = publish(
            res,
            url=args.mqtt,
            speed=speed if speed > 0 else None,
            prefix=getattr(args, "prefix", DEFAULT_PREFIX),
            history_days=getattr(args, "history_days", DEFAULT_HISTORY_DAYS),
            ca_file=getattr(args, "ca", None),
            progress=Progress("simulate: publishing", unit="messages"),
        )
        print(
            f"published {stats.messages} messages ({stats.readings} readings, {stats.malformed} malformed) "
            f"to {shown_url(args.mqtt)}",
            flush=True,
        )
    return 0


def _follow(args: argparse.Namespace) -> int:
    """``--follow``: publish until SIGTERM or Ctrl-C, then disconnect and say what was sent."""
    cfg = config_from_args(args)
    where = shown_url(args.mqtt)
    stop = threading.Event()

    def history_sent(stats: PublishStats) -> None:
        print(
            f"published {stats.messages} messages ({stats.readings} readings) delivered from {cfg.start} until now "
            f"to {where}; following in real time until stopped",
            flush=True,
        )

    with _stopped_by_signals(stop):
        stats = follow(
            cfg,
            url=args.mqtt,
            prefix=getattr(args, "prefix", DEFAULT_PREFIX),
            stop_event=stop,
            ca_file=getattr(args, "ca", None),
            on_history=history_sent,
        )
    print(
        f"published {stats.messages} messages ({stats.readings} readings, {stats.malformed} malformed) to {where}; "
        "stopped",
        flush=True,
    )
    return 0


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (a container's stop, Ctrl-C): following ends between two messages.

    As a container's PID 1, Python would ignore SIGTERM without a handler, and Docker kill it 10 s later.
    """
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["simulate", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
