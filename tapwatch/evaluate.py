"""``tapwatch eval``: tapwatch against river's HalfSpaceTrees, the fixed rules and the oracle, side by side.

Two sources of labelled data:

* the simulator (elders living alone, half-hourly readings, incidents, life
  events and meter faults injected, fixed seed);
* real readings (``--csv FILE``: the DAIAD households), into which the same
  kinds of incidents are injected here: a fall silences the home for 48 h, a
  leak adds a constant flow for days, a tap left open adds 5-12 L/min for hours.

Every detector sees the same intervals (the engine's per-meter step without a monitor, in
the homes' time zone: the simulator's, or ``--tz`` for ``--csv``).
Scoring: an incident is detected by the first non-resolved, non-device
finding of that meter within [start, end] (end = start + 72 h when open);
delay counts from the incident start. Incidents during which the meter sent no
usable data at all (offline) are counted apart ("with no data"): no water-based
detector can see them, the device alert is what fires. Any other such finding is false. A false
alert raised inside a silence that lasted 24 h or more is an *absence* alert
(the first in each such silence; later ones count as noise); all others are
*noise*. ``routine_change`` findings during a frailty or illness event are
what that kind is for and count as neither.

Routes: falls and taps count as found only by a finding on the community route
(a cadre must act); a leak counts on either. False alerts are counted per route:
*noise* and *absence* alerts reach a cadre (community), slow-leak findings with
no leak go to maintenance and are counted apart, as are device alerts.

With outcomes (the ``tapwatch + outcomes`` row): each community alert raised at
data time t is resolved at t + the visit delay as a cadre's resolve would be,
``needed_help`` if an incident of that meter has start <= t <= end + 2 h, else
``false_alarm`` (:class:`engine.outcomes.OutcomeSchedule`), and the monitor learns
from it; the labels are read for nothing else. As live, a visit to an alert the data
closed first teaches only within the outcome window (``TAPWATCH_OUTCOME_WINDOW_DAYS``).
Visits go to cases, as live and in replay (:class:`engine.alerting.OpenAlerts`, each meter
its own elder): a condition back within the flap hold-down (``TAPWATCH_FLAP_HOLD_DOWN_HOURS``,
data time) reopens its case, which keeps its one visit; a kind that joins an open case is
taught by that case's visit. Scoring still counts findings: a reopen re-notifies the cadre
live, so it counts as a call (false or not) as before; what the findings did to cases is
printed apart (``cases``).

Device alerts (``meter_offline``, ``meter_fault``) are scored against the simulator's
fault labels (:func:`score_devices`): true when the alert's span (from ``since`` to
its time) meets a labelled fault window widened by :data:`DEVICE_SLACK_S`, false
otherwise; and the recall of the faults a device alert is for (outages of
:data:`OUTAGE_ALERT_S` or more, register faults). Real homes have no fault labels:
those figures are "–". A second alert raised in the same real absence is noise, and
is also counted on its own (``second_absence``): the target is at most one alert per
real absence, never a second.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alerts.grouping import COMMUNITY_CASE, HOLD_DOWNS, HoldDowns
from core.argtypes import number
from core.domain import COMMUNITY, DEVICE_KINDS, Finding, Interval
from core.progress import Progress, track
from core.settings import get_settings
from detect import MeterMonitor, Thresholds
from detect.hst import HalfSpaceTreesDetector
from detect.oracle import SilenceOracle, silences
from detect.prior import SILENCE_EDGES
from detect.rules import FIXED_RULES
from detect.silence import hour_of
from engine.alerting import JOINED, OpenAlerts
from engine.localtime import meter_zone
from engine.meter import MeterStep
from engine.outcomes import OUTCOME_WINDOW_DAYS, VISIT_DELAY_H, Label, OutcomeSchedule
from engine.replay import Tally, make_visit, note_case
from ingest.csvsource import BadRow, CsvReading, iter_csv
from ingest.register import ACCEPTED, RegisterTracker
from simulator import SimConfig, simulate
from simulator.config import DEFAULT_EVENT_RATES, zone_for_offset
from tapwatch.replay import thresholds_from, zone

HOUR = 3600.0
DAY = 86400.0
INCIDENT_WINDOW_S = 72 * HOUR
ABSENCE_S = 24 * HOUR
#: For telling absences from noise, a silence is a stretch without any interval of 3 L or
#: more: real registers tick 1-2 L now and then in an empty home (drips, rounding), while a
#: flush or a wash is more. Detectors keep their own definitions.
ABSENCE_USE_L = 3.0
#: Incident kinds reported, in table order (fall_tap_running is a fall with a tap open).
INCIDENT_ORDER = ("fall", "fall_tap_running", "death", "leak", "tap_running")
#: Event kinds whose ``routine_change`` findings are correct, not false.
DRIFT_EVENTS = frozenset({"frailty", "illness"})
#: Incident kinds a finding on either route finds (the plumbing needs fixing); the others need a cadre.
EITHER_ROUTE = frozenset({"leak"})
#: The name of tapwatch's row when it learns from cadres' outcomes.
OUTCOMES_NAME = "tapwatch + outcomes"
#: A device alert is true when its span meets a labelled fault widened by this much on each side: two
#: half-hourly readings (the last one before an outage, the first after it, each jittered).
DEVICE_SLACK_S = 1 * HOUR
#: Outages a device alert is for: this long or more (the monitor's ``offline_hours`` default); the
#: many shorter radio dropouts are bridged silently (their readings are caught up) and need no one.
OUTAGE_ALERT_S = 6 * HOUR
#: Fault kinds whose readings a device alert is for: the register itself misbehaved.
REGISTER_FAULTS = frozenset({"register_reset", "negative_step", "glitch"})


@dataclass(slots=True)
class Truth:
    """A labelled stretch of one meter: an incident or a life event."""

    meter_id: str
    kind: str
    category: str  # "incident" or "event"
    start: float
    end: float | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def window_end(self) -> float:
        return self.end if self.end is not None else self.start + INCIDENT_WINDOW_S


@dataclass
class Dataset:
    """Intervals per meter (as the pipeline makes them) and the ground truth."""

    name: str
    intervals: dict[str, list[Interval]]
    truth: list[Truth]
    readings: int
    faults: list[Truth] | None = None  # the simulator's fault labels; None where there are none (real homes)
    # Intervals the register held until a later reading (a step steeper than any tap): meter -> {index in
    # ``intervals[meter]``: that reading's time}. Live, their findings are raised only then (``MeterStep.push``).
    released: dict[str, dict[int, float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- data
def intervals_from_readings(
    meter_ids: Iterable[str],
    rows: Iterable[tuple[int, float, float]],
    tz: str,
    released: dict[str, dict[int, float]] | None = None,
) -> tuple[dict[str, list[Interval]], int]:
    """The intervals of (meter index, ts, total_l) rows in delivery order, read in zone ``tz``.

    Each meter's readings go through the engine's per-meter step without a monitor (every detector
    compared here gets the same intervals), in the zone the live pipeline would read them in.
    ``released``, when given, gets the held intervals and the time each was released (``Dataset.released``).
    """
    ids = list(meter_ids)
    steps: dict[int, MeterStep] = {}
    out: dict[str, list[Interval]] = {m: [] for m in ids}
    n = 0
    for idx, ts, total in rows:
        n += 1
        if not math.isfinite(total):
            continue  # malformed delivery: dead-lettered, never reaches detection
        step = steps.get(idx)
        if step is None:
            step = steps[idx] = MeterStep(RegisterTracker(ids[idx]), None, tz)
        status, made, _ = step.push(ts, total)
        if status == ACCEPTED and made:
            meter = out[ids[idx]]
            if released is not None and len(made) > 1:  # all but the last were held until this reading
                held = released.setdefault(ids[idx], {})
                for k in range(len(meter), len(meter) + len(made) - 1):
                    held[k] = ts
            meter.extend(made)
    return out, n


def simulated_zone(offset_h: float) -> str:
    """The zone of the simulator's elders, by the simulator's own rule (:func:`simulator.config.zone_for_offset`):
    every offset ``SimConfig`` accepts, half hours too, is read in the zone its elders are registered in.

    >>> simulated_zone(8), simulated_zone(-5), simulated_zone(5.5)
    ('Asia/Shanghai', 'Etc/GMT+5', 'Asia/Kolkata')
    """
    return zone_for_offset(offset_h)


def simulated(
    elders: int,
    days: int,
    seed: int,
    event_rates: Mapping[str, float] | None = None,
    interval_min: int = SimConfig.interval_min,
) -> Dataset:
    """The simulator's elders, with its labels; ``event_rates`` overrides some life events' rates (per 30 days),
    ``interval_min`` the meters' cadence (half-hourly by default, as ``tapwatch eval``)."""
    rates = {**DEFAULT_EVENT_RATES, **(event_rates or {})}
    config = SimConfig(
        elders=elders,
        days=days,
        seed=seed,
        random_incidents=True,
        random_events=True,
        faults=True,
        event_rates=rates,
        interval_min=interval_min,
    )
    res = simulate(config, Progress("eval: simulating", total=elders, unit="elders"))
    rows = zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True)
    released: dict[str, dict[int, float]] = {}
    intervals, n = intervals_from_readings(res.meter_ids, rows, simulated_zone(res.config.tz_offset_h), released)
    truth = [
        Truth(lab.meter_id, lab.kind, lab.category, lab.start, lab.end, dict(lab.details))
        for lab in res.labels
        if lab.category in ("incident", "event")
    ]
    faults = [
        Truth(lab.meter_id, lab.kind, lab.category, lab.start, lab.end) for lab in res.labels if lab.category == "fault"
    ]
    every = "" if interval_min == SimConfig.interval_min else f", every {interval_min} min"
    name = f"simulator: {elders} elders x {days} days, seed {seed}{every}"
    return Dataset(name, intervals, truth, n, faults, released)


