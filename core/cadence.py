"""A meter's cadence: the interval it usually reports at, learned from its readings.

The register draws its gap line on it (:mod:`ingest.register`) and the monitor its offline line
(:mod:`detect.monitor`), from the same intervals by the same rule, so live, replay and the backtest agree; the
devices page (:mod:`api.routes.devices`) draws the offline line with :func:`offline_line` too, on the usual interval
the monitor stored with the meter's newest reading (``meters.usual_interval_s``).
Meters are meant to report every half hour; an NB-IoT meter that saves its battery reports every 3 or 6 h,
and against fixed lines all its intervals were gaps and it was offline before every reading.
"""

from __future__ import annotations

#: Longer intervals know the volume, not the timing: a gap (``ingest.register.RegisterLimits.gap_s``).
GAP_S = 3 * 3600.0
#: An interval is a gap when longer than ``RegisterLimits.gap_s`` and than this many of the meter's usual interval:
#: an NB-IoT meter that saves its battery reports every 3 or 6 h, and against 3 h alone all its intervals were gaps.
GAP_USUAL = 2.5
#: Each reading lets a settled meter's usual interval (its shortest lately) grow this much: one long interval (an
#: outage, readings lost) moves it little. A half-hourly or hourly meter takes it back at its next reading on time
#: and keeps the 3 h line (2.5 x 1.2 h): an hourly one would need seven late intervals in a row to move it.
USUAL_GROWTH = 1.03
#: A new meter's first this many intervals take its usual interval up to themselves at once: from the start (1.2 h)
#: at 3% a reading a 6-hourly meter took 24 readings (six days) to have intervals that are no gaps and some 33 to have
#: its offline line past 6 h, offline before every reading until then. Now its first interval teaches it: no gap and
#: no offline from its third reading. Three, not one: an installer's test reading minutes after the first is followed
#: by the meter's own interval, taken whole again. A half-hourly or hourly meter's first intervals are shorter than
#: the start, which they take down; one longer among them (an outage in its first hours) is taken whole, and its next
#: readings on time take it back by halves (below), a few readings with looser lines.
NEW_INTERVALS = 3
#: A shorter interval takes the usual one down to itself, by half at most each reading, while the meter is young (its
#: first ``YOUNG_INTERVALS``: an outage among its first intervals, taken whole, is undone in a few readings). After,
#: by at most ``SHRINK_SPANS`` times its own length too: an NB-IoT meter sends a reading of its own on an alarm (a
#: leak, a tamper), minutes after another, and halving on each let a burst of five alarm readings take a settled
#: 6-hourly meter to 11 min, every interval a gap and the meter offline before every reading for a month as it grew
#: back 3% a reading. Minutes of readings now take minutes off. A settled meter whose cadence really quickens gets
#: there in a few hours (6 h to 30 min: 6 readings); a half-hourly or hourly meter
#: stays under ``FIRST_USUAL_S``, where its lines are the fixed ones, whatever it does. (A shorter interval of a
#: quarter of the usual one or more halves it, young or settled, as before.)
YOUNG_INTERVALS = 12
SHRINK_SPANS = 2.0


def next_usual(usual: float, seconds: float, young: int = 0) -> float:
    """A meter's usual interval after an interval of ``seconds``; ``young``: how many of the meter's first
    ``YOUNG_INTERVALS`` are still to come, this one included (0: a settled meter).

    Down to a shorter one by half at most (a settled meter's by ``SHRINK_SPANS`` times it at most too); up by
    ``USUAL_GROWTH`` at most towards a longer one, or all the way for one of its first ``NEW_INTERVALS``.
    ``RegisterTracker.push`` and ``MeterMonitor.update`` inline it (keep the three the same).

    >>> next_usual(1800.0, 900.0), next_usual(21600.0, 23760.0), next_usual(3600.0, 3700.0)
    (900.0, 22248.0, 3700.0)
    >>> next_usual(21600.0, 60.0), next_usual(21600.0, 60.0, young=5)  # an alarm's reading a minute after another
    (21480.0, 10800.0)
    >>> next_usual(FIRST_USUAL_S, 21600.0), next_usual(FIRST_USUAL_S, 21600.0, young=YOUNG_INTERVALS)
    (4449.6, 21600.0)
    """
    if seconds < usual:
        shrunk = usual * 0.5 if young else usual - SHRINK_SPANS * seconds
        if shrunk < usual * 0.5:
            shrunk = usual * 0.5
        return seconds if seconds > shrunk else shrunk
    if young > YOUNG_INTERVALS - NEW_INTERVALS:
        return seconds
    grown = usual * USUAL_GROWTH
    return seconds if seconds < grown else grown


#: The usual interval (s) a meter is taken to have before its readings teach it: 2.5 x it is the default gap line.
FIRST_USUAL_S = GAP_S / GAP_USUAL


#: A meter is offline when silent longer than ``offline_hours`` and than this many of its usual intervals: a meter
#: that saves its battery by reporting every 6 h was offline before every reading against 6 h alone. 2.5: two
#: readings missed, and half an interval's slack for a late third, before maintenance goes out (15 h for a 6-hourly
#: meter, 7.5 h for a 3-hourly one). A half-hourly or hourly meter's usual interval is at most ``FIRST_USUAL_S``
#: (the start, taken back at its next reading on time): it keeps ``offline_hours`` exactly, as before (2.5 x 1.2 h =
#: 3 h is under the default 6 h anyway; at 1.2 h or less the cadence is not looked at, so an operator's 1 h stays
#: 1 h on them).
OFFLINE_USUAL = 2.5


def offline_line(offline_s: float, usual_s: float | None) -> float:
    """How long (s) a meter may be silent before it is offline: ``offline_s`` (the elder's ``offline_hours``), or
    ``OFFLINE_USUAL`` of its usual interval when that is longer and the meter slower than ``FIRST_USUAL_S``.

    The monitor's tick and replay (:mod:`detect.monitor`) and the devices page draw it here, so a meter the page
    shows offline is one detection has found offline. ``usual_s`` None: a meter with no usual interval learned.

    >>> offline_line(6 * 3600.0, 1800.0) / 3600, offline_line(3600.0, 3600.0) / 3600
    (6.0, 1.0)
    >>> offline_line(6 * 3600.0, 6 * 3600.0) / 3600, offline_line(6 * 3600.0, None) / 3600
    (15.0, 6.0)
    """
    if usual_s is None or usual_s <= FIRST_USUAL_S:
        return offline_s
    on_cadence = OFFLINE_USUAL * usual_s
    return on_cadence if on_cadence > offline_s else offline_s
