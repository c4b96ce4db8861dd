"""Water that keeps flowing: leaks, taps left running.

People use water in bursts; a leak or an open tap never stops. For a few flow
levels (litres per hour) the model follows the current *run*: how long every
interval has drawn at least that level. It learns, for each hour of the day,
the longest run this elder has had at that hour and each level, and scores a
run by how far it outlasts that. A night-time run at a trickle that never
returns to zero is a leak within an hour or two; a tap drawing several litres
a minute is unusual as soon as it lasts longer than this elder's longest shower.

A leak is also *steady*: it adds the same flow to every interval, so the
intervals of its run without use on top all draw the same volume, to the
register's litre. Three such flat intervals in a slow run (below a tap's rate,
a maintenance matter) longer than this elder's usual runs at that hour raise it
at any hour, without waiting for the usual-run margin or a quiet hour. Steadiness
is a matter of time at a constant flow, not of the number of readings: a run that
stepped from a partial first interval to a constant flow with nothing on top is
steady after 1.5 h of it, two intervals on hourly readings (session 8). A leak that begins while use
already runs is judged by its own floor, not by the lowest rate the use drew before it (session 9).

A second check looks at single intervals: a volume far above the largest this
elder ever drew in one interval (a tap wide open), or, at an hour this home draws
a tap's rate on many days (a garden, a bath), far above its usual draw there
(session 10: a home's habitual big draws are learned per hour even when they alert,
the highest rate never). One interval is all it judges:
a run at a tap's rate is water still flowing across a reading, so the longest-run
rule weighs it from its second interval on (on hourly readings one interval a few
seconds over an hour used to be a "run" past the 1 h margin), and compares it with
its limit to within a few minutes of the readings' clock (session 9).

A home that draws a tap's rate for an hour or more of an average day (a family) cannot
be told from a tap left open at 2 L/min by its rate: there a run below 5 L/min waits
two margins more at the tap levels (session 10).

A new home's quiet hours and longest runs are not known yet: while the monitor floors its runs
with the population's prior (its first three weeks at the slow levels), an hour is usually
quiet for slow water only well under the line (its share of days starts on it), and a slow
level judged while a tap's rate runs keeps a settled home's floors (session 11).

Learning is protected: while a run is alerting, nothing of it is learned (but the
hour's habitual draws: one open tap cannot make a habit).

State is kept small (a million meters each hold one): slots, one float32 array
for the longest runs and the hours of use, and settings shared between meters
on load (:func:`detect.compact.shared`).
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from detect.compact import restore_slots, shared, slot_values, with_added_slots

#: Flow levels (L/h) whose runs are followed; the first is replaced by the leak threshold.
LEVELS_LPH: tuple[float, ...] = (6.0, 30.0, 120.0, 300.0)
#: Levels from here up are a tap wide open: they alert at any hour.
TAP_LPH = 120.0
#: An interval longer than this (h: readings were lost) is no evidence of a steady slow flow: its volume
#: averaged over the gap looks like a trickle that never stopped. A slow run alerts only on an interval of
#: the meter's usual length that still draws water (issue 17: false maintenance alerts).
GAP_INTERVAL_H = 1.5
#: A run at a tap's rate a person found harmless is learned at the tap levels it drew, up to this long (h): a
#: home that fills a bath every evening stops calling a cadre for it, and a tap left open by someone who fell
#: there is still raised within ``run_factor`` times this plus the margin.
BENIGN_TAP_CAP_H = 1.0
#: A leak adds the same flow to every interval: the intervals of its run without use on top all draw the
#: run's lowest rate, to the register's resolution (1 L), while human use is bursty. An interval within this
#: share of the run's lowest rate (or ``FLAT_L`` litres) is *flat*.
FLAT_TOL = 0.05
FLAT_L = 1.0
#: A run below a tap's rate (routed to maintenance: plumbing, no cadre is called) with this many flat
#: intervals, longer than ``STEADY_FACTOR`` times this home's longest run at that hour, is a steady leak: it
#: alerts then, at any hour, before the longest-run rule would (issue 17: leaks sooner). Three, not two: the
#: simulator's elders run a steady appliance for an hour or so (three half-hours of 9-23 L).
FLAT_N = 3
STEADY_FACTOR = 1.5
#: A leak begins at a random moment: the run's first interval holds only part of its flow, and every interval
#: after it draws the same. A run that *stepped* so (its first interval strictly below the flat rate, nothing on
#: top since) is steady once its flat intervals span this long (h), at least two of them, and longer than
#: ``STEP_FACTOR`` times this home's longest run at that hour: two hours on hourly readings, where three flat
#: intervals take 3.5 h at the least (session 8: leaks on any cadence). A first interval that already agrees
#: starts no step: human use filling two intervals alike from the first is common, a leak starting on the
#: interval's edge rare.
STEP_H = 1.5
STEP_FACTOR = 1.0
#: A run at a tap's rate alerts by this long (h) whatever ``run_factor`` an operator sets: the default factor's
#: worst case (the longest learnable run, ``cap_hours`` 8 h, times 1.5, plus the 1 h margin). A tap left open
#: by someone who fell there draws water, so the silence rules never see her: only this rule does.
TAP_MAX_H = 13.0
#: Run lengths are known to the readings' clock, which drifts by seconds to minutes: a run at a tap's rate that
#: has lasted its limit to within this long (h) has reached it. Else whether a tap left open at an hour without
#: habitual runs was raised at its second half-hourly reading or its third turned on the seconds of two readings
#: (session 9).
CLOCK_SLACK_H = 5.0 / 60.0
#: One interval's rate is learned as this home's highest, and judged as a burst on its own, only over a quarter hour
#: or more: a few minutes' rate is a kettle's or a shower's, not a tap left open. To the readings' clock, which may
#: run a few seconds fast: a quarter-hourly meter read every 899 s never learned its highest rate nor raised a tap wide
#: open as one huge interval (an hour later, by the longest-run rule), where one read every 900 s raised it at once.
RATE_MIN_S = 900.0 - 60.0
RATE_MIN_H = RATE_MIN_S / 3600.0
#: The burst floor (``burst_floor_lph``, 4 L/min) was set on half-hourly readings, where a shower or a bath fills part
#: of an interval: on quarter-hourly ones the same 12-minute shower draws twice the rate, and every shower of a new
#: meter read so was "a tap wide open" (62 community calls on 150 simulated elders over 90 days, 1 on half-hourly).
#: An interval shorter than ``ONE_READING_H`` (a quarter hour, with five minutes of the readings' clock) is a burst
#: only once 5 L/min (the top level) has run since an interval before it for ``TAP_RAN_H`` (half an hour, less five
#: minutes of the clock): a tap left wide open keeps running, and is raised half an hour in, as on half-hourly
#: readings, at its second quarter-hourly reading or its sixth of five minutes. (Judged by its rate alone, a meter
#: read every five minutes raised no tap wide open as a burst at all: 1.3 h to the longest-run rule, and one of 7 on
#: the simulator, closed after an hour, was never raised. Not up to half an hour: an hourly meter's odd reading 29
#: minutes after another holds a bath whole, as a half-hourly one does.)
ONE_READING_H = 20.0 / 60.0
TAP_RAN_H = 25.0 / 60.0
#: A home's own big draws come back at their hour: a garden watered most mornings, a bath every evening, a family's
#: laundry. For each hour of the day the model learns on what share of days this home draws a tap's rate in it,
#: and the litres it draws so (averages over days, each day keeping ``1 - HIGH_ALPHA`` of the past): in an hour,
#: or the next or previous one (a habit drifts by minutes across an hour's edge), where it does so on at least
#: ``HABIT_DAYS`` of days, a burst no more than ``burst_factor`` times its usual draw there (litres over share) is
#: this home's habit, not a tap wide open. A tap left open keeps running: the longest-run rule weighs it from its
#: second interval on, as at any hour. Learned from every interval at a tap's rate, one that alerts included (else
#: a garden's every watering is a burst again: the highest rate never learns an alerting interval; session 10):
#: one tap left open cannot make a habit, which takes several days at the same hour.
HIGH_ALPHA = 0.1
HABIT_DAYS = 0.3
#: A home that draws a tap's rate for this many hours (h) of an average day (the shares of days above, summed over
#: the hours: a family's baths, laundry and washing-up) cannot be told from a tap left open at 2 L/min by its rate:
#: there a run at the tap levels in an interval drawing less than ``BIG_HOME_TAP_LPH`` (5 L/min: a tap open wide is
#: judged as in any home) is raised ``BIG_HOME_MARGINS`` more of ``run_margin_h`` later, within ``TAP_MAX_H`` still
#: (on hourly readings one margin more is not enough: two intervals are a 2 h run; session 10).
BIG_HOME_H = 1.0
BIG_HOME_TAP_LPH = 300.0
BIG_HOME_MARGINS = 2.0
#: A burst a person found harmless teaches its hour, bounded, as a benign silence teaches its start hour
#: (``MeterMonitor.quiet_q``), once it is a pattern: one found harmless not long before at that hour or the next or
#: previous one, at about its rate (the first one's rate, fading as below, times ``BENIGN_BURST_STEP`` reaches it: a
#: garden watered on warm mornings, a tub filled at the same hour; one benign burst is an event, two a month apart a
#: family's odd heavy hours). The hour and the two beside it (a habit drifts across an hour's edge) then earn a burst
#: limit of ``BENIGN_BURST_STEP`` (the burst factor's 1.5) times the highest rate the visits excused there
#: (``FlowModel.burst_q``: one byte an hour in ``BURST_Q_LPH`` units, at most ``BENIGN_BURST_CEIL_LPH``), never more
#: than ``BENIGN_BURST_MAX_FACTOR`` times the hour's own limit, fading with a half-life of
#: ``BENIGN_BURST_HALF_LIFE_DAYS`` (a summer's garden does not excuse a winter's open tap). Never the highest rate:
#: taught to every hour, it lost taps (session 9). A tap left open at that hour under the earned limit is no burst
#: there: the longest-run rule finds it, an hour later on the tuning sets (session 12, "Benign bursts teach their
#: hour"). A confirmed incident teaches nothing. ``BENIGN_BURST_STEP`` 0: off.
BENIGN_BURST_STEP = 1.5
BENIGN_BURST_MAX_FACTOR = 3.0
BENIGN_BURST_CEIL_LPH = 1800.0
BENIGN_BURST_HALF_LIFE_DAYS = 30.0
BURST_Q_LPH = 10.0
#: Shortest longest-run (h) per level of a home whose runs are learned (the monitor's floors after its settling
#: weeks): a little slack for new habits at the leak level, none above.
SETTLED_FLOOR_H = (1.0, 0.0, 0.0, 0.0)
#: A new home's share of days with use in each hour starts at one half (``_FRESH_STATE``), the quiet line itself, and
#: moves by ``day_alpha`` a day: in its first weeks an hour without water yesterday was "usually quiet", and a wash
#: run through it a slow leak. While the monitor floors the runs with the prior, an hour is quiet only this far
#: under ``quiet_p``: an hour never used is quiet after five dry days instead of one (session 11).
NEW_HOME_QUIET_MARGIN = 0.1
#: The layout of ``FlowModel._state`` (float32): the longest runs (24 hours per level), the share of days with use
#: per hour, then (session 10) per hour the litres drawn at a tap's rate and the share of days with such a draw, and
#: the day those two were last aged (``HIGH_ALPHA``).
_P_USE = 24 * len(LEVELS_LPH)
_HIGH_L = _P_USE + 24
_HIGH_DAYS = _HIGH_L + 24
_HIGH_AGED = _HIGH_DAYS + 24


class FlowModel:
    """Runs of uninterrupted flow at a few levels, against this elder's longest by hour.

    Parameters
    ----------
    leak_lph
        Smallest steady flow (L/h) that counts as a possible leak: the lowest level.
    run_factor, run_margin_h
        A run alerts when it lasts longer than ``run_factor`` times the longest
        learned for that hour and level, plus ``run_margin_h`` hours (at a tap's
        rate: once it spans two intervals, to within ``CLOCK_SLACK_H``, and never
        longer than ``TAP_MAX_H``). The monitor sets both from the
        operator's ``Thresholds.flow_run_factor`` and ``flow_margin_h``; the steady-leak
        rule has its own factors (``STEADY_FACTOR``, ``STEP_FACTOR``) and moves with neither.
    burst_factor, burst_floor_lph
        A single interval alerts when its rate exceeds ``burst_factor`` times the
        highest learned rate (or this home's habitual draw around that hour,
        ``HABIT_DAYS``) and ``burst_floor_lph``.
    half_life_days
        Learned maxima shrink by half over this many days (people change).
    cap_hours
        Runs longer than this are never learned as normal.
    quiet_p, day_alpha
        A slow run (below the tap level) alerts only once it has gone through an
        hour in which this home uses water on fewer than ``quiet_p`` of days
        (learned per day with weight ``day_alpha``): busy hours full of guests
        look like a leak, a leak does not stop when the house falls quiet.

    Examples
    --------
    A home that runs water for up to an hour in the evening, then a leak of
    0.5 L/min starting at 01:00.

    >>> model = FlowModel()
    >>> for day in range(20):
    ...     for k in range(48):
    ...         t = day * 86400 + k * 1800
    ...         use = 40.0 if k in (38, 39) else 0.0
    ...         _ = model.learn_one(t, t + 1800, use, 0)
    ...     model.learn_day([h == 19 for h in range(24)])
    >>> t0 = 20 * 86400 + 3600
    >>> for k in range(6):
    ...     start = t0 + k * 1800
    ...     score = model.score_one(start, start + 1800, 15.0, 0)
    ...     if score > 0 and not model.alerting:  # the monitor protects the model like this
    ...         model.start_alert(start, start + 1800)
    ...     model.learn_one(start, start + 1800, 15.0, 0)
    ...     print(k, round(score, 2))
    0 0.0
    1 0.0
    2 1.5
    3 2.0
    4 2.5
    5 3.0

    The leak is steady (the same 15 L every half hour): its third flat interval is enough, 1.5 h in,
    where the longest-run rule alone would wait for 2.5 h (its score there would be 0.5).
    """

    __slots__ = (
        "_state",
        "alert_limit_h",
        "alerting",
        "burst",
        "burst_factor",
        "burst_floor_lph",
        "burst_q",
        "cap_hours",
        "day_alpha",
        "floor_h",
        "half_life_days",
        "leak_lph",
        "levels",
        "maint_lph",
        "max_rate",
        "pending",
        "quiet_in_run",
        "quiet_p",
        "run_factor",
        "run_flat",
        "run_margin_h",
        "run_start",
        "tap",
    )

    def __init__(
        self,
        leak_lph: float = 6.0,
        run_factor: float = 1.5,
        run_margin_h: float = 1.0,
        burst_factor: float = 1.5,
        burst_floor_lph: float = 240.0,
        half_life_days: float = 180.0,
        cap_hours: float = 8.0,
        quiet_p: float = 0.5,
        day_alpha: float = 0.05,
    ) -> None:
        self.leak_lph = leak_lph
        self.run_factor = run_factor
        self.run_margin_h = run_margin_h
        self.burst_factor = burst_factor
        self.burst_floor_lph = burst_floor_lph
        self.half_life_days = half_life_days
        self.cap_hours = cap_hours
        self.quiet_p = quiet_p
        self.day_alpha = day_alpha
        self.levels = levels_for(leak_lph)
        n = len(self.levels)
        # One array (an array object costs 64 bytes before its numbers): the longest run in hours at
        # [level * 24 + hour], then the share of days with water use in each hour at [24 * n + hour].
        self._state = _FRESH_STATE[:]
        self.max_rate = 0.0  # highest interval rate learned, L/h
        # A tuple, replaced when a run starts or stops: between runs every meter shares the idle one.
        self.run_start: tuple[float | None, ...] = _idle(n)
        self.alerting = False
        self.maint_lph = 0.0  # rate (L/h) of the alert open on the maintenance route, set by the monitor; 0: none
        self.burst = False  # whether the last score came from a single huge interval
        # Per local hour the burst limit benign outcomes earned, then the highest rate a benign burst drew there, in
        # ``BURST_Q_LPH`` units (``BENIGN_BURST_STEP``); b"": none.
        self.burst_q = b""
        self.tap = False  # ... from a tap level or a burst: a person may be in danger (else plumbing)
        self.quiet_in_run = False  # the current slow run went through a usually quiet hour
        # The current slow run's lowest rate (L/h) and how many of its intervals drew it (flat ones); while use
        # runs above that rate, the same for the intervals since (a leak that began during the run, session 9).
        self.run_flat: Flat = _NO_FLAT
        # Runs seen while alerting, learned only if the flow stopped soon after the alert.
        self.pending: tuple[tuple[int, float], ...] = ()
        self.alert_limit_h = 0.0
        #: Shortest longest-run (hours) per level, e.g. a population prior during cold start.
        self.floor_h: tuple[float, ...] = _NO_FLOOR

    def __getstate__(self) -> tuple[object, ...]:
        return slot_values(self)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        if isinstance(state, tuple):
            # A checkpoint from before session 12 (no burst limit earned) or session 7 (no run is known flat, no alert
            # is open on the maintenance route): the missing slots take their neutral values.
            state = with_added_slots(self.__slots__, state, _FLOW_ADDED_SLOTS)
        restore_slots(self, state, share=_SETTINGS)
        self.levels = levels_for(self.leak_lph)  # (a checkpoint from before the leak level was bounded by a tap's)
        if len(self._state) == _HIGH_L:
            # A checkpoint from before session 10: no habitual draw learned yet.
            self._state = self._state + array("f", [0.0] * (_HIGH_AGED + 1 - _HIGH_L))
        if all(began is None for began in self.run_start):
            self.run_start = _idle(len(self.run_start))
        if repr(self.run_flat) == _NO_FLAT_REPR:
            self.run_flat = _NO_FLAT  # no run known flat, as in most homes: one tuple (88 bytes) for all of them

    @property
    def longest(self) -> memoryview:
        """Longest run (hours) learned at each level and hour, ``[level * 24 + hour]`` (a view of the state)."""
        return memoryview(self._state)[: 24 * len(self.levels)]

    @property
    def p_use(self) -> memoryview:
        """Share of days with water use in each local hour (a view of the state)."""
        return memoryview(self._state)[_P_USE:_HIGH_L]

    @property
    def high(self) -> memoryview:
        """Per local hour, litres drawn at a tap's rate on an average day, then the share of days with such a draw
        (``HIGH_ALPHA``), then the day they were last aged (a view of the state)."""
        return memoryview(self._state)[_HIGH_L:]

    def habitual_lph(self, hour: int) -> float:
        """This home's usual draw at a tap's rate (L/h) around ``hour`` on a day it draws one; 0: no such habit."""
        state, usual = self._state, 0.0
        for h in ((hour - 1) % 24, hour, (hour + 1) % 24):
            days = state[_HIGH_DAYS + h]
            if days >= HABIT_DAYS:
                usual = max(usual, state[_HIGH_L + h] / days)
        return usual

    def _hour(self, end: float, utc_offset_s: int) -> int:
        # The hour the interval ends in: hourly readings then label the hour just seen.
        return int((end - 1.0 + utc_offset_s) % 86400.0) // 3600

    def score_one(self, start: float, end: float, usage_l: float, utc_offset_s: int, from_lph: float = 0.0) -> float:
        """How far the run (or the interval's rate) goes beyond this elder's normal.

        0 means normal; above 0 the excess in hours over the alert limit (for a
        burst, the ratio above the limit). It looks at the run as it would be
        after this interval, without learning; levels below ``from_lph`` are left out.
        """
        hours = (end - start) / 3600.0
        if hours <= 0:
            return 0.0
        rate = usage_l / hours
        return self._score(start, end, hours, rate, self._hour(end, utc_offset_s), self._quiet_line(rate), from_lph)

    def _score(
        self, start: float, end: float, hours: float, rate: float, hour: int, quiet_line: float, from_lph: float = 0.0
    ) -> float:
        steady = rate < TAP_LPH and from_lph <= 0.0 and self.run_start[0] is not None  # else no steady run to judge
        worst = self._steady(start, end, hours, rate, hour) if steady else 0.0
        run_start = self.run_start
        levels = self.levels
        state = self._state
        tap = False
        if rate >= TAP_LPH:
            self._age_high(end)  # (the habits are read only for such rates)
        tap_lph = self.tap_lph() if TAP_LPH <= rate < BIG_HOME_TAP_LPH else TAP_LPH  # (only these rates need it)
        # A slow run counts only once it reaches an hour this home is usually quiet, not over a gap: the same for
        # every slow level.
        slow_counts = hours <= GAP_INTERVAL_H and (self.quiet_in_run or state[24 * len(levels) + hour] < quiet_line)
        for i, level in enumerate(levels):
            if rate < level:
                break
            if level < from_lph:
                continue
            if level < TAP_LPH and not slow_counts:
                continue
            began = run_start[i]
            if level >= TAP_LPH and (began is None or began >= start):
                # One interval at a tap's rate shows a volume, not how long it ran (the burst rule judges it): an
                # hourly reading of a family's bath a few seconds over an hour is no run past a 1 h margin. (The
                # monitor scores a tap on top of a flow it took in hand after learning it: the run began with it.)
                continue
            run_h = (end - (start if began is None else began)) / 3600.0
            floor = self.floor_h[i]
            if level < TAP_LPH and rate >= TAP_LPH and floor > SETTLED_FLOOR_H[i] and not self.floor_h[-1]:
                # A new home's slow levels keep the prior's floors after its learning week (the monitor's settling
                # weeks: its washes are plumbing's question), but water at a tap's rate now is a person's: a slow
                # level that alerts while a tap runs makes it a cadre's case, judged as in a settled home.
                floor = SETTLED_FLOOR_H[i]
            limit = max(state[i * 24 + hour], floor) * self.run_factor + self.run_margin_h
            if level >= TAP_LPH:
                if rate < tap_lph:
                    limit += self.run_margin_h * BIG_HOME_MARGINS  # a big home's 2-5 L/min: more of its keeping on
                limit = min(limit, TAP_MAX_H) - CLOCK_SLACK_H
            if run_h > limit:
                worst = max(worst, run_h - limit)
                tap = tap or level >= TAP_LPH
        burst_limit = max(self.max_rate * self.burst_factor, self.burst_floor_lph)  # ``_burst_limit(-1)``, inlined
        if rate > burst_limit:
            burst_limit = self._burst_limit(hour)  # (this home's habits at the hour, only when they matter)
        self.burst = rate > burst_limit and (hours >= ONE_READING_H or self._tap_ran_h(start, end) >= TAP_RAN_H)
        if self.burst:
            worst = max(worst, rate / burst_limit)
        if worst > 0.0 and not tap and rate >= TAP_LPH:
            # A slow level alerted while a tap's rate has been drawn since an earlier interval: a tap left open
            # on its own (a fall by the tap), not one wash on top of a slow flow. (In a big home too: a run at
            # 2-5 L/min that lasts into an hour it is usually quiet is no family's habit.)
            tap = run_start[levels.index(TAP_LPH)] is not None
        self.tap = tap or self.burst
        return worst

    def _tap_ran_h(self, start: float, end: float) -> float:
        """How long (h) a tap wide open (the top level, 5 L/min) has run by ``end``, from before an interval from
        ``start`` (0: it began in it). (Not a tap's 2 L/min: an hourly meter's odd reading ten minutes after another,
        in a use drawing 2 L/min for its hour, is a few minutes of that use, at many times the hour's rate.)"""
        began = self.run_start[-1]
        return 0.0 if began is None or began >= start else (end - began) / 3600.0

    def _quiet_line(self, rate: float) -> float:
        """The share of days with use under which an hour is usually quiet for this home: ``quiet_p``, less
        ``NEW_HOME_QUIET_MARGIN`` while the monitor floors its runs with the prior (a new home, ``SETTLED_FLOOR_H``)
        for an interval below a tap's rate. Water at a tap's rate is a person's question: a slow level that alerts
        through a quiet hour while a tap runs is how a tap left open by someone who fell is found in a new home
        (without this, one in some 140 such falls in the first week went unfound on each simulator seed)."""
        if rate < TAP_LPH and self.floor_h[0] > SETTLED_FLOOR_H[0]:
            return self.quiet_p - NEW_HOME_QUIET_MARGIN
        return self.quiet_p

    def tap_lph(self) -> float:
        """The rate (L/h) from which an interval is a tap's for this home: ``TAP_LPH``, more in a big home."""
        return BIG_HOME_TAP_LPH if sum(self._state[_HIGH_DAYS:_HIGH_AGED]) >= BIG_HOME_H else TAP_LPH

    def _burst_limit(self, hour: int) -> float:
        """The rate (L/h) above which one interval is a burst at ``hour`` (-1: at an hour without big draws)."""
        usual = self.max_rate if hour < 0 else max(self.max_rate, self.habitual_lph(hour))
        limit = max(usual * self.burst_factor, self.burst_floor_lph)
        if hour >= 0 and self.burst_q:
            # What benign outcomes earned at this hour, bounded by the hour's own limit (``BENIGN_BURST_MAX_FACTOR``).
            limit = max(limit, min(self.burst_q[hour] * BURST_Q_LPH, limit * BENIGN_BURST_MAX_FACTOR))
        return limit

    def _learn_benign_burst(self, hour: int, rate_lph: float) -> None:
        """A burst at ``rate_lph`` (L/h) at ``hour`` a person found harmless (a rate that was no burst there teaches
        nothing). Its rate is kept (``burst_q[24 + hour]``, the highest excused there, fading); one that comes back
        at about that hour while what is kept there times ``BENIGN_BURST_STEP`` still reaches its rate is a pattern:
        that hour and its neighbours earn a burst limit of ``BENIGN_BURST_STEP`` times the highest rate excused around
        it (``burst_q[hour]``), at most ``BENIGN_BURST_CEIL_LPH``."""
        if rate_lph <= self._burst_limit(hour):
            return  # a run that alerted by its length, not one huge draw: its run lengths are what it teaches
        earned = bytearray(self.burst_q or bytes(48))
        before = max(earned[24 + (hour + d) % 24] for d in (-1, 0, 1)) * BURST_Q_LPH
        earned[24 + hour] = max(earned[24 + hour], min(int(rate_lph / BURST_Q_LPH + 0.5), 255))
        if before * BENIGN_BURST_STEP >= rate_lph:  # a pattern: it came back at its hour, at its rate, soon
            seen = max(rate_lph, before) * BENIGN_BURST_STEP
            wanted = min(int(min(seen, BENIGN_BURST_CEIL_LPH) / BURST_Q_LPH + 0.5), 255)
            for h in (hour - 1, hour, hour + 1):
                earned[h % 24] = max(earned[h % 24], wanted)
        self.burst_q = bytes(earned)

    def _steady(self, start: float, end: float, hours: float, rate: float, hour: int) -> float:
        """Hours a steady slow run (``FLAT_N`` flat intervals) goes beyond this home's longest at the hour; 0: none."""
        began = self.run_start[0]
        if began is None or rate < self.levels[0] or hours > GAP_INTERVAL_H:
            return 0.0  # the run's first interval (never enough), no flow at the leak level, or a gap
        flat = _flat_after(self.run_flat, rate, hours)
        low, flat_n = flat[0], flat[1]
        count = flat_count(flat_n)
        if flat_n < 0 and count >= 2 and count * hours >= STEP_H - 1e-9:
            factor = STEP_FACTOR  # a step from no flow to a constant one, long enough
        elif count >= FLAT_N:
            factor = STEADY_FACTOR
        else:
            return 0.0
        # Against this home's longest run at the highest level the run's lowest rate reaches: a home whose
        # afternoons run a trickle for hours seldom draws 40 L/h for as long.
        levels = self.levels
        i = 0
        while i + 1 < len(levels) and levels[i + 1] <= low and levels[i + 1] < TAP_LPH:
            i += 1
        longest = self._state[i * 24 + hour]
        if self.floor_h[-1] > 0.0 and self.floor_h[i] > longest:
            # A new meter (the monitor floors even the tap levels with the population's prior only then): this
            # home's longest runs are not learned yet, and judged against none a cistern refilling every half
            # hour was a leak in the first week. Once learned, the leak level's floor is the longest-run rule's
            # slack for new habits, not the steady rule's (session 9).
            longest = self.floor_h[i]
        over = (end - began) / 3600.0 - longest * factor
        return max(over, 0.0)

    def learn_one(self, start: float, end: float, usage_l: float, utc_offset_s: int) -> None:
        """Advance the runs by one interval; learn them unless alerting."""
        hours = (end - start) / 3600.0
        if hours <= 0:
            return
        hour = self._hour(end, utc_offset_s)
        rate = usage_l / hours
        if usage_l >= TAP_LPH * hours:
            self._learn_high(end, hours, rate, hour)
        self._learn(start, end, hours, rate, hour, self._quiet_line(rate))

    def _learn_high(self, end: float, hours: float, rate: float, hour: int) -> None:
        """One interval at a tap's rate: its litres (at most an hour's) and its day join its hour's habitual draw."""
        if hours > GAP_INTERVAL_H:
            return
        self._age_high(end)
        state = self._state
        share = HIGH_ALPHA * min(hours, 1.0)
        state[_HIGH_L + hour] += share * rate
        state[_HIGH_DAYS + hour] = min(state[_HIGH_DAYS + hour] + share, 1.0)

    def _age_high(self, end: float) -> None:
        """The days since the habits were last aged (by an interval at a tap's rate) age them: a garden watered all
        summer is no habit in the winter's first big draw, which is judged only after this (day numbers in float32
        are exact)."""
        state = self._state
        day = float(end // 86400.0)
        if day > state[_HIGH_AGED]:
            high = np.frombuffer(state, dtype=np.float32)[_HIGH_L:_HIGH_AGED]
            high[:] = high.astype(np.float64) * (1.0 - HIGH_ALPHA) ** (day - state[_HIGH_AGED])
            state[_HIGH_AGED] = day

    def _learn(self, start: float, end: float, hours: float, rate: float, hour: int, quiet_line: float) -> None:
        # Runs for every interval with flow: the small helpers (``flat_count``, ``_idle``) inlined.
        near = True  # while alerting: the run is still close enough to the limit to be learned later
        alerting = self.alerting
        longest = self._state
        levels = self.levels
        runs = list(self.run_start)
        # A steady slow run is learned only once it stops without an alert: it must not raise this home's
        # longest run at its own hours while it is judged against them (a leak would outgrow its own limit).
        flat = _NO_FLAT  # the run's (lowest rate, flat intervals) after this interval, if it goes on
        if runs[0] is not None and rate >= levels[0] and hours <= GAP_INTERVAL_H:
            flat = _flat_after(self.run_flat, rate, hours)
        flat_n = flat[1]
        defer = not alerting and (bool(self.pending) or (-1 - flat_n if flat_n < 0 else flat_n) >= 2)
        cap_hours = self.cap_hours
        for i, level in enumerate(levels):
            if rate >= level:
                began = runs[i]
                if began is None:
                    began = runs[i] = start
                j = i * 24 + hour
                run_h = (end - began) / 3600.0
                if alerting:
                    if i == 0 and run_h > self.alert_limit_h + 1.0:
                        near = False
                        self.pending = ()  # no longer a near miss: nothing of it will be learned
                    if near and run_h <= cap_hours and not any(q[0] == j and q[1] >= run_h for q in self.pending):
                        # One entry per hour and level, its longest (all ``_end_episode`` learns): one per interval
                        # grew a meter read every second by four entries a second, 190 kB of checkpoint an hour.
                        self.pending = (*(q for q in self.pending if q[0] != j), (j, run_h))
                elif defer and level < TAP_LPH:
                    # Every slow level: a steady run is judged against the longest at the level its flow reaches.
                    if run_h <= cap_hours:
                        self.pending = (*(p for p in self.pending if p[0] != j), (j, run_h))
                elif longest[j] < run_h <= cap_hours:
                    # Longer runs are never learned: a leak nobody noticed must not become normal.
                    longest[j] = run_h
            else:
                runs[i] = None
        n = len(runs)
        if runs.count(None) == n:
            idle = _IDLE.get(n)
            self.run_start = idle if idle is not None else _idle(n)
        else:
            self.run_start = tuple(runs)
        if runs[0] is None:
            self.quiet_in_run = False
            self.run_flat = _NO_FLAT
        else:
            # An interval over a gap in the readings is use averaged over hours: it says nothing of flatness.
            # The run's first interval may hold only part of a leak that began in it: it counts once the
            # next agrees with it (-1: not yet).
            if hours > GAP_INTERVAL_H:
                self.run_flat = _NO_FLAT
            else:
                self.run_flat = (rate, -1) if runs[0] == start else flat
            if longest[24 * n + hour] < quiet_line:
                self.quiet_in_run = True
        if not alerting and hours >= RATE_MIN_H and self.max_rate < rate <= self._burst_limit(-1):
            # (a draw above the limit without habits, which only its hour's habit excused, is learned there alone)
            self.max_rate = rate
        if runs[0] is None and (alerting or self.pending):
            self._end_episode(hours)

    def step(self, start: float, end: float, usage_l: float, utc_offset_s: int) -> float:
        """``score_one`` then ``learn_one`` in one call; cheap when nothing flows."""
        if usage_l * 3600.0 < self.levels[0] * (end - start) and self.run_start[0] is None:
            rate = usage_l * 3600.0 / (end - start) if end > start else 0.0
            if rate > self.max_rate and not self.alerting and end - start >= RATE_MIN_S:
                self.max_rate = rate
            return 0.0
        # The interval's length, rate and hour once for both (this runs for every interval with flow).
        hours = (end - start) / 3600.0
        if hours <= 0:
            return 0.0
        rate = usage_l / hours
        hour = int((end - 1.0 + utc_offset_s) % 86400.0) // 3600  # ``_hour``, inlined
        quiet_line = self._quiet_line(rate)  # (once for both)
        score = 0.0 if self.alerting else self._score(start, end, hours, rate, hour, quiet_line)
        if rate >= TAP_LPH:
            self._learn_high(end, hours, rate, hour)
        if score > 0.0:
            self.start_alert(start, end)
        self._learn(start, end, hours, rate, hour, quiet_line)
        return score

    def _end_episode(self, last_hours: float) -> None:
        """Flow stopped after an alert (a run that barely outlasted the limit was routine after all), or a steady
        run stopped without one: what was held back is learned."""
        if self.pending:
            for j, run_h in self.pending:
                if self._state[j] < run_h <= self.cap_hours:
                    self._state[j] = run_h
        self.pending = ()
        self.alerting = False
        self.maint_lph = 0.0

    def start_alert(self, start: float, end: float) -> None:
        """The monitor raised an alert on this interval: stop learning until the flow stops."""
        began = self.run_start[0]
        self.alerting = True
        self.pending = ()
        self.alert_limit_h = (end - (start if began is None else began)) / 3600.0

    def confirm_incident(self) -> None:
        """A person found the run that alerted was an incident (a tap left open by someone who fell, a leak taken in
        hand): nothing of it is learned, not even as a near miss when it stops within the hour after its alert, as a
        tap a cadre closes at the visit does. A confirmed incident is never learned (issue 17): learned, it would let
        the next tap left open at that hour run longer before a call."""
        self.pending = ()
        self.alert_limit_h = -math.inf  # every interval of it from here on is past the near miss: none is held back

    def learn_benign(self, run_h: float, end: float, utc_offset_s: int, rate_lph: float = 0.0) -> None:
        """A person found the run that alerted at ``end`` harmless: learn it, bounded.

        ``run_h`` is how long it had run then, ``rate_lph`` its rate. Its hour's longest run at every
        slow level it drew (up to ``rate_lph``, or still drawing) becomes at least ``run_h`` (runs over
        ``cap_hours`` are never learned); at the tap levels up to ``rate_lph``, at least ``run_h`` but
        at most ``BENIGN_TAP_CAP_H``: a tap left open may be a fall. The highest rate learns nothing.

        What the run teaches on its own is kept (``pending``: a run that stops within the hour after its
        alert was a near miss, learned then at every level, as without the outcome): a benign answer must
        teach no less than no answer. Dropped, the garden a home waters every morning past its alert was
        never learned at the tap levels once a cadre called it harmless, and called a cadre again every
        few days (session 10, docs/detection-studies.md "Outcomes on a garden's waterings").
        """
        hour = self._hour(end, utc_offset_s)
        state = self._state
        learned = min(run_h, self.cap_hours)
        for i, level in enumerate(self.levels):
            if level < TAP_LPH:
                if i == 0 or level <= rate_lph or self.run_start[i] is not None:
                    state[i * 24 + hour] = max(state[i * 24 + hour], learned)
            elif level <= rate_lph:
                state[i * 24 + hour] = max(state[i * 24 + hour], min(run_h, BENIGN_TAP_CAP_H))
        if BENIGN_BURST_STEP > 0.0:
            self._learn_benign_burst(hour, rate_lph)

    def learn_day(self, hours_used: list[bool]) -> None:
        """Learn which hours of the day this home usually uses water in (one normal day)."""
        self.learn_day_slots(sum(1 << (2 * h) for h, used in enumerate(hours_used) if used))

    def learn_day_slots(self, slots: int) -> None:
        """``learn_day`` from a bit mask of the day's half-hour slots with use (bit ``k``: slot ``k``)."""
        a = self.day_alpha
        state = self._state
        for i, shift in enumerate(_HOUR_SHIFTS, 24 * len(self.levels)):  # (no index sums: once a day per meter)
            p = state[i]
            state[i] = p + a * ((1.0 if slots >> shift & 3 else 0.0) - p)

    def interrupt(self) -> None:
        """Unknown data: runs cannot be followed across it."""
        self.run_start = _idle(len(self.levels))
        self.run_flat = _NO_FLAT
        self.pending = ()
        self.alerting = False
        self.maint_lph = 0.0

    def decay(self, days: float) -> None:
        """Let old maxima shrink, so a home that changed is judged by its new habits."""
        factor = 0.5 ** (days / self.half_life_days)
        # In float64 and rounded once to float32, as ``longest[j] *= factor`` element by element (a
        # Python loop over 96 values cost more than the numpy calls).
        longest = np.frombuffer(self._state, dtype=np.float32)[: 24 * len(self.levels)]
        longest[:] = longest.astype(np.float64) * factor
        self.max_rate *= factor
        if self.burst_q:
            # What benign bursts earned fades faster than the highest rate: a summer's garden says little of a winter's
            # open tap. A limit or rate under the burst floor is no burst at any hour: forgotten (else a remnant of last
            # summer's first answer would make next summer's first one a pattern).
            keep, floor = 0.5 ** (days / BENIGN_BURST_HALF_LIFE_DAYS), self.burst_floor_lph / BURST_Q_LPH
            earned = bytes(q if q >= floor else 0 for q in (int(q * keep) for q in self.burst_q))
            self.burst_q = earned if any(earned) else b""

    def steady_alone(self, start: float, end: float, usage_l: float) -> bool:
        """While the run alerts: no tap's rate runs any more, and this interval draws the run's steady flow alone.

        What a tap closed over a leak leaves (the monitor hands the flow back to maintenance).
        """
        runs = self.run_start
        if not self.alerting or runs[0] is None or runs[self.levels.index(TAP_LPH)] is not None:
            return False
        low, flat_n = self.run_flat[0], self.run_flat[1]
        hours = max(end - start, 1.0) / 3600.0
        return flat_count(flat_n) >= FLAT_N and abs(usage_l / hours - low) <= _flat_tol(low, hours)

    def run_hours(self, end: float) -> float:
        """Length of the current run at the leak level (hours), 0 when none."""
        began = self.run_start[0]
        return 0.0 if began is None else (end - began) / 3600.0

    def usual_longest(self, utc_offset_s: int, end: float) -> float:
        """Longest run at the leak level learned for this hour (for messages)."""
        return float(self._state[self._hour(end, utc_offset_s)])


#: The slots session 7 added, with their values for older checkpoints.
_STEADY_SLOTS: dict[str, object] = {"maint_lph": 0.0, "run_flat": (0.0, 0), "tap": False}
#: The slot session 12 added (the burst limit benign outcomes earned per hour), with its value for older checkpoints.
_EARNED_SLOTS: dict[str, object] = {"burst_q": b""}
#: Slots added since the first compact checkpoints, newest first: a checkpoint lacks the first few groups.
_FLOW_ADDED_SLOTS = (_EARNED_SLOTS, _STEADY_SLOTS)

#: Settings and constant tuples, the same for most meters: one copy shared on load.
_SETTINGS = frozenset(
    (
        "burst_factor",
        "burst_floor_lph",
        "cap_hours",
        "day_alpha",
        "floor_h",
        "half_life_days",
        "leak_lph",
        "levels",
        "quiet_p",
        "run_factor",
        "run_margin_h",
    )
)


#: A new model's longest runs (none), hours of use (even odds) and habitual draws (none), and its floors of the
#: longest runs.
_FRESH_STATE = array("f", [0.0] * _P_USE + [0.5] * (_HIGH_L - _P_USE) + [0.0] * (_HIGH_AGED + 1 - _HIGH_L))
_NO_FLOOR = (0.0,) * len(LEVELS_LPH)
_LEVELS: dict[float, tuple[float, ...]] = {}


def levels_for(leak_lph: float) -> tuple[float, ...]:
    """The flow levels for this leak threshold, one tuple for all meters with it.

    The first, the leak level, is the threshold, but never above a tap's rate (``TAP_LPH``): every level's run is
    followed from it up, and an operator's threshold of 3 L/min (the knob allows up to 10) left every tap under it
    unfollowed, a tap left open at 2.5 L/min (a fall in the bathroom, critical) never raised. No slow run is followed
    then, as the threshold says: flows under a tap's rate are no leak there.

    >>> levels_for(18.0), levels_for(180.0)
    ((18.0, 30.0, 120.0, 300.0), (120.0, 30.0, 120.0, 300.0))
    """
    levels = _LEVELS.get(leak_lph)
    if levels is None:
        levels = shared((min(leak_lph, TAP_LPH), *LEVELS_LPH[1:]))
        if leak_lph > 0.0 and len(_LEVELS) < 256:  # 0.0 and -0.0 are equal keys: not cached
            _LEVELS[leak_lph] = levels
    return levels


#: A run's flat state: (lowest rate, flat intervals), and while use runs above that rate, the same for the
#: intervals since (:func:`_flat_after`).
Flat = tuple[float, int] | tuple[float, int, float, int]
_NO_FLAT: Flat = (0.0, 0)
#: ``_NO_FLAT`` told apart from an equal tuple of other values, (-0.0, 0) or (0, 0), on load.
_NO_FLAT_REPR = repr(_NO_FLAT)


def _flat_after(flat: Flat, rate: float, hours: float) -> Flat:
    """A slow run's flat state (``FlowModel.run_flat``) after one more interval at ``rate`` (L/h, ``hours`` long).

    The run's (lowest rate, flat intervals), as :func:`_floor_after` follows them. A leak that begins while
    use already runs (a morning's washing) draws above the run's lowest rate, set before it began, in every
    interval: judged against that rate alone it is use on top for as long as the run lasts. So while the run
    draws above its lowest rate, the intervals since are followed too, as a run of their own (two more values);
    once more of them are flat than at the run's lowest rate, theirs is the run's floor (session 9).

    >>> flat = (30.0, -1)  # 30 L of use in the first hour, then a 45 L/h leak begins with use on top
    >>> for litres in (50, 45, 46, 45):
    ...     flat = _flat_after(flat, float(litres), 1.0)
    ...     print(litres, flat)
    50 (50.0, -2)
    45 (45.0, 1)
    46 (45.0, 2)
    45 (45.0, 3)

    Use of 27 L/h first; the leak of 43 L/h begins in the second hour, 5 L of use on top of it in the fourth:

    >>> flat = (27.0, 1)
    >>> for litres in (43, 44, 48, 44):
    ...     flat = _flat_after(flat, float(litres), 1.0)
    ...     print(litres, flat)
    43 (27.0, 1, 43.0, -1)
    44 (43.0, 2)
    48 (43.0, 2, 48.0, -1)
    44 (43.0, 3)
    """
    main = _floor_after((flat[0], flat[1]), rate, hours)
    low, flat_n = flat[0], flat[1]
    if (flat_n > 0 or flat_n < -1) and rate > low + _flat_tol(low, hours):
        # Use on top of the run's floor: follow the intervals since as a run of their own.
        since = _floor_after((flat[2], flat[3]), rate, hours) if len(flat) == 4 else (rate, -1)
        if flat_count(since[1]) > max(flat_count(main[1]), 1):
            return since  # more of them flat than at the old floor, set before: a flow that began since
        return (main[0], main[1], since[0], since[1])
    return main


def _floor_after(flat: tuple[float, int], rate: float, hours: float) -> tuple[float, int]:
    """A slow run's (lowest rate, flat intervals) after one more interval at ``rate`` (L/h, ``hours`` long).

    A count of -1 marks the run's first interval, which counts only if the next agrees with it. A run whose
    first interval was below the next and that has drawn the same flow ever since (a step, see ``STEP_H``)
    keeps a negative count: -1 - its flat intervals (``flat_count``).

    >>> flat = (8.0, -1)  # the run's first half hour: 4 L, the start of a leak
    >>> for litres in (30, 24, 60, 23, 24, 12):  # a use, then a leak with a use on top, then a lower flow
    ...     flat = _floor_after(flat, litres * 2.0, 0.5)
    ...     print(litres, flat)
    30 (60.0, -2)
    24 (48.0, 1)
    60 (48.0, 1)
    23 (46.0, 2)
    24 (46.0, 3)
    12 (24.0, 1)

    On hourly readings: 20 L in the hour a 45 L/h leak began, then the leak alone, then a use on top.

    >>> flat = (20.0, -1)
    >>> for litres in (45, 46, 90):
    ...     flat = _floor_after(flat, float(litres), 1.0)
    ...     print(litres, flat, flat_count(flat[1]))
    45 (45.0, -2) 1
    46 (45.0, -3) 2
    90 (45.0, 2) 2
    """
    low, flat_n = flat
    tol = _flat_tol(low, hours)
    if flat_n == -1:  # after the run's first interval, maybe part of a leak that began in it
        if abs(rate - low) <= tol:
            return (min(low, rate), 2)
        return (rate, -2) if rate > low else (rate, 1)  # a step up from a partial first interval: one flat
    if flat_n < 0:  # a step so far
        if abs(rate - low) <= tol:
            return (min(low, rate), flat_n - 1)
        return (low, -1 - flat_n) if rate > low else (rate, 1)  # use on top ends the step, the count stays
    if flat_n == 0 or rate < low - tol:
        return (rate, 1)  # the first interval, or a new lowest rate: the flat intervals start again
    if rate <= low + tol:
        return (min(low, rate), flat_n + 1)
    return flat  # use on top of it


def _flat_tol(low: float, hours: float) -> float:
    """How far (L/h) an interval ``hours`` long may draw from a run's lowest rate ``low`` and still be flat."""
    return max(low * FLAT_TOL, FLAT_L / hours)


def flat_count(flat_n: int) -> int:
    """Flat intervals of a run from its ``run_flat`` count (negative while the run is a step).

    >>> flat_count(-1), flat_count(-3), flat_count(2)
    (0, 2, 2)
    """
    return -1 - flat_n if flat_n < 0 else flat_n


def _idle(levels: int) -> tuple[None, ...]:
    """No run at any level: one tuple shared by every meter."""
    idle = _IDLE.get(levels)
    if idle is None:
        idle = _IDLE[levels] = (None,) * levels
    return idle


_IDLE: dict[int, tuple[None, ...]] = {}
#: The bit shift of each hour's two half-hour slots in a day's mask (``FlowModel.learn_day_slots``).
_HOUR_SHIFTS = tuple(range(0, 48, 2))
