"""Registry queries shared by ingest, the API and the CLI: elders, meters, thresholds, away windows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, insert, select, update

from core.settings import get_settings
from core.thresholds import Thresholds
from store import audit
from store.ops import insert_new
from store.schema import away_windows, detector_state, elders, leases, meters, thresholds

ELDER_FIELDS = (
    "name",
    "district",
    "street",
    "community",
    "grid",
    "building",
    "room",
    "tz",
    "consent",
    "contacts",
)


class RegistryError(ValueError):
    """A registry change that conflicts with what is stored."""


def register_elder(
    conn: Connection, elder: Mapping[str, Any], meter_id: str, now: float, *, default_tz: str | None = None
) -> None:
    """Store a new elder with their meter; refuses ids already in use.

    An elder given no time zone gets ``default_tz`` (else ``TAPWATCH_TIMEZONE``), stored with her:
    a later change of the setting does not move the local time of elders already registered.
    """
    if conn.execute(select(elders.c.elder_id).where(elders.c.elder_id == elder["elder_id"])).first():
        raise RegistryError(f"elder {elder['elder_id']!r} already exists")
    require_new_meter(conn, meter_id)
    row = {k: elder[k] for k in ELDER_FIELDS if k in elder and elder[k] is not None}
    if "tz" not in row:  # not the column's default: that is Shanghai, whatever the district set
        row["tz"] = default_tz or get_settings().timezone
    conn.execute(insert(elders).values(elder_id=elder["elder_id"], created_at=now, **row))
    conn.execute(insert(meters).values(meter_id=meter_id, elder_id=elder["elder_id"], installed_at=now))


def lock_elder(conn: Connection, elder_id: str) -> None:
    """Wait for any other change of the elder to commit, and hold the others off until this one does.

    Taken before her row is read: a change that read it first, then waited for another (two moves at once),
    worked from what it read, and audited her second move as one from the community she had already left.
    Writing her row takes its lock on PostgreSQL and the write lock on SQLite.
    """
    conn.execute(update(elders).where(elders.c.elder_id == elder_id).values(elder_id=elders.c.elder_id))


class Upserted(NamedTuple):
    """What :func:`upsert_elder` did: ``changed`` None for a new elder, else the fields that changed (``{}``: none);
    ``was`` her registration before the change (None for a new elder)."""

    changed: dict[str, Any] | None
    was: dict[str, Any] | None


def upsert_elder(
    conn: Connection,
    elder: Mapping[str, Any],
    meter_id: str,
    now: float,
    *,
    actor: str = "cli:register",
    reason: str = "tapwatch register",
) -> Upserted:
    """Register a new elder with their meter, or bring a registered one up to ``elder``.

    Returns what changed and her registration before (:class:`Upserted`), read once her row is locked. Raises
    :class:`RegistryError` for a meter registered to someone else, a retired elder, an elder
    whose active meter is another (a replacement is its own operation: it carries the routine over),
    or a move to a community whose thresholds clash with her own.
    The caller validates ``elder`` first (the API's model), audits the change in the elder's
    community, moves the meter's state version on and, on a move or a new door, her open alerts with her
    (``AlertManager.elder_changed``, a floor above: each moved case is an event); a move is also audited
    here, as ``actor``, in the community she left.
    """
    lock_elder(conn, elder["elder_id"])  # then read: a move committed meanwhile is seen, and audited from there
    row = conn.execute(select(elders).where(elders.c.elder_id == elder["elder_id"])).first()
    if row is None:
        owner = conn.execute(select(meters.c.elder_id).where(meters.c.meter_id == meter_id)).scalar()
        if owner is not None:
            raise RegistryError(f"meter {meter_id!r} is already registered to elder {owner!r}")
        register_elder(conn, elder, meter_id, now)
        return Upserted(None, None)
    if row.retired_at is not None:
        raise RegistryError(f"elder {elder['elder_id']!r} is retired")
    active = conn.execute(
        select(meters.c.meter_id).where(meters.c.elder_id == elder["elder_id"], meters.c.retired_at.is_(None))
    ).scalar()
    if active != meter_id:
        raise RegistryError(
            f"elder {elder['elder_id']!r} has meter {active!r}, not {meter_id!r}: "
            "replace a meter with POST /elders/{elder_id}/meter"
        )
    stored = row._mapping
    changed = {k: elder[k] for k in ELDER_FIELDS if k in elder and elder[k] is not None and stored[k] != elder[k]}
    if changed.get("consent") is False:  # the API's PATCH also closes the elder's open alerts
        raise RegistryError(f"elder {elder['elder_id']!r}: withdraw consent with PATCH /elders/{{elder_id}}")
    if "community" in changed:
        require_fitting_thresholds(conn, elder["elder_id"], changed["community"])
    if changed:
        conn.execute(update(elders).where(elders.c.elder_id == elder["elder_id"]).values(**changed))
        if "community" in changed:  # as PATCH /elders does: the community she left sees where she went
            audit.record(
                conn,
                actor=actor,
                action="elder.update",
                target=f"elder:{elder['elder_id']}",
                community=stored["community"],
                old={"community": stored["community"]},
                new={"community": changed["community"]},
                reason=reason,
                at=now,
            )
        if "consent" in changed:
            set_consent(conn, elder["elder_id"], bool(changed["consent"]))
    return Upserted(changed, dict(stored))


#: The row of ``leases`` each threshold change and each move of an elder writes before its check: they take turns.
THRESHOLDS_TURN = "thresholds-change"


def take_thresholds_turn(conn: Connection) -> None:
    """Wait for any other threshold change or move of an elder to commit, and hold the others off until this one does.

    Two checked side by side could each fit what was stored and clash together (a community's daily_max_l
    lowered while an elder's own daily_min_l is raised above it, or while she moves there): both were saved,
    and her monitor refused the result. Writing one row first takes its lock on PostgreSQL and the write lock
    on SQLite; the check that follows reads what the one before saved.
    """
    insert_new(conn, leases, [{"name": THRESHOLDS_TURN, "owner": "", "until": 0.0}])
    conn.execute(update(leases).where(leases.c.name == THRESHOLDS_TURN).values(until=leases.c.until))


def require_fitting_thresholds(conn: Connection, elder_id: str, community: str) -> None:
    """Raise :class:`RegistryError` unless the elder's own thresholds fit ``community``'s, before she moves there.

    A monitor refuses thresholds that do not fit, and every reading of hers would be set aside as a dead letter.
    Takes the thresholds' turn first (:func:`take_thresholds_turn`): the caller moves her in the same transaction.
    """
    take_thresholds_turn(conn)
    try:
        effective_thresholds(conn, elder_id, community)[0].validate()
    except ValueError as exc:
        raise RegistryError(f"her own thresholds do not fit community {community!r}: {exc}") from None


def community_exists(conn: Connection, community: str) -> bool:
    """True if any elder (current or retired) is registered in ``community``: the API answers 404 for others."""
    return conn.execute(select(elders.c.elder_id).where(elders.c.community == community).limit(1)).first() is not None


def registered_communities(conn: Connection) -> set[str]:
    """Every community an elder (current or retired) is registered in: :func:`community_exists` for them all."""
    return set(conn.execute(select(elders.c.community).distinct()).scalars())


def require_new_meter(conn: Connection, meter_id: str) -> None:
    """Raise :class:`RegistryError` if ``meter_id`` is registered (to anyone, retired or not)."""
    if conn.execute(select(meters.c.meter_id).where(meters.c.meter_id == meter_id)).first():
        raise RegistryError(f"meter {meter_id!r} is already registered")


def set_consent(conn: Connection, elder_id: str, consent: bool) -> None:
    """Record the elder's consent to monitoring.

    Without consent nothing about the elder is processed: the pipeline drops
    their meters' readings unread and raises nothing. Withdrawing consent also
    erases the routine learned from their water use (the detector checkpoint)
    and forgets the meter's last reading time, so monitoring, if consent comes
    back, starts afresh like a newly installed meter's instead of replaying old
    history or calling the gap a silent meter. Readings stored before stay, as
    history does for a retired elder. Like the other registry changes, the
    caller then moves the meters' state versions on (``store.versions.mark_changed``).
    """
    conn.execute(update(elders).where(elders.c.elder_id == elder_id).values(consent=consent))
    active = select(meters.c.meter_id).where(meters.c.elder_id == elder_id, meters.c.retired_at.is_(None))
    conn.execute(delete(detector_state).where(detector_state.c.meter_id.in_(active)))
    # The monitor starts afresh, its usual interval unlearned: the devices page's offline line with it.
    forgotten: dict[str, None] = {"usual_interval_s": None}
    if not consent:
        forgotten["last_reading_ts"] = None
    conn.execute(update(meters).where(meters.c.meter_id.in_(active)).values(**forgotten))


def meter_context(conn: Connection, meter_id: str) -> dict[str, Any] | None:
    """The elder behind an active meter, with what detection and alerts need."""
    row = conn.execute(
        select(
            meters.c.meter_id,
            elders.c.elder_id,
            elders.c.name,
            elders.c.community,
            elders.c.building,
            elders.c.room,
            elders.c.tz,
        )
        .join(elders, elders.c.elder_id == meters.c.elder_id)
        .where(meters.c.meter_id == meter_id, meters.c.retired_at.is_(None), elders.c.retired_at.is_(None))
    ).first()
    return dict(row._mapping) if row is not None else None


def effective_thresholds(conn: Connection, elder_id: str, community: str) -> tuple[Thresholds, dict[str, str]]:
    """Thresholds for one elder: elder over community over global over built-in defaults."""
    rows = conn.execute(
        select(thresholds.c.scope, thresholds.c.name, thresholds.c.value).where(
            ((thresholds.c.scope == "global") & (thresholds.c.scope_id == ""))
            | ((thresholds.c.scope == "community") & (thresholds.c.scope_id == community))
            | ((thresholds.c.scope == "elder") & (thresholds.c.scope_id == elder_id))
        )
    ).all()
    return thresholds_from_rows([(r.scope, r.name, r.value) for r in rows])


def thresholds_from_rows(rows: Sequence[tuple[str, str, float]]) -> tuple[Thresholds, dict[str, str]]:
    """Resolve ``(scope, name, value)`` rows that apply to one elder: the most specific scope wins."""
    rank = {"global": 0, "community": 1, "elder": 2}
    chosen: dict[str, tuple[int, float, str]] = {}
    for scope, name, value in rows:
        if name not in chosen or rank[scope] > chosen[name][0]:
            chosen[name] = (rank[scope], value, scope)
    known = {f.name for f in fields(Thresholds)}
    values = {name: value for name, (_, value, _) in chosen.items() if name in known}
    sources = {f.name: "default" for f in fields(Thresholds)}
    sources.update({name: scope for name, (_, _, scope) in chosen.items() if name in known})
    return Thresholds().replace(**values), sources


def away_for(conn: Connection, elder_id: str) -> list[tuple[float, float]]:
    """An elder's away windows, as detection applies them (snooze windows mute alerts, not detection)."""
    rows = conn.execute(
        select(away_windows.c.start_ts, away_windows.c.end_ts).where(
            away_windows.c.elder_id == elder_id, away_windows.c.kind == "away"
        )
    ).all()
    return [(float(a), float(b)) for a, b in rows]


def retire_elder(conn: Connection, elder_id: str, now: float) -> str | None:
    """Mark an elder and their active meter retired; returns the meter retired, if any. History stays."""
    conn.execute(update(elders).where(elders.c.elder_id == elder_id).values(retired_at=now))
    meter_id = conn.execute(
        select(meters.c.meter_id).where(meters.c.elder_id == elder_id, meters.c.retired_at.is_(None))
    ).scalar_one_or_none()
    if meter_id is not None:
        conn.execute(update(meters).where(meters.c.meter_id == meter_id).values(retired_at=now))
    return meter_id


def replace_meter(conn: Connection, elder_id: str, new_meter_id: str, now: float) -> str | None:
    """Retire the elder's active meter and install ``new_meter_id``; returns the old meter id.

    Both meters keep their readings; the new one starts a new register (and detector state).
    """
    require_new_meter(conn, new_meter_id)
    old = conn.execute(
        select(meters.c.meter_id).where(meters.c.elder_id == elder_id, meters.c.retired_at.is_(None))
    ).scalar_one_or_none()
    if old is not None:
        conn.execute(update(meters).where(meters.c.meter_id == old).values(retired_at=now))
    conn.execute(insert(meters).values(meter_id=new_meter_id, elder_id=elder_id, installed_at=now))
    return old
