"""One meter's monitor: the only object the pipeline talks to.

It composes the learned models of one elder (silences, runs of flow, daily
totals and drift), the hard safety-net rule, away windows and device logic (a
silent or faulty meter is a maintenance matter, never ``no_activity``), and
turns them into :class:`~core.domain.Finding` records: one per episode and
kind, and a resolved finding when the condition clears.

Use, for the silence detector and the safety net, is what a person draws above
the home's base flow (:mod:`detect.baseflow`): 0 in a home where water ever
stops, so nothing changes there; a running cistern or a dripping tap under the
leak level would otherwise count as use in every interval and hide a fall for
good. Such a home is reported once to maintenance (session 10).

Every interval is scored first, then learned; stretches that raised an alert
are not learned (protected learning), so an emergency never becomes routine.
The per-interval path is plain Python; the models' heavier updates (decay,
survival curves) run once per local day.

A worker holds a monitor for each of up to a million meters, so every class
here has ``__slots__`` and a compact pickled state, and values most meters
share (the thresholds, constant tuples) are stored once (:mod:`detect.compact`).
"""

from __future__ import annotations

import functools
import math
from array import array
from copy import deepcopy

from core.cadence import FIRST_USUAL_S, NEW_INTERVALS, SHRINK_SPANS, USUAL_GROWTH, YOUNG_INTERVALS, offline_line
from core.domain import (
    INTERVAL_GAP,
    INTERVAL_OK,
    INTERVAL_RESET,
    MAINTENANCE,
    WITHDRAWN,
    Finding,
    Interval,
    gravest_first,
)
from core.thresholds import Thresholds
from detect import messages as msg
from detect.baseflow import DRY_S, GAP_S, BaseFlow
from detect.compact import (
    SlotKinds,
    check_slots,
    held_once,
    restore_slots,
    shared,
    slot_kinds,
    slot_values,
    with_added_slots,
)
from detect.daily import DailyModel, DaySummary, rising_hour
from detect.flow import FLAT_L, FLAT_TOL, ONE_READING_H, SETTLED_FLOOR_H, TAP_LPH, FlowModel, levels_for
from detect.rules import LowUseWindowRule
from detect.silence import SilenceModel, hour_of

#: An interval with at least this much water (litres) is use; below it, silence.
USE_MIN_L = 1.0
#: Intervals shorter than this (s) are joined until they span it: the detectors weigh an interval's litres (a use is
#: a litre or more, a trickle's range a litre above its rate; a leak draws intervals alike), and a meter read every
#: second draws a tenth of a litre a reading from a tap wide open: an elder who used water all morning was "no water
#: since 21:30" (never closed), and on readings of a minute a wash's three alike minutes were a leak. A meter read
#: every five minutes or less often is judged reading by reading as before.
SHORT_S = 300.0
#: ``MeterMonitor.short`` while ``tick`` has the intervals it held judged: the next interval is judged as it is.
_WHOLE = (0.0, 0.0, 0.0, 0)
#: The live worker ticks a meter once it has sent nothing this long (s; ``tapwatch.service``, the least
#: ``offline_hours``), and the tick judges a use held in short intervals as it is. A reading that comes this long
#: after such a use has it judged so first: a replay, a backtest and a worker catching up on stored readings have no
#: tick, and joined those minutes of water to the hours after them (her silence case closed at the meter's return).
SILENT_TICK_S = 3600.0
#: An open no_activity closes only on a real use (a flush, a wash): a 1 L tick of the
#: register during an absence must not close it and let it fire again.
RESUME_MIN_L = 3.0
#: Days between forgetting steps and recomputations of the silence alert lengths (daily in cold start).
REFRESH_DAYS = 7
#: Longest runs (hours) per flow level a new meter is assumed to have (population prior).
FLOW_PRIOR_H = (2.0, 1.0, 0.5, 0.5)
#: Shortest longest-run (hours) at the leak level once learned: a little slack for new habits.
FLOW_AFTER = SETTLED_FLOOR_H[0]
#: Floors of the longest runs per flow level once learned (one tuple for all meters).
FLOW_LEARNED_FLOOR_H = SETTLED_FLOOR_H
#: Days since the first reading during which the slow levels (below a tap's rate: plumbing, maintenance's) keep the
#: population prior's floors after the learning week: a week shows a home few of its washes, baths and laundries at
#: each hour, and every longer one at an hour still unseen was a slow run "past this home's longest"; three weeks show
#: each weekday's three times. Longer costs leaks that begin with use on top (found later: session 11,
#: docs/detection-studies.md "A new home's first weeks").
FLOW_SETTLING_DAYS = 21.0
#: ...the floors then: the prior's at the slow levels, none at the tap levels (a tap left open is judged by the
#: learned runs from day 8, as before; the steady-leak rule is not floored by these, ``FlowModel._steady``).
FLOW_SETTLING_FLOOR_H = (FLOW_PRIOR_H[0], FLOW_PRIOR_H[1], 0.0, 0.0)
#: A day needs this many hours of known data to be judged or learned.
MIN_KNOWN_H = 20.0
#: The longest local day the clocks make (the night they go back). A longer one is a day the elder's zone moved
#: west in (an operator's correction): it ran on to the new zone's midnight, and is neither judged nor learned.
LONGEST_DAY_S = 25 * 3600.0
#: A meter that stops reporting in a silence already longer than all but this share of the elder's silences from
#: its start hour leaves a fall unseen: once the silence's alert time has passed, with the meter silent for
#: ``offline_hours`` too, a cadre is called. Water that came while the meter was silent cannot be known until it
#: reports again, and then the case closes (session 11: a fall whose meter went offline was otherwise never found).
UNSEEN_P = 0.01
#: A deadline never reached.
_NEVER = float("inf")
#: ``sil_excused`` of a silence whose clock a person who saw the elder well restarted (once per silence).
_SEEN_ONCE = -1.0
#: ``day_first_use`` when the morning fell in a gap in the readings: the day's rising time is unknown.
_RISING_HIDDEN = -1.0
#: Settings of a monitor made without any (frozen: one object for all of them).
_DEFAULT_THRESHOLDS = Thresholds()
#: Values most meters have in common, stored once when checkpoints are loaded.
_SHARED_ON_LOAD = frozenset(
    (
        "thresholds",
        "offline_s",
        "day",
        "day_off",
        "last_off",
        "run_off",
        "base_off",
        "block_off",
        "refresh_day",
        "last_drift_day",
        "quiet_q",
        "sil_off",
        "usual_s",
    )
)

#: The slots the closed loop added, with their values for a meter nothing was taught (older checkpoints).
_OUTCOME_SLOTS: dict[str, object] = {
    "flow_excused": 0.0,
    "flow_excused_lph": 0.0,
    "quiet_q": b"",
    "sil_away": None,
    "sil_excused": 0.0,
}
#: The slots habitual hours added (issue 17 section 4), with their values for older checkpoints.
_HABIT_SLOTS: dict[str, object] = {"habit_h": None, "sil_habit": float("inf")}
#: The slots the base flow added (session 10); ``base`` is made afresh for each older checkpoint (``BaseFlow()``).
_BASE_SLOTS: dict[str, object] = {"base": None, "base_open": 0}
#: Slots added since the first compact checkpoints, newest first: a checkpoint lacks the first few groups.
#: The slot a silence unseen while the meter is silent added (session 11), with its value for older checkpoints.
_UNSEEN_SLOTS: dict[str, object] = {"sil_off": 0}
#: The slot days judged on what was seen of them added (session 13), with its value for older checkpoints.
_GAP_SLOTS: dict[str, object] = {"day_gap_s": 0.0}
#: The slot short intervals are joined in (session 17), with its value for older checkpoints.
_SHORT_SLOTS: dict[str, object] = {"short": None}
#: The slots a day's start at its own UTC offset added (session 18); None: unknown, the next interval's is used.
_DAY_OFF_SLOTS: dict[str, object] = {"day_off": None, "last_off": None}
#: The slot a flow run's start offset added (session 18); None: unknown, the alert's interval's is used.
_RUN_OFF_SLOTS: dict[str, object] = {"run_off": None}
#: The slots a base flow's start offset added (session 19); None: unknown, the report's interval's is used.
_BASE_OFF_SLOTS: dict[str, object] = {"base_off": None, "block_off": None}
#: The slot the meter's usual interval added (the offline line on its cadence); older checkpoints start learning it
#: as a new meter does (``young_intervals`` too: it overrides the group after, as the register restores them).
_CADENCE_SLOTS: dict[str, object] = {"usual_s": FIRST_USUAL_S, "young_intervals": YOUNG_INTERVALS}
#: The slot a new meter's first intervals added (``core.cadence.NEW_INTERVALS``); a checkpoint with a usual interval
#: but without it has learned its cadence.
_NEW_METER_SLOTS: dict[str, object] = {"young_intervals": 0}
_ADDED_SLOTS = (
    _NEW_METER_SLOTS,
    _CADENCE_SLOTS,
    _BASE_OFF_SLOTS,
    _RUN_OFF_SLOTS,
    _DAY_OFF_SLOTS,
    _SHORT_SLOTS,
    _GAP_SLOTS,
    _UNSEEN_SLOTS,
    _BASE_SLOTS,
    _HABIT_SLOTS,
    _OUTCOME_SLOTS,
)

