"""A fall soon after a benign visit: is it still found, and how late?

A cadre's visit that found nobody in danger (``ok``, ``false_alarm``) teaches the meter (``learn_outcome``);
what it teaches must not hide a fall that happens after the visit. Replays each meter of a tuning set
as ``tapwatch eval`` does with outcomes (``tapwatch.evaluate.score``'s loop: cases, visits a delay after
each community case, the contract's outcomes), and at every benign visit forks the replay: from ``delta``
hours after the visit the home falls silent for 48 h (a fall: the register stops, as ``evaluate.inject``
makes one), labelled as an incident so the fall's own alerts get ``needed_help``. For each fork it reports
whether a community alert came within the 48 h and how long after the fall, split by what the visit was
about (a silence, or something else: a flow, a day's total, a routine change) and by whether the home used
water (>= 3 L, ``RESUME_MIN_L``) between the visit and the fall: a fall before that first use falls inside
the silence the visitor walked into.

Tuning sets only (simulator seeds 2 and 3, real homes at injection seed 2):

    .venv/bin/python bench/fall_after_visit.py --real /work/shared/data/real-water/dev.csv.gz --seed 2
    .venv/bin/python bench/fall_after_visit.py --sim 300x120x2
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from collections import defaultdict
from collections.abc import Iterable

from silence_calibration import add_dataset_args, load  # the cached tuning sets (bench/ is this script's folder)

import engine.outcomes as outcomes_module
from alerts.grouping import HOLD_DOWNS, taught
from core.domain import COMMUNITY, DEVICE_KINDS, Interval
from detect import MeterMonitor, Thresholds
from detect.monitor import RESUME_MIN_L
from engine.alerting import OpenAlerts
from engine.outcomes import Label, OutcomeSchedule
from engine.replay import make_visit, note_case
from tapwatch import evaluate as ev

HOUR = 3600.0
FALL_S = 48 * HOUR
#: A fall before the home's first use after the visit counts only if the data shows someone home: water used
#: within this long after the fall's moment (else the home was empty, and the silence is the absence itself).
HOME_S = 6 * HOUR
BENIGN = ("ok", "false_alarm")


def run(
    meter_id: str,
    xs: list[Interval],
    state: tuple[MeterMonitor, OpenAlerts, OutcomeSchedule],
    stop: float = math.inf,
    after: float | None = None,
    benign: str = "false_alarm",
) -> tuple[float | None, list[tuple[int, float, list[tuple[str, str]]]]]:
    """``score``'s loop for one meter over ``xs`` (until ``stop``); the first community alert at or after
    ``after``, and the benign visits applied: (index of the next interval, visit time, what it taught).

    ``benign``: what a benign visit records, the contract's ``false_alarm`` or ``ok`` (a person who saw her well).
    """
    det, book, schedule = state
    visits = []
    for i, x in enumerate(xs):
        if x.start >= stop:
            break
        lessons: list[tuple[str, str]] = []
        for visit in schedule.due(meter_id, x.end):
            if visit.outcome == "false_alarm":
                visit = visit._replace(outcome=benign)
            if make_visit(book, meter_id, visit, {meter_id: det}.get, x.utc_offset_s):
                kinds = [str(k["kind"]) for k in taught(visit.case)] if visit.case else [visit.finding.kind]
                lessons += [(k, visit.outcome) for k in kinds]
        if any(o in BENIGN for _, o in lessons):
            visits.append((i, det.last_end or x.start, lessons))
        for f in det.update(x):
            action = book.admit(meter_id, f)
            if action is not None:
                note_case(schedule, action, f, book.last)
            if (
                after is not None
                and f.ts >= after
                and not f.resolved
                and f.kind not in DEVICE_KINDS
                and f.route == COMMUNITY
            ):
                return f.ts, visits
    return None, visits


def fork(xs: list[Interval], i: int, fall: float) -> list[Interval]:
    """The intervals from ``i`` on, the home silent from ``fall`` for ``FALL_S`` (unknown stays unknown)."""
    out = []
    for x in xs[i:]:
        if x.start >= fall + FALL_S:
            break
        if x.start >= fall and x.usage_l is not None:
            x = x._replace(usage_l=0.0)
        out.append(x)
    return out


def fork_window(xs: list[Interval], j: int, until: float) -> list[Interval]:
    """The data's own intervals from ``j`` that start before ``until``."""
    out = []
    for x in xs[j:]:
        if x.start >= until:
            break
        out.append(x)
    return out


def eval_row(data: ev.Dataset, benign: str) -> str:
    """``tapwatch eval``'s ``tapwatch + outcomes`` row in short, each benign visit recorded ``benign``."""
    contract = outcomes_module.outcome_for
    if benign != "false_alarm":

        def recorded(labels: Iterable[Label], t: float) -> str:
            return benign if contract(labels, t) == "false_alarm" else "needed_help"

        outcomes_module.outcome_for = recorded
    try:
        s = ev.score("tapwatch + outcomes", ev.tapwatch_factory(Thresholds()), data, ev.VISIT_DELAY_H)
    finally:
        outcomes_module.outcome_for = contract
    got = [d for d in s.delays.get("fall", []) if d is not None]
    by_kind = ", ".join(f"{k} {v / s.months:.3f}" for k, v in sorted(s.false_by_kind.items()))
    return (
        f"falls {len(got)} of {len(s.delays.get('fall', []))}, {_q(got, 0.5):.2f} / {_q(got, 0.9):.2f} h; "
        f"false community {s.noise / s.months:.3f} /month ({by_kind}); 2nd alerts in real absences "
        f"{s.second_absence}; false maintenance {s.maintenance / s.months:.3f}; outcomes {dict(s.outcomes)}"
    )


