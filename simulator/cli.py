"""``tapwatch simulate``: write simulated readings and labels to files, or publish them over MQTT."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from core.argtypes import number
from core.progress import Progress
from core.settings import check_ca_bundle, shown_url
from simulator.config import SimConfig
from simulator.core import simulate
from simulator.publisher import publish


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="Simulate elders' water meters (readings + ground-truth labels) to files or MQTT.",
        description="Simulate elders living alone and their smart water meters, with labelled incidents, "
        "life events and meter faults. With --out, write readings.csv (meter_id,ts,total_l), labels.json, "
        "elders.json and simulation.json. With --mqtt, publish the real message format to a broker in "
        "accelerated time. Output is deterministic for a given --seed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _arguments(p)
    p.set_defaults(func=run)
    return p


DEFAULT_SPEED = 1800.0
DEFAULT_HISTORY_DAYS = 1.0
DEFAULT_PREFIX = "tapwatch/meters"
#: Options that shape only what goes over MQTT: given without --mqtt they would be ignored, so they are refused.
MQTT_ONLY = ("speed", "history_days", "prefix", "ca")


def _ca_bundle(text: str) -> str:
    try:
        check_ca_bundle(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--elders", type=int, default=100, help="number of elders (one meter each)")
    p.add_argument("--days", type=int, default=30, help="simulated days")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--start", default="2026-01-05", help="first local date (simulation starts at its midnight)")
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
    p.add_argument("--unit", choices=["l", "m3"], default="l", help="register unit in files and messages")
    p.add_argument("--batches", action="store_true", help="meters upload daily batches of 48 readings")
    p.add_argument("--no-incidents", action="store_true", help="no random incidents")
    p.add_argument("--no-events", action="store_true", help="no random life events (away, visits, illness...)")
    p.add_argument("--no-faults", action="store_true", help="clean meters: no faults")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        elders=args.elders,
        days=args.days,
        seed=args.seed,
        start=args.start,
        unit=args.unit,
        daily_batches=args.batches,
        random_incidents=not args.no_incidents,
        random_events=not args.no_events,
        faults=not args.no_faults,
    )


def _refuse_ignored(args: argparse.Namespace) -> None:
    """Refuse options that would change nothing, before minutes of simulating (tapwatch.cli: exit 2, one line)."""
    given = [f"--{name.replace('_', '-')}" for name in MQTT_ONLY if getattr(args, name, None) is not None]
    if given and not args.mqtt:
        raise ValueError(f"{', '.join(given)} only shape what is published: give --mqtt URL too, or leave them out")
    if getattr(args, "ca", None) and not args.mqtt.startswith("mqtts://"):
        raise ValueError("--ca verifies a TLS broker: give an mqtts:// URL, or leave --ca out")


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.mqtt:
        print("tapwatch simulate: give --out DIR and/or --mqtt URL", file=sys.stderr)
        return 2
    _refuse_ignored(args)
    began = time.perf_counter()
    res = simulate(config_from_args(args), Progress("simulate", total=args.elders, unit="elders"))
    kinds = Counter(lab.kind for lab in res.labels)
    print(
        f"simulated {len(res.meter_ids)} meters x {args.days} days: {len(res.ts)} readings, "
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["simulate", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