def read_csv_series(
    path: str | Path, max_meters: int | None = None
) -> dict[str, tuple[list[float], list[float], list[int]]]:
    """Readings per meter (ts, total_l, utc_offset_s), file order kept; stops after ``max_meters``."""
    series: dict[str, tuple[list[float], list[float], list[int]]] = {}
    malformed: Tally[BadRow] = Tally()  # the replay's rule: left out, counted, the first ones shown (not all held)
    for row in iter_csv(path):
        if not isinstance(row, CsvReading):
            malformed.add(row)
            continue
        s = series.get(row.meter_id)
        if s is None:
            if max_meters is not None and len(series) >= max_meters:
                break
            s = series[row.meter_id] = ([], [], [])
        s[0].append(row.ts)
        s[1].append(row.total_l)
        s[2].append(row.utc_offset_s)
    told_malformed(malformed, path)
    if not series:
        raise ValueError(f"{path}: no readings to evaluate ({malformed.count} malformed rows)")
    in_time_order(series, path)
    return series


def told_malformed(malformed: Tally[BadRow], path: str | Path) -> None:
    """How many rows were left out, and the first ones by line, on stderr: a meter written without UTC offsets
    (every row malformed) would otherwise be missing from the scores without a word."""
    if not malformed:
        return
    print(f"{path}: {malformed.count} malformed rows left out", file=sys.stderr)
    for bad in malformed.examples:
        print(f"  line {bad.line}: {bad.reason}", file=sys.stderr)


