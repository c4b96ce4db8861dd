"""Retention: personal data is kept only as long as it serves, and the store stays bounded.

Who lives alone and when they use water is sensitive (PIPL): readings older
than ``readings_retention_days`` leave the relational store (InfluxDB keeps
long history under its own retention policies, docs/influx.md), dead letters
(raw payloads) after ``dead_letter_retention_days``, and delivered alert jobs
(their payload names the elder) after ``delivered_retention_days``, with the
daily-note markers (each says on which day an elder first used water; they
guard only the day they were written for). A replaced meter's checkpoint (a copy of the routine its
successor carries on) leaves after ``personal_data_retention_days``. Login tokens leave once expired: each
sign-in stores one, refused after ``token_ttl_hours``, and kept they were a row per login for as long as the
district runs. Alerts,
their history and the audit log stay: they are the record of what was done
for whom. Parked and pending jobs are never purged for an elder still
monitored: they are not delivered yet.

An elder **retired**, or **without consent**, for ``personal_data_retention_days``
keeps only the record of what was done: their name becomes :data:`PURGED_NAME`,
building, room and contacts are emptied, their away windows (with their
reasons), learned routine (detector state), the thresholds set for her alone,
the findings a snooze holds for her (``held_findings``) and every alert job whose payload names them (parked,
pending or sent) are deleted, and the audit entries about
them lose the old and new values of those fields, the away windows' times, and
every reason written in them (why she was retired, why her thresholds changed,
why a parked job of hers was put back or dismissed, found by her id in the entry's ``old`` once the job is
gone: free text about her). Her points still waiting for InfluxDB (``influx_spool``) are
dropped, and she is queued in ``influx_deletions`` for the InfluxDB writer, which deletes her series there
(:mod:`timeseries.erase`). The elder id, community,
alerts and audit entries stay. When consent ended is read from the audit log
(the newest ``elder.update`` setting it false; registration if it never was true).

Readings go meter by meter along the ``(meter_id, ts)`` primary key, a chunk
of meters per transaction, so no statement scans the table or holds the
writers back for long; no transaction deletes more than :data:`ROWS_PER_TRANSACTION`
rows of a table (months to delete after a long stop, or a retention shortened).
:func:`purge` is what the monitor runs every ``retention_check_hours`` (one worker at a time, under a lease) and what
``tapwatch purge`` runs once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Delete,
    Engine,
    Text,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from core.settings import Settings
from store import audit
from store.linetags import tag_pair
from store.registry import lock_elder
from store.schema import (
    FINAL_UNSENT,
    alert_events,
    alerts,
    api_tokens,
    audit_log,
    away_windows,
    daily_notes,
    dead_letters,
    detector_state,
    elders,
    held_findings,
    influx_deletions,
    influx_spool,
    meters,
    outbox,
    readings,
    thresholds,
)
from store.versions import in_chunks, mark_changed

DAY_S = 86400.0
#: Rows one transaction of the purge deletes at most: on SQLite it holds the store's write lock, ingest waiting.
ROWS_PER_TRANSACTION = 10_000
#: What a purged elder's name becomes (the column may not be empty; lists still show the row).
PURGED_NAME = "(已清除)"
#: What a purged value becomes wherever it is kept (audit entries, searches, cadres' notes on her cases).
PURGED = "(purged)"
#: Elder fields that identify or locate a person; purged, and scrubbed from audit entries.
PERSONAL_FIELDS = ("name", "building", "room", "contacts")
#: Audit entries of away windows (api.routes.away) and the fields in them that go with the windows.
AWAY_ACTIONS = ("away.create", "away.delete")
AWAY_FIELDS = ("start", "end")
#: Audit entries of an operator's move of a parked job (alerts.queries), naming the job's elder in ``old``.
DELIVERY_ACTIONS = ("delivery.requeue", "delivery.dismiss")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of stored data is kept, in days."""

    readings_days: float = 400.0
    dead_letter_days: float = 90.0
    delivered_days: float = 30.0
    personal_days: float = 90.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            readings_days=settings.readings_retention_days,
            dead_letter_days=settings.dead_letter_retention_days,
            delivered_days=settings.delivered_retention_days,
            personal_days=settings.personal_data_retention_days,
        )


