"""Backtest: what would these thresholds have raised over the last days in a community?

Runs the engine's backtest (:mod:`engine.backtest`: the live per-meter step and
alert rule, in memory) over the relational store's readings of each consenting
elder, with the elder's current thresholds and with the proposal applied over
them from the start of the period. Nothing live is read besides readings,
thresholds and away/snooze windows, and nothing is written but the preview's
audit entry (``backtest.read``, in the community: a read of its elders' water use).

The operator tries proposals one after another: the part that does not depend
on a proposal (reading, the warm-up, the current thresholds' replay, each
monitor at the start of the period) is kept for :data:`PREPARED_FOR_S` seconds
per community and period, as long as the elders, their thresholds, zones and
windows, and the settings it was made with (default zone, hold-downs) are
unchanged; a further preview then replays only the period with the proposal.
Readings stored since are seen once that has expired.

Preparing is most of a first preview's work (about 8.5 s of CPU for 1,000 elders
x 30 days, 4.7-5.0 s wall in two processes), so the dashboard asks for it when the operator opens the thresholds
page (``POST /backtest/prepare``, answered at once with 202): it runs in a
background thread while the operator chooses values, and the first Preview then
only replays the period with the proposal. A preview that comes while its
community is being prepared waits for that preparation instead of starting a
second one; both give exactly the replay a preview would make on its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy import Connection, Engine, select

from alerts.grouping import HoldDowns
from alerts.queries import consent_returns
from api.deps import ConnDep, CurrentUser, EngineDep, SettingsDep, allow
from api.models import (
    BacktestAlert,
    BacktestCounts,
    BacktestPrepare,
    BacktestPrepared,
    BacktestRequest,
    BacktestResult,
    to_dt,
    to_dt_or_none,
)
from api.problems import AUTH_RESPONSES, responses
from api.routes.thresholds import check_change
from core.domain import Finding
from detect import Thresholds
from engine.backtest import Prepared, in_halves, prepare, propose_all
from engine.replay import Home
from store import audit, may_idle
from store.registry import community_exists, thresholds_from_rows
from store.schema import away_windows, elders, meters, readings, thresholds

log = logging.getLogger(__name__)

router = APIRouter(tags=["thresholds"], responses=AUTH_RESPONSES)

#: Days replayed before the period so learned routines are warm, as they are live; their alerts are not counted.
WARMUP_DAYS = 14
#: How long a community's prepared replay serves further previews (seconds of wall time).
PREPARED_FOR_S = 600.0
#: Prepared communities kept (each holds its period's intervals, packed: about 70 MB for 1,000 elders x 30 days).
PREPARED_MAX = 2
#: Processes a community is prepared and a proposal judged in (a forked child takes half the elders): 2 cores.
PROCESSES = min(2, os.cpu_count() or 1)
#: Communities smaller than this are judged in one process: a fork costs more than their replay.
SPLIT_FROM = 100
#: Meters read in one query (their ids are bound one a parameter; SQLite allows 32,766).
READ_METERS = 500


@dataclass(slots=True)
class _Community:
    """A community's backtest up to the proposal, for one period ending at ``end``."""

    end: float
    homes: tuple[Home, ...]
    elders: list[Prepared]
    readings: int


# (store URL, community, days, zone of elders without one, hold-downs): the settings a preparation was made with
_Key = tuple[str, str, int, str, HoldDowns]

_prepared: dict[_Key, _Community] = {}
#: Preparations under way, each set when it ends (made or failed): later callers wait on it.
_preparing: dict[_Key, threading.Event] = {}
_prepared_lock = threading.Lock()
#: Preparations in the background at once (per process): no more than are kept, since a further one would push a
#: kept one out. Each reads weeks of readings on a pooled connection: unbounded, a script asking for every
#: ``days`` took the pool from every other request.
_background = threading.BoundedSemaphore(PREPARED_MAX)
#: Seconds a further ``POST /backtest/prepare`` is told to wait while the background is full.
PREPARE_RETRY_S = 10