# A home whose water never stops (a running cistern, a dripping tap, a leak under the leak level) hides every
# silence: use is what a person draws above the home's base flow (``detect.baseflow``), and the meter is
# reported to maintenance once the water has not stopped for this long (h): as soon as the base flow is found
# (water in every 2 h block for three days, never two hours without water ended by a use: people stop, plumbing does
# not; session 11). Shenzhen Longgang's rule is use in every half hour for 24 h.
BASE_FLOW_REPORT_H = 72.0
#: ...and cleared once it has stopped for this long (h), the maintenance hold-down: a cistern that stops for a night
#: and runs again is the same fault (a home's real cistern in ../shared did so every week or two), and one report of
#: it is enough; the person who has it repaired closes the case at once.
BASE_FLOW_CLEAR_H = 7 * 24.0
#: ``base_open``: nothing reported; the base flow reported to maintenance; an open flow finding covers this water.
_BASE_NONE, _BASE_REPORTED, _BASE_COVERED = 0, 1, 2

# Outcomes a person records when closing a case (``alerts.manager.HUMAN_OUTCOMES``), as the detectors read them.
#: The elder was fine: what raised the alert is part of the routine (bounded).
BENIGN_OUTCOMES = frozenset({"ok", "false_alarm", "away"})
#: A person saw the elder at home and well ("见到老人，平安"): a sign of life at the visit, as a use of water is.
SEEN_OUTCOMES = frozenset({"ok"})
#: A confirmed incident: never learned as routine.
CONFIRMED_OUTCOMES = frozenset({"needed_help", "hospital"})
#: Every outcome ``learn_outcome`` takes.
PERSON_OUTCOMES = BENIGN_OUTCOMES | CONFIRMED_OUTCOMES | {"device_fault"}
#: Each benign silence raises its start hour's alert length to this many times its length (compounding)...
QUIET_STEP = 1.1
#: ...but never past this many times what the silence model alone sets, nor past ``QUIET_CAP_H`` hours.
QUIET_MAX_FACTOR = 1.5
QUIET_CAP_H = 36.0
#: A silence alert a visit found no emergency in without seeing the elder (``false_alarm``: no one in danger; after a
#: silence as long as her alert length, mostly nobody home) never calls a cadre again until water is used again: a
#: home silent after such a visit is a home she has left. If it stays silent this long after that alert (h), one
#: low finding goes to maintenance instead: confirm the home is empty or the meter works. (``ok``, the elder seen
#: well, restarts the silence's clock instead: a silence after that is a new one, judged afresh.)
REALERT_MAX_H = 30 * 24.0
#: A flow run a person called benign is raised again only once twice as long, and at least this much
#: longer (h): water still running hours after the visit at the same rate is new news (the tap was never
#: closed), and the visit's judgment is stale by then.
REFLOW_MIN_H = 8.0
#: A flow run that alerted this young (h: on its first reading or two) began within the interval that alerted, which
#: held only part of its rate: a garden's watering on hourly readings draws 6 L/min in the hour it starts, 14 L/min
#: in the next. Once a person called it benign, the rate they saw at the visit (the interval the visit falls in, the
#: first read after the outcome) is the rate excused, not the first interval's part: else the same watering's next
#: interval was "a tap opened on top" and called the cadre again an hour after the first call (session 10,
#: docs/detection-studies.md "Outcomes on a garden's waterings"). An older run's rate is known: a rise after the
#: visit is a tap opened on top, raised at once.
YOUNG_RUN_H = 1.5
#: ``away`` after an alert about water makes an absence of the silence that followed that water: one that began at most
#: this long (h) after the alert (a visit comes within hours of its call; a tap runs until it is closed at the visit).
#: A silence that began later followed water used since, so she was back: an outcome recorded days later, on a case the
#: data closed (within the outcome window), says nothing of it, and excusing it hid a fall until her next use.
AWAY_AFTER_WATER_H = 12.0

# What a good cadre knows besides the start hour (issue 17 section 4): "she always makes her tea at
# eight". An hour in which this elder uses water on nearly every day (``FlowModel``'s share of days,
# learned daily) that passes without any, twice, says more about this silence than its length does.
#: An hour is habitual when water is used in it on at least this share of days.
HABIT_SHARE = 0.85
#: A silence alerts once this many habitual hours have passed in it...
HABIT_MISSED = 2
#: ...and this many times as long as it took to reach the end of the last of them (slack for a late tea)...
HABIT_SLACK = 1.5
#: ...but never before this share of the start hour's alert length.
HABIT_MIN_SHARE = 0.5


#: Habit tables by habitual hours (``MeterMonitor._habit_table``), and how many are kept (a bound, not a cache policy).
_HABIT_TABLES: dict[tuple[int, ...], array] = {}
_HABIT_TABLES_MAX = 4096
#: The same tables by their bytes: a meter holds the stored one, read only, live or loaded from its checkpoint.
_TABLES_BY_BYTES: dict[bytes, array] = {}


def _stored_table(table: array) -> array:
    """The one stored habit table equal to ``table`` (``table`` itself while there is room for it)."""
    key = table.tobytes()
    found = _TABLES_BY_BYTES.get(key)
    if found is not None:
        return found
    if len(_TABLES_BY_BYTES) < _HABIT_TABLES_MAX:
        _TABLES_BY_BYTES[key] = table
    return table


def _phase_knobs(thresholds: Thresholds) -> tuple[float, float, float]:
    """The thresholds the learning phase's settings (``MeterMonitor._learning_phase``) are read from."""
    return thresholds.ceiling_hours, thresholds.learned_ceiling_hours, thresholds.cold_start_days


def _hours_to_missed(habitual: tuple[int, ...]) -> array:
    """Per start hour, hours from its beginning to the end of the ``HABIT_MISSED``-th of the ``habitual`` hours
    (ascending, at least ``HABIT_MISSED`` of them) after it."""
    n = len(habitual)
    table = array("f", bytes(4 * 24))
    # (The habitual hours after ``hour`` in order are those after it, then those up to it a day later, so the
    # ``HABIT_MISSED``-th is read off by index, not sorted for each hour.)
    first = 0  # the first habitual hour after ``hour``
    for hour in range(24):
        while first < n and habitual[first] <= hour:
            first += 1
        k = first + HABIT_MISSED - 1
        table[hour] = habitual[k % n] - hour + (24.0 if k >= n else 0.0) + 1.0
    return table


