"""Named leases: work that one worker at a time should do, taken over when its holder dies.

A lease is a row (name, owner, until). Claiming it is one conditional write,
so it is race-free on SQLite and PostgreSQL alike; a holder renews it each
time it works, and a holder that stops renewing loses it after ``ttl_s``.

Expiry is judged by the claimant's wall clock, which may have stepped back since the lease was set. A
claimant that has just seen its clock step back (``after_step_back``) may take a lease that runs further
ahead than a claim now could set it (``ttl_s`` plus ``CLOCK_SKEW_S`` for hosts whose clocks differ): it was
set before the step, so a dead holder's lease does not hold for the length of the step (an hour). Only such a
claimant: a host whose clock merely runs behind another's would otherwise take a live holder's lease at every
pass, and the two would hold it in turn.
"""

from __future__ import annotations

from sqlalchemy import Connection, update

from store.ops import insert_new
from store.schema import leases

#: How far ahead of this host's wall clock another holder's may run (NTP keeps them within milliseconds).
CLOCK_SKEW_S = 60.0


def claim(conn: Connection, name: str, owner: str, now: float, ttl_s: float, after_step_back: bool = False) -> bool:
    """Take or renew lease ``name`` for ``owner`` until ``now + ttl_s``; False if someone else holds it.

    ``after_step_back``: the claimant's clock has just stepped back, so a lease set further ahead than
    ``ttl_s`` (and the hosts' skew) was set on the clock before the step, and is free.
    """
    free = leases.c.until < now
    if after_step_back:
        free |= leases.c.until > now + ttl_s + CLOCK_SKEW_S
    renewed = conn.execute(
        update(leases)
        .where(leases.c.name == name, (leases.c.owner == owner) | free)
        .values(owner=owner, until=now + ttl_s)
    )
    if renewed.rowcount == 1:
        return True
    return bool(insert_new(conn, leases, [{"name": name, "owner": owner, "until": now + ttl_s}]))