@router.post(
    "/backtest",
    response_model=BacktestResult,
    summary="Preview thresholds: the alerts they would have raised in a community over the last days, "
    "next to what the current thresholds raised in the same replay.",
    dependencies=[Depends(allow("admin", "operator"))],
    responses=responses(404),
)
def backtest(body: BacktestRequest, engine: EngineDep, user: CurrentUser, settings: SettingsDep) -> BacktestResult:
    # Not the request's connection: a preview waiting for its community's preparation holds none.
    with engine.connect() as conn:
        if not user.sees(body.community) or not community_exists(conn, body.community):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no community {body.community!r}")
        # A 422 for what the save of this change would refuse: the trials below judge only the elders it reaches,
        # and an elder's own value keeps hers out of it (with every elder's own, a value out of bounds passed).
        check_change(conn, "community", body.community, body.community, body.thresholds)
        homes = _homes(conn, body.community)
        own = _own_names(conn, [home.elder_id for home, _ in homes])
    trials = [_trial(home, body.thresholds, own.get(home.elder_id, set())) for home, _ in homes]  # a 422 before work
    hold_downs = HoldDowns.from_settings(settings)
    community = _community(engine, body.community, body.days, homes, settings.timezone, hold_downs)
    current: Counter[str] = Counter()
    proposed: Counter[str] = Counter()
    found: list[BacktestAlert] = []
    processes = PROCESSES if len(community.elders) >= SPLIT_FROM else 1
    for prepared, raised in zip(community.elders, propose_all(community.elders, trials, processes), strict=True):
        current.update(f.kind for f in prepared.current)
        proposed.update(f.kind for f in raised)
        found.extend(_alert(prepared.home.elder_id, f) for f in raised)
    found.sort(key=lambda a: a.data_time)
    # What each elder would have raised, and when, is read from her water use: audited as its reads are.
    with engine.begin() as conn:
        audit.record(
            conn,
            actor=user.username,
            action="backtest.read",
            target=f"community:{body.community}",
            community=body.community,
            new={"days": body.days, "thresholds": body.thresholds, "elders": len(community.elders)},
        )
    return BacktestResult(
        community=body.community,
        days=body.days,
        start=to_dt(community.end - body.days * 86400),
        end=to_dt(community.end),
        elders=len(community.elders),
        readings=community.readings,
        current=BacktestCounts(total=sum(current.values()), by_kind=dict(current)),
        proposed=BacktestCounts(total=sum(proposed.values()), by_kind=dict(proposed)),
        alerts=found,
        kept_from=to_dt_or_none(_kept_from(community.end, body.days, settings.readings_retention_days)),
    )


def _kept_from(end: float, days: int, retention_days: float) -> float | None:
    """The oldest time the store keeps readings from, if after the start of the period's warm-up (else None).

    >>> _kept_from(100 * 86400.0, 30, 400.0) is None, _kept_from(100 * 86400.0, 30, 30.0) / 86400
    (True, 70.0)
    """
    kept_from = end - retention_days * 86400
    return kept_from if kept_from > end - (days + WARMUP_DAYS) * 86400 else None


@router.post(
    "/backtest/prepare",
    response_model=BacktestPrepared,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start preparing a community's backtest (reading, warm-up, current thresholds) in the background, "
    "so the first preview answers quickly; the dashboard asks when the thresholds page opens.",
    dependencies=[Depends(allow("admin", "operator"))],
    responses=responses(404, 503),
)
def prepare_backtest(
    body: BacktestPrepare, conn: ConnDep, user: CurrentUser, settings: SettingsDep
) -> BacktestPrepared:
    if not user.sees(body.community) or not community_exists(conn, body.community):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no community {body.community!r}")
    homes = _homes(conn, body.community)
    key = _key(conn.engine, body.community, body.days, settings.timezone, HoldDowns.from_settings(settings))
    same = tuple(home for home, _ in homes)
    # Looked for and registered under one hold of the lock: asked for at once, one period is prepared once, and
    # takes one of the background's places (the thread registering it once it ran, several did).
    with _prepared_lock:
        if _fresh(_prepared.get(key), same, time.time()):
            return BacktestPrepared(community=body.community, days=body.days, state="ready")
        if key in _preparing:
            return BacktestPrepared(community=body.community, days=body.days, state="preparing")
        if not _background.acquire(blocking=False):  # released by the thread when it ends
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "other backtests are being prepared; a preview prepares its own, or ask again in a moment",
                {"Retry-After": str(PREPARE_RETRY_S)},
            )
        running = _preparing[key] = threading.Event()
    args = (conn.engine, key, running, body.days, homes, settings.timezone, HoldDowns.from_settings(settings))
    try:
        threading.Thread(target=_prepare_in_background, args=args, name="backtest-prepare", daemon=True).start()
    except BaseException:
        _done(key, running)
        _background.release()
        raise
    return BacktestPrepared(community=body.community, days=body.days, state="preparing")


