"""Alerts: filter, read, follow live, acknowledge and resolve, with their event history."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy import Connection, Engine, case, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from alerts.cases import OPEN_STATES, AlertStateError, load_case
from alerts.grouping import active_kinds, kinds_of, occurrences, told, withdrawn_kinds
from alerts.lifecycle import closed_by_data
from alerts.policy import for_maintenance
from alerts.queries import history_select
from api.deps import (
    ALERT_HANDLERS,
    AlertManagerDep,
    AuditedList,
    ConnDep,
    CurrentUser,
    EngineDep,
    PageDep,
    SettingsDep,
    StreamUser,
    allow,
)
from api.listing import fetch_page, sort_query
from api.lookups import load_alert
from api.models import (
    AlertAck,
    AlertEventList,
    AlertEventPublic,
    AlertKind,
    AlertList,
    AlertPublic,
    AlertResolve,
    AlertState,
    AlertTold,
    Instant,
    Severity,
    to_dt,
    to_dt_or_none,
)
from api.problems import AUTH_RESPONSES, responses
from api.security import Principal, principal_for_token_id
from core.domain import SEVERITIES
from engine.meterstate import StaleState, teach_outcome
from store import audit
from store.schema import alert_events, alerts

log = logging.getLogger(__name__)

router = APIRouter(prefix="/alerts", tags=["alerts"], responses={**AUTH_RESPONSES, **responses(404)})

#: Severity sorts by rank, most severe first; unknown values last.
_SEVERITY_RANK = case({s: i for i, s in enumerate(SEVERITIES)}, value=alerts.c.severity, else_=len(SEVERITIES))
SORTS = {
    "raised_at": alerts.c.raised_at,
    "data_time": alerts.c.data_ts,
    "severity": _SEVERITY_RANK,
    "kind": alerts.c.kind,
    "state": alerts.c.state,
    "community": alerts.c.community,
}
AlertSort = sort_query(list(SORTS), "-raised_at")
EVENT_SORTS = {"seq": alert_events.c.seq, "at": alert_events.c.at}
EventSort = sort_query(list(EVENT_SORTS), "seq")
KEEPALIVE_S = 15.0
#: Events read at most per poll of a stream.
READ_MAX = 1000
#: How long a stream waits for an event id below newer ones to commit (ingest batches take well under this).
GAP_WAIT_S = 30.0
#: Ids below its start a new stream waits for, if missing: half a read, so that an old gap (a rolled-back
#: transaction) does not keep the newer events out of the stream's first reads while it is awaited.
START_LOOKBACK = READ_MAX // 2


def alert_public(m: Any) -> AlertPublic:
    is_open = m["state"] in OPEN_STATES
    return AlertPublic(
        alert_id=m["alert_id"],
        elder_id=m["elder_id"],
        meter_id=m["meter_id"],
        community=m["community"],
        kind=m["kind"],
        severity=m["severity"],
        state=m["state"],
        basis=m["basis"],
        data_time=to_dt(m["data_ts"]),
        since=to_dt_or_none(m["since_ts"]),
        raised_at=to_dt(m["raised_at"]),
        message={"zh": m["message_zh"], "en": m["message_en"]},
        kinds=kinds_of(m),
        kinds_open=active_kinds(m) if is_open else [],
        told=_told(m) if is_open else None,
        kinds_withdrawn=withdrawn_kinds(m),
        occurrences=occurrences(m),
        route="maintenance" if for_maintenance(m) else "community",
        escalation_level=m["escalation_level"],
        acknowledged_at=to_dt_or_none(m["acknowledged_at"]),
        acknowledged_by=m["acknowledged_by"],
        outcome=m["outcome"],
        note=m["note"],
        resolved_at=to_dt_or_none(m["resolved_at"]),
        resolved_by=m["resolved_by"],
    )


def _told(m: Any) -> AlertTold:
    now = told(dict(m))
    return AlertTold(
        kind=now["kind"],
        message={"zh": now["message_zh"], "en": now["message_en"]},
        since=to_dt_or_none(now["since_ts"]),
    )


@router.get(
    "",
    response_model=AlertList,
    summary="List alerts in your communities, newest first by default.",
    dependencies=[AuditedList],
)
def list_alerts(
    conn: ConnDep,
    user: CurrentUser,
    page: PageDep,
    community: Annotated[str | None, Query(max_length=64)] = None,
    elder_id: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[list[AlertState] | None, Query(description="One or more states (repeat the parameter).")] = None,
    open_only: Annotated[bool, Query(alias="open", description="Only alerts not yet resolved.")] = False,
    kind: Annotated[list[AlertKind] | None, Query(description="One or more kinds.")] = None,
    severity: Annotated[list[Severity] | None, Query(description="One or more severities.")] = None,
    since: Annotated[Instant | None, Query(description="Raised at or after (ISO-8601 with offset).")] = None,
    until: Annotated[Instant | None, Query(description="Raised before (ISO-8601 with offset).")] = None,
    sort: Annotated[str, AlertSort] = "-raised_at",
) -> AlertList:
    where: list[Any] = [user.community_filter(alerts.c.community)]
    if community is not None:
        where.append(alerts.c.community == community)
    if elder_id is not None:
        where.append(alerts.c.elder_id == elder_id)
    for column, values in ((alerts.c.state, state), (alerts.c.kind, kind), (alerts.c.severity, severity)):
        if values:
            where.append(column.in_(values))
    if open_only:
        where.append(alerts.c.state.in_(OPEN_STATES))
    if since is not None:
        where.append(alerts.c.raised_at >= since.timestamp())
    if until is not None:
        where.append(alerts.c.raised_at < until.timestamp())
    rows, count = fetch_page(conn, select(alerts), where, sort, SORTS, alerts.c.alert_id, page)
    return AlertList(data=[alert_public(r._mapping) for r in rows], count=count)


@router.get(
    "/stream",
    summary="Follow alerts live (server-sent events): an `alert` event with the alert whenever one is raised "
    "or changes in your communities.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "Events."},
        **responses(429),  # the caller holds sse_streams_per_user streams already
    },
)
async def stream_alerts(
    request: Request,
    user: StreamUser,
    engine: EngineDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        str | None, Header(max_length=32, description="Resume after this event id (sent by EventSource).")
    ] = None,
) -> StreamingResponse:
    slot = _take_stream(request, user.username, settings.sse_streams_per_user)
    try:
        cursor = await anyio.to_thread.run_sync(_start, engine, _parse_cursor(last_event_id))
        await anyio.to_thread.run_sync(_audit_stream, engine, user)
    except BaseException:
        slot.release()
        raise
    events = _events(request, engine, user, cursor, settings.sse_poll_s, slot)
    # A stream the server never began (its client gone before the first byte) runs no ``finally``: its place comes
    # back when it is collected.
    weakref.finalize(events, slot.release)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


class StreamSlots:
    """How many alert streams each user holds open in this process (``app.state.stream_slots``).

    Every stream polls the store once per ``sse_poll_s``: one token opening streams without end (a client that
    reconnects and never closes the old one, or a script) would take a share of the store from every other
    request.

    >>> slots = StreamSlots()
    >>> [slots.take("li", 2) for _ in range(3)]
    [True, True, False]
    >>> slots.give_back("li"); slots.take("li", 2), slots.held("li")
    (True, 2)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # (the finalizer of a stream never begun may run on another thread)
        self._held: Counter[str] = Counter()

    def take(self, who: str, most: int) -> bool:
        with self._lock:
            if self._held[who] >= most:
                return False
            self._held[who] += 1
            return True

    def give_back(self, who: str) -> None:
        with self._lock:
            self._held[who] -= 1
            if self._held[who] <= 0:
                del self._held[who]

    def held(self, who: str) -> int:
        with self._lock:
            return self._held[who]


