"""Offline replay: a readings CSV through the same register logic and detectors as the live pipeline.

Prints one JSON object per alert the live pipeline would raise. No broker,
no store: state lives in memory for the length of the run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import IO, Any

import orjson

from detect import MeterMonitor, Thresholds
from ingest.csvsource import BadRow, CsvReading, iter_csv
from ingest.register import ACCEPTED, RegisterTracker
from tapwatch.domain import Finding, Interval
from tapwatch.progress import Progress, track

#: A meter's register step (``RegisterTracker.push``) and detection step (``MeterMonitor.update``).
Push = Callable[[float, float, int], tuple[str, list[Interval]]]
Update = Callable[[Interval], list[Finding]]


class Replayer:
    """Feeds readings meter by meter; keeps one open alert per meter and kind, like the live store."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self.trackers: dict[str, RegisterTracker] = {}
        self.monitors: dict[str, MeterMonitor] = {}
        self.open: set[tuple[str, str]] = set()
        self.readings = 0
        self.bad_rows: list[BadRow] = []

    def feed(self, reading: CsvReading) -> Iterator[Finding]:
        self.readings += 1
        push, update = self._steps(reading.meter_id)
        status, intervals = push(reading.ts, reading.total_l, reading.utc_offset_s)
        if status != ACCEPTED:
            return
        for interval in intervals:
            yield from self._deduplicated(update(interval))

    def run(self, rows: Iterable[CsvReading | BadRow]) -> Iterator[Finding]:
        """The findings that open or close an alert, reading by reading."""
        for findings in self.findings(rows):
            yield from self._deduplicated(findings)

    def findings(self, rows: Iterable[CsvReading | BadRow]) -> Iterator[list[Finding]]:
        """Every monitor's findings, before deduplication: each non-empty list ``MeterMonitor.update`` returns.

        Malformed rows go to ``bad_rows``. This loop runs once per reading of files with millions
        of them: ``feed`` is inlined (a generator per reading costs as much as the register step),
        and since files come grouped by meter, the meter's ``push`` and ``update`` are looked up
        only when the meter changes.
        """
        current: str | None = None  # no meter yet: the first reading looks its meter up
        for row in rows:
            if isinstance(row, BadRow):
                self.bad_rows.append(row)
                continue
            self.readings += 1
            meter_id, ts, total_l, utc_offset_s = row
            if meter_id != current:
                push, update = self._steps(meter_id)
                current = meter_id
            status, intervals = push(ts, total_l, utc_offset_s)
            if status != ACCEPTED:
                continue
            for interval in intervals:
                found = update(interval)
                if found:
                    yield found

    def _steps(self, meter_id: str) -> tuple[Push, Update]:
        """The register step and the detection step of this meter, made on its first reading."""
        tracker = self.trackers.get(meter_id)
        if tracker is None:
            tracker = self.trackers[meter_id] = RegisterTracker(meter_id)
            self.monitors[meter_id] = MeterMonitor(meter_id, self.thresholds)
        return tracker.push, self.monitors[meter_id].update

    def _deduplicated(self, findings: list[Finding]) -> Iterator[Finding]:
        """Findings that open or close an alert, given the ones already open."""
        for finding in findings:
            key = (finding.meter_id, finding.kind)
            if finding.resolved:
                if key in self.open:
                    self.open.discard(key)
                    yield finding
            elif key not in self.open:
                self.open.add(key)
                yield finding


def finding_json(f: Finding, offset_s: int, language: str) -> dict[str, Any]:
    local = timezone(timedelta(seconds=offset_s))
    record: dict[str, Any] = {
        "meter_id": f.meter_id,
        "kind": f.kind,
        "ts": datetime.fromtimestamp(f.ts, UTC).astimezone(local).isoformat(),
        "severity": f.severity,
        "message": f.message_zh if language == "zh" else f.message_en,
        "message_en": f.message_en,
        "basis": f.basis,
    }
    if f.since is not None:
        record["since"] = datetime.fromtimestamp(f.since, UTC).astimezone(local).isoformat()
    if f.resolved:
        record["resolved"] = True
    return record


def parse_overrides(pairs: list[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects NAME=VALUE, got {pair!r}")
        values[name.strip()] = float(value)
    return values


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay",
        help="Replay a readings CSV through the detectors and print the alerts as JSON lines.",
        description="Read FILE (meter_id,ts,total_l; gzip accepted), run the live pipeline's register "
        "logic and detectors, and print one JSON object per alert (meter_id, kind, ts, severity, message).",
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
    p.add_argument("--language", choices=["zh", "en"], default="zh", help="language of 'message' (default zh)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    thresholds = Thresholds().replace(**parse_overrides(args.overrides))
    replayer = Replayer(thresholds)
    offsets: dict[str, int] = {}
    alerts = 0
    rows = track(iter_csv(args.file), Progress("replay", unit="rows"))  # drawn on a terminal only
    for finding in replayer.run(_remember_offsets(rows, offsets)):
        if finding.resolved and not args.resolutions:
            continue
        alerts += 0 if finding.resolved else 1
        out.write(orjson.dumps(finding_json(finding, offsets.get(finding.meter_id, 0), args.language)).decode())
        out.write("\n")
    print(
        f"replayed {replayer.readings} readings of {len(replayer.trackers)} meters: {alerts} alerts, "
        f"{len(replayer.bad_rows)} malformed rows dead-lettered",
        file=sys.stderr,
    )
    for bad in replayer.bad_rows[:10]:
        print(f"  line {bad.line}: {bad.reason}", file=sys.stderr)
    return 0


def _remember_offsets(rows: Iterable[CsvReading | BadRow], offsets: dict[str, int]) -> Iterator[CsvReading | BadRow]:
    for row in rows:
        if isinstance(row, CsvReading):
            offsets[row.meter_id] = row.utc_offset_s
        yield row
