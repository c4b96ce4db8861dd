"""Per-meter state versions in the store: how a change reaches every worker's cache.

Each worker caches meters' detector state and checks the stored ``meters.state_version``
before using one (:mod:`engine.meterstate`). A change that must reach every
worker (a threshold, an away window, a registry edit) moves the version on in
its own transaction: every cached copy is then stale and is reloaded, with the
new settings, before its next use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import Connection, update

from store.schema import meters


def mark_changed(conn: Connection, meter_ids: Iterable[str] | None = None) -> None:
    """Move the stored versions of ``meter_ids`` (all meters when None) on, in the caller's transaction.

    A worker's unsaved state is not lost: the reload replays the readings stored since its checkpoint.
    """
    bump = update(meters).values(state_version=meters.c.state_version + 1)
    if meter_ids is None:
        conn.execute(bump)
        return
    for chunk in in_chunks(sorted(set(meter_ids))):
        conn.execute(bump.where(meters.c.meter_id.in_(chunk)))


def in_chunks(meter_ids: list[str], size: int = 500) -> Iterator[list[str]]:
    """Slices of ``meter_ids`` small enough for an ``IN`` list on any database.

    >>> [len(c) for c in in_chunks([str(k) for k in range(1200)])]
    [500, 500, 200]
    """
    for start in range(0, len(meter_ids), size):
        yield meter_ids[start : start + size]
