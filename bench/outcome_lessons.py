"""What a benign silence teaches, measured on days out (session 23; docs/detection-studies.md "Outcomes on days out").

On the other generator (``bench/other_elders.py``) cadres' outcomes take false community calls only from 0.73 to
0.70 per elder-month. This bench asks why, and tries lessons a live system could learn from its own outcomes
(the contract's ``false_alarm``/``needed_help``, nothing else of the labels):

* ``--measure`` lists, for every false silence call of the outcomes row (noise, as ``tapwatch eval`` counts it),
  whether an earlier ``false_alarm`` of the same meter began within an hour of its start hour (and on the same
  weekday class), how many days before, what that hour had earned (``quiet_q``) against the silence model's own
  alert length, and how long the silence lasted in the end against that alert length. On the other generator
  each call is named by the behaviour that made it (``other_elders.behaviour``).
* ``--lesson whole`` teaches a benign silence its *whole* length once water ends it (today a benign outcome
  teaches ``QUIET_STEP`` times its length *at the alert*): ``--step`` times the whole length, for its start hour
  and ``--spread`` hours either side, bounded as today (``QUIET_MAX_FACTOR`` times the model's own length,
  ``QUIET_CAP_H``); a silence of ``WHOLE_MAX_H`` or more is an absence and teaches nothing more. With
  ``--by-class`` that lesson holds only on days of the silence's weekday class (Monday-Friday, weekend). It is
  a subclass here (:class:`WholeSilence`): nothing of it is in ``detect/``.

Only the outcomes row is scored (the row without outcomes does not depend on what an outcome teaches). Tuning
sets only (``sim:ExDxS``, ``other:ExDxS``, ``real:SEED`` as ``bench/population_prior.py`` names them)::

    .venv/bin/python bench/outcome_lessons.py --data other:300x120x2 --measure
    .venv/bin/python bench/outcome_lessons.py --data other:300x120x2 --lesson whole --step 1.25
    .venv/bin/python bench/outcome_lessons.py --data real:2 --lesson whole --step 1.25 --by-class --spread 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from alerts.grouping import HoldDowns
from core.domain import COMMUNITY, Finding, Interval
from core.settings import get_settings
from detect import MeterMonitor, Thresholds
from detect.monitor import BENIGN_OUTCOMES, QUIET_CAP_H, QUIET_MAX_FACTOR, RESUME_MIN_L, SEEN_OUTCOMES
from detect.silence import hour_of
from tapwatch import evaluate as ev

sys.path.insert(0, str(Path(__file__).resolve().parent))
from population_prior import DEFAULT_CSV, load

HOUR, DAY = 3600.0, 86400.0
#: A benign silence that water ended before this long (h) teaches its whole length; longer is an absence.
WHOLE_MAX_H = 24.0
#: ``na_span``'s end while a silence a person called benign lasts: its whole length is taught when water ends it.
TEACH_AT_END = -1.0


def weekday_class(ts: float, utc_offset_s: int) -> int:
    """0 for Monday-Friday, 1 for a weekend, of the local day of ``ts`` (1970-01-01 was a Thursday).

    >>> weekday_class(4 * DAY, 0), weekday_class(3 * DAY, 0), weekday_class(3 * DAY - 1, 8 * 3600)
    (0, 1, 1)
    """
    return 1 if (int((ts + utc_offset_s) // DAY) + 3) % 7 >= 5 else 0


class WholeSilence(MeterMonitor):
    """tapwatch's monitor, whose benign silences also teach their whole length when water ends them."""

    __slots__ = ("by_class", "half_life", "na_alert_h", "na_span", "quiet_w", "reach", "spread", "step")

    def __init__(
        self,
        meter_id: str,
        thresholds: Thresholds,
        step: float,
        spread: int = 1,
        by_class: bool = False,
        half_life: float | None = None,
        reach: float | None = None,
    ) -> None:
        super().__init__(meter_id, thresholds)
        self.step, self.spread, self.by_class, self.half_life = step, spread, by_class, half_life
        self.reach = reach  # teach no whole length past this many times the silence's length at its alert
        self.na_alert_h = 0.0
        # The last silence alert's (start, end): 0.0 while it lasts, TEACH_AT_END once called benign meanwhile.
        self.na_span: tuple[float, float] | None = None
        self.quiet_w = b""  # with ``by_class``: per weekday class x start hour, what whole lengths earned

    def _open_no_activity(
        self, x: Interval, since: float, basis: str, out: list[Finding], rule: Finding | None = None
    ) -> None:
        super()._open_no_activity(x, since, basis, out, rule)
        self.na_span = (since, 0.0)
        self.na_alert_h = (x.end - since) / HOUR

    def _use(
        self, status: str, start: float, end: float, u: float, off: int, out: list[Finding], through_leak: bool
    ) -> None:
        span, began_off = self.na_span, self.sil_off
        super()._use(status, start, end, u, off, out, through_leak)  # (it learns the silence first: the bound moves)
        if span is not None and u >= RESUME_MIN_L and span[1] <= 0.0:
            if span[1] == TEACH_AT_END:
                self.na_span = None
                self._learn_whole(span[0], start, began_off)
            else:
                self.na_span = (span[0], start)  # the alert's silence ended before anyone answered it

    def _silence_outcome(self, outcome: str, start: float, end: float, off: int) -> None:
        super()._silence_outcome(outcome, start, end, off)
        span = self.na_span
        if span is None or span[0] != start:
            return  # another silence alerted since: the lesson at the alert stands
        if outcome not in BENIGN_OUTCOMES or outcome in SEEN_OUTCOMES:
            self.na_span = None  # confirmed, or she was seen at home: how long it lasted says nothing of her routine
        elif span[1] > 0.0:
            self.na_span = None
            self._learn_whole(start, span[1], off)
        else:
            self.na_span = (start, TEACH_AT_END)

    def _learn_whole(self, since: float, ended: float, off: int) -> None:
        hours = (ended - since) / HOUR
        if hours >= WHOLE_MAX_H or (self.reach and hours > self.reach * self.na_alert_h):
            return
        hour, wanted = hour_of(since, off), min(int(min(QUIET_CAP_H, hours * self.step) * 4.0 + 0.5), 255)
        if self.by_class:
            quiet, at = bytearray(self.quiet_w or bytes(48)), 24 * weekday_class(since, off)
        else:
            quiet, at = bytearray(self.quiet_q or bytes(24)), 0
        for h in range(hour - self.spread, hour + self.spread + 1):
            quiet[at + h % 24] = max(quiet[at + h % 24], wanted)
        if self.by_class:
            self.quiet_w = bytes(quiet)
        else:
            self.quiet_q = bytes(quiet)
        self._refresh_silence()

    def _refresh_silence(self) -> None:
        if not self.quiet_w:
            super()._refresh_silence()
            return
        self.silence.refresh(self.thresholds.sensitivity)
        alert, at = self.silence._alert, 24 * (1 if (self.day + 3) % 7 >= 5 else 0)  # today's class
        for h in range(24):
            q = max(self.quiet_q[h] if self.quiet_q else 0, self.quiet_w[at + h])
            if q:  # bounded as quiet_q is: on the model's own length
                alert[h] = max(alert[h], min(q / 4.0, alert[h] * QUIET_MAX_FACTOR))

    def _new_day(self, day: int, x: Interval, out: list[Finding]) -> None:
        refreshed = self.refresh_day
        super()._new_day(day, x, out)
        if self.quiet_w and (self.refresh_day != refreshed or (day + 3) % 7 in (0, 5)):
            self._refresh_silence()  # the weekday class changed (or the refresh ran under yesterday's)

    def _forget_quiet(self, days: int) -> None:
        """What outcomes earned fades (with ``half_life``: that many days, for main's lesson too)."""
        keep = 0.5 ** (days / (self.half_life or self.silence.half_life_days))
        quiet = bytes(int(q * keep) for q in self.quiet_q)
        self.quiet_q = quiet if any(quiet) else b""
        quiet = bytes(int(q * keep) for q in self.quiet_w)
        self.quiet_w = quiet if any(quiet) else b""