@dataclass
class _Slot:
    """One stream's place, given back once however the stream ends."""

    slots: StreamSlots
    who: str
    held: bool = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slots.give_back(self.who)


#: Seconds a caller refused a stream is told to wait: a stream whose client vanished is noticed within a poll or,
#: without a word from its network, at the next keep-alive.
STREAM_RETRY_S = 30


def _take_stream(request: Request, who: str, most: int) -> _Slot:
    """A place for one more of ``who``'s streams, or a 429 (at most ``most`` at once)."""
    state = request.app.state
    slots = getattr(state, "stream_slots", None)
    if slots is None:  # (endpoints run on the event loop's one thread: made once)
        slots = state.stream_slots = StreamSlots()
    if not slots.take(who, most):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{most} alert streams of yours are open already (TAPWATCH_SSE_STREAMS_PER_USER): close one, or wait "
            "for one whose connection dropped to be noticed",
            {"Retry-After": str(STREAM_RETRY_S)},
        )
    return _Slot(slots, who)


def _audit_stream(engine: Engine, user: Principal) -> None:
    with engine.begin() as conn:
        audit.record(conn, actor=user.username, action="list.read", target="/alerts/stream", community=None)


def _parse_cursor(value: str | None) -> int | None:
    """The event id to resume after; ``None`` (start from now) for anything but ASCII digits.

    >>> _parse_cursor("42"), _parse_cursor("x"), _parse_cursor("\u00b2")  # '²' is a digit to str.isdigit
    (42, None, None)
    """
    if value is None or not (value.isascii() and value.isdigit()):  # int() refuses '²', which isdigit() accepts
        return None
    return min(int(value), 2**62)


