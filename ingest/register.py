"""Turn a meter's cumulative register readings into intervals of use.

The register only ever counts up, so a lost reading loses no volume: usage is
the difference of consecutive totals. Real registers misbehave (duplicates,
late delivery, replacement meters starting from zero, single readings off by
hundreds of cubic metres): those become unknown intervals, never usage.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.cadence import GAP_S, GAP_USUAL, NEW_INTERVALS, SHRINK_SPANS, USUAL_GROWTH, YOUNG_INTERVALS, next_usual
from core.domain import (
    INTERVAL_GAP,
    INTERVAL_GLITCH,
    INTERVAL_OK,
    INTERVAL_RESET,
    Interval,
)

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
LATE = "late"  # older than what was already processed: stored, not re-counted
CONFLICT = "conflict"  # same timestamp, different total
#: Less than ``min_spacing_s`` after the newest reading: not taken. The register counts up, so the next
#: reading taken carries this one's water: nothing of the volume is lost, only the meter's excess of detail.
DENSE = "dense"
#: Builds a named tuple from a tuple of its fields without the Python-level ``__new__``/``_make`` (no checks).
_new = tuple.__new__


@dataclass(slots=True, frozen=True)
class RegisterLimits:
    """What a plausible household register does."""

    max_flow_lph: float = 3600.0  # 60 L/min: more than any home tap can draw
    burst_l: float = 60.0  # slack on top of the rate for short intervals
    jitter_l: float = 2.0  # backward steps this small are rounding, not faults
    gap_s: float = GAP_S  # longer intervals know the volume, not the timing
    # 30 L/min: more than any one tap, and a pipe that bursts keeps flowing; a step this steep waits for the next
    # reading, which says whether it was water (it goes on from there) or one reading off (it comes back down).
    doubt_lph: float = 1800.0
    # A register read every second (broken firmware, or a hostile meter sending new times at full speed) would
    # store 86,400 readings a day, and a full disk stops intake for the whole city: one reading a minute at most.
    # Meters report every 15 min to 1 h; the detectors join intervals under 5 min anyway (detect SHORT_S).
    min_spacing_s: float = 60.0

    def plausible(self, usage_l: float, seconds: float) -> bool:
        if usage_l < -self.jitter_l:
            return False
        return usage_l <= self.max_flow_lph * seconds / 3600.0 + self.burst_l

    def doubtful(self, usage_l: float, seconds: float) -> bool:
        """A plausible step steep enough that one misread reading is likelier than water."""
        return usage_l > self.doubt_lph * seconds / 3600.0 + self.burst_l


#: Shared by every tracker built without limits of its own (frozen, so sharing is safe): one less object per meter.
DEFAULT_LIMITS = RegisterLimits()


class RegisterTracker:
    """Per-meter state that turns readings into :class:`Interval` records.

    A reading that jumps implausibly is held as *suspect*: if the next reading
    continues from the old level it was a glitch; if it continues from the new
    level the register was reset (meter replaced). Either way the interval
    around the jump is unknown and no volume is invented. A step that is
    possible but steeper than any tap (``doubt_lph``) is held the same way: if
    the next reading goes on from its level it was water, and both intervals
    are released; if it comes back down it was a glitch. One misread reading
    must not call a cadre about a tap wide open.

    >>> t = RegisterTracker("m1")
    >>> t.push(0, 100.0)
    ('accepted', [])
    >>> t.push(1800, 112.0)[1][0].usage_l
    12.0
    >>> t.push(1800, 112.0)[0]
    'duplicate'
    >>> t.push(1810, 113.0)  # ten seconds later: too dense, the next reading counts its litre
    ('dense', [])
    >>> status, out = t.push(3600, 248_112.0)  # glitch: held as suspect
    >>> out
    []
    >>> [(i.status, i.usage_l) for i in t.push(5400, 115.0)[1]]
    [('glitch', None), ('ok', 3.0)]
    >>> [(i.status, i.usage_l) for i in t.push(7200, 0.0)[1]]  # meter replaced
    []
    >>> [(i.status, i.usage_l) for i in t.push(9000, 4.0)[1]]
    [('reset', None), ('ok', 4.0)]
    >>> t.push(10800, 1204.0)  # 1,200 L in half an hour: faster than any tap, held
    ('accepted', [])
    >>> [(i.status, i.usage_l) for i in t.push(12600, 2300.0)[1]]  # it went on: a pipe burst, released late
    [('ok', 1200.0), ('ok', 1096.0)]
    >>> t.push(14400, 3800.0)[1], [(i.status, i.usage_l) for i in t.push(16200, 2310.0)[1]]  # one reading off
    ([], [('glitch', None), ('ok', 10.0)])
    """

    __slots__ = (
        "last_total",
        "last_ts",
        "limits",
        "meter_id",
        "suspect_total",
        "suspect_ts",
        "usual_s",
        "young_intervals",
    )

    def __init__(self, meter_id: str, limits: RegisterLimits | None = None) -> None:
        self.meter_id = meter_id
        self.limits = limits or DEFAULT_LIMITS
        self.last_ts: float | None = None
        self.last_total = 0.0
        self.suspect_ts: float | None = None
        self.suspect_total = 0.0
        # The meter's usual interval (s): from where 2.5 x it is the ``gap_s`` line, until readings teach it.
        self.usual_s = self.limits.gap_s / GAP_USUAL
        self.young_intervals = YOUNG_INTERVALS  # of its first intervals still to come (core.cadence: young)

    def _gap_line(self, seconds: float) -> float:
        """The gap line for an interval of ``seconds`` (the longer of ``gap_s`` and 2.5 usual intervals), learning
        the usual interval from it after."""
        usual = self.usual_s
        line = usual * GAP_USUAL
        if line < self.limits.gap_s:
            line = self.limits.gap_s
        new = self.young_intervals
        if new:
            self.young_intervals = new - 1
        self.usual_s = next_usual(usual, seconds, new)
        return line

    @property
    def newest(self) -> float | None:
        """The time of the newest reading taken: the one held as suspect if any, else the last; None before any."""
        return self.suspect_ts if self.suspect_ts is not None else self.last_ts

    def push(self, ts: float, total_l: float, utc_offset_s: int = 8 * 3600) -> tuple[str, list[Interval]]:
        """Take one reading; return its status and the intervals it completes."""
        last_ts = self.last_ts
        if self.suspect_ts is None and last_ts is not None and ts > last_ts:
            # The common case, inlined (it runs once per reading): a plausible step up from the last total.
            last_total = self.last_total
            usage = total_l - last_total
            limits = self.limits
            seconds = ts - last_ts
            if seconds < limits.min_spacing_s:
                return DENSE, []
            if -limits.jitter_l <= usage <= limits.doubt_lph * seconds / 3600.0 + limits.burst_l:
                if usage < 0:  # backward rounding jitter: no use, keep the higher level
                    usage, total_l = 0.0, last_total
                # ``_gap_line`` inlined (keep the two the same); a reading on its meter's cadence changes nothing.
                status = INTERVAL_OK
                usual = self.usual_s
                new = self.young_intervals
                if new:
                    self.young_intervals = new - 1
                if seconds != usual:
                    if seconds < usual:
                        shrunk = usual * 0.5 if new else usual - SHRINK_SPANS * seconds
                        if shrunk < usual * 0.5:
                            shrunk = usual * 0.5
                        self.usual_s = seconds if seconds > shrunk else shrunk
                    else:
                        if seconds > limits.gap_s and seconds > usual * GAP_USUAL:
                            status = INTERVAL_GAP
                        if new > YOUNG_INTERVALS - NEW_INTERVALS:  # a new meter's first intervals: taken whole
                            self.usual_s = seconds
                        else:
                            usual *= USUAL_GROWTH
                            self.usual_s = seconds if seconds < usual else usual
                self.last_ts, self.last_total = ts, total_l
                # ``tuple.__new__`` straight: ``Interval(...)`` and ``Interval._make`` are Python-level
                # functions around it, which cost more than the tuple itself, once per reading.
                return ACCEPTED, [_new(Interval, (self.meter_id, last_ts, ts, usage, status, utc_offset_s))]
        if last_ts is None:
            self.last_ts, self.last_total = ts, total_l
            return ACCEPTED, []
        newest = self.newest
        assert newest is not None
        if ts < newest:
            return LATE, []
        if ts == newest:
            same = total_l == (self.suspect_total if self.suspect_ts is not None else self.last_total)
            return (DUPLICATE if same else CONFLICT), []
        if ts - newest < self.limits.min_spacing_s:
            return DENSE, []
        if self.suspect_ts is None:
            return ACCEPTED, self._advance(ts, total_l, utc_offset_s)
        return ACCEPTED, self._settle_suspect(ts, total_l, utc_offset_s)

    def _advance(self, ts: float, total_l: float, offset: int) -> list[Interval]:
        assert self.last_ts is not None
        usage = total_l - self.last_total
        seconds = ts - self.last_ts
        if self.limits.plausible(usage, seconds) and not self.limits.doubtful(usage, seconds):
            return [self._interval(self.last_ts, ts, total_l, offset)]
        self.suspect_ts, self.suspect_total = ts, total_l
        return []

    def _settle_suspect(self, ts: float, total_l: float, offset: int) -> list[Interval]:
        assert self.last_ts is not None and self.suspect_ts is not None
        suspect_ts, suspect_total = self.suspect_ts, self.suspect_total
        self.suspect_ts, self.suspect_total = None, 0.0  # the constant: no float of its own per meter
        limits = self.limits
        if limits.plausible(suspect_total - self.last_total, suspect_ts - self.last_ts) and limits.plausible(
            total_l - suspect_total, ts - suspect_ts
        ):
            # A doubtful step (possible, steeper than any tap) and the register went on from it: water.
            return [
                self._interval(self.last_ts, suspect_ts, suspect_total, offset),
                self._interval(suspect_ts, ts, total_l, offset),
            ]
        if limits.plausible(total_l - self.last_total, ts - self.last_ts):
            # The suspect was a glitch: the old level holds, and the volume from
            # the last good reading up to now is known in total.
            glitch = Interval(self.meter_id, self.last_ts, suspect_ts, None, INTERVAL_GLITCH, offset)
            baseline = self.last_total
            if suspect_ts - self.last_ts > max(limits.gap_s, self.usual_s * GAP_USUAL):
                # Readings were lost before the glitch (a meter back from an outage whose first reading is garbage;
                # not two regular intervals of an hourly meter, which span more than gap_s together):
                # the volume is known over hours, not when it was used. All of it in the interval after the glitch
                # was a morning's 159 L "in 30 min, a tap may be running"; that interval takes its share by time,
                # the rest is unknown with the glitch.
                baseline = total_l - max(total_l - baseline, 0.0) * (ts - suspect_ts) / (ts - self.last_ts)
            used = self._interval(suspect_ts, ts, total_l, offset, baseline=baseline)
            return [glitch, used]
        if self.limits.plausible(total_l - suspect_total, ts - suspect_ts):
            reset = Interval(self.meter_id, self.last_ts, suspect_ts, None, INTERVAL_RESET, offset)
            self.last_ts, self.last_total = suspect_ts, suspect_total
            return [reset, self._interval(suspect_ts, ts, total_l, offset)]
        # Still erratic: the whole stretch is unknown and the newest reading
        # becomes the baseline, so a broken register cannot stall the meter.
        unknown = Interval(self.meter_id, self.last_ts, ts, None, INTERVAL_RESET, offset)
        self.last_ts, self.last_total = ts, total_l
        return [unknown]

    def _interval(
        self, start: float, ts: float, total_l: float, offset: int, baseline: float | None = None
    ) -> Interval:
        usage = total_l - (self.last_total if baseline is None else baseline)
        if usage < 0:  # backward rounding jitter: no use, keep the higher level
            usage, total_l = 0.0, self.last_total
        seconds = ts - start
        status = INTERVAL_GAP if seconds > self._gap_line(seconds) else INTERVAL_OK
        self.last_ts, self.last_total = ts, total_l
        return Interval(self.meter_id, start, ts, usage, status, offset)

    def state(self) -> tuple[float | None, float, float | None, float, float, int]:
        """A compact checkpoint of this tracker (restored by :meth:`restore`)."""
        return (self.last_ts, self.last_total, self.suspect_ts, self.suspect_total, self.usual_s, self.young_intervals)

    def restore(
        self,
        state: tuple[float | None, float, float | None, float]
        | tuple[float | None, float, float | None, float, float]
        | tuple[float | None, float, float | None, float, float, int],
    ) -> None:
        """Take a checkpoint of :meth:`state`. One from before meters had a usual interval (or only a reading to
        start from) starts learning it as a new meter does; one from before new meters learned it faster has
        learned it (its meter is settled). One that is no such state (damaged, or not a tracker's) raises
        ``ValueError`` and changes nothing."""
        _check_state(state)
        self.last_ts, self.last_total, self.suspect_ts, suspect_total = state[:4]
        # Without a suspect its total is never read: the shared 0.0 instead of a float per meter.
        self.suspect_total = suspect_total if self.suspect_ts is not None else 0.0
        if len(state) > 4:
            self.usual_s = state[4]
            self.young_intervals = state[5] if len(state) > 5 else 0


def _check_state(state: object) -> None:
    """Raise ``ValueError`` unless ``state`` is a tracker's checkpoint: 4 to 6 numbers (the times may be None), or more
    from a newer release, whose first six are read."""
    if not isinstance(state, tuple) or len(state) < 4:
        raise ValueError(
            f"register state {type(state).__name__} of {len(state) if isinstance(state, tuple) else 0} values"
        )
    for i, value in enumerate(state[:6]):
        if not (isinstance(value, int | float) or (value is None and i in (0, 2))):
            raise ValueError(
                f"register state holds a {type(value).__name__} at {i}: not a checkpoint this tapwatch wrote"
            )