def _prepare_in_background(
    engine: Engine,
    key: _Key,
    running: threading.Event,
    days: int,
    homes: list[tuple[Home, list[str]]],
    default_tz: str,
    hold_downs: HoldDowns,
) -> None:
    """Prepare on a connection of its own (the request's is closed when it answers); a failure waits for a preview."""
    try:
        _make(engine, key, running, days, homes, default_tz, hold_downs)
    except Exception:  # the preview that follows prepares again and reports its own error
        log.exception("backtest preparation for %s failed", key[1])
    finally:
        _background.release()


def _key(engine: Engine, community: str, days: int, default_tz: str, hold_downs: HoldDowns) -> _Key:
    return (str(engine.url), community, days, default_tz, hold_downs)


def _fresh(kept: _Community | None, homes: tuple[Home, ...], now: float) -> bool:
    """Whether ``kept`` still serves previews: young enough and made for these homes, thresholds, zones, windows."""
    return kept is not None and now - kept.end < PREPARED_FOR_S and kept.homes == homes


def _community(
    engine: Engine,
    community: str,
    days: int,
    homes: list[tuple[Home, list[str]]],
    default_tz: str,
    hold_downs: HoldDowns,
) -> _Community:
    """The community's prepared replay: the one kept if still fresh and made for these homes, else a new one.

    One preparation per community and period at a time: a caller that finds one under way waits
    for it, holding no connection (a few waiting previews would take the pool), and takes its result
    if it fits, else prepares itself on a connection of its own.
    """
    key, same = _key(engine, community, days, default_tz, hold_downs), tuple(home for home, _ in homes)
    while True:
        with _prepared_lock:
            kept = _prepared.get(key)
            if _fresh(kept, same, time.time()):
                assert kept is not None
                return kept
            running = _preparing.get(key)
            if running is None:
                running = _preparing[key] = threading.Event()
                break
        running.wait()  # then look again: it may have been made for other homes, or have failed
    return _make(engine, key, running, days, homes, default_tz, hold_downs)


def _make(
    engine: Engine,
    key: _Key,
    running: threading.Event,
    days: int,
    homes: list[tuple[Home, list[str]]],
    default_tz: str,
    hold_downs: HoldDowns,
) -> _Community:
    """Prepare ``key``, registered as under way (``running``, in :data:`_preparing`); kept, and its waiters told."""
    try:
        with engine.connect() as conn:
            made = _build(conn, days, homes, default_tz, hold_downs)
        with _prepared_lock:
            _prepared[key] = made
            expired = [k for k, kept in _prepared.items() if made.end - kept.end >= PREPARED_FOR_S]
            for old in expired + sorted(_prepared, key=lambda k: _prepared[k].end)[:-PREPARED_MAX]:
                _prepared.pop(old, None)
        return made
    finally:
        _done(key, running)


def _done(key: _Key, running: threading.Event) -> None:
    """``key`` is no longer under way: later callers look at what was kept."""
    with _prepared_lock:
        _preparing.pop(key, None)
    running.set()


