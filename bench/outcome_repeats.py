"""What outcomes make worse: every second alert in a real absence, and the flow alerts only outcomes raise.

Replays each meter of a tuning set through ``MeterMonitor`` as ``tapwatch eval`` does
(``tapwatch.evaluate.score`` on one meter at a time), without and with cadres' outcomes, and prints:

* every second (third, ...) community alert in a real absence, as ``score`` counts them
  (``second_absence``): the first alert of that absence and this one (kind, basis, hours into the
  absence), the hours between them, the absence's length, the uses of 1-3 L and the unknown
  intervals between them, the longest interval (lost readings), and the outcomes applied between;
* false community ``continuous_flow`` alerts raised only with outcomes (or only without), per meter,
  with the outcomes applied to that meter in the 48 h before; and the meters whose count of them differs
  (a second call within 2 h of one both runs raised shows there only: session 10's gardens).

``--garden`` adds ``flow_generalise.gardened``'s waterings (docs/detection-studies.md, "Outcomes on a
garden's waterings (session 10)").

docs/detection-studies.md, "Outcomes that made things worse (session 8)", classifies them. Tuning sets only
(simulator seeds 2 and 3, real homes at injection seed 2): seed 1 is for the reported figure.

    .venv/bin/python bench/outcome_repeats.py --sim 300x120x2
    .venv/bin/python bench/outcome_repeats.py --real /work/shared/data/real-water/dev.csv.gz --seed 2
    .venv/bin/python bench/outcome_repeats.py --real /work/shared/data/real-water/dev.csv.gz --seed 2 --garden
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

from silence_calibration import add_dataset_args, load  # the same cached tuning sets (bench/ is this script's folder)

from core.domain import COMMUNITY, DEVICE_KINDS, Finding, Interval
from detect import MeterMonitor, Thresholds
from tapwatch import evaluate as ev

HOUR = 3600.0


class Recording(MeterMonitor):
    """A monitor that keeps every finding and every outcome it was taught, with their data times."""

    __slots__ = ("log",)

    def __init__(self, meter_id: str, thresholds: Thresholds | None = None) -> None:
        super().__init__(meter_id, thresholds)
        self.log: list[tuple[str, float, Any]] = []

    def update(self, x: Interval) -> list[Finding]:
        out = super().update(x)
        self.log.extend(("finding", x.end, f) for f in out)
        return out

    def learn_outcome(
        self,
        kind: str,
        outcome: str,
        start: float | None,
        end: float,
        utc_offset_s: int = 0,
        rate_lpm: float | None = None,
    ) -> None:
        self.log.append(("outcome", end, (kind, outcome)))
        super().learn_outcome(kind, outcome, start, end, utc_offset_s, rate_lpm)


def replay(data: ev.Dataset, delay: float | None) -> dict[str, list[tuple[str, float, Any]]]:
    """Each meter's log of findings and outcomes, scored as ``tapwatch eval`` scores it."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    logs = {}
    for m, xs in data.intervals.items():
        made: list[Recording] = []

        def factory(meter_id: str, _xs: list[Interval], _truth: list[ev.Truth], made: list[Recording] = made) -> Any:
            made.append(Recording(meter_id, Thresholds()))
            return made[-1]

        ev.score("tapwatch", factory, ev.Dataset(m, {m: xs}, truth.get(m, []), len(xs)), delay)
        logs[m] = made[0].log
    return logs


def false_community(f: Finding, truth: list[ev.Truth]) -> bool:
    """A community alert ``score`` counts as false (noise or absence)."""
    if f.resolved or f.kind in DEVICE_KINDS or f.route != COMMUNITY:
        return False
    return not ev.explained(f, [t for t in truth if t.category == "incident"], truth)