def in_time_order(series: dict[str, tuple[list[float], list[float], list[int]]], path: str | Path) -> None:
    """Each meter's readings sorted by time (ties kept in file order), and how many meters were not, on stderr.

    The injection looks times up in a meter's series as sorted, and the register reads a reading older than the
    newest late (no usage): a file written newest first would be scored without usage or incidents, unsaid.
    """
    unsorted = 0
    for meter_id, (ts, total, offs) in list(series.items()):
        if all(a <= b for a, b in itertools.pairwise(ts)):
            continue
        unsorted += 1
        order = sorted(range(len(ts)), key=ts.__getitem__)
        series[meter_id] = ([ts[k] for k in order], [total[k] for k in order], [offs[k] for k in order])
    if unsorted:
        print(f"{path}: the readings of {unsorted} meters were not in time order; read sorted by time", file=sys.stderr)


def inject(
    series: dict[str, tuple[list[float], list[float], list[int]]], seed: int, every_days: float = 12.0
) -> tuple[dict[str, tuple[list[float], list[float], list[int]]], list[Truth]]:
    """Add falls, leaks and taps left running to real readings; return new series and labels.

    Incidents are spaced at least five days apart per home and placed where
    readings exist for the next three days, so each can be seen and scored.
    """
    rng = random.Random(seed)
    out: dict[str, tuple[list[float], list[float], list[int]]] = {}
    truth: list[Truth] = []
    for meter_id in sorted(series):
        ts, total, offs = series[meter_id]
        totals = np.array(total, dtype=np.float64)
        t = np.array(ts, dtype=np.float64)
        cursor = t[0] + 7 * DAY  # a week to learn before the first incident
        while True:
            cursor += rng.uniform(0.5, 1.5) * every_days * DAY
            if cursor > t[-1] - 4 * DAY:
                break
            i = int(np.searchsorted(t, cursor))
            j = int(np.searchsorted(t, cursor + 3 * DAY))
            if j >= len(t) or j - i < 48 or np.max(np.diff(t[max(i - 1, 0) : j + 1])) > 3 * HOUR:
                continue  # no steady data around this moment
            start = float(cursor)
            kind = rng.choices(("fall", "leak", "tap_running"), weights=(0.4, 0.3, 0.3))[0]
            if kind != "leak" and totals[i - 1] - totals[max(int(np.searchsorted(t, start - 2 * HOUR)) - 1, 0)] < 1:
                # Falls and open taps happen to someone at home: the home used water in the last 2 h.
                cursor -= 0.5 * every_days * DAY - 3 * HOUR
                continue
            if kind == "fall":
                end = start + 48 * HOUR
                base = float(totals[i - 1])  # the register at the last reading before the fall
                k = int(np.searchsorted(t, end, side="right"))
                frozen = float(totals[k - 1]) - base
                totals[i:k] = base
                totals[k:] -= frozen
                truth.append(Truth(meter_id, kind, "incident", start, end))
            else:
                if kind == "leak":
                    lpm = math.exp(rng.uniform(math.log(0.3), math.log(3.0)))
                    end = start + rng.uniform(2.0, 7.0) * DAY
                else:
                    lpm = rng.uniform(5.0, 12.0)
                    end = start + rng.uniform(1.0, 6.0) * HOUR
                added = np.clip(np.minimum(t, end) - start, 0.0, None) * lpm / 60.0
                totals += np.floor(added)
                truth.append(Truth(meter_id, kind, "incident", start, end, {"flow_lpm": round(lpm, 3)}))
            cursor = end + 5 * DAY
        out[meter_id] = (ts, totals.tolist(), offs)
    return out, truth


def real(path: str | Path, seed: int, tz: str) -> Dataset:
    """Real households (living in zone ``tz``) with injected incidents."""
    series, truth = inject(read_csv_series(path), seed)
    ids = sorted(series)
    rows = ((k, ts, tot) for k, m in enumerate(ids) for ts, tot in zip(series[m][0], series[m][1], strict=True))
    released: dict[str, dict[int, float]] = {}
    intervals, n = intervals_from_readings(ids, rows, tz, released)
    name = f"real households ({Path(path).name}) with injected incidents, seed {seed}"
    return Dataset(name, intervals, truth, n, released=released)


# ---------------------------------------------------------------------------- detectors
Factory = Callable[[str, list[Interval], list[Truth]], Any]


def tapwatch_factory(thresholds: Thresholds) -> Factory:
    return lambda meter_id, _xs, _truth: MeterMonitor(meter_id, thresholds)


def rule_factory(name: str) -> Factory:
    make = FIXED_RULES[name]
    return lambda _m, _xs, _truth: make()