@dataclass(frozen=True, slots=True)
class Purged:
    """Rows removed by one :func:`purge`, per table."""

    readings: int = 0
    dead_letters: int = 0
    delivered: int = 0
    elders: int = 0  # elders whose personal data was purged
    daily_notes: int = 0
    tokens: int = 0  # login tokens past their expiry
    checkpoints: int = 0  # of meters retired (replaced) for the personal data's retention

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in self.__slots__)


def purge(engine: Engine, policy: RetentionPolicy, now: float, meters_per_transaction: int = 500) -> Purged:
    """Delete what ``policy`` no longer keeps, as of ``now``; returns how many rows went."""
    old_dead_letters = dead_letters.c.received_at < now - policy.dead_letter_days * DAY_S
    delivered_before = now - policy.delivered_days * DAY_S
    old_deliveries = ((outbox.c.status == "sent") & (outbox.c.sent_at < delivered_before)) | (
        outbox.c.status.in_(FINAL_UNSENT) & (outbox.c.created_at < delivered_before)
    )
    # A marker guards the at-most-once promise of its own local day only; two days cover every time zone.
    old_notes = daily_notes.c.created_at < now - max(policy.delivered_days, 2.0) * DAY_S
    # A meter replaced handed its routine to the new one (engine.meterstate.carry_routine) and is never loaded
    # again: its checkpoint is only a copy of her routine, kept as her other personal data is.
    retired_meters = select(meters.c.meter_id).where(meters.c.retired_at < now - policy.personal_days * DAY_S)
    return Purged(
        readings=_purge_readings(engine, now - policy.readings_days * DAY_S, meters_per_transaction),
        dead_letters=_delete_bounded(engine, (dead_letters.c.id,), old_dead_letters),
        delivered=_delete_bounded(engine, (outbox.c.id,), old_deliveries),
        elders=purge_personal_data(engine, now - policy.personal_days * DAY_S, now),
        daily_notes=_delete(engine, delete(daily_notes).where(old_notes)),
        # Refused from their expiry on (api.security); an API key has none and stays until revoked.
        tokens=_delete(engine, delete(api_tokens).where(api_tokens.c.expires_at < now)),
        checkpoints=_delete(engine, delete(detector_state).where(detector_state.c.meter_id.in_(retired_meters))),
    )


def _purge_readings(engine: Engine, cutoff: float, chunk: int) -> int:
    with engine.connect() as conn:
        meter_ids = sorted(conn.execute(select(meters.c.meter_id)).scalars())
    removed = 0
    for ids in in_chunks(meter_ids, chunk):
        key = (readings.c.meter_id, readings.c.ts)
        removed += _delete_bounded(engine, key, readings.c.meter_id.in_(ids) & (readings.c.ts < cutoff))
    return removed


def _delete_bounded(engine: Engine, key: tuple[Column[Any], ...], where: ColumnElement[bool]) -> int:
    """Delete the rows of ``key``'s table that ``where`` picks, :data:`ROWS_PER_TRANSACTION` at a time.

    The first pass after months down, or after a retention was shortened, has months to delete at once.
    """
    table = key[0].table
    picked = select(*key).where(where).limit(ROWS_PER_TRANSACTION)
    removed = 0
    while True:
        done = _delete(engine, delete(table).where((tuple_(*key) if len(key) > 1 else key[0]).in_(picked)))
        removed += done
        if done < ROWS_PER_TRANSACTION:
            return removed


def _delete(engine: Engine, statement: Delete) -> int:
    with engine.begin() as conn:
        return int(conn.execute(statement).rowcount)


def purge_personal_data(engine: Engine, cutoff: float, now: float) -> int:
    """Purge the personal data of elders retired, or without consent, since before ``cutoff``; returns how many."""
    with engine.connect() as conn:
        due = _elders_due(conn, cutoff)
        # Read once, before any elder's row is taken (on SQLite, the store's write lock: ingest waits for it).
        searches = Searches.read(conn) if due else Searches()
    purged = 0
    for elder_id in due:
        with engine.begin() as conn:
            # Another purge (the monitor's while `tapwatch purge` runs) may have found her due too: her row is
            # taken, then she is looked at again, and only one of them purges her (one elder.purge entry).
            lock_elder(conn, elder_id)
            if _elders_due(conn, cutoff, elder_id):
                _purge_elder(conn, elder_id, now, searches)
                purged += 1
    return purged