def second_alerts(data: ev.Dataset, logs: dict[str, list[tuple[str, float, Any]]]) -> list[str]:
    """One line per second alert in a real absence."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    lines = []
    for m, log in logs.items():
        xs = data.intervals[m]
        incidents = [t for t in truth[m] if t.category == "incident"]
        quiet = ev.real_absences(xs, incidents)
        first: dict[int, Finding] = {}
        for tag, _, f in log:
            if tag != "finding" or not false_community(f, truth[m]):
                continue
            where = ev.absence_at(f.ts, quiet)
            if where is None:
                continue
            if where not in first:
                first[where] = f
                continue
            a, b = quiet[where]
            p = first[where]
            between = [x for x in xs if p.ts <= x.start and x.end <= f.ts]
            small = sum(1 for x in between if x.usage_l is not None and 1.0 <= x.usage_l < ev.ABSENCE_USE_L)
            unknown = sum(1 for x in between if x.usage_l is None)
            longest = max((x.end - x.start for x in between), default=0.0) / HOUR
            taught = [o for tag, t, o in log if tag == "outcome" and p.ts <= t <= f.ts]
            lines.append(
                f"{m[:12]} first {p.kind}/{p.basis} at {(p.ts - a) / HOUR:.1f} h, then {f.kind}/{f.basis} at "
                f"{(f.ts - a) / HOUR:.1f} h ({(f.ts - p.ts) / HOUR:.1f} h later), "
                f"of an absence of {(b - a) / HOUR:.0f} h; "
                f"uses of 1-3 L {small}, unknown intervals {unknown}, longest interval {longest:.1f} h; "
                f"outcomes between {taught}"
            )
    return lines


def flow_only(data: ev.Dataset, one: dict[str, Any], other: dict[str, Any], label: str) -> list[str]:
    """False community flow alerts of ``one`` with none of ``other`` within 2 h, per meter."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)

    def flows(m: str, log: list[tuple[str, float, Any]]) -> list[Finding]:
        found = [f for tag, _, f in log if tag == "finding" and f.kind == "continuous_flow"]
        return [f for f in found if false_community(f, truth[m])]

    lines = []
    for m in data.intervals:
        theirs = [f.ts for f in flows(m, other[m])]
        for f in flows(m, one[m]):
            if any(abs(f.ts - t) <= 2 * HOUR for t in theirs):
                continue
            taught = [o for tag, t, o in one[m] if tag == "outcome" and f.ts - 48 * HOUR <= t < f.ts]
            lines.append(f"{label} {m[:12]} at {f.ts:.0f}: {f.details}; outcomes in the 48 h before {taught}")
    return lines


def flow_counts(data: ev.Dataset, without: dict[str, Any], with_: dict[str, Any]) -> list[str]:
    """Per meter whose count differs: its false community flow alerts without and with outcomes."""
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)

    def count(m: str, log: list[tuple[str, float, Any]]) -> int:
        return sum(
            1 for tag, _, f in log if tag == "finding" and f.kind == "continuous_flow" and false_community(f, truth[m])
        )

    pairs = [(m, count(m, without[m]), count(m, with_[m])) for m in data.intervals]
    return [f"{m[:12]} {a} -> {b}" for m, a, b in pairs if a != b]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_args(p, cache="/tmp/outcome-repeats-cache")
    p.add_argument("--garden", action="store_true", help="a share of homes water a garden (flow_generalise)")
    args = p.parse_args(argv)
    if not (args.sim or args.real):
        p.error("--sim or --real")
    data = load(args)
    if args.garden:
        from flow_generalise import gardened  # (bench/ is this script's folder)

        data = gardened(data)
    without, with_ = replay(data, None), replay(data, ev.VISIT_DELAY_H)
    for name, logs in (("without outcomes", without), ("with outcomes", with_)):
        lines = second_alerts(data, logs)
        print(f"# {data.name}, {name}: {len(lines)} second alerts in real absences")
        print("\n".join(lines))
    lines = flow_only(data, with_, without, "only with outcomes:") + flow_only(data, without, with_, "only without:")
    print(f"# false community continuous_flow alerts in one run only: {len(lines)}")
    print("\n".join(lines))
    counts = flow_counts(data, without, with_)
    print(f"# meters whose false community continuous_flow alerts differ (without -> with outcomes): {len(counts)}")
    print("\n".join(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