def _start(engine: Engine, after: int | None) -> _Cursor:
    """A stream's cursor after ``after`` (the newest event when ``None`` or above it), waiting for ids below it
    not yet committed.

    Starting right after the newest committed id would skip an event below it whose transaction is still open:
    the ids committed below the start are taken as sent, and those missing are gaps awaited as any later one.
    """
    with engine.connect() as conn:
        newest = int(conn.execute(select(func.coalesce(func.max(alert_events.c.id), 0))).scalar_one())
        # A client only ever got committed ids: one above the newest is another store's (this one restored from
        # an older backup, or made anew). Waiting for ids above it would send nothing until this store got there.
        after = newest if after is None else min(after, newest)
        floor = max(after - START_LOOKBACK, 0)
        window = (alert_events.c.id > floor) & (alert_events.c.id <= after)
        ids = list(conn.execute(select(alert_events.c.id).where(window).order_by(alert_events.c.id)).scalars())
    cursor = _Cursor(settled=floor, sent={int(i) for i in ids})
    cursor.settle(ids, upto=after, now=time.monotonic())
    return cursor


class CallerChanged(Exception):
    """The stream's caller was disabled, their token revoked or expired, or their role or communities changed."""


@dataclass(slots=True)
class _Cursor:
    """Where a stream stands: every event up to ``settled`` was read; those above it already sent are in ``sent``.

    Event ids are taken at insert and committed in any order (PostgreSQL), so an id below the newest read may
    still commit: the cursor does not pass a missing id until it appears, or until :data:`GAP_WAIT_S` has gone
    by (a rolled-back transaction never fills its id).

    >>> cursor = _Cursor(settled=10)
    >>> cursor.settle([11, 13], upto=2**63, now=0.0)  # 12 is not committed yet: wait for it
    >>> cursor.settled
    11
    >>> cursor.settle([13], upto=2**63, now=GAP_WAIT_S)  # it never came (rolled back): go on
    >>> cursor.settled
    13
    """

    settled: int
    sent: set[int] = field(default_factory=set)
    missing_since: dict[int, float] = field(default_factory=dict)

    def settle(self, ids: list[int], upto: int, now: float) -> None:
        """Move ``settled`` along the ``ids`` read (ascending), not past ``upto`` nor a gap still awaited."""
        expected = self.settled + 1
        for event_id in ids:
            if event_id > upto:
                break
            while expected < event_id:
                if now - self.missing_since.setdefault(expected, now) < GAP_WAIT_S:
                    self._forget_below(expected - 1)
                    return
                expected += 1  # given up: nothing took that id after all
            expected = event_id + 1
        self._forget_below(expected - 1)

    def _forget_below(self, settled: int) -> None:
        self.settled = settled
        self.sent = {i for i in self.sent if i > settled}
        self.missing_since = {i: t for i, t in self.missing_since.items() if i > settled}