def _own_alert(m: MeterMonitor, hour: int) -> float:
    """The model's alert length for ``hour`` before any lift (recomputed: the monitor keeps only the lifted one)."""
    saved = m.silence._alert[:]
    m.silence.refresh(m.thresholds.sensitivity)
    own = float(m.silence._alert[hour])
    m.silence._alert[:] = saved
    return own


class Noting:
    """Every finding and outcome of the meters made, with what the silence model held at each call."""

    def __init__(self) -> None:
        self.found: dict[str, list[Finding]] = defaultdict(list)
        self.taught: dict[str, list[tuple[str, float, float]]] = defaultdict(list)  # (outcome, start, end)
        self.held: dict[int, tuple[float, float, float]] = {}  # id(finding) -> (alert h, earned h, own h)


#: Where the noted monitors write (one run per process).
NOTE = Noting()


class _Noted(MeterMonitor):
    """Notes every finding and silence outcome in ``NOTE``."""

    __slots__ = ()

    def update(self, x: Interval) -> list[Finding]:
        out = super().update(x)
        NOTE.found[self.meter_id].extend(out)
        for f in out:
            if f.kind == "no_activity" and not f.resolved and f.route == COMMUNITY:
                h = int(f.details.get("start_hour", 0))
                earned = self.quiet_q[h] / 4.0 if self.quiet_q else 0.0
                NOTE.held[id(f)] = (float(self.silence._alert[h]), earned, _own_alert(self, h))
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
        if kind == "no_activity" and start is not None:
            NOTE.taught[self.meter_id].append((outcome, start, end))
        super().learn_outcome(kind, outcome, start, end, utc_offset_s, rate_lpm)