def _elders_due(conn: Connection, cutoff: float, only: str | None = None) -> list[str]:
    """The elders (or only the one named ``only``) whose personal data is due to be purged."""
    # Not by the name: an elder purged, who consented again and withdrew again (or was retired), still bears the
    # purged name, but whatever was recorded about her since (address, contacts, routine) is due after this too.
    one = [elders.c.elder_id == only] if only is not None else []
    retired = conn.execute(
        select(elders.c.elder_id, elders.c.name, elders.c.retired_at).where(
            elders.c.retired_at.is_not(None), elders.c.retired_at < cutoff, *one
        )
    ).all()
    withdrawn = conn.execute(
        select(elders.c.elder_id, elders.c.created_at).where(elders.c.consent.is_(False), *one)
    ).all()
    last_purged = _last_purges(conn, {row.elder_id for row in retired} | {row.elder_id for row in withdrawn})
    due = set()
    for elder_id, name, retired_at in retired:
        purged = last_purged.get(f"elder:{elder_id}")
        if purged < retired_at if purged is not None else name != PURGED_NAME:
            due.add(elder_id)
    for elder_id, created_at in withdrawn:
        ended = _consent_ended_at(conn, elder_id, created_at)
        purged = last_purged.get(f"elder:{elder_id}")
        if ended < cutoff and (purged is None or purged < ended):
            due.add(elder_id)
    return sorted(due)


def _last_purges(conn: Connection, elder_ids: set[str]) -> dict[str, float]:
    """When each of these elders was last purged, by target (``elder:<id>``): read from their own audit entries
    (the target and action index), not from the whole log, which grows with every list read."""
    last: dict[str, float] = {}
    for ids in in_chunks(sorted(elder_ids)):
        last.update(
            conn.execute(
                select(audit_log.c.target, func.max(audit_log.c.at))
                .where(audit_log.c.target.in_([f"elder:{elder_id}" for elder_id in ids]))
                .where(audit_log.c.action == "elder.purge")
                .group_by(audit_log.c.target)
            ).all()
        )
    return last


def _consent_ended_at(conn: Connection, elder_id: str, created_at: float) -> float:
    """When consent was last withdrawn, by the audit log; the registration time if it never was given."""
    rows = conn.execute(
        select(audit_log.c.at, audit_log.c.new)
        .where(audit_log.c.action == "elder.update", audit_log.c.target == f"elder:{elder_id}")
        .order_by(audit_log.c.at.desc())
    ).all()
    for at, new in rows:
        if isinstance(new, dict) and new.get("consent") is False:
            return float(at)
    return float(created_at)


def _purge_elder(conn: Connection, elder_id: str, now: float, searches: Searches) -> None:
    meter_ids = list(conn.execute(select(meters.c.meter_id).where(meters.c.elder_id == elder_id)).scalars())
    job_ids = conn.execute(select(outbox.c.id).where(outbox.c.elder_id == elder_id)).scalars()
    jobs = [f"outbox:{job_id}" for job_id in job_ids]  # as their requeues and dismissals name them
    name = conn.execute(select(elders.c.name).where(elders.c.elder_id == elder_id)).scalar() or ""
    searches.scrub(conn, name)
    conn.execute(
        update(elders).where(elders.c.elder_id == elder_id).values(name=PURGED_NAME, building="", room="", contacts=[])
    )
    conn.execute(delete(away_windows).where(away_windows.c.elder_id == elder_id))
    conn.execute(delete(outbox).where(outbox.c.elder_id == elder_id))  # payloads name the elder
    conn.execute(delete(daily_notes).where(daily_notes.c.elder_id == elder_id))  # when they rose, day by day
    conn.execute(delete(detector_state).where(detector_state.c.meter_id.in_(meter_ids)))
    _drop_spooled_points(conn, elder_id)
    # InfluxDB may be down now: the writer deletes her series there once it answers (timeseries.erase)
    conn.execute(insert(influx_deletions).values(elder_id=elder_id, meter_ids=meter_ids, created_at=now))
    # A silence a snooze muted, held until the snooze's end (up to a year on): when her home stood silent.
    conn.execute(delete(held_findings).where(held_findings.c.elder_id == elder_id))
    # Thresholds set for her alone were tuned to her habits ("she sleeps late"); her routine goes, and so do they.
    conn.execute(delete(thresholds).where(thresholds.c.scope == "elder", thresholds.c.scope_id == elder_id))
    _scrub_audit(conn, elder_id)
    _scrub_delivery_reasons(conn, elder_id, jobs)
    _scrub_case_notes(conn, elder_id)
    # Her data gone, a search for her audited meanwhile (before her own purge entry: not read again).
    searches.scrub_since(conn, name)
    audit.record(
        conn,
        actor="retention",
        action="elder.purge",
        target=f"elder:{elder_id}",
        community=conn.execute(select(elders.c.community).where(elders.c.elder_id == elder_id)).scalar(),
        new={
            "purged": [
                *PERSONAL_FIELDS,
                "away_windows",
                "alert_jobs",
                "routine",
                "held_findings",
                "thresholds",
                "daily_notes",
                "case_notes",
                "influx_spool",
                "influx_series",
            ]
        },
        at=now,
    )
    mark_changed(conn, meter_ids)  # a worker holding the meter's state drops it