def _q(values: list[float], q: float) -> float:
    """The ``q`` quantile (the value at that rank; nan if none)."""
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else math.nan


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_args(p, cache="/tmp/outcome-repeats-cache")
    p.add_argument("--deltas", default="0.5,2,6,12,20", help="hours from the visit to the fall")
    p.add_argument("--outcome", choices=BENIGN, default="false_alarm", help="what a benign visit records")
    p.add_argument("--eval", action="store_true", help="also print eval's row with benign visits recorded so")
    args = p.parse_args(argv)
    if not (args.sim or args.real):
        p.error("--sim or --real")
    data = load(args)
    deltas = [float(d) for d in args.deltas.split(",")]
    truth: dict[str, list[ev.Truth]] = defaultdict(list)
    for t in data.truth:
        truth[t.meter_id].append(t)
    # (visit about a silence?, water used between visit and fall?) -> delays (None: not found in 48 h)
    found: dict[tuple[str, bool], list[float | None]] = defaultdict(list)
    silent_after: dict[str, list[float]] = defaultdict(list)
    for m, xs in data.intervals.items():
        incidents = [t for t in truth[m] if t.category == "incident"]
        labels = [Label(t.meter_id, t.kind, t.start, t.end) for t in incidents]
        state = (MeterMonitor(m, Thresholds()), OpenAlerts(HOLD_DOWNS), OutcomeSchedule(labels, ev.VISIT_DELAY_H))
        _, visits = run(m, xs, copy.deepcopy(state), benign=args.outcome)
        # One replay moves on from visit to visit; each fork continues a copy of it.
        base = copy.deepcopy(state)
        done = 0
        last = -1  # the interval of the previous benign visit
        for i, v, lesson in visits:
            # The replay up to this visit's interval (the visit not yet applied).
            run(m, xs[done:i], base, benign=args.outcome)
            done = i
            about = "silence" if any(k == "no_activity" for k, _ in lesson) else "other"
            if (
                about == "silence"
                and last >= 0
                and not any(x.usage_l is not None and x.usage_l >= RESUME_MIN_L for x in xs[last:i])
            ):
                about = "silence, 2nd visit"  # another benign visit in the same silence
            last = i
            # How long the home stayed silent after the visit in the data itself (until >= 3 L, or unknown data).
            resumed = next((x.start for x in xs[i:] if x.usage_l is None or x.usage_l >= RESUME_MIN_L), xs[-1].end)
            silent_after[about].append(max(resumed - v, 0.0) / HOUR)
            for delta in deltas:
                j = next((k for k in range(i, len(xs)) if xs[k].start >= v + delta * HOUR), None)
                if j is None:
                    continue
                fall = xs[j].start
                if any(t.start < fall + FALL_S + 2 * HOUR and v - 2 * HOUR < t.window_end for t in incidents):
                    continue  # a labelled incident nearby: not this question
                if fall - v > (delta + 2) * HOUR:
                    continue  # readings missing around the fall's moment
                used = any(x.usage_l is not None and x.usage_l >= RESUME_MIN_L for x in xs[i:j])
                if not used and not any(
                    x.usage_l is not None and x.usage_l >= RESUME_MIN_L for x in fork_window(xs, j, fall + HOME_S)
                ):
                    continue  # nobody home then (no use for hours after the fall's moment in the data): no one to fall
                det, book, schedule = copy.deepcopy(base)
                schedule.labels[m].append(Label(m, "fall", fall, fall + FALL_S))
                fell = xs[i:j] + fork(xs, j, fall)
                hit, _ = run(m, fell, (det, book, schedule), after=fall, benign=args.outcome)
                delay = None if hit is None or hit > fall + FALL_S else (hit - fall) / HOUR
                found[(about, used)].append(delay)
    print(f"# {data.name}: how long the home stayed silent after each benign visit (h, until >= 3 L)")
    print("visit about | visits | median | p90 | 24 h or more")
    for about, hs in sorted(silent_after.items()):
        print(f"{about} | {len(hs)} | {_q(hs, 0.5):.1f} | {_q(hs, 0.9):.1f} | {sum(h >= 24 for h in hs)}")
    print(f"# falls injected {args.deltas} h after each benign visit, recorded {args.outcome}")
    print("visit about | water used before the fall | falls | found in 48 h | median h | p90 h | later than 24 h")
    for (about, used), ds in sorted(found.items()):
        got = [d for d in ds if d is not None]
        late = sum(1 for d in got if d > 24)
        yes = "yes" if used else "no"
        print(f"{about} | {yes} | {len(ds)} | {len(got)} | {_q(got, 0.5):.1f} | {_q(got, 0.9):.1f} | {late}")
    if args.eval:
        print(f"# tapwatch eval, benign visits recorded {args.outcome}: {eval_row(data, args.outcome)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
