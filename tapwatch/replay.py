"""``tapwatch replay``: a readings CSV through the engine's replay loop, one JSON object per alert.

The loop (:class:`engine.replay.Replayer`) is the live pipeline's per-meter step
and alert rule in memory: no broker, no store. Readings are read in one zone
(``--tz``, else ``Settings.timezone``), the rule every path uses for a meter's
local time; the UTC offsets written in the file only place its readings in time.

Findings are grouped into cases as live (:mod:`alerts.grouping`): one open
community case per elder, one maintenance case per meter. Each line says what
the finding did to its case (``case_event``: raised, joined, reopened, and with
``--resolutions`` cleared, resolved), the case's number in the run (``case``),
its kinds and its occurrence count (and ``severity_raised`` when a joined
finding raised the case's severity: live, that re-notifies and escalates); the
summary counts cases per route.

``--outcomes LABELS.json`` closes the loop as cadres would: each community alert
raised at data time t is resolved at t + ``--visit-delay-h`` with ``needed_help``
if a labelled incident of that meter spans it (start <= t <= end + 2 h), else
``false_alarm``, and the meter learns from it (:mod:`engine.outcomes`). As live, an
alert the data closed first (use resumed, cleared) learns from the visit only if it
comes within ``TAPWATCH_OUTCOME_WINDOW_DAYS`` of the closing.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

import orjson

from alerts.grouping import HoldDowns
from core.argtypes import number
from core.domain import COMMUNITY, MAINTENANCE, Finding
from core.progress import Progress, track
from core.settings import get_settings, known_zone
from detect import Thresholds
from engine.alerting import RAISED
from engine.localtime import meter_zone
from engine.outcomes import VISIT_DELAY_H, OutcomeSchedule, load_labels
from engine.replay import IN_THE_FUTURE, KEPT_EXAMPLES, Replayer
from ingest.csvsource import iter_csv, quoted
from ingest.payload import valid_meter_id

__all__ = ["add_parser", "finding_json", "parse_overrides", "run", "thresholds_from"]


def finding_json(f: Finding, tz: str, language: str) -> dict[str, Any]:
    local = ZoneInfo(tz)
    record: dict[str, Any] = {
        "meter_id": f.meter_id,
        "kind": f.kind,
        "ts": datetime.fromtimestamp(f.ts, UTC).astimezone(local).isoformat(),
        "severity": f.severity,
        "message": f.message_zh if language == "zh" else f.message_en,
        "message_en": f.message_en,
        "basis": f.basis,
        "route": f.route,
    }
    if f.since is not None:
        record["since"] = datetime.fromtimestamp(f.since, UTC).astimezone(local).isoformat()
    if f.resolved:
        record["resolved"] = True
    return record


def parse_overrides(pairs: list[str]) -> dict[str, float]:
    """``--set NAME=VALUE`` pairs as numbers by name (names and bounds are checked by :func:`thresholds_from`)."""
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects NAME=VALUE, got {pair!r}")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--set {name.strip()} expects a number, got {value!r}") from None
    return values


def zone(text: str) -> str:
    """``--tz``: a zone zoneinfo knows (a mistyped one would quietly give Asia/Shanghai, the last resort)."""
    try:
        return known_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def thresholds_from(pairs: list[str]) -> Thresholds:
    """The default thresholds with ``--set`` overrides, held to the bounds the API enforces.

    A replay or eval with a value the API would refuse (e.g. ``ceiling_hours=9999``) would measure
    a setting no operator can choose, so it is an error here too.
    """
    thresholds = Thresholds().replace(**parse_overrides(pairs))
    thresholds.validate()
    return thresholds


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay",
        help="Replay a readings CSV through the detectors and print the alerts as JSON lines.",
        description="Read FILE (meter_id,ts,total_l; gzip accepted), run the live pipeline's register "
        "logic and detectors with the live alert rule, and print one JSON line per finding that raised, joined or "
        "reopened a case (meter_id, kind, ts, severity, message, route, case, case_event, case_kinds, "
        "occurrences), then the cases per route.",
    )
    p.add_argument("file", help="CSV file with columns meter_id,ts,total_l (or total_m3); .gz accepted")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a detection threshold, e.g. --set ceiling_hours=24 (repeatable)",
    )
    p.add_argument("--resolutions", action="store_true", help="also print when an alert's condition clears")
    p.add_argument(
        "--language",
        choices=["zh", "en"],
        default=None,
        help="language of 'message' (default: TAPWATCH_LANGUAGE, zh)",
    )
    p.add_argument(
        "--tz",
        type=zone,
        default=None,
        metavar="ZONE",
        help="the elders' time zone, e.g. Europe/Madrid (default: TAPWATCH_TIMEZONE, Asia/Shanghai)",
    )
    p.add_argument(
        "--outcomes",
        metavar="LABELS",
        help="labels JSON (the simulator's labels.json): resolve each community alert as a cadre would, "
        "needed_help if an incident of that meter spans it, else false_alarm, and learn from it",
    )
    p.add_argument(
        "--visit-delay-h",
        type=number(0.0),
        default=None,  # not VISIT_DELAY_H: given without --outcomes it would change nothing, so it is refused
        metavar="H",
        help=f"with --outcomes: hours from an alert to the cadre's outcome (default {VISIT_DELAY_H:g})",
    )
    p.set_defaults(func=run)


def print_readings(readings: Iterable[Sequence[Any]], tz: str) -> None:
    """Example readings under a count on stderr: meter and local time, one a line."""
    for reading in readings:
        when = datetime.fromtimestamp(reading[1], UTC).astimezone(ZoneInfo(tz)).isoformat()
        print(f"  {reading[0]} {when}", file=sys.stderr)


def _meter_shown(meter_id: str) -> str:
    """A label's meter id as a list on stderr shows it: as written if it is a meter id, else quoted and cut short
    (a label's id is any text its file gives: a damaged file's megabyte, a terminal's control sequence)."""
    return meter_id if valid_meter_id(meter_id) else quoted(meter_id)


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    thresholds = thresholds_from(args.overrides)
    settings = get_settings()
    tz = meter_zone(args.tz, settings.timezone)
    schedule = None
    delay = getattr(args, "visit_delay_h", None)
    if getattr(args, "outcomes", None):
        delay = VISIT_DELAY_H if delay is None else delay
        if delay < 0:
            raise ValueError("--visit-delay-h must not be negative")
        # The live rule for a case the data closed first.
        schedule = OutcomeSchedule(load_labels(args.outcomes), delay, settings.outcome_window_days)
    elif delay is not None:
        raise ValueError("--visit-delay-h times the visits of --outcomes: give --outcomes LABELS too")
    replayer = Replayer(
        thresholds,
        default_tz=tz,
        outcomes=schedule,
        hold_downs=HoldDowns.from_settings(settings),
        late_window_s=settings.late_window_hours * 3600,
    )
    alerts = 0
    cases: Counter[str] = Counter()
    rows = track(iter_csv(args.file), Progress("replay", unit="rows"))  # drawn on a terminal only
    for event in replayer.events(rows):
        finding = event.finding
        if event.action == RAISED:
            cases[event.route] += 1
        if finding.resolved and not args.resolutions:
            continue
        alerts += 0 if finding.resolved else 1
        record = finding_json(finding, tz, args.language or settings.language)
        record.update(
            case=event.case, case_event=event.action, case_kinds=list(event.kinds), occurrences=event.occurrences
        )
        if event.rose:
            record["severity_raised"] = True
        out.write(orjson.dumps(record).decode())
        out.write("\n")
    print(
        f"replayed {replayer.readings} readings of {len(replayer.meters)} meters in {tz}: {alerts} alerts in "
        f"{sum(cases.values())} cases ({cases[COMMUNITY]} community, {cases[MAINTENANCE]} maintenance), "
        f"{replayer.malformed.count} malformed rows dead-lettered",
        file=sys.stderr,
    )
    if replayer.refused:
        # As live dead-letters them (engine.pipeline): a reading its meter's next one showed was in the future.
        print(f"{replayer.refused.count} readings refused: {IN_THE_FUTURE}", file=sys.stderr)
        print_readings(replayer.refused.examples, tz)
    if replayer.late:
        # A meter's rows out of time order: live reads such a reading as a late delivery, and so does the replay.
        print(
            f"{replayer.late.count} readings older than their meter's newest one read before them: read late, as "
            "live reads a late delivery (no usage counted); sort the file by meter_id, ts to read them in time order",
            file=sys.stderr,
        )
        print_readings(replayer.late.examples, tz)
    if schedule is not None:
        taught = ", ".join(f"{k} {v}" for k, v in sorted(schedule.applied.items())) or "none"
        print(f"outcomes applied (visit after {delay:g} h): {taught}", file=sys.stderr)
        # A label no alert can fall in, unsaid, makes every visit false_alarm (ids written otherwise: WM-1, wm1).
        unread = sorted(m for m, labels in schedule.labels.items() if labels and m not in replayer.meters)
        if unread:
            shown = ", ".join(map(_meter_shown, unread[:KEPT_EXAMPLES])) + (
                ", ..." if len(unread) > KEPT_EXAMPLES else ""
            )
            print(f"labels of {len(unread)} meters with no reading in the file: {shown}", file=sys.stderr)
        if schedule.withdrawn:
            dropped = ", ".join(f"{k} {v}" for k, v in sorted(schedule.withdrawn.items()))
            print(f"visits not made (the alert was withdrawn before them): {dropped}", file=sys.stderr)
        if schedule.expired:
            late = ", ".join(f"{k} {v}" for k, v in sorted(schedule.expired.items()))
            print(
                f"outcomes too late to teach (closed by the data over {schedule.window_days:g} days before): {late}",
                file=sys.stderr,
            )
    for bad in replayer.malformed.examples:
        print(f"  line {bad.line}: {bad.reason}", file=sys.stderr)
    return 0