def _drop_spooled_points(conn: Connection, elder_id: str) -> None:
    """Her points still waiting for InfluxDB (``influx_spool``: a backlog while it was down) would be written after
    the purge, outliving it: they go with it. A spool row holds one meter message's readings and findings, tagged
    with her elder id (tags sorted: ``elder_id`` is followed by another tag or by the fields)."""
    pair = tag_pair("elder_id", elder_id)
    tags = (f",{pair},", f",{pair} ")
    tagged = or_(*(influx_spool.c.lines.contains(tag, autoescape=True) for tag in tags))
    # SQLite's LIKE ignores ASCII case, and elder ids do not ('e1' is another elder than 'E1'): her rows among those
    # it found, by the text itself, or another elder's points bound for InfluxDB were dropped with hers.
    found = conn.execute(select(influx_spool.c.id, influx_spool.c.lines).where(tagged)).all()
    ids = [row.id for row in found if any(tag in row.lines for tag in tags)]
    for chunk in in_chunks(ids):
        conn.execute(delete(influx_spool).where(influx_spool.c.id.in_(chunk)))


def _scrub_audit(conn: Connection, elder_id: str) -> None:
    """Audit entries about the elder keep who did what and when, not the name, address or contacts, nor an away
    window's times (when the home stood empty: the windows are deleted), nor any reason: why she was retired, away or
    her thresholds changed is free text about her ("moved in with her son in Pudong", "falls at night")."""
    rows = conn.execute(
        select(audit_log.c.id, audit_log.c.action, audit_log.c.old, audit_log.c.new, audit_log.c.reason).where(
            audit_log.c.target == f"elder:{elder_id}"
        )
    ).all()
    for row in rows:
        away = row.action in AWAY_ACTIONS
        fields = (*PERSONAL_FIELDS, *AWAY_FIELDS) if away else PERSONAL_FIELDS
        old, new = _scrubbed(row.old, fields), _scrubbed(row.new, fields)
        reason = PURGED if row.reason else row.reason
        if (old, new, reason) != (row.old, row.new, row.reason):
            conn.execute(update(audit_log).where(audit_log.c.id == row.id).values(old=old, new=new, reason=reason))


def _scrub_delivery_reasons(conn: Connection, elder_id: str, jobs: list[str]) -> None:
    """Why a parked job of hers was put back or dismissed ("told her son on 139..."): the job, naming her, is deleted
    with her data; the entry keeps who did it and when. The entry names the job, and her id in ``old`` (a job sent
    or dismissed leaves after ``delivered_days``, before her purge); entries written before they named her are
    found by the jobs still kept."""
    for targets in in_chunks(jobs):
        conn.execute(
            update(audit_log).where(audit_log.c.target.in_(targets), audit_log.c.reason != "").values(reason=PURGED)
        )
    entries = conn.execute(
        select(audit_log.c.id, audit_log.c.old).where(
            audit_log.c.action.in_(DELIVERY_ACTIONS),
            audit_log.c.reason != "",
            cast(audit_log.c.old, Text).contains(elder_id, autoescape=True),  # the JSON text names her id
        )
    ).all()
    ids = [row.id for row in entries if isinstance(row.old, dict) and row.old.get("elder_id") == elder_id]
    for chunk in in_chunks(ids):
        conn.execute(update(audit_log).where(audit_log.c.id.in_(chunk)).values(reason=PURGED))