class NotedMain(_Noted):
    """tapwatch's monitor as it is, noted."""

    __slots__ = ()


class NotedWhole(_Noted, WholeSilence):
    """The whole-length lesson, noted."""

    __slots__ = ()


def _ended(xs: list[Interval], after: float) -> float | None:
    """When water (``RESUME_MIN_L`` or more) was next used after ``after``."""
    return next((x.start for x in xs if x.start >= after and (x.usage_l or 0.0) >= RESUME_MIN_L), None)


def measure(data: ev.Dataset, note: Noting, name_of: Callable[[Finding], str] | None, offset_s: int) -> str:
    """The false silence calls (noise) after an earlier false alarm at about their start hour, by behaviour."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from other_elders import false_calls

    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    for f, first in false_calls(data, note.found):
        if first or f.kind != "no_activity" or f.since is None or id(f) not in note.held:
            continue
        _alert_h, earned_h, own_h = note.held[id(f)]
        hour = hour_of(f.since, offset_s)
        before = [(s, e) for o, s, e in note.taught[f.meter_id] if o == "false_alarm" and e < f.ts]
        near = [
            (s, e)
            for s, e in before
            if min((hour_of(s, offset_s) - hour) % 24, (hour - hour_of(s, offset_s)) % 24) <= 1
        ]
        same = [(s, e) for s, e in near if weekday_class(s, offset_s) == weekday_class(f.since, offset_s)]
        end = _ended(data.intervals[f.meter_id], f.ts)
        rows[name_of(f) if name_of else "all"].append(
            {
                "near": float(bool(near)),
                "same": float(bool(same)),
                "days": (f.ts - near[-1][1]) / DAY if near else -1.0,
                "earned": earned_h,
                "own": own_h,
                "whole": ((end - f.since) / HOUR) if end else -1.0,
            }
        )
    lines = [
        "| behaviour | noise calls | after a false alarm within 1 h of its start hour | ... of its weekday class |"
        " days since (median) | earned < own alert length | whole / own alert length (median) | whole <= 1.5 x own |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for what, rs in sorted(rows.items(), key=lambda kv: -len(kv[1])):
        near_rs = [r for r in rs if r["near"]]
        days = [r["days"] for r in near_rs]
        ratio = [r["whole"] / r["own"] for r in rs if r["whole"] > 0 and r["own"] > 0]
        lines.append(
            f"| {what} | {len(rs)} | {len(near_rs)} | {sum(r['same'] for r in rs):.0f} | "
            f"{statistics.median(days) if days else 0:.0f} | {sum(r['earned'] < r['own'] for r in near_rs)} | "
            f"{statistics.median(ratio) if ratio else 0:.2f} | {sum(v <= 1.5 for v in ratio)} |"
        )
    return "\n".join(lines)


def moved(before: ev.Score, after: ev.Score) -> str:
    """Per incident kind, the incidents whose delay (h) moved between two scores of the same data."""
    lines = []
    for kind, delays in sorted(before.delays.items()):
        pairs = [(a, b) for a, b in zip(delays, after.delays.get(kind, []), strict=True) if a != b]
        if pairs:
            shown = ", ".join(
                f"{'-' if a is None else f'{a:.2f}'} -> {'-' if b is None else f'{b:.2f}'}" for a, b in pairs
            )
            lines.append(f"  {kind}: {len(pairs)} of {len(delays)} moved: {shown}")
    return "\n".join(lines) or "  no incident's delay moved"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data", default="other:300x120x2", help="sim:ExDxS, other:ExDxS or real:SEED (tuning sets)")
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="the real homes (meter_id,ts,total_l)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/population-prior-cache"))
    p.add_argument("--lesson", choices=("main", "whole"), default="main", help="what a benign silence teaches")
    p.add_argument("--step", type=float, default=1.25, help="whole lesson: this many times the whole length")
    p.add_argument("--spread", type=int, default=1, help="whole lesson: start hours either side it lifts too")
    p.add_argument("--by-class", action="store_true", help="whole lesson: only on days of its weekday class")
    p.add_argument("--half-life", type=float, help="whole lesson: what outcomes earned fades in this many days")
    p.add_argument("--reach", type=float, help="whole lesson: none for a silence longer than this x its alert length")
    p.add_argument("--measure", action="store_true", help="which false silence calls follow a false alarm")
    p.add_argument("--vs-main", action="store_true", help="also score main's lesson: the falls whose delay moved")
    args = p.parse_args(argv)
    if args.data.endswith("x1") or args.data == "real:1":
        p.error("seed 1 is the held-out evaluation seed: use 2 or 3")
    thresholds = Thresholds()
    name_of: Callable[[Finding], str] | None = None
    if args.data.startswith("other:"):
        from other_elders import behaviour, cached

        elders, days, seed = (int(v) for v in args.data.partition(":")[2].split("x"))
        pop = cached(elders, days, seed, args.cache)
        data = pop.data
        name_of = lambda f: behaviour(pop, f)[0]  # noqa: E731
    else:
        data = load(args.data, args.csv, args.cache)

    def make(meter_id: str, _xs: list[Interval], _truth: object) -> MeterMonitor:
        if args.lesson == "whole":
            return NotedWhole(meter_id, thresholds, args.step, args.spread, args.by_class, args.half_life, args.reach)
        return NotedMain(meter_id, thresholds)

    settings = get_settings()
    score = ev.score(
        ev.OUTCOMES_NAME,
        make,
        data,
        ev.VISIT_DELAY_H,
        settings.outcome_window_days,
        HoldDowns.from_settings(settings),
    )
    print(
        f"# {data.name}; lesson {args.lesson}"
        + (f" x{args.step} +-{args.spread} h{' by class' if args.by_class else ''}" if args.lesson == "whole" else "")
    )
    print(ev.table([score], ev.INCIDENT_ORDER))
    print(
        f"noise calls {score.noise} ({score.noise / score.months:.3f} /month: {dict(score.false_by_kind)}), "
        f"false maintenance {score.maintenance}, outcomes {dict(score.outcomes)}"
    )
    if args.vs_main and args.lesson != "main":
        base = ev.score(
            "main",
            lambda m, _x, _t: MeterMonitor(m, thresholds),
            data,
            ev.VISIT_DELAY_H,
            settings.outcome_window_days,
            HoldDowns.from_settings(settings),
        )
        print(
            f"main's lesson: noise calls {base.noise} ({base.noise / base.months:.3f}), "
            f"false maintenance {base.maintenance}"
        )
        print(moved(base, score))
    if args.measure:
        zone = 8 * 3600 if not args.data.startswith("real") else 3600
        print(measure(data, NOTE, name_of, zone))
    return 0


if __name__ == "__main__":
    sys.exit(main())