def _build(
    conn: Connection, days: int, homes: list[tuple[Home, list[str]]], default_tz: str, hold_downs: HoldDowns
) -> _Community:
    """Read each elder's readings of the period and its warm-up and prepare it (:func:`engine.backtest.prepare`).

    With two processes each reads its own half of the elders (:func:`engine.backtest.in_halves`):
    reading is about a tenth of a cold preview's CPU, and done before the fork it kept the other core idle.
    """
    may_idle(conn)  # the readings read, preparing them may take longer than a worker's transaction may idle
    now = time.time()
    start = now - days * 86400
    first = start - WARMUP_DAYS * 86400
    engine, reader = conn.engine, os.getpid()

    def work(some: Sequence[tuple[Home, list[str]]]) -> list[tuple[Prepared, int]]:
        meters_of = [meter_ids for _, meter_ids in some]
        if os.getpid() == reader:
            rows = _readings_by_elder(conn, meters_of, first, now)
        else:  # a forked child: the parent's connections are the parent's (SQLAlchemy's advice for a fork)
            engine.dispose(close=False)
            with engine.connect() as own:
                rows = _readings_by_elder(own, meters_of, first, now)
        return [
            (prepare(home, elder_rows, start, default_tz, hold_downs), sum(1 for r in elder_rows if r[1] >= start))
            for (home, _), elder_rows in zip(some, rows, strict=True)
        ]

    # A store in this process's memory is not there for a child to open: read and prepare here alone.
    in_memory = engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:")
    processes = PROCESSES if len(homes) >= SPLIT_FROM and not in_memory else 1
    made = in_halves(homes, work, processes)
    return _Community(
        now, tuple(home for home, _ in homes), [prepared for prepared, _ in made], sum(n for _, n in made)
    )


def _homes(conn: Connection, community: str) -> list[tuple[Home, list[str]]]:
    """The community's consenting elders (live, readings of the others are dropped unread) and all their meters.

    A few queries for the whole community: elders with meters, thresholds of every scope, windows, and the history
    of consent (an elder whose consent came back starts afresh there, as live: :class:`engine.replay.Home`).
    """
    rows = conn.execute(
        select(elders.c.elder_id, elders.c.tz, meters.c.meter_id, meters.c.installed_at, meters.c.retired_at)
        .join(meters, meters.c.elder_id == elders.c.elder_id)
        .where(elders.c.community == community, elders.c.retired_at.is_(None), elders.c.consent.is_(True))
        .order_by(elders.c.elder_id, meters.c.installed_at, meters.c.meter_id)
    ).all()
    meter_ids: dict[str, list[str]] = {}
    zones: dict[str, str | None] = {}
    for row in rows:
        meter_ids.setdefault(row.elder_id, []).append(row.meter_id)
        zones[row.elder_id] = row.tz
    replaced = _replacements(rows)
    restarts = consent_returns(conn, list(meter_ids))
    limits = conn.execute(
        select(thresholds.c.scope, thresholds.c.scope_id, thresholds.c.name, thresholds.c.value).where(
            ((thresholds.c.scope == "global") & (thresholds.c.scope_id == ""))
            | ((thresholds.c.scope == "community") & (thresholds.c.scope_id == community))
            | ((thresholds.c.scope == "elder") & thresholds.c.scope_id.in_(list(meter_ids)))
        )
    ).all()
    shared = [(r.scope, r.name, r.value) for r in limits if r.scope != "elder"]
    own: dict[str, list[tuple[str, str, float]]] = {}
    for r in limits:
        if r.scope == "elder":
            own.setdefault(r.scope_id, []).append((r.scope, r.name, r.value))
    windows: dict[str, list[tuple[float, float, str]]] = {}
    for w in conn.execute(
        select(away_windows.c.elder_id, away_windows.c.start_ts, away_windows.c.end_ts, away_windows.c.kind).where(
            away_windows.c.elder_id.in_(list(meter_ids))
        )
    ):
        windows.setdefault(w.elder_id, []).append((float(w.start_ts), float(w.end_ts), w.kind))
    return [
        (
            Home(
                elder_id,
                zones[elder_id],
                thresholds_from_rows(shared + own.get(elder_id, []))[0],
                tuple(windows.get(elder_id, ())),
                tuple(replaced.get(elder_id, ())),
                tuple(restarts.get(elder_id, ())),
            ),
            ids,
        )
        for elder_id, ids in meter_ids.items()
    ]


def _replacements(rows: Sequence[Any]) -> dict[str, list[tuple[str, str]]]:
    """Each elder's meters replaced, (old, new): the new one installed when the old one was retired.

    ``store.registry.replace_meter`` retires the old meter and installs the new one at the same time; live, the new
    one took on the routine the old one had learned then (:class:`engine.replay.Home`'s ``replaced``).
    """
    retired = {(row.elder_id, row.retired_at): row.meter_id for row in rows if row.retired_at is not None}
    out: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        old = retired.get((row.elder_id, row.installed_at))
        if old is not None and old != row.meter_id:
            out.setdefault(row.elder_id, []).append((old, row.meter_id))
    return out


