"""Retention: personal data is kept only as long as it serves, and the store stays bounded.

Who lives alone and when they use water is sensitive (PIPL): readings older
than ``readings_retention_days`` leave the relational store (InfluxDB keeps
long history under its own retention policies, docs/influx.md), dead letters
(raw payloads) after ``dead_letter_retention_days``, and delivered alert jobs
(their payload names the elder) after ``delivered_retention_days``. Alerts,
their history and the audit log stay: they are the record of what was done
for whom. Parked and pending jobs are never purged: they are not delivered yet.

Readings go meter by meter along the ``(meter_id, ts)`` primary key, a chunk
of meters per transaction, so no statement scans the table or holds the
writers back for long. :func:`purge` is what the monitor runs every
``retention_check_hours`` (one worker at a time, under a lease) and what
``tapwatch purge`` runs once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Delete, Engine, delete, select

from core.settings import Settings
from store.schema import dead_letters, meters, outbox, readings
from store.versions import in_chunks

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of stored data is kept, in days."""

    readings_days: float = 400.0
    dead_letter_days: float = 90.0
    delivered_days: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            readings_days=settings.readings_retention_days,
            dead_letter_days=settings.dead_letter_retention_days,
            delivered_days=settings.delivered_retention_days,
        )


@dataclass(frozen=True, slots=True)
class Purged:
    """Rows removed by one :func:`purge`, per table."""

    readings: int = 0
    dead_letters: int = 0
    delivered: int = 0

    @property
    def total(self) -> int:
        return self.readings + self.dead_letters + self.delivered


def purge(engine: Engine, policy: RetentionPolicy, now: float, meters_per_transaction: int = 500) -> Purged:
    """Delete what ``policy`` no longer keeps, as of ``now``; returns how many rows went."""
    old_dead_letters = dead_letters.c.received_at < now - policy.dead_letter_days * DAY_S
    old_deliveries = (outbox.c.status == "sent") & (outbox.c.sent_at < now - policy.delivered_days * DAY_S)
    return Purged(
        readings=_purge_readings(engine, now - policy.readings_days * DAY_S, meters_per_transaction),
        dead_letters=_delete(engine, delete(dead_letters).where(old_dead_letters)),
        delivered=_delete(engine, delete(outbox).where(old_deliveries)),
    )


def _purge_readings(engine: Engine, cutoff: float, chunk: int) -> int:
    with engine.connect() as conn:
        meter_ids = sorted(conn.execute(select(meters.c.meter_id)).scalars())
    removed = 0
    for ids in in_chunks(meter_ids, chunk):
        removed += _delete(engine, delete(readings).where(readings.c.meter_id.in_(ids), readings.c.ts < cutoff))
    return removed


def _delete(engine: Engine, statement: Delete) -> int:
    with engine.begin() as conn:
        return int(conn.execute(statement).rowcount)
