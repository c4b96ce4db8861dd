"""The home's base flow: water the plumbing draws whether or not anyone is home.

A running cistern, a dripping tap or a leak under the leak level draws a few
litres every hour, day and night. Counted as use, it hides every silence: the
silence detector never sees one and the safety net never sees too few litres,
so an elder who falls in that home is never found (session 10). The base flow
is the rate the meter has not gone below for days: 0 in a home where water
ever stops, and then nothing here changes anything.

The estimator sums the water of clock-aligned blocks of ``BLOCK_H`` hours (two
hours hold at least one refill of a cistern that refills every 20-90 min).
Once every block of the last ``WINDOW_BLOCKS`` (three days) drew at least ``MIN_BLOCK_L``
litres, the home has a base flow: ``lph``, the lowest block rate of that window.
What the trickle alone draws in one interval (its own variation: a cistern
refills in lumps, a register counts whole litres) is read from the quietest
``QUIET_BLOCKS`` blocks of the window (a night, when the trickle runs alone): the
second-highest interval rate among them (``allow_lph``; the highest may be a
flush at night). A person's use is what rises above that (``excess``): a flush,
a hand wash. A block without water ends the base flow; once found, two in a row
do (a drip of half a litre an hour leaves a dry block now and then: the register
counts whole litres).

People are not plumbing (session 11). A family staying for days (guests in the day
and evening, the elder up at night), a baby, an insomniac, can wet every 2 h block
for three days and nights; taken for a trickle, they were reported to maintenance
and their smaller uses hidden from the silence detector as the trickle's range, so it
learned nights longer than the elder's own. What plumbing does and people do not: it
never stops for two hours (``DRY_H``), at night as in the day: a drip of half a litre
an hour ticks the register every two hours, a cistern refills every 20-90 min. So
until a base flow is found, a stretch that long without water starts the window
again, as a dry block does: the window must show water in every two hours, not only in
every clock-aligned block (a single litre after two dry hours is a slow drip's next
tick, not a person's use). People whose water never stops for two hours, day and
night, for three days, are not told apart from a cistern that refills as often.

Per interval it costs one comparison while nothing flows; its state is a few
floats and, while water keeps running, one float array of at most three days' blocks.

>>> base = BaseFlow()
>>> H = 3600.0
>>> for k in range(80):  # 80 h of a cistern running at 3 L/h, hourly readings
...     base.learn_one(k * H, (k + 1) * H, 3.0 if k % 3 else 4.0)
>>> base.lph, base.allow_lph, base.hours(80 * H)  # litres an hour; hours since it last stopped
(3.0, 3.0, 80.0)
>>> base.excess(80 * H, 81 * H, 4.0), base.excess(80 * H, 81 * H, 13.0)  # a person's flush on top: 9 L
(0.0, 9.0)
>>> for k in range(80, 85):  # the water stopped: two blocks without water end a base flow
...     base.learn_one(k * H, (k + 1) * H, 0.0)
>>> base.lph, base.allow_lph, base.excess(85 * H, 86 * H, 4.0)
(0.0, 0.0, 4.0)
>>> people = BaseFlow()  # 80 h of a busy home: water in every 2 h block, not in every two hours at night
>>> for k in range(80):
...     people.learn_one(k * H, (k + 1) * H, 6.0 if k % 24 not in (1, 2, 4) else 0.0)
>>> people.lph, people.hours(80 * H)  # every block wet, but no water 01:00-03:00: no base flow
(0.0, 0.0)
"""

from __future__ import annotations

import math
from array import array

from detect.compact import restore_slots, slot_values

#: Blocks (h) the water is summed over: two hours hold at least one refill of a cistern refilling every 20-90 min.
BLOCK_H = 2.0
BLOCK_S = BLOCK_H * 3600.0
#: Blocks in three days: the base flow is the lowest block rate of the last three days, once every block of them drew
#: water. A day is not enough: an elder who gets up at night (a flush every two hours) makes a day of wet blocks now
#: and then (161 of 200 simulated elders in 90 days), three nights in a row hardly ever (12, nearly all in leaks);
#: a cistern runs for weeks.
WINDOW_BLOCKS = 36
#: A block that drew less than this (L) had no base flow: the water stopped (a register's rounding tick is 1 L).
MIN_BLOCK_L = 1.0
#: The quietest blocks of the window (a night's 8 h): the trickle runs alone there; its own variation is read there.
QUIET_BLOCKS = 4
#: Which of the quiet blocks' highest interval rates is the trickle's own (sorted, ``-2``: the second-highest;
#: the highest may be a flush at night).
PEAK_RANK = -2
#: The quietest blocks are the ones a lumpy trickle (a cistern refilling now and then) drew least in: for the safety
#: net, which weighs a whole day of water, its own range above the base flow is taken twice what they show
#: (``net_excess``): a day of a person's water is far more than that, a day of refills is not.
NET_SPREAD = 2.0
#: Plumbing never stops for this long (h): a drip of half a litre an hour or more (what a wet 2 h block holds) ticks
#: the register about every two hours, a cistern refills every 20-90 min, day and night alike. People do stop: a
#: family's water, an elder up at night, leave two hours or more without water now and then, at night if not in the
#: day. So a stretch this long without water, ended by more than the register's litre (a use), ends a base flow not
#: yet found, as a dry block does (less 5 minutes: a reading's clock jitters by seconds, and four half-hour intervals
#: without water must count as two hours).
DRY_H = 2.0 - 5.0 / 60.0
DRY_S = DRY_H * 3600.0
#: The register's resolution (L): an interval may read this much above the trickle's own highest rate.
REGISTER_L = 1.0
#: An interval longer than this (h) is readings lost: its volume averaged over the gap says nothing of a base flow.
GAP_H = 2.5
GAP_S = GAP_H * 3600.0
#: A block's (rate, highest interval rate) pairs, oldest first, while every block drew water (shared while empty).
_EMPTY = array("f")
#: A block's litres once readings were lost in it: unknown, neither wet nor dry.
_UNKNOWN = math.inf
#: The length of ``BaseFlow.blocks`` once the window is full.
_FULL = 2 * WINDOW_BLOCKS
#: Slots added since session 10's first checkpoints, newest last: the slots a shorter state holds, by its length.
_ADDED = ("quiet_lph", "reported", "wet_end")