def _own_names(conn: Connection, elder_ids: list[str]) -> dict[str, set[str]]:
    """The thresholds each elder has a value of her own for (``PUT /thresholds/elder/{id}``)."""
    rows = conn.execute(
        select(thresholds.c.scope_id, thresholds.c.name).where(
            thresholds.c.scope == "elder", thresholds.c.scope_id.in_(elder_ids)
        )
    )
    out: dict[str, set[str]] = {}
    for elder_id, name in rows:
        out.setdefault(elder_id, set()).add(name)
    return out


def _trial(home: Home, proposal: dict[str, float], own: Collection[str]) -> Thresholds:
    """The elder's thresholds once the proposal is the community's; a 422 naming the elder if they are not valid.

    The proposal is a community's change: an elder's own value of a threshold (``own``) wins over it, as it does
    live once the change is saved (``PUT /thresholds/community/{c}``).
    """
    try:
        trial = (home.thresholds or Thresholds()).replace(**{k: v for k, v in proposal.items() if k not in own})
        trial.validate()
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"for elder {home.elder_id}: {exc}") from None
    return trial


def _readings(conn: Connection, meter_ids: list[str], start: float, end: float) -> Sequence[Any]:
    """The meters' stored readings, (meter_id, ts, total_l) in time order per meter, as live catch-up reads them.

    From the relational store, where every reading the pipeline accepted is kept for
    ``readings_retention_days`` (400 by default; one shorter than the period and its warm-up is said in the
    result's ``kept_from``).
    Readings that came late are left out: live, they made no interval. The rows are the
    driver's own tuples: a SQLAlchemy row per reading costs three times the read itself
    (about 2 of a cold preview's 3 s of reading, 1.8 M readings), and nothing here needs one.
    """
    query = (
        select(readings.c.meter_id, readings.c.ts, readings.c.total_l)
        .where(
            readings.c.meter_id.in_(meter_ids),
            readings.c.ts >= start,
            readings.c.ts <= end,
            readings.c.status != "late",
        )
        .order_by(readings.c.meter_id, readings.c.ts)
    )
    # The IN list rendered as one bind per meter, so the driver takes the statement as it is.
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args: Any = tuple(params[name] for name in compiled.positiontup or ()) if compiled.positional else params
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return cursor.fetchall()
    finally:
        cursor.close()


def _readings_by_elder(conn: Connection, meters_of: list[list[str]], start: float, end: float) -> list[Sequence[Any]]:
    """Each elder's readings as :func:`_readings` reads them, in one query for about :data:`READ_METERS` meters.

    An elder's rows come out as its own query gives them: its meters in the store's order of
    meter_id (its collation, which need not be Python's: an elder's meters are never split
    between two queries), each meter's readings in time order.
    """
    out: list[Sequence[Any]] = []
    for first, last in _chunks(meters_of, READ_METERS):
        wanted = [meter_id for meter_ids in meters_of[first:last] for meter_id in meter_ids]
        by_meter = {
            meter_id: list(rows) for meter_id, rows in groupby(_readings(conn, wanted, start, end), key=itemgetter(0))
        }
        rank = {meter_id: k for k, meter_id in enumerate(by_meter)}  # the store's order
        for meter_ids in meters_of[first:last]:
            present = sorted((m for m in meter_ids if m in rank), key=rank.__getitem__)
            out.append(by_meter[present[0]] if len(present) == 1 else [r for m in present for r in by_meter[m]])
    return out


def _chunks(meters_of: list[list[str]], size: int) -> Iterator[tuple[int, int]]:
    """(first, last) elder index ranges of about ``size`` meters each, whole elders only."""
    first = count = 0
    for k, meter_ids in enumerate(meters_of):
        count += len(meter_ids)
        if count >= size:
            yield first, k + 1
            first, count = k + 1, 0
    if first < len(meters_of):
        yield first, len(meters_of)


def _alert(elder_id: str, f: Finding) -> BacktestAlert:
    return BacktestAlert(
        elder_id=elder_id,
        meter_id=f.meter_id,
        kind=f.kind,
        severity=f.severity,
        basis=f.basis,
        data_time=to_dt(f.ts),
        since=to_dt_or_none(f.since),
        message={"zh": f.message_zh, "en": f.message_en},
    )