def _changes(engine: Engine, user: Principal, cursor: _Cursor) -> list[tuple[int, AlertPublic | str]]:
    """Alerts with events after the cursor not sent yet, in the caller's communities, each once, at its newest;
    and, as its id alone, each case that moved out of them (its elder moved to a community the caller does not see).

    The caller is looked up again first, in the same transaction as the events: a stream never
    sends anything its caller may no longer see (:class:`CallerChanged` ends it).
    """
    after = alert_events.c.id > cursor.settled
    ids_query = select(alert_events.c.id).where(after).order_by(alert_events.c.id).limit(READ_MAX)
    query = (
        select(alert_events.c.id.label("event_id"), alerts)
        .join(alerts, alerts.c.alert_id == alert_events.c.alert_id)
        .where(after)
        .order_by(alert_events.c.id)
        .limit(READ_MAX)
    )
    moved_query = (
        select(alert_events.c.id, alert_events.c.alert_id, alert_events.c.data)
        .join(alerts, alerts.c.alert_id == alert_events.c.alert_id)
        .where(after, alert_events.c.type == "moved")
        .order_by(alert_events.c.id)
        .limit(READ_MAX)
    )
    scope = user.community_filter(alerts.c.community)
    with engine.begin() as conn:
        if not _still_the_same(conn, user):
            raise CallerChanged
        ids = list(conn.execute(ids_query).scalars())
        rows = conn.execute(query.where(scope) if scope is not None else query).all()
        moves = [] if scope is None else conn.execute(moved_query.where(~scope)).all()
    latest: dict[str, tuple[int, AlertPublic | str]] = {}
    for row in rows:
        if int(row.event_id) not in cursor.sent:
            latest[row.alert_id] = (int(row.event_id), alert_public(row._mapping))
    # With a full page of the caller's rows, what lies beyond the last of them is read next time.
    upto = int(rows[-1].event_id) if len(rows) == READ_MAX else 2**63
    moves = [move for move in moves if int(move.id) <= upto]
    for move in moves:
        # The community she left keeps no open page of a case now another's: it is told the case's id, no more.
        if int(move.id) not in cursor.sent and user.sees((move.data or {}).get("moved_from")):
            latest[move.alert_id] = (int(move.id), str(move.alert_id))
    cursor.sent.update(int(row.event_id) for row in rows)
    cursor.sent.update(int(move.id) for move in moves)
    cursor.settle([int(i) for i in ids], upto, time.monotonic())
    return sorted(latest.values(), key=lambda pair: pair[0])


def _still_the_same(conn: Connection, user: Principal) -> bool:
    """The token still works and its user has the same role and communities as when the stream began."""
    if user.token_id is None:
        return False
    now = principal_for_token_id(conn, user.token_id, time.time())
    return now is not None and (now.role, set(now.communities)) == (user.role, set(user.communities))


async def _events(
    request: Request, engine: Engine, user: Principal, cursor: _Cursor, poll_s: float, slot: _Slot
) -> AsyncIterator[bytes]:
    try:
        async for chunk in _follow(request, engine, user, cursor, poll_s):
            yield chunk
    finally:
        slot.release()