class BaseFlow:
    """The rate a meter has not gone below for days (L/h), and what the trickle alone draws per interval.

    ``learn_one(start, end, usage_l)`` for every interval with a known volume (an unknown one is skipped: the
    other intervals of its block say whether water ran); ``excess(start, end, usage_l)`` is the part of an
    interval's volume a person drew (all of it in a home without a base flow), ``net_excess`` what the safety
    net counts of it.
    """

    __slots__ = (
        "allow_lph",
        "blocks",
        "dry",
        "ended",
        "litres",
        "lph",
        "peak",
        "quiet_lph",
        "reported",
        "since",
        "until",
        "wet_end",
    )

    def __init__(self) -> None:
        self.until = -1.0  # end of the block being summed (data time); -1: none yet
        self.litres = 0.0  # its litres so far
        self.peak = 0.0  # its highest interval rate (L/h)
        self.blocks = _EMPTY  # (rate, peak) of each complete block since water last stopped, at most the window's
        self.since: float | None = None  # start of the first of those blocks
        self.lph = 0.0  # the base flow: the lowest block rate of the window (0: water stopped in it)
        self.allow_lph = 0.0  # the trickle's own highest rate per interval, from the window's quietest blocks
        self.quiet_lph = 0.0  # the highest block rate among those quietest blocks (of the last full window)
        self.ended = -1.0  # data time the last base flow ended (-1: none yet)
        self.dry = False  # the last block of a base flow drew no water (a second one in a row ends it)
        self.wet_end = math.inf  # end of the last interval that drew water (inf: none yet, or readings were lost)
        self.reported = -1.0  # ``since`` of the base flow last reported to maintenance (the monitor's; -1: none)

    def __getstate__(self) -> tuple[object, ...]:
        return slot_values(self)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        if isinstance(state, tuple) and len(state) in _OLDER:
            # A checkpoint from session 10 (before ``reported`` and ``wet_end``; its first version was also before
            # ``quiet_lph``, read again from the window below).
            values = dict(zip(_OLDER[len(state)], state, strict=True))
            values.setdefault("quiet_lph", 0.0)
            values["wet_end"] = math.inf  # unknown: the next stretch without water is judged from the next water
            # A base flow found then was reported then (from its ``since``, as session 10 recognised its report).
            since, found = values["since"], values["lph"]
            values["reported"] = since if since is not None and isinstance(found, float) and found > 0.0 else -1.0
            state = tuple(values[n] for n in self.__slots__)
        restore_slots(self, state)
        if not self.blocks:
            self.blocks = _EMPTY
        elif len(self.blocks) == _FULL:
            self._window()  # (the same base flow: only ``quiet_lph`` is new)

    def learn_one(self, start: float, end: float, usage_l: float) -> None:
        """Add one interval's water (known volume); closes the blocks it ends after."""
        gap = end - start > GAP_S
        until = self.until
        if end > until + 1.0:
            # Close the block being summed, and any block no interval ended in, up to ``end`` (inlined: every
            # second hourly reading). A block no interval ended in had no water unless readings were lost across
            # it (``gap``): then it is unknown, skipped as a block of lost readings is. An interval ending within a
            # second after the boundary ends on it (``block_end`` below): it closes nothing (it once closed the
            # block and opened an empty one ending on the same boundary, closed dry by the next reading: a
            # jittering clock then ended every other window of a drip).
            block_end = ((end - 1.0) // BLOCK_S + 1.0) * BLOCK_S  # an interval ending on a boundary ends its block
            if until > 0.0:
                litres = self.litres
                if litres < MIN_BLOCK_L or (block_end - until > BLOCK_S and not gap):
                    if self.since is not None:  # else nothing runs: nothing to end
                        self._dry(until)
                elif litres < _UNKNOWN:
                    self._closed(until - BLOCK_S)
            self.until = block_end
            self.litres = self.peak = 0.0
        if gap:
            self.litres = _UNKNOWN  # readings were lost: this block is unknown, neither wet nor dry
            self.wet_end = end  # (and the time lost is no stretch without water)
        elif usage_l > 0.0:
            if start - self.wet_end >= DRY_S and self.lph <= 0.0 and usage_l > REGISTER_L:
                # People's water, not plumbing: the window starts again from here. (Water of the register's one
                # litre after that long is a drip's next tick: a drip of about half a litre an hour whose ticks
                # drift, 1 h 40 min apart, then 2 h 20 min, ticks in every block yet leaves two hours dry between
                # hourly readings; people come back with a flush or a wash.)
                self._stopped(start)
            self.wet_end = end
            self.litres += usage_l
            duration = end - start
            rate = usage_l * 3600.0 / (duration if duration > 1.0 else 1.0)
            if rate > self.peak:
                self.peak = rate

    def excess(self, start: float, end: float, usage_l: float) -> float:
        """Litres of this interval above what the trickle alone draws in it (a person's use)."""
        allow = self.allow_lph
        if allow <= 0.0:
            return usage_l
        return max(usage_l - allow * (end - start) / 3600.0 - REGISTER_L, 0.0)

    def net_excess(self, start: float, end: float, usage_l: float) -> float:
        """What the safety net counts of an interval: its litres above the trickle's range ``NET_SPREAD`` wide."""
        allow = self.allow_lph
        if allow <= 0.0:
            return usage_l
        allow += (NET_SPREAD - 1.0) * (allow - self.lph)
        return max(usage_l - allow * (end - start) / 3600.0 - REGISTER_L, 0.0)

    def restart(self) -> None:
        """Forget the water seen so far: what runs from now on is judged afresh (a raised flow stopped)."""
        self.litres = self.peak = 0.0
        self._stopped(self.until)

    def hours(self, now: float) -> float:
        """How long (h) the water has not stopped, up to ``now`` (0 without a base flow)."""
        return 0.0 if self.since is None or self.lph <= 0.0 else (now - self.since) / 3600.0

    def _dry(self, at: float) -> None:
        """A block without water ended at ``at``: the water stopped (two such blocks in a row, once found)."""
        if self.lph > 0.0 and not self.dry:
            self.dry = True  # one dry block in a base flow: a drip under a litre in 2 h, rounded down
        else:
            self._stopped(at)

    def _closed(self, began: float) -> None:
        """A block that drew water ended at ``began + BLOCK_S``: it joins the window; a full window gives the base
        flow."""
        self.dry = False
        blocks = self.blocks
        n = len(blocks)
        if not n:  # the first wet block (the empty array is shared: a new one)
            blocks = self.blocks = array("f")
            self.since = began
        elif n == _FULL:
            left = blocks[0]
            del blocks[:2]  # in place: the oldest block leaves the window
        blocks.append(self.litres / BLOCK_H)
        blocks.append(self.peak)
        if n < _FULL - 2:
            return  # (nearly every block: the window is not full, as a home whose water stops never fills it)
        if n == _FULL and left > self.quiet_lph and blocks[-2] >= self.quiet_lph:
            # Neither the block that left nor the one that came is among the quietest (the one that left wins a
            # tie, being the oldest; the one that came loses it): the base flow and the trickle's range stay.
            return
        self._window()

    def _window(self) -> None:
        """The base flow of a full window: its lowest block rate, and the trickle's range from its quietest blocks."""
        blocks = self.blocks
        rates = blocks[0::2]
        quiet = sorted(range(WINDOW_BLOCKS), key=rates.__getitem__)[:QUIET_BLOCKS]  # (stable: the older wins a tie)
        self.lph = rates[quiet[0]]
        self.quiet_lph = rates[quiet[-1]]
        peaks = sorted([blocks[2 * i + 1] for i in quiet])
        self.allow_lph = max(peaks[PEAK_RANK], self.lph)

    def _stopped(self, at: float) -> None:
        if self.since is None:
            return  # nothing ran (no wet block since the last stop): nothing to forget
        if self.lph > 0.0:
            self.ended = at
        self.dry = False
        self.blocks = _EMPTY
        self.since = None
        self.lph = self.allow_lph = 0.0


#: The slots of an older checkpoint, by the length of its state: before ``reported`` and ``wet_end`` (session 10's
#: last), and before ``quiet_lph`` too (its first).
_OLDER = {
    len(BaseFlow.__slots__) - 2: tuple(n for n in BaseFlow.__slots__ if n not in _ADDED[1:]),
    len(BaseFlow.__slots__) - 3: tuple(n for n in BaseFlow.__slots__ if n not in _ADDED),
}