def hst_factory(seed: int) -> Factory:
    """river's HalfSpaceTrees per meter (``detect.hst``): what a user of river alone would build."""
    return lambda meter_id, _xs, _truth: HalfSpaceTreesDetector(meter_id, seed=seed)


def oracle_factory(meter_id: str, xs: list[Interval], truth: list[Truth]) -> SilenceOracle:
    windows = [(t.start, t.window_end) for t in truth if t.category == "incident"]
    return SilenceOracle.fit(xs, windows)


#: The peer's row name in the table.
HST_NAME = "river HST"


def detectors(thresholds: Thresholds, seed: int = 1) -> dict[str, Factory]:
    out: dict[str, Factory] = {"tapwatch": tapwatch_factory(thresholds), HST_NAME: hst_factory(seed)}
    out.update({name: rule_factory(name) for name in FIXED_RULES})
    out["oracle_p99.9"] = oracle_factory
    return out


def offsets_of(xs: Sequence[Interval]) -> Callable[[float], int]:
    """The UTC offset of a meter's readings at a time, from its intervals (each carries its end's offset).

    A visit teaches the alert's local hours with the offset at the alert, as live (``MeterStep.offset_at``).

    >>> xs = [Interval("m", 0.0, 10.0, 1.0, "ok", 7200), Interval("m", 10.0, 20.0, 1.0, "ok", 3600)]
    >>> [offsets_of(xs)(ts) for ts in (10.0, 15.0, 20.0, 99.0)]
    [7200, 3600, 3600, 3600]
    """
    ends = [x.end for x in xs]

    def offset_at(ts: float) -> int:
        return xs[min(bisect.bisect_left(ends, ts), len(xs) - 1)].utc_offset_s

    return offset_at


# ---------------------------------------------------------------------------- scoring
@dataclass
class Score:
    """Results of one detector on one dataset."""

    name: str
    delays: dict[str, list[float | None]]  # per incident kind: delay (h) or None when missed
    false_by_kind: dict[str, int]  # noise alerts per kind
    noise: int
    absence: int
    absences: int  # real silences of 24 h or more outside incidents
    months: float
    readings: int = 0
    seconds: float = 0.0
    unobservable: dict[str, int] = field(default_factory=dict)  # incidents with no data from the meter
    maintenance: int = 0  # false alerts on the maintenance route (slow-leak findings with no leak)
    device: int = 0  # device alerts (meter_offline, meter_fault), all routed to maintenance
    outcomes: dict[str, int] = field(default_factory=dict)  # outcomes applied, when learning from them
    second_absence: int = 0  # a 2nd (3rd, ...) community alert in the same real absence (also in noise)
    devices: DeviceScore | None = None  # device alerts against the fault labels; None without labels
    #: tapwatch's community findings by what they did to the elder's case (raised, reopened, joined,
    #: joined_rose: the join raised the severity, re-notified live); scored as findings all the same.
    cases: dict[str, int] = field(default_factory=dict)

    def recall(self, kind: str) -> float | None:
        d = self.delays.get(kind)
        return None if not d else sum(x is not None for x in d) / len(d)

    def quantile(self, kind: str, q: float) -> float | None:
        d = [x for x in self.delays.get(kind, []) if x is not None]
        return float(np.percentile(d, q)) if d else None

    @property
    def noise_rate(self) -> float:
        return self.noise / self.months if self.months else 0.0

    def per_month(self, count: int) -> float:
        return count / self.months if self.months else 0.0