class MeterMonitor:
    """Findings for one meter, from its intervals of use and the clock.

    Parameters
    ----------
    meter_id
        The meter this monitor watches.
    thresholds
        Operator settings; ``set_thresholds`` changes them live.

    Examples
    --------
    Three weeks of an elder who rises at 06:30, then a morning with no water.

    >>> from core.domain import Interval
    >>> m = MeterMonitor("m1")
    >>> day, slot = 86400, 1800
    >>> def usage(k):  # half-hour k of a day: use on rising, meals and evening
    ...     return 12.0 if k in (13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42) else 0.0
    >>> found = []
    >>> for d in range(21):
    ...     for k in range(48):
    ...         t = d * day + k * slot
    ...         found += m.update(Interval("m1", t, t + slot, usage(k), "ok", 0))
    >>> [f.kind for f in found if not f.resolved]
    []
    >>> for k in range(48):  # day 22: no water at all
    ...     t = 21 * day + k * slot
    ...     found += m.update(Interval("m1", t, t + slot, 0.0, "ok", 0))
    >>> alert = [f for f in found if f.kind == "no_activity"][0]
    >>> alert.basis, alert.severity, msg.hm(alert.ts, 0)  # three weeks of nights: still a cautious margin
    ('learned', 'high', '09:30')
    >>> print(alert.message_en)
    No water used since 21:30 (12 h), about ... h longer than this elder's usual longest gap at this time of day ...
    >>> [f.kind for f in m.tick(now=22 * day + 7 * 3600)]
    ['meter_offline']
    """

    __slots__ = (
        "away",
        "base",
        "base_off",
        "base_open",
        "block_off",
        "ceiling",
        "daily",
        "day",
        "day_first_use",
        "day_flagged",
        "day_gap_s",
        "day_known_s",
        "day_off",
        "day_open",
        "day_slots",
        "day_total",
        "fault_since",
        "first_ts",
        "flow",
        "flow_excused",
        "flow_excused_lph",
        "flow_open",
        "habit_h",
        "last_drift_day",
        "last_end",
        "last_off",
        "meter_id",
        "na_open",
        "offline",
        "offline_s",
        "quiet_q",
        "refresh_day",
        "run_off",
        "short",
        "sil_away",
        "sil_excused",
        "sil_habit",
        "sil_off",
        "sil_start",
        "silence",
        "thresholds",
        "usual_s",
        "young_intervals",
    )

    def __init__(self, meter_id: str, thresholds: Thresholds | None = None) -> None:
        self.meter_id = meter_id
        self.thresholds = thresholds or _DEFAULT_THRESHOLDS
        self.silence = SilenceModel()
        t = self.thresholds
        self.flow = FlowModel(t.leak_flow_lpm * 60.0, run_factor=t.flow_run_factor, run_margin_h=t.flow_margin_h)
        self.daily = DailyModel()
        self.ceiling = LowUseWindowRule(self.thresholds.ceiling_hours, self.thresholds.ceiling_litres)
        self.offline_s = self.thresholds.offline_hours * 3600.0
        self.usual_s = FIRST_USUAL_S  # the meter's usual interval: its offline line (core.cadence.offline_line)
        self.young_intervals = YOUNG_INTERVALS  # of its first intervals still to come (core.cadence: young)
        self.away: tuple[tuple[float, float], ...] = ()  # a tuple: most meters share the empty one
        self.first_ts: float | None = None
        self.last_end: float | None = None
        self.last_off: int | None = None  # the UTC offset at ``last_end``: at the next interval's start
        self.offline = False
        self.fault_since: float | None = None  # open meter_fault, cleared after a clean day
        self.sil_start: float | None = None  # when the current silence began (None: unknown)
        self.na_open = False  # open no_activity alert
        self.flow_open = False
        self.run_off: int | None = None  # the UTC offset where the current flow run began (its alert tells it)
        self.day_open: str | None = None  # open high_usage / low_usage
        self.last_drift_day = -10_000
        self.refresh_day = -10_000
        # The local day being summed up.
        self.day = -1
        # The UTC offset at the day's start: on the day the clocks change, the next day's is an hour off.
        self.day_off: int | None = None
        self.day_total = 0.0
        self.day_first_use: float | None = None  # the first use after 04:00: the rising time on a day of lone uses
        self.day_slots = 0  # bitmask of half-hour slots with use
        self.day_known_s = 0.0
        self.day_gap_s = 0.0  # of which readings were lost: the volume is known, not when it was used
        self.day_flagged = False  # a no_activity episode or away touched this day: don't judge or learn it
        # What people's outcomes taught (``learn_outcome``). Most meters have none: shared empty values.
        self.quiet_q = b""  # per start hour, the alert length benign silences earned, in quarter hours
        self.sil_excused = 0.0  # the current silence was called benign: silent until this data time (-1: restarted)
        self.sil_away: float | None = None  # the current silence is an absence (a person said so) since then
        self.flow_excused = 0.0  # the current run was resolved: quiet until it lasts this long (h; inf: until it stops)
        self.flow_excused_lph = 0.0  # ... and while it draws no more than half again its rate then (L/h)
        # Habitual hours (``_habit_table``): per start hour, hours from its beginning to the end of the
        # ``HABIT_MISSED``-th habitual hour after it (0: none); None while learning or without habits. One table for
        # the meters of the same habitual hours: read only.
        self.habit_h: array | None = None
        self.sil_habit = _NEVER  # the current silence alerts once it lasts this long (s), habits say
        self.sil_off = 0  # the UTC offset (s) at the current silence's start, for ``tick`` (no reading then)
        # The home's base flow (0 unless the water has not stopped for a day): use is what rises above it.
        self.base = BaseFlow()
        self.base_open = _BASE_NONE  # reported to maintenance (until the water stops), or covered by a flow finding
        # The UTC offsets at the base flow's ``since`` (its report tells it) and at the start of the block being
        # summed (the one that becomes ``since`` when it closes wet): a trickle's days may span a clock change.
        self.base_off: int | None = None
        self.block_off: int | None = None
        # (start, end, litres, UTC offset) of the short intervals joined so far (``SHORT_S``); None: none held.
        self.short: tuple[float, float, float, int] | None = None

    def __getstate__(self) -> tuple[object, ...]:
        # Values only, in slot order: the names would be most of a checkpoint's bytes.
        return slot_values(self)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        if isinstance(state, tuple):
            # A checkpoint from before the base flow (and maybe before habitual hours and the closed loop:
            # nothing taught yet): the missing slots take their neutral values, and a base flow of its own.
            state = with_added_slots(self.__slots__, state, _ADDED_SLOTS, {"base": BaseFlow})
        # Day numbers are the same for most meters (they share a clock): one int object each.
        restore_slots(self, state, share=_SHARED_ON_LOAD)
        # (A slot of another kind, a damaged checkpoint, is left as it is: ``check_loaded`` names it.)
        if isinstance(self.habit_h, array):
            self.habit_h = _stored_table(self.habit_h)
        if isinstance(self.base, BaseFlow):
            # The last use both began the silence and ended the base flow's last wet stretch: one object for both.
            self.base.wet_end = held_once(self.base.wet_end, self.sil_start)  # type: ignore[assignment]

    def check_loaded(self) -> None:
        """Raise ``ValueError`` unless every slot of this unpickled monitor and of its models holds what this release's
        monitors hold (a checkpoint damaged, or a newer release's of as many values, unpickles too)."""
        kinds, models = _loaded_kinds()
        check_slots(self, kinds)
        for name, model_kinds in models.items():
            check_slots(getattr(self, name), model_kinds)

    def for_replacement(self, meter_id: str) -> MeterMonitor:
        """A monitor for the meter that replaces this one in the same home: the routine is the elder's.

        What was learned (silences, flow runs, daily totals, how long it has been learning) and the
        elder's open cases (so use on the new meter can close them) carry over; the day being summed,
        the current silence and flow run, and the device's own state (offline, faulty) start afresh,
        as the new register does.

        >>> from core.domain import Interval
        >>> old = MeterMonitor("m1")
        >>> for k in range(30 * 48):  # a month of use in the morning and the evening
        ...     t = k * 1800
        ...     _ = old.update(Interval("m1", t, t + 1800, 15.0 if k % 48 in (14, 36) else 0.0, "ok", 0))
        >>> new = old.for_replacement("m2")
        >>> new.meter_id, new.first_ts == old.first_ts, new.last_end, new.daily.n == old.daily.n
        ('m2', True, None, True)
        >>> found = []
        >>> for k in range(48):  # the first day on the new meter: no water at all
        ...     t = 31 * 86400 + k * 1800
        ...     found += new.update(Interval("m2", t, t + 1800, 0.0, "ok", 0))
        >>> [(f.kind, f.basis) for f in found if not f.resolved]  # judged by the routine, not the cold-start rule
        [('no_activity', 'learned')]
        """
        new = MeterMonitor(meter_id, self.thresholds)
        new.silence, new.flow, new.daily = deepcopy((self.silence, self.flow, self.daily))
        new.flow.interrupt()  # a run cannot be followed from one register to another
        new.first_ts = self.first_ts
        new.refresh_day = self.refresh_day
        new.last_drift_day = self.last_drift_day
        new.away = self.away
        new.quiet_q = self.quiet_q  # what people's outcomes taught about the elder's silences
        new.na_open, new.flow_open, new.day_open = self.na_open, self.flow_open, self.day_open
        return new

    # ------------------------------------------------------------------ operator API
    def set_thresholds(self, thresholds: Thresholds) -> None:
        """Apply new operator settings at once (the alert lengths are recomputed if the sensitivity changed).

        Re-applying the same settings (every time a worker loads the meter) changes nothing: the silence
        model's daily refresh stays where the data put it, so a reloaded monitor behaves as one that stayed.
        """
        thresholds.validate()
        before = self.thresholds
        resensitised = thresholds.sensitivity != before.sensitivity
        self.thresholds = thresholds
        if self.last_end is not None and _phase_knobs(thresholds) != _phase_knobs(before):
            # The safety net's hours and the learning week from the next interval on, not from the next local day
            # (a change made in the morning waited for midnight: a net of 4 h, set after a 07:00 wash, fired at 17:00).
            self._learning_phase(self._cold(self.last_end), self.last_end)
        self.offline_s = thresholds.offline_hours * 3600.0
        self.ceiling.litres = thresholds.ceiling_litres
        leak = thresholds.leak_flow_lpm * 60.0
        if leak != self.flow.leak_lph:
            self.flow.leak_lph = leak
            self.flow.levels = levels_for(leak)
        # The flow model keeps its factor and margin (floats its checkpoint always had, shared between meters on
        # load); the routine-change threshold is read from ``self.thresholds`` each day (``_close_day``): no copy.
        self.flow.run_factor = thresholds.flow_run_factor
        self.flow.run_margin_h = thresholds.flow_margin_h
        if resensitised:
            self._refresh_silence()

    def set_away(self, windows: list[tuple[float, float]]) -> None:
        """Known absences (start, end) that mute ``no_activity``."""
        self.away = tuple(sorted(windows))

    # ------------------------------------------------------------------ data
    def update(self, x: Interval) -> list[Finding]:
        """Score one interval of use, then learn from it; return the findings it raises, the gravest first.

        Gravest first: two raised in one reading (a day's routine change and a silence's alert) open one
        case at the graver one's severity and under its kind, the other joining it, where the other order
        raised a low case and re-notified it at once as high (:func:`core.domain.gravest_first`, at each
        return: a wrapper's extra call per interval cost 5% of replay).
        """
        out: list[Finding] = []
        # This runs for every reading of every meter: the interval's fields are read once (one
        # unpacking of the named tuple), and the common cases of the models (nothing flows, a
        # silence goes on) are answered here.
        _, start, end, u, status, off = x
        if end - start < SHORT_S or self.short is not None:
            if end - start >= SILENT_TICK_S and self.short is not None:
                out = self._judge_held()  # what the worker's tick did live while the meter was silent
                out += self.update(x)
                return out if len(out) < 2 else gravest_first(out)
            joined = self._join_short(x)
            if joined is None:
                return out
            _, start, end, u, status, off = x = joined
        if self.first_ts is None:
            self.first_ts = start
            self._refresh_silence()
        if self.offline or end - start >= self.offline_s:
            self._offline_gap(x, out)
        seconds, usual = end - start, self.usual_s
        new = self.young_intervals
        if new:
            self.young_intervals = new - 1
        if seconds != usual:  # after the line is drawn: the tick drew it before this interval came
            # ``next_usual``, inlined (keep the two the same): once per interval.
            if seconds < usual:
                shrunk = usual * 0.5 if new else usual - SHRINK_SPANS * seconds
                if shrunk < usual * 0.5:
                    shrunk = usual * 0.5
                self.usual_s = seconds if seconds > shrunk else shrunk
            elif new > YOUNG_INTERVALS - NEW_INTERVALS:  # a new meter's first intervals: its cadence, taken whole
                self.usual_s = seconds
            else:
                grown = usual * USUAL_GROWTH
                self.usual_s = seconds if seconds < grown else grown
        self.last_end = end
        day = (end - 1.0 + off) // 86400  # a whole float, compared as it is: made an int only when the day changes
        # Only forward: a zone moved west takes the local day back, and the day before was closed already.
        if day > self.day:
            self._new_day(shared(int(day)), x, out)
        start_off = self.last_off  # the offset at this interval's start (None: the first interval)
        self.last_off = off
        if u is None:
            self._unknown(x, out)
            return out if len(out) < 2 else gravest_first(out)
        if self.fault_since is not None and end - self.fault_since > 86400:
            self._fault_cleared(x, out)
        self.day_known_s += end - start
        if status == INTERVAL_GAP:
            self._gap_into_day(start, end, u, off)
        else:
            self.day_total += u
        flow = self.flow
        if u > 0.0 or flow.run_start[0] is not None:
            if flow.run_start[0] is None:
                self.run_off = off  # a run that begins here begins at this offset (as a silence's ``sil_off``)
            score = flow.step(start, end, u, off)
            if score > 0.0 or self.flow_open or self.flow_excused:
                self._flow(x, u, off, score, out)
        net_u = u  # what the safety net counts
        base = self.base
        until = base.until
        if u > 0.0 or end > until:  # once per 2 h while no water flows
            if end > until or end - start > GAP_S or start - base.wet_end >= DRY_S:
                self._learn_base(start, end, u, off if start_off is None else start_off)
            else:
                # ``base.learn_one`` inlined for the common case (water within a block): keep the two the same.
                base.wet_end = end
                base.litres += u
                duration = end - start
                rate = u * 3600.0 / (duration if duration > 1.0 else 1.0)
                if rate > base.peak:
                    base.peak = rate
            if base.allow_lph or self.base_open or self.flow_open:
                u = self._base_flow(x, start, end, u, out)  # from here on, u is what a person drew
                if u != net_u:  # a base flow runs: the net weighs a day of water, against the trickle's wider range
                    net_u = base.net_excess(start, end, net_u)
        leaking = flow.maint_lph > 0.0 and flow.run_start[0] is not None  # a leak reported to maintenance runs
        if leaking:
            u = net_u = self._above_leak(start, end, u)  # it is no one's use
        if u >= USE_MIN_L:
            self._use(status, start, end, u, off, out, leaking)  # (positional: the cheaper call, once per use)
        else:
            began = self.sil_start
            if began is None:
                began = self.sil_start = start
                self.sil_habit = _NEVER  # what came before it is unknown
                self.sil_off = off
            # Two comparisons per silent interval: the alert lengths are precomputed daily
            # (the start hour is ``hour_of(began, self.sil_off)``, inlined: the local hour it began, also on the
            # night the clocks change), the habits' at the silence's start.
            if not self.na_open and (
                end - began >= self.silence._alert[int((began + self.sil_off) % 86400.0) // 3600] * 3600.0
                or end - began >= self.sil_habit
            ):
                self._silent(x, began, off, out)
        ceiling = self.ceiling
        if ceiling.hours > 0:
            if net_u == 0.0:
                # ``ceiling.unchanged_by_silence(end)``, inlined: most intervals are silent.
                window = ceiling._window
                if window:
                    if (
                        not ceiling._alerting
                        and ceiling._window_l >= ceiling.litres
                        and window[0] > end - ceiling.hours * 3600
                    ):
                        return out if len(out) < 2 else gravest_first(out)
                else:
                    covered = ceiling._covered_from
                    if covered is not None and (ceiling._alerting or end - covered < ceiling.hours * 3600):
                        return out if len(out) < 2 else gravest_first(out)
            for f in ceiling.update(x if net_u == x.usage_l else x._replace(usage_l=net_u)):
                if not f.resolved and not self.na_open and not self._is_away(end) and not self._excused():
                    self._open_no_activity(x, f.since or end, "rule", out, rule=f)
        return out if len(out) < 2 else gravest_first(out)

    def _join_short(self, x: Interval) -> Interval | None:
        """``x`` joined to the short intervals before it; None while they span less than ``SHORT_S`` (held)."""
        _, start, end, u, status, off = x
        held = self.short
        if held is _WHOLE:
            self.short = None
            return x
        if held is not None:
            self.short = None
            start = held[0]  # the register's intervals follow one another: the held ones end where this one starts
            if u is not None:
                u += held[2]  # (an unknown stretch swallows them: minutes of water before a fault)
        if u is not None and status == INTERVAL_OK and end - start < SHORT_S:
            self.short = (start, end, u, off)
            return None
        return x if held is None else x._replace(start=start, usage_l=u)

    def tick(self, now: float) -> list[Finding]:
        """Clock-driven checks: a meter that stopped reporting, and a long silence it left unseen."""
        out: list[Finding] = []
        held = self.short
        if held is not None and now - held[0] >= SHORT_S:
            out = self._judge_held()
        last = self.last_end
        if last is None or now - last < self.offline_s:
            return out
        line = self._offline_line()
        if now - last < line:
            return out
        if not self.offline:
            self.offline = True
            out.append(self._offline_finding(last + line))
        self._unseen_silence(last, now, out)
        return out

    def _judge_held(self) -> list[Finding]:
        """The meter fell silent minutes after a use it sent in short intervals: the use is judged now, as it is."""
        held = self.short
        assert held is not None and held is not _WHOLE
        self.short = _WHOLE  # judged as it is, however short
        return self.update(Interval(self.meter_id, held[0], held[1], held[2], INTERVAL_OK, held[3]))

    # ------------------------------------------------------------------ base flow
    def _base_flow(self, x: Interval, start: float, end: float, u: float, out: list[Finding]) -> float:
        """Judge an interval the base flow has learned (a base flow runs, was reported, or a flow finding is open):
        return the litres a person drew in it, above the base flow.

        Only a trickle whose own range stays under the leak level (``leak_flow_lpm``) counts: a flow that reaches
        it is the flow model's, raised within hours as a leak and repaired within days (and the hours after a leak
        stopped must not be judged against the leak's range). A home whose water never stops is reported to
        maintenance once, when the water has not stopped for ``BASE_FLOW_REPORT_H``, unless a flow finding is open
        (one trickle, one finding); cleared when the water stopped ``BASE_FLOW_CLEAR_H`` ago.
        """
        base = self.base
        if self.flow_open:
            if base.since is not None and self.base_open != _BASE_REPORTED:
                self.base_open = _BASE_COVERED  # this water is the open flow finding's: one trickle, one finding
        elif self.base_open == _BASE_COVERED:
            # The flow that was raised stopped (or a person took it in hand): what runs now is judged afresh, not
            # against that flow's range (a leak's last hours are no trickle's), and reported on its own if it runs on.
            base.restart()
            self.base_open = _BASE_NONE
        trickle = 0.0 < base.allow_lph < self.flow.leak_lph
        if self.base_open == _BASE_REPORTED:
            if base.lph <= 0.0 and end - base.ended >= BASE_FLOW_CLEAR_H * 3600.0:
                self.base_open = _BASE_NONE
                zh, en = msg.base_flow_stopped(end, x.utc_offset_s)
                out.append(
                    Finding(
                        self.meter_id, "continuous_flow", "low", end, zh, en, "rule", resolved=True, route=MAINTENANCE
                    )
                )
        elif trickle and base.hours(end) >= BASE_FLOW_REPORT_H and not self.base_open:
            self.base_open = _BASE_REPORTED
            out.append(self._base_flow_finding(x))
        return base.excess(start, end, u) if trickle else u

    def _learn_base(self, start: float, end: float, u: float, start_off: int) -> None:
        """``base.learn_one``, keeping the UTC offset at the start of each block and at the base flow's ``since``."""
        base = self.base
        since, until, block_off = base.since, base.until, self.block_off
        base.learn_one(start, end, u)
        if base.since is not None and base.since != since:
            self.base_off = block_off  # the block that closed wet begins the run: its start's offset, kept below
        if base.until != until:
            # A block opened: the offset at its start is this interval's start's, the last reading at or before it.
            self.block_off = start_off

    def _base_flow_finding(self, x: Interval) -> Finding:
        base = self.base
        since = base.since if base.since is not None else x.end
        base.reported = since  # what a person's resolve of this report is recognised by (``learn_outcome``)
        hours = (x.end - since) / 3600.0
        # The local time the water last stopped, told at its own offset: three days of it may span a clock change.
        since_off = self.base_off if base.since is not None and self.base_off is not None else x.utc_offset_s
        zh, en = msg.base_flow(since, since_off, hours, base.lph)
        details = {
            "base_lph": round(base.lph, 1),
            "lpm": round(base.lph / 60.0, 3),
            "run_h": round(hours, 1),
            "rule": "water in every 2 h block",
        }
        return Finding(
            self.meter_id, "continuous_flow", "low", x.end, zh, en, "rule", since, details=details, route=MAINTENANCE
        )

    def _above_leak(self, start: float, end: float, u: float) -> float:
        """The litres a person drew on top of a leak reported to maintenance that still runs.

        A leak runs for days until it is repaired; counted as use, it made every interval a sign of life and
        a fall in that home was never found (session 11). Its flow is its run's floor, steady to the register's
        litre or ``FLAT_TOL`` of it; what rises above that is a person's.
        """
        leak_l = self.flow.run_flat[0] * (end - start) / 3600.0
        return max(u - leak_l - max(FLAT_L, FLAT_TOL * leak_l), 0.0)

    # ------------------------------------------------------------------ silence
    def _use(
        self, status: str, start: float, end: float, u: float, off: int, out: list[Finding], through_leak: bool
    ) -> None:
        if status == INTERVAL_OK and not through_leak:
            # A silence that ended with use teaches the model; not while a leak runs under it: a hand wash within
            # the leak's own wobble was no use then, and the silences seen through it are too long.
            self._learn_silence(start)
        if self.na_open and u >= RESUME_MIN_L:
            self.na_open = False
            # The silence just proved normal (she used water again) and was learned above: its start hour's alert
            # length takes it in now, not at the weekly refresh, or the same outing calls the cadre again
            # tomorrow (a visit's outcome refreshes too; this is for cases no one records).
            self._refresh_silence()
            self.ceiling.reset()  # a fresh window: small uses must not re-open the same episode
            zh, en = msg.use_resumed(end, off, u)
            out.append(Finding(self.meter_id, "no_activity", "high", end, zh, en, "learned", resolved=True))
        if u >= RESUME_MIN_L and (self.sil_excused or self.sil_away is not None):
            if self.sil_excused == _NEVER:  # the month-long silence's maintenance finding clears
                zh, en = msg.use_resumed(end, off, u)
                resumed = Finding(self.meter_id, "no_activity", "low", end, zh, en, "learned", resolved=True)
                resumed.route = MAINTENANCE
                out.append(resumed)
            self.sil_excused = 0.0  # someone is home and well: the next silence is judged afresh
            self.sil_away = None
            self.ceiling.reset()  # as when an open episode closes: the safety net's window starts afresh
        self._silence_from(end, off)
        local = (end - 1.0 + off) % 86400.0
        if (
            status == INTERVAL_GAP
            and self.day_first_use is None
            and local >= 4 * 3600
            and rising_hour(self.day_slots) is None
        ):
            # Used at some moment of the gap: the morning was in it, so when the elder rose is unknown (not the
            # gap's end: "rose late").
            self.day_first_use = _RISING_HIDDEN
        if self.day_first_use is None and local >= 4 * 3600:
            self.day_first_use = local / 3600.0
        self.day_slots |= 1 << int(local // 1800)

    def _learn_silence(self, ended: float) -> None:
        """Learn the current silence as one that ended at ``ended`` (a use, or a person who saw her well), unless an
        absence explains it (the model itself ignores silences of 24 h or more)."""
        began = self.sil_start
        if (
            began is not None
            and ended > began
            and self.sil_away is None
            and not (self.away and self._away_overlaps(began, ended))
        ):
            self.silence.learn_one(began, (ended - began) / 3600.0, self.sil_off)  # its start's local hour

    def _silence_from(self, at: float, off: int) -> None:
        """A new silence starts at ``at``: its clock, and when the habitual hours say it alerts."""
        self.sil_start = at
        self.sil_off = off
        self.sil_habit = _NEVER if self.habit_h is None else self._habit_deadline(at, off)

    def _habit_deadline(self, began: float, off: int) -> float:
        """Seconds after ``began`` at which a silence from then has missed ``HABIT_MISSED`` habitual hours."""
        local_h = ((began + off) % 86400.0) / 3600.0
        hour = int(local_h)
        to_end = self.habit_h[hour] if self.habit_h is not None else 0.0
        if not to_end:
            return _NEVER
        # A benign outcome at this hour does not move the deadline: what it earned (``quiet_q``) is about
        # how long a silence from this hour may last, and as a floor it switched the habits of these hours
        # off for months (it never decayed before session 8; docs/detection-studies.md, "Outcomes as calibration").
        floor = self.silence._alert[hour] * HABIT_MIN_SHARE
        return max((to_end - (local_h - hour)) * HABIT_SLACK, floor) * 3600.0

    def _habits_missed(self, since: float, now: float, off: int) -> list[int]:
        """Local hours, habitual for this elder, that passed whole between ``since`` and ``now``."""
        at = 24 * len(self.flow.levels)
        first = int((since + off) // 3600) + 1
        last = int((now + off) // 3600)  # hours ending by ``now``
        hours = [h % 24 for h in range(first, last)]
        return [h for h in hours if self.flow._state[at + h] >= HABIT_SHARE][:HABIT_MISSED]

    def _habit_table(self) -> None:
        """Per start hour, hours from its beginning to the end of the ``HABIT_MISSED``-th habitual hour after it.

        >>> m = MeterMonitor("m1")
        >>> m.first_ts = -100 * 86400.0  # long past learning
        >>> shares = [0.0] * 24
        >>> shares[7] = shares[12] = shares[19] = 0.95  # rising, lunch and supper, every day
        >>> m.flow._state[96:120] = array("f", shares)
        >>> m._habit_table()
        >>> m.habit_h[8], m.habit_h[13], m.habit_h[20]  # from 08:00: lunch and supper missed by 20:00; ...
        (12.0, 19.0, 17.0)
        """
        if self._cold(self.last_end or 0.0):
            self.habit_h = None
            return
        at = 24 * len(self.flow.levels)
        shares = self.flow._state[at : at + 24]
        habitual = tuple([h for h, share in enumerate(shares) if share >= HABIT_SHARE])  # ascending
        if len(habitual) < HABIT_MISSED:
            self.habit_h = None
            return
        # Daily for every meter, and a function of the habitual hours alone, which change little from day to day
        # and are alike in many homes: each table is worked out once, and held once (nothing writes into one).
        table = _HABIT_TABLES.get(habitual)
        if table is None:
            table = _stored_table(_hours_to_missed(habitual))
            if len(_HABIT_TABLES) < _HABIT_TABLES_MAX:
                _HABIT_TABLES[habitual] = table
        self.habit_h = table

    def _silent(self, x: Interval, start: float, off: int, out: list[Finding]) -> None:
        """The silence reached this elder's alert length for its start hour."""
        if not self._is_away(x.end) and not self._excused():
            basis = "prior" if self._cold(x.end) else "learned"
            self._open_no_activity(x, start, basis, out)

    def _open_no_activity(
        self, x: Interval, since: float, basis: str, out: list[Finding], rule: Finding | None = None
    ) -> None:
        self.na_open = True
        self.day_flagged = True
        hours = (x.end - since) / 3600.0
        # The local time the silence began, told at its own UTC offset (a night silence spans a clock change).
        off = self.sil_off if since == self.sil_start else x.utc_offset_s
        if rule is not None:
            zh, en = rule.message_zh, rule.message_en
            p = 0.0
        else:
            begin = hour_of(since, off)
            p, usual = self.silence.explain(begin, hours)
            habit = hours < self.silence._alert[begin]  # alerted by habitual hours before its start hour's length
            missed = self._habits_missed(since, x.end, off) if habit else []
            if missed:  # say which habitual hours went by
                zh, en = msg.no_activity_habit(since, off, hours, missed)
            else:
                zh, en = msg.no_activity_learned(since, off, hours, 1.0 - p, usual, basis)
        details = {"silence_h": round(hours, 2), "p_value": p, "start_hour": hour_of(since, off)}
        out.append(
            Finding(self.meter_id, "no_activity", "high", x.end, zh, en, basis, since, score=hours, details=details)
        )

    # ------------------------------------------------------------------ flow
    def _flow(self, x: Interval, u: float, off: int, score: float, out: list[Finding]) -> None:
        """The flow model scored this interval above normal, or an open flow alert may close."""
        flow = self.flow
        if self.flow_excused:
            if flow.run_start[0] is None:
                self.flow_excused = 0.0  # the flow stopped: the next run is judged afresh
            elif not self.flow_open:
                run_h = flow.run_hours(x.end)
                rate = u * 3600.0 / max(x.end - x.start, 1.0)
                if self.flow_excused_lph < 0.0:  # the visit's interval of a young run: the rate the person saw
                    self.flow_excused_lph = max(-self.flow_excused_lph, rate)
                tap = rate >= TAP_LPH and rate > self.flow_excused_lph * 1.5
                flow.alerting = True  # the model stays in its alert (no learning) while the resolved run goes on
                if run_h <= self.flow_excused:
                    if tap:
                        # A tap opened on top of the resolved run: judged at the tap levels, from its own start.
                        score = flow.score_one(x.start, x.end, u, off, from_lph=TAP_LPH)
                        if score <= 0.0:
                            return
                    elif self.flow_excused_lph >= TAP_LPH and flow.steady_alone(x.start, x.end, u):
                        # The tap a person took in hand stopped; the steady slow flow under it goes on: it is the
                        # plumbing's, raised on the maintenance route (the person's case stays as they closed it).
                        flow.tap = flow.burst = False
                        score = run_h
                    else:
                        return
                else:
                    score = run_h  # well past what the outcome taught
                    flow.burst = False  # the run's own length, not one huge draw
                    flow.tap = rate >= TAP_LPH
                self.flow_excused = 0.0
        if self.flow_open and flow.maint_lph and score <= 0.0:
            score = self._tap_on_maintenance_flow(x, u, off)
            if score > 0.0:
                # The case becomes a cadre's: the meter's maintenance case closes (the data closed it) and the tap
                # is raised below, a community case of its own (alerts.grouping: the routes never share a case).
                self.flow_open = False
                zh, en = msg.flow_handed_on(x.end, off)
                out.append(Finding(self.meter_id, "continuous_flow", "high", x.end, zh, en, "learned", resolved=True))
        if self.flow_open and not flow.maint_lph and score <= 0.0 and flow.steady_alone(x.start, x.end, u):
            # The tap that made this a cadre's case stopped; the steady slow flow under it goes on: the
            # community case closes (the data closed it) and the flow is raised again, on the maintenance route.
            self.flow_open = False
            zh, en = msg.flow_handed_back(x.end, off)
            out.append(Finding(self.meter_id, "continuous_flow", "high", x.end, zh, en, "learned", resolved=True))
            flow.tap = flow.burst = False
            score = flow.run_hours(x.end)
        if score > 0.0 and not self.flow_open:
            self.flow_open = True
            self.day_flagged = True
            finding = self._flow_finding(x, u, off, score)
            flow.maint_lph = u * 3600.0 / max(x.end - x.start, 1.0) if finding.route == MAINTENANCE else 0.0
            out.append(finding)
        if self.flow_open and not flow.alerting:
            self.flow_open = False
            zh, en = msg.flow_stopped(x.end, off)
            out.append(Finding(self.meter_id, "continuous_flow", "high", x.end, zh, en, "learned", resolved=True))

    def _tap_on_maintenance_flow(self, x: Interval, u: float, off: int) -> float:
        """Water at a tap's rate while a slow flow is open on the maintenance route: its score at the tap levels.

        The flow model is alerting (learning nothing) while the plumbing's case is open; the tap levels'
        runs are followed all the same, from the tap's own start, and judged as they would be alone
        (0: not beyond this elder's own yet).
        """
        if u * 3600.0 < TAP_LPH * (x.end - x.start):
            return 0.0
        return self.flow.score_one(x.start, x.end, u, off, from_lph=TAP_LPH)

    def _flow_finding(self, x: Interval, u: float, off: int, score: float) -> Finding:
        flow = self.flow
        minutes = (x.end - x.start) / 60.0
        lpm = u / max(minutes, 1e-9)
        began = flow.run_start[0]
        since = x.start if began is None else began
        run_h = (x.end - since) / 3600.0
        if flow.burst and minutes >= ONE_READING_H * 60.0:  # a single huge interval (a shorter one: a tap's run)
            zh, en = msg.burst(u, minutes, flow.max_rate * minutes / 60.0)
        else:
            # The local time the run began, told at its own offset: a night's run may span a clock change.
            since_off = off if began is None or self.run_off is None else self.run_off
            zh, en = msg.continuous_flow(since, since_off, run_h, lpm, flow.usual_longest(off, x.end))
        severity = "critical" if lpm >= 2.0 else "high"  # a running tap can mean a fall in the bathroom
        basis = "prior" if self._cold(x.end) else "learned"
        details = {"run_h": round(run_h, 2), "lpm": round(lpm, 2), "score": round(score, 3)}
        finding = Finding(self.meter_id, "continuous_flow", severity, x.end, zh, en, basis, since, score, details)
        if not flow.tap:
            # Only a run at a tap's rate beyond this elder's own, or one huge draw, says a person may be in
            # danger (a tap left open by someone who fell); a slow or steady run is plumbing (a running cistern,
            # a drip, a leak), whatever use happens to be on top of it when it alerts: maintenance.
            finding.route = MAINTENANCE
        return finding

    # ------------------------------------------------------------------ days
    def _new_day(self, day: int, x: Interval, out: list[Finding]) -> None:
        if self.day >= 0:
            self._close_day(x, out)
        cold = self._cold(x.end)
        if not cold:
            self._habit_table()
        self._learning_phase(cold, x.end)
        if day >= self.refresh_day + REFRESH_DAYS or cold:
            # Forgetting and the survival curves are slow: doing them every few days keeps
            # the per-reading cost down without changing what is learned.
            if self.refresh_day > -10_000:
                passed = day - self.refresh_day
                self.silence.decay(passed)
                self.flow.decay(passed)
                if self.quiet_q:
                    self._forget_quiet(passed)
            self._refresh_silence()
            self.refresh_day = day
        if x.end >= self.sil_excused > 0.0 and not self._is_away(x.end):  # once a day: a month-long matter
            self._silent_after_visit(x, out)  # (a declared absence says the home is empty: not while it lasts)
        self.day = day
        # The offset where the interval that opened the day began: at its midnight unless the clocks changed
        # in the late evening (they change in the small hours; an interval may span midnight, a gap may span hours).
        self.day_off = self.last_off if self.last_off is not None else x.utc_offset_s
        self.day_total = 0.0
        self.day_first_use = None
        self.day_slots = 0
        self.day_known_s = 0.0
        self.day_gap_s = 0.0
        # A run a person resolved that still runs is an episode too (its day is neither judged nor learned).
        self.day_flagged = self.na_open or self.flow_open or self._excused() or self.flow_excused > 0.0

    def _learning_phase(self, cold: bool, ts: float) -> None:
        """The safety net's window and the flow runs' floors for where learning stands at ``ts`` (``cold``: in it)."""
        # The safety net: Shanghai's 12 h rule while learning, a looser one once the routine is known.
        self.ceiling.hours = self.thresholds.ceiling_hours if cold else self.thresholds.learned_ceiling_hours
        if cold:
            self.flow.floor_h = FLOW_PRIOR_H
        elif self.first_ts is not None and ts - self.first_ts < FLOW_SETTLING_DAYS * 86400:
            self.flow.floor_h = FLOW_SETTLING_FLOOR_H
        else:
            self.flow.floor_h = FLOW_LEARNED_FLOOR_H

    def _gap_into_day(self, start: float, end: float, u: float, off: int) -> None:
        """Readings were lost: the gap's litres are known, their timing is not. The day takes the share of them
        that its part of the gap holds (all of them if the gap began today), and its judgement counts none of
        the gap's hours as seen: a day mostly in a gap is not judged, and a gap of weeks is not one day's use."""
        day_start = self.day * 86400.0 - (off if self.day_off is None else self.day_off)
        if start < day_start:
            u *= (end - day_start) / (end - start)
        self.day_total += u
        self.day_gap_s += end - start

    def _close_day(self, x: Interval, out: list[Finding]) -> None:
        known_h = self.day_known_s / 3600.0
        # The day began at its own offset and ends at the next one's (23 or 25 h when the clocks change).
        next_off = x.utc_offset_s if self.last_off is None else self.last_off
        day_start = self.day * 86400.0 - (next_off if self.day_off is None else self.day_off)
        day_end = (self.day + 1) * 86400.0 - next_off
        if known_h < MIN_KNOWN_H or self.day_flagged or day_end - day_start > LONGEST_DAY_S:
            return
        if self.away and self._away_overlaps(day_start, day_end):
            return
        if known_h - self.day_gap_s / 3600.0 < MIN_KNOWN_H:
            # Too little of the day was seen to judge it. Its hours of use are learned as they were before gaps
            # were told apart (a gap's end as a half hour with use): the habitual-hour line was chosen on them,
            # and learning only the hours seen wants it chosen again (docs/detection-studies.md, session 13).
            self.flow.learn_day_slots(self.day_slots)
            return
        first_use = self.day_first_use
        rising = None if first_use == _RISING_HIDDEN else rising_hour(self.day_slots, first_use)
        summary = DaySummary(self.day, self.day_total, rising, self.day_slots.bit_count(), known_h)
        kind = self._judge_day(summary)
        if kind == "low_usage" and self._net_says_it(summary):
            return  # one alert about it is enough (and a day without water is not learned as usual)
        if kind is not None:
            if self.day_open != kind:
                self.day_open = kind
                out.append(self._day_finding(kind, summary, x, day_start))
            return  # protected: an unusual day is not learned
        if self.day_open is not None:
            zh, en = "日用水量恢复正常。", "Daily water use is back in this elder's range."
            out.append(Finding(self.meter_id, self.day_open, "medium", x.end, zh, en, "learned", resolved=True))
            self.day_open = None
        self.flow.learn_day_slots(self.day_slots)
        if self.daily.learn_one(summary, self.thresholds.routine_threshold) and self.day - self.last_drift_day >= 30:
            self.last_drift_day = self.day
            out.append(self._drift_finding(x))

    def _net_says_it(self, s: DaySummary) -> bool:
        """A low day the safety net reports: under its litres in a day, so under them in its window of at most a
        day too; it fires on the same reading at the latest, as ``no_activity``, which clears when water is used."""
        ceiling = self.ceiling
        return 0.0 < ceiling.hours <= 24.0 and s.total_l < ceiling.litres

    def _judge_day(self, s: DaySummary) -> str | None:
        t = self.thresholds
        z = self.daily.z_score(s.total_l)
        if s.total_l > t.daily_max_l or z > self.daily.z_limit:
            return "high_usage"
        if s.total_l < t.daily_min_l or z < -self.daily.z_limit:
            return "low_usage"
        return None

    def _day_finding(self, kind: str, s: DaySummary, x: Interval, day_start: float) -> Finding:
        spread = math.sqrt(self.daily.var) + 0.15
        low = math.exp(self.daily.mean - 2 * spread) - 10.0
        high = math.exp(self.daily.mean + 2 * spread) - 10.0
        bound = s.total_l > self.thresholds.daily_max_l or s.total_l < self.thresholds.daily_min_l
        zh, en = msg.daily(kind, s.total_l, max(low, 0.0), high, bound)
        basis = "rule" if bound and self.daily.n < self.daily.grace_days else "learned"
        details = {"total_l": round(s.total_l, 1), "z": round(self.daily.z_score(s.total_l), 2)}
        return Finding(self.meter_id, kind, "medium", x.end, zh, en, basis, day_start, details=details)

    def _drift_finding(self, x: Interval) -> Finding:
        # Lately: the recent (two-week) means; before: the slow baselines the change was measured against.
        daily = self.daily
        rising, usual_rising = daily.recent_wake, daily.usual_wake
        litres, usual_litres = daily.recent_litres, math.exp(daily.usual_mean) - 10.0
        zh, en, moved = msg.routine_change(rising, usual_rising, litres, usual_litres)
        details = {
            "feature": moved,
            "later_h": round(rising - usual_rising, 2),
            "litres": round(litres, 1),
            "usual_litres": round(usual_litres, 1),
        }
        return Finding(self.meter_id, "routine_change", "low", x.end, zh, en, "learned", details=details)

    # ------------------------------------------------------------------ device
    def _fault_cleared(self, x: Interval, out: list[Finding]) -> None:
        self.fault_since = None
        zh, en = "水表读数恢复正常。", "The meter's register is behaving again."
        out.append(Finding(self.meter_id, "meter_fault", "low", x.end, zh, en, "rule", resolved=True))

    def _unknown(self, x: Interval, out: list[Finding]) -> None:
        # Missing data is not silence: the silence clock and the flow runs restart.
        self.sil_start = None
        self.sil_habit = _NEVER
        flow = self.flow
        maint_lph = flow.maint_lph
        misread = self._burst_misread(x)
        flow.interrupt()
        if misread:
            # The burst that raised the case was one reading off: the register went back down right after it (to
            # go on from there). The case is withdrawn, where it said the water "stopped" a reading later.
            self.flow_open = False
            zh, en = msg.flow_misread(x.start, x.utc_offset_s)
            details = {WITHDRAWN: "misread"}
            out.append(
                Finding(self.meter_id, "continuous_flow", "high", x.end, zh, en, "rule", details=details, resolved=True)
            )
        elif self.flow_open:
            # Nor is it a sign the water stopped: the open flow case stays open, its runs start again after the fault
            # and the model stays in its alert (learning none of it) until a reading shows the water stopped. A tap
            # left open was "the continuous flow stopped" at one garbage reading, and raised anew an hour later.
            flow.run_start = (x.end,) * len(flow.levels)
            self.run_off = x.utc_offset_s
            flow.alerting, flow.alert_limit_h, flow.maint_lph = True, -math.inf, maint_lph
        self.ceiling.update(x)
        if self.fault_since is None:
            zh, en = msg.meter_fault(x.status)
            out.append(
                Finding(
                    self.meter_id, "meter_fault", "low", x.end, zh, en, "rule", x.start, details={"status": x.status}
                )
            )
        self.fault_since = x.end

    def _burst_misread(self, x: Interval) -> bool:
        """The open flow case was raised by one huge interval, the one just before this unknown one, and the register
        went back down after it and went on from there (a reset, not a glitch of the reading after: that one keeps the
        level the burst reached). A meter replaced minutes after a burst is no likelier than one reading off."""
        flow = self.flow
        began = flow.run_start[0]
        if not (self.flow_open and flow.burst and x.status == INTERVAL_RESET and began is not None):
            return False
        # ``start_alert`` measured the run up to the end of the interval that raised the case.
        return abs(began + flow.alert_limit_h * 3600.0 - x.start) < 1.0

    def _offline_line(self) -> float:
        """How long (s) this meter may be silent before it is offline: ``offline_hours``, or longer on its cadence
        (``core.cadence.offline_line``, which the devices page draws too)."""
        return offline_line(self.offline_s, self.usual_s)

    def _offline_gap(self, x: Interval, out: list[Finding]) -> None:
        limit = self._offline_line()
        if not self.offline and x.end - x.start >= limit:
            out.append(self._offline_finding(x.start + limit))
            self.offline = True
        self._unseen_silence(x.start, x.end, out)  # what ``tick`` raised live while the meter was silent
        if self.offline:
            self.offline = False
            zh, en = "水表恢复上报。", "The meter is reporting again."
            out.append(Finding(self.meter_id, "meter_offline", "low", x.end, zh, en, resolved=True))

    def _unseen_silence(self, last: float, now: float, out: list[Finding]) -> None:
        """The meter went silent at ``last`` in a silence already rarer than ``UNSEEN_P`` for its start hour: once
        its alert time and ``offline_hours`` have passed by ``now`` without a reading, a cadre is called.

        Replay calls this when the readings come back, live ``tick`` while they do not: the same finding, at the
        same data time, either way.
        """
        began = self.sil_start
        if began is None or self.na_open or last <= began:
            return
        hour = int((began + self.sil_off) % 86400.0) // 3600
        due = max(began + min(self.silence._alert[hour] * 3600.0, self.sil_habit), last + self._offline_line())
        if due > now or self._is_away(due) or self._excused():
            return
        if self.silence.p_value(hour, (last - began) / 3600.0) > UNSEEN_P:
            return  # what was seen of it is no rarer than many of this elder's silences from that hour
        self.na_open = True
        self.day_flagged = True
        hours = (due - began) / 3600.0
        zh, en = msg.no_activity_unseen(began, self.sil_off, hours, last)
        basis = "prior" if self._cold(due) else "learned"
        details = {"silence_h": round(hours, 2), "seen_h": round((last - began) / 3600.0, 2), "start_hour": hour}
        out.append(Finding(self.meter_id, "no_activity", "high", due, zh, en, basis, began, hours, details))

    def _offline_finding(self, ts: float) -> Finding:
        zh, en = msg.meter_offline(round(self._offline_line() / 3600.0, 1))
        return Finding(self.meter_id, "meter_offline", "low", ts, zh, en, since=self.last_end)

    # ------------------------------------------------------------------ outcomes
    def learn_outcome(
        self,
        kind: str,
        outcome: str,
        start: float | None,
        end: float,
        utc_offset_s: int = 0,
        rate_lpm: float | None = None,
    ) -> None:
        """Learn what a person found when closing a case this meter raised (the closed loop).

        ``kind`` is the alert's kind, ``start`` when its condition began (``Finding.since``), ``end``
        the data time it was raised, ``outcome`` one of :data:`PERSON_OUTCOMES`; for a flow,
        ``rate_lpm`` its rate then (``details["lpm"]``; a tap opened on top is judged afresh). A person's resolution
        ends the detector's episode: the next silence or run is judged afresh.

        * benign (``ok``, ``false_alarm``, ``away``): that silence or flow run becomes part of the
          routine, bounded: a silence's start hour alerts later (``QUIET_STEP`` times its length per
          benign outcome, at most ``QUIET_MAX_FACTOR`` times the model's own length and ``QUIET_CAP_H``);
          the same flow run is raised again only once twice as long (at least ``REFLOW_MIN_H`` more; a tap
          opened on top is raised at once); a burst (one interval far above the home's rates) found harmless a
          second time at about the same hour earns that hour a burst limit, bounded and fading
          (``flow.BENIGN_BURST_STEP``: a garden watered on warm mornings stops calling; never the highest rate);
        * what a benign visit says about the silence of a silence alert: ``false_alarm`` (no one in danger,
          the elder not seen: mostly nobody home) means that silence calls no cadre again until water is
          used again (if it lasts ``REALERT_MAX_H`` after the alert, one low finding goes to maintenance:
          confirm the home is empty or the meter works); ``ok`` (the elder seen, well) is a sign of life at
          the visit: the silence's clock restarts there, once per silence (a second benign outcome in it
          excuses it as ``false_alarm`` does);
        * ``away``: the rest of that silence is an absence, as an away window: not learned, no alert,
          until water is used again; also after an alert about water (a flow, a day's total, a routine
          change), whose ``ok`` and ``false_alarm`` teach the silence nothing (she had just used water);
        * confirmed (``needed_help``, ``hospital``): never learned; the elder is looked after (maybe
          taken away), so the rest of that silence or run raises nothing to cadres;
        * ``device_fault``: a flow reported to maintenance is not raised again until it stops.

        >>> from core.domain import Interval
        >>> m = MeterMonitor("m1")
        >>> def day(d, used=(13, 14, 16, 20, 23, 26, 30, 34, 36, 38, 40, 42), quiet_from=48):
        ...     found = []
        ...     for k in range(48):
        ...         t = d * 86400 + k * 1800
        ...         u = 12.0 if k in used and k < quiet_from else 0.0
        ...         found += m.update(Interval("m1", t, t + 1800, u, "ok", 0))
        ...     return [f for f in found if f.kind == "no_activity" and not f.resolved]
        >>> for d in range(21):
        ...     _ = day(d)
        >>> alert = day(21, quiet_from=0)[0]  # a day without water
        >>> round((alert.ts - alert.since) / 3600, 1)
        12.0
        >>> m.learn_outcome(alert.kind, "false_alarm", alert.since, alert.ts)  # she was fine
        >>> m.na_open, m.sil_excused > alert.ts  # the episode ended; the same silence stays quiet
        (False, True)
        >>> _ = day(22)
        >>> later = day(23, quiet_from=0)[0]  # the same pattern again: it alerts later now, bounded
        >>> round((later.ts - later.since) / 3600, 1)
        13.5
        >>> taught = m.quiet_q
        >>> m.learn_outcome(later.kind, "needed_help", later.since, later.ts)  # a real fall: not learned
        >>> m.quiet_q == taught, m.sil_away == later.since  # and the rest of it raises nothing more
        (True, True)
        """
        if outcome not in PERSON_OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r} (known: {', '.join(sorted(PERSON_OUTCOMES))})")
        if kind == "continuous_flow" and start is not None and start == self.base.reported:
            # The base-flow report (plumbing, maintenance's): whatever was found there teaches the flow model
            # nothing (learned as a benign run it would raise later a leak, or a tap, at that hour), and the
            # report stays until the water has stopped for a week (it is not raised again). Recognised by the
            # report's own start, kept until the next report: the base flow's ``since`` is reset once the water
            # stops, days before the report clears, and the case may be closed after it cleared.
            return
        if kind == "no_activity":
            self._silence_outcome(outcome, end if start is None else start, end, utc_offset_s)
        elif kind == "continuous_flow":
            rate_lph = TAP_LPH if rate_lpm is None else rate_lpm * 60.0
            self._flow_outcome(outcome, end if start is None else start, end, utc_offset_s, rate_lph)
        # Day kinds (high_usage, low_usage) keep their episode until a usual day: a resolved absence
        # must not raise low_usage again every day of it.
        if kind != "no_activity" and outcome == "away":
            self._away_after_water(end)

    def _silence_outcome(self, outcome: str, start: float, end: float, off: int) -> None:
        # A silence that began after the alert is a newer one with its own episode (an outcome recorded late, on a
        # case the data closed): the person judged the old silence, which is learned, and the new one is left as it
        # is (ended here, its case would never be closed by the data).
        later = self.sil_start is not None and self.sil_start > end
        ongoing = self.na_open and not later  # else water was used since: the elder is back, the next silence is new
        if not later:
            self.na_open = False
        hours = max(end - start, 0.0) / 3600.0
        if outcome in BENIGN_OUTCOMES and hours < REALERT_MAX_H:  # a month-long silence is no routine length
            self._learn_quiet(hour_of(start, off), hours)
        if not ongoing:
            return
        if outcome in SEEN_OUTCOMES and self.sil_excused != _SEEN_ONCE:  # seen well: a fall after must be found
            self._sign_of_life(off)
        elif outcome in ("ok", "false_alarm"):
            self.sil_excused = max(self.sil_excused, end + REALERT_MAX_H * 3600.0)
            self.day_flagged = True
        else:  # away, a confirmed incident, a faulty meter: the rest of this silence says nothing of the elder
            self._absent_since(start)

    def _away_after_water(self, raised: float) -> None:
        """A person found the elder away after an alert about water (a flow, a day's total, a routine change) raised
        at ``raised``: the silence since her last use is an absence, as after a silence alert resolved ``away``, if
        it followed that water (``AWAY_AFTER_WATER_H``).

        ``ok`` and ``false_alarm`` after such an alert teach the silence nothing: she had used water just before
        it, and the home is nearly always lived in after the visit (real homes, seed 2: 141 of 143 such visits
        were followed by water within hours), so the silence is judged from her last use as any silence. Excusing
        it, as ``false_alarm`` after a silence alert does, lost falls soon after the visit, before her next use
        (docs/detection-studies.md, "One call per absence (session 9)").
        """
        began = self.sil_start
        if began is None or began - raised > AWAY_AFTER_WATER_H * 3600.0:
            return  # no silence, or one that began after water she used since: she was back
        if not self.na_open and not self._excused():
            self._absent_since(began)

    def _sign_of_life(self, off: int) -> None:
        """A person saw the elder at home and well (``ok`` after a silence alert): a sign of life at the visit.

        The silence so far ended there (learned as one that ended with a use, under the same conditions); its
        clock, its habitual hours and the safety net's window start again at the visit, so a fall after the visit
        is found as any silence from that hour would be. Once per silence (``_SEEN_ONCE``): a second benign
        outcome in the same silence excuses the rest of it, as ``false_alarm`` does (a home silent after two
        visits is a home she has left, whatever was recorded: an elder phoned at her son's may be put down as
        ``ok`` rather than ``away``).
        """
        seen, began = self.last_end, self.sil_start
        if seen is None:
            return
        self._learn_silence(seen)
        self._silence_from(seen if began is None else max(began, seen), off)
        self.ceiling.reset()
        self.sil_excused = _SEEN_ONCE

    def _silent_after_visit(self, x: Interval, out: list[Finding]) -> None:
        """A silence a person called benign lasted ``REALERT_MAX_H`` more: one low finding, for maintenance.

        A cadre already found the elder well and no water has been used since: a home left for a long stay, or a
        meter that stopped counting. Calling the cadre again each month tells them nothing new; whoever keeps the
        meters confirms the home is empty or the meter works. It clears when water is used again (``_use``).
        """
        since = self.sil_excused - REALERT_MAX_H * 3600.0  # when the benign alert was raised
        self.sil_excused = _NEVER  # excused until water is used again; raised once
        zh, en = msg.silent_after_visit(since, x.utc_offset_s, (x.end - since) / 86400.0)
        details = {"silence_h": round((x.end - since) / 3600.0, 1), "after_benign_outcome": True}
        out.append(
            Finding(
                self.meter_id, "no_activity", "low", x.end, zh, en, "learned", since, details=details, route=MAINTENANCE
            )
        )

    def _absent_since(self, start: float) -> None:
        self.sil_away = start if self.sil_away is None else min(self.sil_away, start)
        self.day_flagged = True

    def _learn_quiet(self, hour: int, hours: float) -> None:
        """A benign silence of ``hours`` from ``hour``: that start hour (and its neighbours) alert later."""
        quiet = bytearray(self.quiet_q or bytes(24))
        wanted = min(QUIET_CAP_H, max(hours, quiet[hour] / 4.0) * QUIET_STEP)
        for h in (hour - 1, hour, hour + 1):
            quiet[h % 24] = max(quiet[h % 24], min(int(wanted * 4.0 + 0.5), 255))
        self.quiet_q = bytes(quiet)
        self._refresh_silence()  # from the model's own lengths: the bound is on those

    def _forget_quiet(self, days: int) -> None:
        """What benign outcomes earned fades as the silences themselves do (the silence model's half-life).

        A person's outcome is one more silence of this elder's, as good as the data's and no better: an
        afternoon she was found well in spring says as little about this winter's afternoons as the spring's
        silences do. Kept for good, every benign outcome only ever lengthened the alert (session 8: falls found
        later with outcomes than without, behind the sensitivity curve on the real homes).
        """
        keep = 0.5 ** (days / self.silence.half_life_days)
        quiet = bytes(int(q * keep) for q in self.quiet_q)  # rounded down: a small lift fades too
        self.quiet_q = quiet if any(quiet) else b""

    def _refresh_silence(self) -> None:
        """The silence model's alert lengths, each raised to what benign outcomes earned (bounded)."""
        self.silence.refresh(self.thresholds.sensitivity)
        quiet = self.quiet_q
        if quiet:
            alert = self.silence._alert
            for h, q in enumerate(quiet):
                if q:
                    alert[h] = self._quiet_hours(h, alert[h])

    def _quiet_hours(self, hour: int, model_h: float | None = None) -> float:
        """Alert length (h) of a silence from ``hour``: the model's, raised by benign outcomes, bounded."""
        if model_h is None:
            model_h = self.silence.alert_hours(hour)
        earned = self.quiet_q[hour] / 4.0 if self.quiet_q else 0.0
        return max(model_h, min(earned, model_h * QUIET_MAX_FACTOR))

    def _flow_outcome(self, outcome: str, start: float, end: float, off: int, rate_lph: float) -> None:
        run_h = max(end - start, 0.0) / 3600.0
        began = self.flow.run_start[0]
        if began is not None and began > end:
            # A run that began after the alert has its own episode (an outcome recorded late, on a case the data
            # closed): the old run is learned from, the new one neither ended nor excused (its case must close), and
            # a confirmation drops nothing it will learn (raised or not yet, the old run's incident is not its own).
            if outcome in BENIGN_OUTCOMES:
                self.flow.learn_benign(run_h, end, off, rate_lph)
            return
        ongoing = self.flow_open
        self.flow_open = False
        # Negative: the rate of a young run is still to be read, at the visit's interval (``YOUNG_RUN_H``).
        self.flow_excused_lph = -rate_lph if ongoing and run_h <= YOUNG_RUN_H else rate_lph
        # The water the person saw running is not raised again at that rate while their judgment holds (a tap
        # opened on top of it is new and raised at once, ``_flow``).
        if outcome in BENIGN_OUTCOMES:
            self.flow.learn_benign(run_h, end, off, rate_lph)
            self.flow_excused = max(run_h * 2.0, run_h + REFLOW_MIN_H)  # until it has run twice as long
        else:  # a leak or a tap taken in hand, or a fault reported, is being dealt with: until it stops
            self.flow.confirm_incident()
            self.flow_excused = float("inf")
        if not ongoing or self.flow.run_start[0] is None:
            self.flow_excused = 0.0  # it already stopped: the next run is judged afresh

    # ------------------------------------------------------------------ helpers
    def _excused(self) -> bool:
        """A person's outcome explains the current silence: it calls no cadre until water is used again."""
        return self.sil_away is not None or self.sil_excused > 0.0

    def _cold(self, ts: float) -> bool:
        return self.first_ts is None or ts - self.first_ts < self.thresholds.cold_start_days * 86400

    def _is_away(self, ts: float) -> bool:
        return bool(self.away) and any(start <= ts < end for start, end in self.away)

    def _away_overlaps(self, start: float, end: float) -> bool:
        return bool(self.away) and any(a < end and start < b for a, b in self.away)


@functools.cache
def _loaded_kinds() -> tuple[SlotKinds, dict[str, SlotKinds]]:
    """What a loaded monitor's slots, and its models', may hold (``MeterMonitor.check_loaded``), from a fresh one's;
    a slot None until learned names what it learns (a new such slot without one fails here). Worked out at the first
    load, not at import: a fresh monitor builds the daily model's drift detector, and ``river.drift`` loads scipy,
    about 1 s every command's ``--help`` would pay."""
    template = MeterMonitor("template")
    kinds = slot_kinds(
        template,
        {
            **dict.fromkeys(("base_off", "block_off", "day_off", "last_off", "run_off"), int),
            **dict.fromkeys(("day_first_use", "fault_since", "first_ts", "last_end", "sil_away", "sil_start"), float),
            "day_open": str,
            "habit_h": array,
            "short": tuple,
        },
    )
    models = {
        "silence": slot_kinds(template.silence),
        "flow": slot_kinds(template.flow),
        "daily": slot_kinds(template.daily),
        "base": slot_kinds(template.base, {"since": float}),
        "ceiling": slot_kinds(template.ceiling, {"_covered_from": float}),
    }
    return kinds, models
