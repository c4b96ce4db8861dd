"""Named leases: work that one worker at a time should do, taken over when its holder dies.

A lease is a row (name, owner, until). Claiming it is one conditional write,
so it is race-free on SQLite and PostgreSQL alike; a holder renews it each
time it works, and a holder that stops renewing loses it after ``ttl_s``.
"""

from __future__ import annotations

from sqlalchemy import Connection, update

from store.ops import insert_new
from store.schema import leases


def claim(conn: Connection, name: str, owner: str, now: float, ttl_s: float) -> bool:
    """Take or renew lease ``name`` for ``owner`` until ``now + ttl_s``; False if someone else holds it."""
    renewed = conn.execute(
        update(leases)
        .where(leases.c.name == name, (leases.c.owner == owner) | (leases.c.until < now))
        .values(owner=owner, until=now + ttl_s)
    )
    if renewed.rowcount == 1:
        return True
    return bool(insert_new(conn, leases, [{"name": name, "owner": owner, "until": now + ttl_s}]))