def _scrub_case_notes(conn: Connection, elder_id: str) -> None:
    """What cadres wrote on her cases ("fell in the bathroom, taken to Ruijin"): on the case, in its history and
    in the audit entry of each resolve or acknowledgement. Who did what, when, and the outcome stay."""
    conn.execute(update(alerts).where(alerts.c.elder_id == elder_id, alerts.c.note != "").values(note=PURGED))
    alert_ids = list(conn.execute(select(alerts.c.alert_id).where(alerts.c.elder_id == elder_id)).scalars())
    for ids in in_chunks(alert_ids):
        events = conn.execute(select(alert_events.c.id, alert_events.c.data).where(alert_events.c.alert_id.in_(ids)))
        for row in events.all():
            if isinstance(row.data, dict) and row.data.get("note"):
                conn.execute(
                    update(alert_events).where(alert_events.c.id == row.id).values(data={**row.data, "note": PURGED})
                )
        conn.execute(
            update(audit_log)
            .where(audit_log.c.target.in_([f"alert:{a}" for a in ids]), audit_log.c.reason != "")
            .values(reason=PURGED)
        )


#: The audit entries of searches in the elders list: each list call is audited with its filters (api.deps), a
#: search's text under "q" (the JSON text names the key).
_SEARCHES = (
    audit_log.c.action == "list.read",
    audit_log.c.target == "/elders",
    cast(audit_log.c.new, Text).like('%"q"%'),
)


@dataclass(slots=True)
class Searches:
    """List calls that searched for a name (``GET /elders?q=``): the search box sends each part of a name as it is
    typed. A search for any part of a purged elder's name loses it.

    Every list call is audited (each dashboard load lists the elders), for good: those of one pass of the purge
    are read once, before any elder's row is taken, and each elder's transaction reads only those audited since,
    before her purge and again after it (a search for her while she was purged).
    Reading them all in each (on SQLite, under the store's write lock) held ingest a second per elder purged
    for each million list calls kept.
    """

    found: dict[int, Any] = field(default_factory=dict)  # entry id -> its filters (``new``)
    read_up_to: int = 0  # the newest entry id read

    @classmethod
    def read(cls, conn: Connection) -> Searches:
        searches = cls(read_up_to=conn.execute(select(func.max(audit_log.c.id))).scalar() or 0)
        searches._read(conn, audit_log.c.id <= searches.read_up_to)
        return searches

    def scrub(self, conn: Connection, name: str) -> None:
        """In the elder's transaction, before her purge: the searches for any part of ``name`` lose it."""
        self._catch_up(conn)
        self._scrub_among(conn, name, self.found)

    def scrub_since(self, conn: Connection, name: str) -> None:
        """In the elder's transaction, after her purge: the searches audited while it ran (her row's lock holds no
        list call off on PostgreSQL) lose ``name`` too. Only those are looked at, read by id range."""
        self._scrub_among(conn, name, self._catch_up(conn))

    def _catch_up(self, conn: Connection) -> dict[int, Any]:
        """Read the searches audited since the last read (ids above it: the primary key's range); returns them."""
        newest = conn.execute(select(func.max(audit_log.c.id))).scalar() or 0
        if newest <= self.read_up_to:
            return {}
        since = self._read(conn, audit_log.c.id > self.read_up_to, audit_log.c.id <= newest)
        self.read_up_to = newest
        return since

    def _scrub_among(self, conn: Connection, name: str, entries: dict[int, Any]) -> None:
        if not name.strip() or name == PURGED_NAME:
            return
        folded = name.casefold()
        for entry_id, filters in entries.items():
            typed = filters.get("q")
            parts = typed if isinstance(typed, list) else [typed]
            if any(isinstance(p, str) and p.strip() and p.strip().casefold() in folded for p in parts):
                # Kept as written for the next elders of the pass (a transaction that fails ends the pass).
                self.found[entry_id] = filters = {**filters, "q": PURGED}
                conn.execute(update(audit_log).where(audit_log.c.id == entry_id).values(new=filters))

    def _read(self, conn: Connection, *which: ColumnElement[bool]) -> dict[int, Any]:
        rows = conn.execute(select(audit_log.c.id, audit_log.c.new).where(*_SEARCHES, *which))
        read = {row.id: row.new for row in rows if isinstance(row.new, dict) and "q" in row.new}
        self.found.update(read)
        return read


def _scrubbed(values: Any, fields: tuple[str, ...]) -> Any:
    if not isinstance(values, dict):
        return values
    return {k: (PURGED if k in fields else v) for k, v in values.items()}