async def _follow(
    request: Request, engine: Engine, user: Principal, cursor: _Cursor, poll_s: float
) -> AsyncIterator[bytes]:
    yield b": connected\n\nretry: 3000\n\n"
    quiet = 0.0
    while not await request.is_disconnected():
        try:
            changed = await anyio.to_thread.run_sync(_changes, engine, user, cursor)
        except CallerChanged:  # the client reconnects and is authorised afresh, or refused
            yield b"event: revoked\ndata: {}\n\n"
            return
        except (OperationalError, PoolTimeout) as exc:
            # The store was busy or briefly unreachable, as a request answers 503 for: the cursor moved only on
            # a read that succeeded, so the next poll sends what this one missed. Only the first line is logged:
            # a statement's parameters may name people.
            cause = getattr(exc, "orig", None) or exc
            first_line = (str(cause).splitlines() or [""])[0][:200]
            log.warning("store busy in /alerts/stream, trying again: %s: %s", type(cause).__name__, first_line)
            changed = []
        for event_id, alert in changed:
            if isinstance(alert, str):  # moved out of the caller's communities: drop it from the open list
                yield f"id: {event_id}\nevent: gone\ndata: {orjson.dumps({'alert_id': alert}).decode()}\n\n".encode()
                continue
            payload = orjson.dumps(alert.model_dump(mode="json")).decode()
            yield f"id: {event_id}\nevent: alert\ndata: {payload}\n\n".encode()
        quiet = 0.0 if changed else quiet + poll_s
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield b": keep-alive\n\n"
        async for _ in _keepalives_while_waiting(poll_s):
            yield b": keep-alive\n\n"


async def _keepalives_while_waiting(poll_s: float) -> AsyncIterator[None]:
    """Wait ``poll_s``, once every :data:`KEEPALIVE_S` of it: a stream is never silent longer, however rarely it
    polls (the dashboard takes a stream silent for 40 s as a phone's link that died without a word)."""
    left = poll_s
    while left > KEEPALIVE_S:
        await asyncio.sleep(KEEPALIVE_S)
        left -= KEEPALIVE_S
        yield None
    await asyncio.sleep(left)


@router.get("/{alert_id}", response_model=AlertPublic, summary="One alert.", responses=responses(404))
def get_alert(alert_id: str, conn: ConnDep, user: CurrentUser) -> AlertPublic:
    return alert_public(load_alert(conn, user, alert_id))


@router.get(
    "/{alert_id}/events",
    response_model=AlertEventList,
    summary="What happened to an alert: raised, notified, escalated, acknowledged, resolved.",
    dependencies=[AuditedList],
    responses=responses(404),
)
def list_events(
    alert_id: str, conn: ConnDep, user: CurrentUser, page: PageDep, sort: Annotated[str, EventSort] = "seq"
) -> AlertEventList:
    load_alert(conn, user, alert_id)
    rows, count = fetch_page(conn, history_select(alert_id), [], sort, EVENT_SORTS, alert_events.c.id, page)
    data = [AlertEventPublic(seq=r.seq, type=r.type, at=to_dt(r.at), actor=r.actor, data=r.data or {}) for r in rows]
    return AlertEventList(data=data, count=count)


