"""Named leases: work that one worker at a time should do, taken over when its holder dies.

A lease is a row (name, owner, until). Claiming it is one conditional write,
so it is race-free on SQLite and PostgreSQL alike; a holder renews it each
time it works, and a holder that stops renewing loses it after ``ttl_s``.

Expiry is judged by the claimant's wall clock, which may have stepped back since the lease was set: a
lease that runs further ahead than a claim now could set it (``ttl_s`` plus ``CLOCK_SKEW_S`` for hosts whose
clocks differ) was set before such a step and is free. A step back cannot then keep a dead holder's lease
for the length of the step (an hour), only for what was left of it, at most ``ttl_s`` plus the skew.
"""

from __future__ import annotations

from sqlalchemy import Connection, update

from store.ops import insert_new
from store.schema import leases

#: How far ahead of this host's wall clock another holder's may run (NTP keeps them within milliseconds).
CLOCK_SKEW_S = 60.0


def claim(conn: Connection, name: str, owner: str, now: float, ttl_s: float) -> bool:
    """Take or renew lease ``name`` for ``owner`` until ``now + ttl_s``; False if someone else holds it."""
    expired = leases.c.until < now
    set_before_a_step_back = leases.c.until > now + ttl_s + CLOCK_SKEW_S
    renewed = conn.execute(
        update(leases)
        .where(leases.c.name == name, (leases.c.owner == owner) | expired | set_before_a_step_back)
        .values(owner=owner, until=now + ttl_s)
    )
    if renewed.rowcount == 1:
        return True
    return bool(insert_new(conn, leases, [{"name": name, "owner": owner, "until": now + ttl_s}]))
