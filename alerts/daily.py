"""The daily "平安" note: families who opt in hear once a day that the elder's water use has begun.

The Nagano (Sakaki town) practice: at the elder's first water use of the day,
the family gets one short message ("今天 07:12 已用水"). It is a comfort, not a
safety net: no note is ever the only sign of trouble (an elder who uses no
water gets no note, and the alert path raises ``no_activity`` as always).

Rules:

* only contacts with ``daily_note: true`` and a phone number get it, through
  the contact channels (``sms``); without such a channel nothing is queued;
* the use must be today's: the end of an ``ok`` interval with use, in the
  elder's local day, on the monitor's clock (a late batch of yesterday's
  readings sends nothing);
* at most once per elder and local day, also across restarts and workers: the
  ``daily_notes`` row (primary key elder + day) is written in the same
  transaction as the readings and the outbox jobs, with ``ON CONFLICT DO
  NOTHING``; only the batch that inserted the row queues the messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from alerts.events import EVENT_SOURCE, expire_jobs, family_text_renamed, iso
from alerts.messages import daily_note, local_day, local_day_end, retime_note
from core.domain import INTERVAL_OK, Interval
from store.ops import insert_new
from store.schema import OUTBOX_UNSENT, daily_notes, elders, outbox

#: Namespace of the notes' ids: one id per elder and local day, the same on every worker and after a restart. A day
#: is its date and its end: the same date in a time zone she had before is another day (its note may be queued).
_NOTE_NS = uuid.UUID("5b0f6a8e-2c1d-4d7e-9a51-0c6f3e2a7d10")
EVENT_TYPE = "org.tapwatch.daily.ok"
#: The outbox payload's key for the time after which a job must not be sent (:class:`alerts.sender.OutboxSender`).
VALID_UNTIL = "validuntil"
#: Why a note moved onto a day that had its note is not sent (its job expires with this reason).
_DAY_HAD_ITS_NOTE = "not sent: her time zone changed, and in it that day had its note already"


def day_window(now: float, utc_offset_s: int) -> tuple[float, float, str]:
    """``(start, end, date)`` of the local day holding ``now``: epoch seconds and ``YYYY-MM-DD``.

    >>> day_window(1_700_000_000.0, 8 * 3600)
    (1699977600.0, 1700064000.0, '2023-11-15')
    >>> day_window(1_700_000_000.0, -10 * 3600)[2]
    '2023-11-14'
    """
    local_midnight = (now + utc_offset_s) // 86400 * 86400
    start = local_midnight - utc_offset_s
    return start, start + 86400, datetime.fromtimestamp(local_midnight, UTC).date().isoformat()


@dataclass(slots=True, frozen=True)
class FirstUse:
    """Water use seen for an elder on a local day (the end of the interval that showed it)."""

    context: Mapping[str, Any]  # the meter's elder (elder_id, name, tz, ...)
    ts: float
    day: str
    until: float  # the end of that local day: the note says "today", so it is not sent after


def first_use_in(
    intervals: Iterable[Interval], start: float, end: float, utc_offset_s: int | None = None
) -> float | None:
    """End of the first ``ok`` interval with use that ends in ``(start, end]``, if any.

    One that ends at the day's first instant (its midnight) held the evening before's use.

    ``utc_offset_s``: the offset the window was computed with; an interval with another offset (the
    night the clocks change) is read at its own, so last evening's use is not today's.

    >>> x = Interval("m", 1_700_000_000.0 - 1800, 1_700_000_000.0, 3.0, INTERVAL_OK, 8 * 3600)
    >>> first_use_in([x], 1_699_977_600.0, 1_700_064_000.0)
    1700000000.0
    >>> first_use_in([x._replace(usage_l=0.0)], 1_699_977_600.0, 1_700_064_000.0) is None
    True
    >>> first_use_in([x], 1_700_064_000.0, 1_700_150_400.0) is None  # yesterday's use
    True
    >>> first_use_in([x], 1_700_000_000.0, 1_700_086_400.0) is None  # ends at midnight: the evening's use
    True
    """
    for interval in intervals:
        shift = 0 if utc_offset_s is None else interval.utc_offset_s - utc_offset_s
        if interval.status == INTERVAL_OK and (interval.usage_l or 0.0) > 0 and start < interval.end + shift <= end:
            return interval.end
    return None


class DailyNotes:
    """Queues the notes for one pipeline; remembers the days done so a day's later batches cost nothing."""

    def __init__(self, channels: Sequence[str], language: str = "zh") -> None:
        self.channels = tuple(channels)
        self.language = language
        # elder_id -> the end of the last local day handled (noted, or nobody opted in): its end, not its date, so
        # a day of her zone before a change of zone is not taken for the same date in her zone now (the marker is).
        self._done: dict[str, float] = {}
        self._days: dict[int, tuple[float, float, str]] = {}  # utc offset -> today's window, reused all day

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    def first_use(self, context: Mapping[str, Any], intervals: Sequence[Interval], now: float) -> FirstUse | None:
        """Today's first use among one message's intervals, unless this worker has handled the elder's day.

        On the ingest path for every message with use: an in-memory look-up and
        float comparisons once the day is known (no date arithmetic per interval).
        """
        if not intervals:
            return None
        offset = intervals[-1].utc_offset_s
        window = self._days.get(offset)
        if window is None or not window[0] <= now < window[1]:
            window = self._days[offset] = day_window(now, offset)
        start, end, day = window
        if self._done.get(str(context["elder_id"])) == end:
            return None
        ts = first_use_in(intervals, start, end, offset)
        return FirstUse(context, ts, day, end) if ts is not None else None

    def remember(self, uses: Iterable[FirstUse]) -> None:
        """After the batch committed: these days are done (before that, a rolled back batch must try again)."""
        for use in uses:
            self._done[str(use.context["elder_id"])] = use.until

    def queue(self, conn: Connection, uses: Sequence[FirstUse], now: float) -> int:
        """Write the day markers and queue one message per opted-in contact; returns the messages queued."""
        if not uses or not self.channels:
            return 0
        phones = _opted_in_phones(conn, [str(u.context["elder_id"]) for u in uses])
        uses = [u for u in uses if phones.get(str(u.context["elder_id"]))]
        if not uses:
            return 0
        rows = [{"elder_id": u.context["elder_id"], "day": u.day, "created_at": now} for u in uses]
        fresh = insert_new(conn, daily_notes, rows)  # another worker, or this one before a restart, got there first
        jobs: list[dict[str, Any]] = []
        for use in uses:
            elder_id = str(use.context["elder_id"])
            if (elder_id, use.day) not in fresh:
                continue
            text = daily_note(str(use.context.get("name") or ""), use.ts, use.context.get("tz"), self.language)
            note_id = str(uuid.uuid5(_NOTE_NS, f"{elder_id}/{use.day}/{use.until:.0f}"))
            # Good until her day ends in her zone: ``until`` is a day of 24 hours at the offset of its use, an
            # hour past her midnight on the night the clocks go forward ("today" read the next day).
            # (An interval's end is the last instant of its use: one ending at midnight was the day before's.)
            good_until = local_day_end(use.ts - 1, use.context.get("tz"))
            for i, phone in enumerate(phones[elder_id]):
                event = _event(note_id, i, elder_id, now, phone, text, good_until)
                jobs.extend(_job(note_id, elder_id, event, channel, now) for channel in self.channels)
        if jobs:
            conn.execute(insert(outbox), jobs)  # one bulk statement for the batch
        return len(jobs)