@router.post(
    "/{alert_id}/ack",
    response_model=AlertPublic,
    summary="Acknowledge an alert: someone is on it.",
    dependencies=[Depends(allow(*ALERT_HANDLERS))],
    responses=responses(404, 409),
)
def acknowledge(
    alert_id: str, body: AlertAck, conn: ConnDep, user: CurrentUser, manager: AlertManagerDep
) -> AlertPublic:
    alert = load_alert(conn, user, alert_id)
    if _already_taken_by(alert, user.username):
        return alert_public(alert)
    if alert["state"] not in ("open", "notified"):
        raise HTTPException(status.HTTP_409_CONFLICT, f"alert is already {alert['state']}")
    try:
        manager.acknowledge(conn, alert, user.username, body.note, time.time())
    except AlertStateError as exc:  # changed meanwhile by another request
        fresh = load_case(conn, alert_id)
        if fresh is not None and _already_taken_by(fresh, user.username):
            return alert_public(load_alert(conn, user, alert_id))
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    _audit(conn, user, alert, "alert.acknowledge", {"state": "acknowledged"}, body.note)
    return alert_public(load_alert(conn, user, alert_id))


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertPublic,
    summary="Resolve an alert with what was found (outcome) and a note; the elder's detectors learn from it. "
    "A case the data already closed (use resumed, cleared) takes what was found too, once, within "
    "TAPWATCH_OUTCOME_WINDOW_DAYS of its closing.",
    dependencies=[Depends(allow(*ALERT_HANDLERS))],
    responses=responses(404, 409),
)
def resolve(
    alert_id: str,
    body: AlertResolve,
    conn: ConnDep,
    user: CurrentUser,
    manager: AlertManagerDep,
    settings: SettingsDep,
) -> AlertPublic:
    alert = load_alert(conn, user, alert_id)
    if _already_recorded(alert, user.username, body):
        return alert_public(alert)
    if alert["state"] == "resolved" and not closed_by_data(alert):
        who = alert["resolved_by"]
        raise HTTPException(status.HTTP_409_CONFLICT, f"alert is already resolved ({alert['outcome']}, by {who})")
    window_s = settings.outcome_window_days * 86400.0
    try:
        action, before = _resolve_or_record(conn, manager, alert, user.username, body, window_s)
        # In the same transaction: the elder's detectors learn what the person found (the closed loop).
        teach_outcome(conn, alert, body.outcome, settings.timezone)
    except AlertStateError as exc:
        fresh = load_case(conn, alert_id)  # the same request, sent twice at once, landed first as the other one
        if fresh is not None and _already_recorded(fresh, user.username, body):
            return alert_public(load_alert(conn, user, alert_id))
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except StaleState:  # the meter's worker committed meanwhile: nothing was recorded, the resolve can be retried
        raise HTTPException(status.HTTP_409_CONFLICT, "the meter's detector state changed meanwhile; retry") from None
    old = {"state": before["state"]}
    if action == "alert.outcome":
        old["outcome"] = before["outcome"]  # the data's (use_resumed, cleared), kept in the history
    audit.record(
        conn,
        actor=user.username,
        action=action,
        target=f"alert:{alert['alert_id']}",
        community=alert["community"],
        old=old,
        new={"state": "resolved", "outcome": body.outcome},
        reason=body.note,
    )
    return alert_public(load_alert(conn, user, alert_id))


def _already_taken_by(alert: Any, actor: str) -> bool:
    """This person acknowledged the case already and it is still hers: a resend of her acknowledge (see
    :func:`_already_recorded`), answered as done, not recorded twice."""
    return alert["state"] == "acknowledged" and alert["acknowledged_by"] == actor


def _already_recorded(alert: Any, actor: str, body: AlertResolve) -> bool:
    """This very resolve was recorded already: the same person, outcome and note.

    A phone on a flaky link sends it again when no answer came back (the browser itself resends a request whose
    connection dropped; the cadre taps again): the first had landed. Answered as done, it is not recorded twice
    (no second event, audit or lesson to the detectors).
    """
    return (
        alert["state"] == "resolved"
        and alert["resolved_by"] == actor
        and alert["outcome"] == body.outcome
        and (alert["note"] or "") == body.note
    )


def _resolve_or_record(
    conn: Connection, manager: Any, alert: dict[str, Any], actor: str, body: AlertResolve, window_s: float
) -> tuple[str, dict[str, Any]]:
    """Resolve an open case, or record the outcome of one the data closed (also if it closed just now).

    Returns the audit action (``alert.resolve`` or ``alert.outcome``) and the case as it was before.
    """
    now = time.time()
    if alert["state"] != "resolved":
        try:
            manager.resolve(conn, alert, actor, body.outcome, body.note, now)
            return "alert.resolve", alert
        except AlertStateError:
            # The data may have closed it since it was read: the person's visit still counts.
            fresh = load_case(conn, alert["alert_id"])
            if fresh is None or not closed_by_data(fresh):
                raise
            alert = fresh
    manager.record_outcome(conn, alert, actor, body.outcome, body.note, now, window_s)
    return "alert.outcome", alert


def _audit(conn: Any, user: Principal, alert: dict[str, Any], action: str, new: dict[str, Any], note: str) -> None:
    audit.record(
        conn,
        actor=user.username,
        action=action,
        target=f"alert:{alert['alert_id']}",
        community=alert["community"],
        old={"state": alert["state"]},
        new=new,
        reason=note,
    )