@dataclass
class DeviceScore:
    """Device alerts against fault labels: true and false alerts, and the faults a device alert is for, found."""

    true: int = 0
    false: int = 0
    outages: int = 0  # labelled outages of OUTAGE_ALERT_S or more
    outages_found: int = 0
    register: int = 0  # labelled register faults (REGISTER_FAULTS)
    register_found: int = 0

    def add(self, other: DeviceScore) -> None:
        for name in ("true", "false", "outages", "outages_found", "register", "register_found"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def recall(self) -> float | None:
        n = self.outages + self.register
        return (self.outages_found + self.register_found) / n if n else None


def score_devices(alerts: Iterable[Finding], faults: Iterable[Truth]) -> DeviceScore:
    """One meter's device alerts (not resolved) against its fault labels, each widened by :data:`DEVICE_SLACK_S`.

    An alert spans ``since`` (the last good data; its time when unknown) to its time. It is true when
    that span meets a labelled fault window (an instant fault has start == end); a labelled outage of
    :data:`OUTAGE_ALERT_S` or more, or a register fault, is found when an alert meets it.

    >>> h = 3600.0
    >>> off = Finding("m", "meter_offline", "low", 16 * h, "", "", since=10 * h)
    >>> stray = Finding("m", "meter_fault", "low", 50 * h, "", "", since=49.5 * h)
    >>> faults = [Truth("m", "offline", "fault", 10.4 * h, 17 * h), Truth("m", "glitch", "fault", 80 * h, 80 * h)]
    >>> d = score_devices([off, stray], faults)
    >>> (d.true, d.false, d.outages_found, d.outages, d.register_found, d.register)
    (1, 1, 1, 1, 0, 1)
    """
    windows = [(f.start - DEVICE_SLACK_S, (f.start if f.end is None else f.end) + DEVICE_SLACK_S) for f in faults]
    spans = [(f.ts if f.since is None else min(f.since, f.ts), f.ts) for f in alerts]
    out = DeviceScore()
    for a, b in spans:
        if any(lo <= b and a <= hi for lo, hi in windows):
            out.true += 1
        else:
            out.false += 1
    for f, (lo, hi) in zip(faults, windows, strict=True):
        length = (f.start if f.end is None else f.end) - f.start
        if f.kind == "offline" and length >= OUTAGE_ALERT_S:
            out.outages += 1
            out.outages_found += any(lo <= b and a <= hi for a, b in spans)
        elif f.kind in REGISTER_FAULTS:
            out.register += 1
            out.register_found += any(lo <= b and a <= hi for a, b in spans)
    return out


def observed(ends: list[float], inc: Truth) -> bool:
    """Whether the meter sent anything usable during ``inc``: an interval of known use (``ends``, sorted) ending
    in its window. Without one no water-based detector can see it (it is counted apart: "with no data").

    >>> observed([1800.0, 3600.0], Truth("m1", "fall", "incident", 0.0, 3600.0))
    True
    >>> observed([3600.0, 9000.0], Truth("m1", "fall", "incident", 3600.0, 5400.0))  # the readings skip it
    False
    """
    seen = bisect.bisect_right(ends, inc.start)
    return seen < len(ends) and ends[seen] <= inc.window_end


def _silences_24h(xs: list[Interval]) -> list[tuple[float, float]]:
    """Silences (no use, known data) of 24 h or more, as (start, end)."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for x in xs:
        if x.usage_l is None or x.usage_l >= ABSENCE_USE_L:
            if start is not None and x.start - start >= ABSENCE_S:
                out.append((start, x.start))
            start = None if x.usage_l is None else x.end
        elif start is None:
            start = x.start
    if start is not None and xs and xs[-1].end - start >= ABSENCE_S:
        out.append((start, xs[-1].end))
    return out


def real_absences(xs: list[Interval], incidents: list[Truth]) -> list[tuple[float, float]]:
    """The meter's silences of 24 h or more outside its incidents: the first alert in each is counted apart."""
    return [(a, b) for a, b in _silences_24h(xs) if not any(i.start < b and a < i.window_end for i in incidents)]


def absence_at(ts: float, absences: list[tuple[float, float]]) -> int | None:
    """Which real absence (an index of :func:`real_absences`) an alert at ``ts`` falls in, up to an hour after it."""
    return next((k for k, (a, b) in enumerate(absences) if a <= ts <= b + HOUR), None)


def explained(f: Finding, incidents: list[Truth], truth: list[Truth]) -> bool:
    """An alert the labels account for: in an incident's window, or a routine change during a decline the
    labels name (illness, frailty) or the 14 days after it. Every other alert is false."""
    if any(i.start <= f.ts <= i.window_end for i in incidents):
        return True
    return f.kind == "routine_change" and any(
        t.kind in DRIFT_EVENTS and t.start <= f.ts <= (t.end or math.inf) + 14 * DAY for t in truth
    )


def score(
    name: str,
    factory: Factory,
    data: Dataset,
    visit_delay_h: float | None = None,
    window_days: float = OUTCOME_WINDOW_DAYS,
    hold_downs: HoldDowns = HOLD_DOWNS,
) -> Score:
    """Replay every meter through one detector and score its alerts.

    With ``visit_delay_h`` (tapwatch's monitor only), cadres' outcomes are applied as they would
    arrive, that long after each community case is raised, and to a case the data closed first
    only within ``window_days`` of its closing; cases follow the live rule with ``hold_downs``
    (the module docstring says how).
    """
    truth_by_meter: dict[str, list[Truth]] = defaultdict(list)
    for t in data.truth:
        truth_by_meter[t.meter_id].append(t)
    delays: dict[str, list[float | None]] = defaultdict(list)
    unobservable: dict[str, int] = defaultdict(int)
    false_by_kind: dict[str, int] = defaultdict(int)
    noise = absence = absences = maintenance = device = second_absence = 0
    applied: dict[str, int] = defaultdict(int)
    cases: dict[str, int] = defaultdict(int)
    faults_by_meter: dict[str, list[Truth]] | None = None
    devices: DeviceScore | None = None
    if data.faults is not None:
        faults_by_meter, devices = defaultdict(list), DeviceScore()
        for t in data.faults:
            faults_by_meter[t.meter_id].append(t)
    months = 0.0
    seconds = 0.0
    meters = track(data.intervals.items(), Progress(f"eval: {name}", total=len(data.intervals), unit="meters"))
    for meter_id, xs in meters:
        if not xs:
            continue
        truth = truth_by_meter.get(meter_id, [])
        months += (xs[-1].end - xs[0].start) / (30 * DAY)
        det = factory(meter_id, xs, truth)
        incidents = [t for t in truth if t.category == "incident"]
        schedule = None
        # tapwatch's findings go into cases as live (each meter its own elder): visits are the cases'.
        book = OpenAlerts(hold_downs) if isinstance(det, MeterMonitor) else None
        teach = {meter_id: det} if isinstance(det, MeterMonitor) else {}  # a visit teaches this meter's monitor
        if visit_delay_h is not None and book is not None:
            # The labels give each alert its outcome (the contract) and nothing else.
            labels = [Label(t.meter_id, t.kind, t.start, t.end) for t in incidents]
            schedule = OutcomeSchedule(labels, visit_delay_h, window_days)
            offset_at = offsets_of(xs)
        tic = time.perf_counter()
        alerts: list[Finding] = []
        device_alerts: list[Finding] = []
        update = det.update
        queue = None
        # A held interval's findings are known when a later reading released it, as live (``MeterStep.push``).
        held = getattr(data, "released", {}).get(meter_id, {})  # datasets pickled before session 15 have none
        for i, x in enumerate(xs):
            if schedule is not None and book is not None:
                queue = queue or schedule.pending.get(meter_id)
                if queue and queue[0][0] <= x.end:
                    for visit in schedule.due(meter_id, x.end):
                        if make_visit(book, meter_id, visit, teach.get, offset_at):
                            schedule.applied[visit.outcome] += 1
            found = update(x)
            if i in held:
                for f in found:
                    f.ts = max(f.ts, held[i])
            for f in found:
                if book is not None:
                    action = book.admit(meter_id, f)
                    if action is not None and book.last["case_key"] == COMMUNITY_CASE and not f.resolved:
                        cases[action + ("_rose" if action == JOINED and book.rose else "")] += 1
                    if action is not None and schedule is not None:
                        note_case(schedule, action, f, book.last)
                if f.resolved:
                    continue
                if f.kind in DEVICE_KINDS:
                    device += 1
                    device_alerts.append(f)
                    continue
                alerts.append(f)
        seconds += time.perf_counter() - tic
        if schedule is not None:
            for outcome, n in schedule.applied.items():
                applied[outcome] += n
        if devices is not None and faults_by_meter is not None:
            devices.add(score_devices(device_alerts, faults_by_meter.get(meter_id, [])))
        community = [f for f in alerts if f.route == COMMUNITY]
        times = [f.ts for f in community]
        all_times = [f.ts for f in alerts]
        ends = [x.end for x in xs if x.usage_l is not None]
        for inc in incidents:
            if not observed(ends, inc):
                # The meter sent nothing usable during the incident (offline): no water-based
                # detector can see it; the device alert is what fires. Counted apart.
                unobservable[inc.kind] += 1
                continue
            on_route = all_times if inc.kind in EITHER_ROUTE else times
            k = bisect.bisect_left(on_route, inc.start)
            hit = on_route[k] if k < len(on_route) and on_route[k] <= inc.window_end else None
            delays[inc.kind].append(None if hit is None else (hit - inc.start) / HOUR)
        quiet = real_absences(xs, incidents)
        absences += len(quiet)
        charged: set[int] = set()
        for f in alerts:
            if explained(f, incidents, truth):
                continue
            if f.route != COMMUNITY:
                maintenance += 1
                continue
            where = absence_at(f.ts, quiet)
            if where is not None and where not in charged:
                charged.add(where)
                absence += 1
            else:
                noise += 1
                false_by_kind[f.kind] += 1
                second_absence += where is not None  # a second alert in the same real absence
    return Score(
        name,
        dict(delays),
        dict(false_by_kind),
        noise,
        absence,
        absences,
        months,
        sum(len(x) for x in data.intervals.values()),
        seconds,
        dict(unobservable),
        maintenance,
        device,
        dict(applied),
        second_absence,
        devices,
        dict(cases),
    )


# ---------------------------------------------------------------------------- reporting
def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def table(scores: list[Score], kinds: Iterable[str]) -> str:
    """The side-by-side table (markdown)."""
    kinds = [k for k in kinds if any(s.delays.get(k) for s in scores)]
    head = ["detector"]
    for k in kinds:
        n = max(len(s.delays.get(k, [])) for s in scores)
        blind = max(s.unobservable.get(k, 0) for s in scores)
        extra = f"; +{blind} with no data" if blind else ""
        head += [f"{k} (n={n}{extra}) recall", "median h", "p90 h"]
    head += [
        "noise /elder-month",
        "absence alerts (real absences)",
        "noise by kind /elder-month",
        "false maintenance /elder-month",
        "device alerts /elder-month",
        "2nd alerts in real absences /elder-month",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in scores:
        row = [s.name]
        for k in kinds:
            row += [_f(s.recall(k)), _f(s.quantile(k, 50), "{:.1f}"), _f(s.quantile(k, 90), "{:.1f}")]
        by_kind = ", ".join(f"{k} {v / s.months:.2f}" for k, v in sorted(s.false_by_kind.items())) or "0"
        row += [f"{s.noise_rate:.2f}", f"{s.absence} ({s.absences})", by_kind]
        row += [f"{s.per_month(s.maintenance):.2f}", f"{s.per_month(s.device):.2f}"]
        row += [f"{s.per_month(s.second_absence):.3f} ({s.second_absence})"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def device_table(scores: list[Score]) -> str:
    """Device alerts against the fault labels, for the detectors that raise any (markdown); "–" without labels."""
    rows = [s for s in scores if s.device]
    if not rows:
        return ""
    first = next((s.devices for s in rows if s.devices is not None), None)
    outages = f" (n={first.outages})" if first else ""
    register = f" (n={first.register})" if first else ""
    head = [
        "detector",
        "device alerts /meter-month",
        "true /meter-month",
        "false /meter-month",
        f"outages >= {OUTAGE_ALERT_S / HOUR:g} h found{outages}",
        f"register faults found{register}",
        "fault recall",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in rows:
        d = s.devices
        row = [s.name, f"{s.per_month(s.device):.2f}"]
        if d is None:
            row += ["–"] * 5
        else:
            row += [f"{s.per_month(d.true):.2f}", f"{s.per_month(d.false):.2f}"]
            row += [f"{d.outages_found} ({_f(d.outages_found / d.outages if d.outages else None)})"]
            row += [f"{d.register_found} ({_f(d.register_found / d.register if d.register else None)})"]
            row += [_f(d.recall)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def run_all(
    data: Dataset,
    thresholds: Thresholds,
    seed: int = 1,
    visit_delay_h: float | None = VISIT_DELAY_H,
    window_days: float = OUTCOME_WINDOW_DAYS,
    hold_downs: HoldDowns = HOLD_DOWNS,
) -> list[Score]:
    """Every detector; and tapwatch learning from cadres' outcomes, unless ``visit_delay_h`` is None."""
    scores = [
        score(name, factory, data, hold_downs=hold_downs) for name, factory in detectors(thresholds, seed).items()
    ]
    if visit_delay_h is not None:
        learning = tapwatch_factory(thresholds)
        scores.insert(1, score(OUTCOMES_NAME, learning, data, visit_delay_h, window_days, hold_downs))
    return scores


SWEEP = (1e-6, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def sweep(
    data: Dataset,
    thresholds: Thresholds,
    values: Iterable[float] = SWEEP,
    visit_delay_h: float | None = None,
    window_days: float = OUTCOME_WINDOW_DAYS,
    hold_downs: HoldDowns = HOLD_DOWNS,
) -> list[tuple[float, Score]]:
    """tapwatch at each sensitivity; learning from cadres' outcomes too when ``visit_delay_h`` is given."""
    out = []
    name = "tapwatch" if visit_delay_h is None else OUTCOMES_NAME
    for v in values:
        t = thresholds.replace(sensitivity=v)
        out.append((v, score(f"{name} s={v:g}", tapwatch_factory(t), data, visit_delay_h, window_days, hold_downs)))
    return out


def _na_noise(s: Score) -> float:
    """Noise alerts of the silence kind (``no_activity``) per elder-month: what sensitivity trades."""
    return s.false_by_kind.get("no_activity", 0) / s.months if s.months else 0.0


_OTHER_COLOURS = ("tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def plot(
    points: list[tuple[float, Score]],
    others: list[Score],
    default: float,
    path: Path,
    title: str,
    with_outcomes: Sequence[tuple[float, Score]] = (),
) -> None:
    """Fall recall and median delay against ``no_activity`` noise: the sweeps (without and with cadres'
    outcomes), the default, rules, oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, what in zip(axes, ("median", "recall"), strict=True):

        def y_of(s: Score, what: str = what) -> float | None:
            return s.quantile("fall", 50) if what == "median" else s.recall("fall")

        ax.plot(
            [_na_noise(s) for _, s in points],
            [y_of(s) for _, s in points],
            "o-",
            color="tab:blue",
            label="tapwatch (sensitivity sweep)",
        )
        if with_outcomes:
            ax.plot(
                [_na_noise(s) for _, s in with_outcomes],
                [y_of(s) for _, s in with_outcomes],
                "^--",
                color="tab:green",
                label="tapwatch + outcomes (sensitivity sweep)",
            )
        for curve, star, label in ((points, "red", "default"), (with_outcomes, "darkgreen", "default + outcomes")):
            for v, s in curve:
                y = y_of(s)
                if y is None:
                    continue
                ax.annotate(f"{v:g}", (_na_noise(s), y), fontsize=7, xytext=(3, 3), textcoords="offset points")
                if v == default:
                    ax.plot([_na_noise(s)], [y], "*", color=star, markersize=15, label=f"{label} ({v:g})", zorder=5)
        for k, s in enumerate(others):
            y = y_of(s)
            if y is not None:  # same colour per detector in both panels, none the curves' blue or green
                ax.plot([_na_noise(s)], [y], "s", color=_OTHER_COLOURS[k % len(_OTHER_COLOURS)], label=s.name)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("false no_activity alerts (noise) per elder-month")
        ax.set_ylabel("falls: median delay (h)" if what == "median" else "falls: recall")
        if what == "recall":
            ax.set_ylim(0.0, 1.03)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_prior(datasets: Iterable[Dataset]) -> np.ndarray:
    """Population silence prior (24 start hours x length bins, rows sum to 1) for ``detect.prior``.

    Every meter weighs the same (its own histogram is normalised first), so a
    few busy homes do not make the prior.
    """
    total = np.zeros((24, len(SILENCE_EDGES) + 1))
    for data in datasets:
        for xs in data.intervals.values():
            own = np.zeros_like(total)
            for start, hours, off in silences(xs):
                if hours < 24.0:
                    own[hour_of(start, off), bisect.bisect_right(SILENCE_EDGES, hours)] += 1
            sums = own.sum(axis=1, keepdims=True)
            total += np.divide(own, sums, out=np.zeros_like(own), where=sums > 0)
    total += 1e-3  # no bin is impossible
    return total / total.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="Score tapwatch, river's HalfSpaceTrees, the fixed rules and the oracle side by side on labelled data.",
        description="Simulate elders (or read real readings with --csv and inject incidents), replay them "
        "through tapwatch, river's HalfSpaceTrees per meter, each fixed rule and the oracle, and print recall, "
        "detection delay and false alerts per elder-month.",
    )
    p.add_argument("--elders", type=int, default=300, help="simulated elders (default 300)")
    p.add_argument("--days", type=int, default=120, help="simulated days (default 120)")
    p.add_argument("--seed", type=int, default=1, help="random seed of simulation and injection (default 1)")
    p.add_argument("--csv", metavar="FILE", help="real readings (meter_id,ts,total_l) to inject incidents into")
    p.add_argument(
        "--tz",
        type=zone,
        metavar="ZONE",
        help="time zone of the --csv homes, e.g. Europe/Madrid (default: TAPWATCH_TIMEZONE, Asia/Shanghai)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a detection threshold (repeatable)",
    )
    p.add_argument(
        "--visit-delay-h",
        type=number(0.0),
        default=None,  # not VISIT_DELAY_H: given with --no-outcomes it would change nothing, so it is refused
        metavar="H",
        help=f"hours from a community alert to the cadre's outcome in the '{OUTCOMES_NAME}' row "
        f"(default {VISIT_DELAY_H:g})",
    )
    p.add_argument("--no-outcomes", action="store_true", help=f"leave out the '{OUTCOMES_NAME}' row")
    p.add_argument("--sweep", action="store_true", help="also sweep the sensitivity and plot the trade-off")
    p.add_argument(
        "--out", metavar="DIR", help="with --sweep: write the trade-off plot to DIR/img/detection-{sim,real}-sweep.png"
    )
    p.add_argument(
        "--fit-prior",
        action="store_true",
        help="print the population silence prior (simulated elders, plus --csv homes) and exit",
    )
    p.set_defaults(func=run)


def _csv_zone(args: argparse.Namespace) -> str:
    """The --csv homes' zone by the one rule for a meter's local time (no elder registered: the setting's)."""
    return meter_zone(getattr(args, "tz", None), get_settings().timezone)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "out", None) and not getattr(args, "sweep", False):
        # Checked before the evaluation runs: it would take minutes, then write nothing where the plot was expected.
        raise ValueError("--out is where --sweep writes its plot: give --sweep too, or leave --out out")
    if getattr(args, "no_outcomes", False) and getattr(args, "visit_delay_h", None) is not None:
        raise ValueError("--visit-delay-h times the visits of the outcomes row, which --no-outcomes leaves out")
    thresholds = thresholds_from(args.overrides)
    if getattr(args, "fit_prior", False):
        sources = [simulated(args.elders, args.days, args.seed)]
        if args.csv:
            sources.append(real(args.csv, args.seed, _csv_zone(args)))
        rows = fit_prior(sources)
        print("_PRIOR_ROWS: list[list[float]] = [")
        for row in rows:
            print("    [" + ", ".join(f"{v:.4f}" for v in row) + "],")
        print("]")
        return 0
    tic = time.perf_counter()
    data = real(args.csv, args.seed, _csv_zone(args)) if args.csv else simulated(args.elders, args.days, args.seed)
    print(
        f"# {data.name}: {data.readings} readings, {len(data.intervals)} meters "
        f"(prepared in {time.perf_counter() - tic:.0f} s)",
        flush=True,
    )
    given = getattr(args, "visit_delay_h", None)
    delay = None if getattr(args, "no_outcomes", False) else VISIT_DELAY_H if given is None else given
    if delay is not None and delay < 0:
        raise ValueError("--visit-delay-h must not be negative")
    settings = get_settings()
    window, hold_downs = settings.outcome_window_days, HoldDowns.from_settings(settings)
    scores = run_all(data, thresholds, args.seed, delay, window, hold_downs)
    text = table(scores, INCIDENT_ORDER)
    print(text)
    devices = device_table(scores)
    if devices:
        print("\n# device alerts against the fault labels (–: no fault labels)")
        print(devices)
    print()
    for s in scores[:3]:
        print(f"{s.name} replay: {s.readings / max(s.seconds, 1e-9):,.0f} intervals/s in the detector alone")
        if s.outcomes:
            taught = ", ".join(f"{k} {v}" for k, v in sorted(s.outcomes.items()))
            print(f"  cadres' outcomes applied ({delay:g} h after each community case): {taught}")
        if s.cases:
            c = s.cases
            joins = c.get("joined", 0) + c.get("joined_rose", 0)
            print(
                f"  community findings: {c.get('raised', 0)} raised a case, {c.get('reopened', 0)} reopened one "
                f"within the flap hold-down (re-notified: counted as calls), {joins} joined an open one "
                f"({c.get('joined_rose', 0)} raising its severity: re-notified)"
            )
    tag = "real" if args.csv else "sim"
    if args.sweep:
        points = sweep(data, thresholds, hold_downs=hold_downs)
        print("\n" + table([s for _, s in points], INCIDENT_ORDER))
        learned = [] if delay is None else sweep(data, thresholds, SWEEP, delay, window, hold_downs)
        if learned:
            print("\n" + table([s for _, s in learned], INCIDENT_ORDER))
        if args.out:
            # A rule that does not catch falls (the leak rule) has no place on a falls plot; the peer always has.
            others = [
                s
                for s in scores[1:]
                if s.name != OUTCOMES_NAME and (s.name == HST_NAME or (s.recall("fall") or 0.0) >= 0.5)
            ]
            path = Path(args.out) / "img" / f"detection-{tag}-sweep.png"
            plot(points, others, thresholds.sensitivity, path, data.name, learned)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tapwatch.evaluate ARGS`` is ``tapwatch eval ARGS``: bad input is one line (exit 2), no traceback."""
    from tapwatch.cli import main as tapwatch  # imported here: the command line imports this module itself

    return tapwatch(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