def _job(note_id: str, elder_id: str, event: Mapping[str, Any], channel: str, now: float) -> dict[str, Any]:
    """An outbox job in the elder's contact lane, after any alert message queued before it."""
    return {
        "alert_id": note_id,  # no alert row: the sender's "notified" bookkeeping finds nothing to change
        "event_seq": 0,
        "elder_id": elder_id,
        "notifier": channel,
        "idempotency_key": f"{event['id']}:{channel}",
        "payload": dict(event),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _event(
    note_id: str, i: int, elder_id: str, now: float, phone: str, text: str, until: float | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{note_id}:c{i}",
        "source": EVENT_SOURCE,
        "type": EVENT_TYPE,
        "subject": elder_id,
        "time": iso(now),
        "datacontenttype": "application/json",
        "data": {"to": phone, "text": text},
    }
    if until is not None:
        # Read by the sender, never sent (the gateway gets {to, text}): a note still undelivered when its day is
        # over is parked, not sent the next day as "today", before the elder has been seen using water that day.
        event[VALID_UNTIL] = until
    return event


def readdress_queued_notes(conn: Connection, elder_id: str, was: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Her notes not sent yet (pending, parked), written when she was registered as ``was`` (name, time zone),
    read as for ``now``: her name as put right, the time of her first use in her time zone now, and sent until
    the end of that day there (her family reads the hour as she lives it, "today" included).

    A use near midnight falls on another date in her new zone: its note's day marker moves with it (else that
    date could have two notes, and the note's old date none); a note whose new date has its note already is
    parked, not sent (:func:`_move_day_markers`)."""
    jobs = conn.execute(
        select(outbox.c.id, outbox.c.alert_id, outbox.c.payload, outbox.c.created_at)
        .where(outbox.c.elder_id == elder_id, outbox.c.status.in_(OUTBOX_UNSENT))
        .order_by(outbox.c.id)
    ).all()
    moved: dict[str, tuple[str, str, float]] = {}  # note id -> its date in her zone before, in it now, when queued
    for job in jobs:
        payload = retimed_note(job.payload, str(was["tz"]), str(now["tz"]))
        payload = renamed_note(payload, was.get("name"), now.get("name"))
        if payload != job.payload:
            conn.execute(update(outbox).where(outbox.c.id == job.id).values(payload=payload))
        day_was, day_now = _note_day(job.payload, was["tz"]), _note_day(payload, now["tz"])
        if day_was is not None and day_now is not None and day_was != day_now:
            moved[str(job.alert_id)] = (day_was, day_now, float(job.created_at))
    if moved:
        _move_day_markers(conn, elder_id, moved)


def _note_day(event: Mapping[str, Any], tz: str | None) -> str | None:
    """The local date a daily note is about (the day that ends when it stops being sent); None for other events."""
    until = event.get(VALID_UNTIL)
    if event.get("type") != EVENT_TYPE or until is None:
        return None
    return local_day(float(until) - 1.0, tz)


def _move_day_markers(conn: Connection, elder_id: str, moved: Mapping[str, tuple[str, str, float]]) -> None:
    """Each note's day marker from its old date to its new one; a note whose new date has a marker (its note, sent
    or queued) expires, not sent: her family heard that day already, and one note a day is the promise."""
    # Every old marker out first: notes that each move a day on (two queued, both near midnight) take each other's.
    olds = [old for old, _, _ in moved.values()]
    conn.execute(delete(daily_notes).where(daily_notes.c.elder_id == elder_id, daily_notes.c.day.in_(olds)))
    for note_id, (_, new, queued_at) in moved.items():
        if not insert_new(conn, daily_notes, [{"elder_id": elder_id, "day": new, "created_at": queued_at}]):
            # That date had its note (or a worker has just queued one): this one is not sent.
            unsent = (outbox.c.alert_id == note_id, outbox.c.status.in_(OUTBOX_UNSENT))
            expire_jobs(conn, *unsent, reason=_DAY_HAD_ITS_NOTE)


def renamed_note(event: Mapping[str, Any], was: str | None, now: str | None) -> dict[str, Any]:
    """``event``, if a daily note naming her ``was``, naming her ``now``; any other event as it is.

    >>> note = _event("n", 0, "E1", 0.0, "139", "【平安】王秀兰今天 06:13 已用水。", 1_700_064_000.0)
    >>> renamed_note(note, "王秀兰", "王秀英")["data"]["text"]
    '【平安】王秀英今天 06:13 已用水。'
    """
    return family_text_renamed(event, was, now) if event.get("type") == EVENT_TYPE else dict(event)


def retimed_note(event: Mapping[str, Any], was: str, now: str) -> dict[str, Any]:
    """``event``, if a daily note, telling its time in time zone ``now`` and valid until the end of that day there;
    any other event as it is.

    >>> note = _event("n", 0, "E1", 0.0, "139", "【平安】王秀兰今天 06:13 已用水。", 1_700_064_000.0)
    >>> moved = retimed_note(note, "Asia/Shanghai", "Asia/Urumqi")
    >>> moved["data"]["text"], moved[VALID_UNTIL]
    ('【平安】王秀兰今天 04:13 已用水。', 1700071200.0)
    """
    data, until = event.get("data"), event.get(VALID_UNTIL)
    if event.get("type") != EVENT_TYPE or until is None or not isinstance(data, Mapping) or was == now:
        return dict(event)
    found = retime_note(str(data.get("text") or ""), was, now, float(until))
    if found is None:
        return dict(event)
    text, day_end = found
    return {**event, "data": {**data, "text": text}, VALID_UNTIL: day_end}


def _opted_in_phones(conn: Connection, elder_ids: list[str]) -> dict[str, list[str]]:
    """Per elder, the phone numbers of contacts who asked for the daily note (each number once)."""
    rows = conn.execute(select(elders.c.elder_id, elders.c.contacts).where(elders.c.elder_id.in_(elder_ids)))
    phones: dict[str, list[str]] = {}
    for elder_id, contacts in rows:
        wanted = [
            str(c["phone"])
            for c in contacts or []
            if isinstance(c, Mapping) and c.get("daily_note") is True and c.get("phone")
        ]
        phones[elder_id] = list(dict.fromkeys(wanted))
    return phones
