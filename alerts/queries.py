"""Read side of alerts and delivery, for the API and operators: plain functions over a connection.

The routes call these functions (the API pages and scopes their queries with
:func:`api.listing.fetch_page`), and the tests test the same functions:

* :func:`parked_select`, :func:`parked_filters`, :func:`parked_row`,
  :func:`parked_jobs`, :func:`parked_job`, :func:`requeue_parked`,
  :func:`dismiss_parked`, :func:`delivery_summary`: what could not be delivered,
  putting it back once the receiver is fixed, or dismissing what it refuses for good;
* :func:`history_select`, :func:`alert_history`: every state change of an
  alert with who and when;
* :func:`false_alarm_summary`, :func:`suggest_threshold_change`: repeated
  ``false_alarm`` outcomes for one elder and kind, shown to operators with a
  less eager threshold they may set (an audited threshold change);
* :func:`outcome_report`: per community, what the cadres found on the cases raised
  in a period (false calls and confirmed ones per elder-month, the outcome mix,
  times to acknowledge and resolve): issue 17 measured live (``GET /reports/outcomes``,
  ``tapwatch report``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Select, func, literal, or_, select, update

from alerts.cases import HUMAN_OUTCOMES, SYSTEM_OUTCOMES
from alerts.grouping import withdrawn_kinds
from alerts.policy import for_maintenance
from core.thresholds import THRESHOLD_SPECS, Thresholds
from store.audit import record
from store.registry import effective_thresholds
from store.schema import DISMISSED, alert_events, alerts, audit_log, elders, meters, outbox

#: Which threshold a repeated false alarm of a kind points at, and the factor that makes it less eager. Flows: the
#: margin, which alone decides at hours this home never ran water long (most false flow calls on family homes,
#: docs/detection-studies.md "More knobs for operators"); the sensitivity never moved routine_change.
FALSE_ALARM_KNOBS: dict[str, tuple[str, float]] = {
    "no_activity": ("sensitivity", 0.5),
    "routine_change": ("routine_threshold", 1.5),
    "continuous_flow": ("flow_margin_h", 2.0),
    "high_usage": ("daily_max_l", 1.25),
    "low_usage": ("daily_min_l", 0.75),
}
#: What raised a silence case: the elder's silence model, or the fixed safety net (under ``ceiling_litres`` in
#: its hours; the only ``no_activity`` the detector raises with basis ``rule``). The sensitivity never moves the
#: net, so repeated false calls mostly of the net's point at the net's hours instead.
SILENCE_MODEL, SAFETY_NET = "silence_model", "safety_net"
#: The net's hours half again as long: a false call of an elder away a day is not made at 24 h, still at 36 h.
NET_HOURS_FACTOR = 1.5


#: The community a delivery job concerns: its alert's; a daily note belongs to no alert row, so its elder's.
JOB_COMMUNITY = func.coalesce(alerts.c.community, elders.c.community)
#: Delivery jobs with their alert and elder, where there is one.
_JOBS = outbox.outerjoin(alerts, alerts.c.alert_id == outbox.c.alert_id).outerjoin(
    elders, elders.c.elder_id == outbox.c.elder_id
)
#: The outbox statuses :func:`delivery_summary` counts per notifier.
STATUSES = ("pending", "parked", "sent", "expired", DISMISSED)
#: The kind a parked daily note is listed with (it has no alert, so no alert kind).
DAILY_NOTE_KIND = "daily_note"


def parked_select() -> Select[Any]:
    """Parked delivery jobs with their community and kind (a daily note's: its elder's, ``daily_note``); rows go
    through :func:`parked_row`."""
    return (
        select(
            outbox.c.id,
            outbox.c.alert_id,
            outbox.c.event_seq,
            outbox.c.elder_id,
            outbox.c.notifier,
            outbox.c.idempotency_key,
            outbox.c.attempts,
            outbox.c.created_at,
            outbox.c.last_error,
            outbox.c.payload,
            JOB_COMMUNITY.label("community"),
            func.coalesce(alerts.c.kind, literal(DAILY_NOTE_KIND)).label("kind"),
        )
        .select_from(_JOBS)
        .where(outbox.c.status == "parked")
    )


def parked_row(row: Any) -> dict[str, Any]:
    """One row of :func:`parked_select` without the payload text (it may hold names): its event type and id."""
    item = dict(row._mapping)
    payload = item.pop("payload") or {}
    item["event_type"] = str(payload.get("type", "")).rsplit(".", 1)[-1]
    item["event_id"] = payload.get("id")
    return item


def parked_filters(*, notifier: str | None = None, community: str | None = None) -> list[ColumnElement[bool]]:
    """WHERE clauses on :func:`parked_select` for one notifier and one community (None: any)."""
    where: list[ColumnElement[bool]] = []
    if notifier is not None:
        where.append(outbox.c.notifier == notifier)
    if community is not None:
        where.append(JOB_COMMUNITY == community)  # noqa: SIM300 (a column expression, not a constant)
    return where


def parked_jobs(
    conn: Connection, *, notifier: str | None = None, community: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Delivery jobs parked as undeliverable, newest first (no payload text: it may hold names)."""
    query = parked_select().where(*parked_filters(notifier=notifier, community=community))
    return [parked_row(row) for row in conn.execute(query.order_by(outbox.c.id.desc()).limit(limit))]


def parked_job(conn: Connection, job_id: int, scope: ColumnElement[bool] | None = None) -> dict[str, Any] | None:
    """One parked job as :func:`parked_row` gives it, if parked and within ``scope`` (a WHERE clause); else None."""
    query = parked_select().where(outbox.c.id == job_id)
    if scope is not None:
        query = query.where(scope)
    row = conn.execute(query).first()
    return parked_row(row) if row is not None else None


def parked_community(job_id: int) -> Select[Any]:
    """The community of one delivery job (as :data:`JOB_COMMUNITY`)."""
    return select(JOB_COMMUNITY).select_from(_JOBS).where(outbox.c.id == job_id)


def requeue_parked(conn: Connection, job_id: int, *, actor: str, reason: str, now: float) -> bool:
    """Put a parked job back in its lane (audited); the give-up clock restarts. False if not parked."""
    back = {"status": "pending", "next_attempt_at": now, "created_at": now}
    return _settle_parked(conn, job_id, "delivery.requeue", back, actor=actor, reason=reason, now=now)


def dismiss_parked(conn: Connection, job_id: int, *, actor: str, reason: str, now: float) -> bool:
    """Never send a parked job (audited): the receiver refuses it for good, requeued it would be parked again, and
    the parked count (the critical ``TapwatchEventsParked`` alarm) would stay up. Final, like ``expired``; its lane
    goes on as it did. False if not parked."""
    return _settle_parked(conn, job_id, "delivery.dismiss", {"status": DISMISSED}, actor=actor, reason=reason, now=now)


def _settle_parked(
    conn: Connection, job_id: int, action: str, values: dict[str, Any], *, actor: str, reason: str, now: float
) -> bool:
    """An operator's move of a parked job (``values``, its new status among them), audited as ``action``."""
    done = conn.execute(update(outbox).where(outbox.c.id == job_id, outbox.c.status == "parked").values(**values))
    if done.rowcount != 1:
        return False
    community = conn.execute(parked_community(job_id)).scalar()
    elder_id = conn.execute(select(outbox.c.elder_id).where(outbox.c.id == job_id)).scalar()
    record(
        conn,
        actor=actor,
        action=action,
        target=f"outbox:{job_id}",
        community=community,
        # her id: the purge finds the entry's reason, free text about her, once the job itself is gone
        old={"status": "parked", "elder_id": elder_id},
        new=values["status"],
        reason=reason,
        at=now,
    )
    return True


def delivery_summary(conn: Connection, now: float) -> dict[str, dict[str, float]]:
    """Per notifier: pending, parked, sent, expired and dismissed counts, and the age of the oldest pending job (s)."""
    rows = conn.execute(
        select(outbox.c.notifier, outbox.c.status, func.count(), func.min(outbox.c.created_at)).group_by(
            outbox.c.notifier, outbox.c.status
        )
    ).all()
    out: dict[str, dict[str, float]] = {}
    for notifier, status, count, oldest in rows:
        entry = out.setdefault(notifier, {**dict.fromkeys(STATUSES, 0), "oldest_pending_s": 0.0})
        entry[status] = count
        if status == "pending" and oldest is not None:
            entry["oldest_pending_s"] = round(max(0.0, now - oldest), 1)
    return out


def history_select(alert_id: str) -> Select[Any]:
    """The events of one alert: seq, type, at, actor, data (unordered: the caller sorts and pages)."""
    return select(
        alert_events.c.seq, alert_events.c.type, alert_events.c.at, alert_events.c.actor, alert_events.c.data
    ).where(alert_events.c.alert_id == alert_id)


def alert_history(conn: Connection, alert_id: str) -> list[dict[str, Any]]:
    """Every event of one alert in order: seq, type, at, actor, data."""
    return [dict(r._mapping) for r in conn.execute(history_select(alert_id).order_by(alert_events.c.seq))]


def false_alarm_summary(
    conn: Connection,
    since: float,
    *,
    min_count: int = 2,
    communities: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Elders with at least ``min_count`` alerts of one kind resolved as ``false_alarm`` since ``since``.

    Each entry: elder_id, name, community, kind, count, last_at and, when a
    threshold governs that kind, ``suggestion`` (see :func:`suggest_threshold_change`).
    ``communities`` limits it to those communities (None: all). A case whose kind the detector withdrew (a misread
    reading: :func:`alerts.grouping.withdrawn_kinds`) is not counted: the meter erred, not the threshold.
    """
    query = (
        select(
            alerts.c.elder_id,
            elders.c.name,
            alerts.c.community,
            alerts.c.kind,
            alerts.c.basis,
            alerts.c.data_ts,
            alerts.c.since_ts,
            alerts.c.resolved_at,
            alerts.c.details,
        )
        .join(elders, elders.c.elder_id == alerts.c.elder_id)
        # Only cases worked in the community she lives in now: the suggestion is made from her thresholds
        # there, and only its operators may apply it (her cases in a community she left stay that one's).
        .where(
            alerts.c.outcome == "false_alarm", alerts.c.resolved_at >= since, alerts.c.community == elders.c.community
        )
    )
    if communities is not None:
        query = query.where(alerts.c.community.in_(list(communities)))
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in conn.execute(query):
        case = dict(row._mapping)
        if case["kind"] in withdrawn_kinds(case):
            continue
        key = (row.elder_id, row.community, row.kind)
        entry = groups.setdefault(
            key, {"elder_id": key[0], "name": row.name or "", "community": key[1], "kind": key[2], "count": 0}
        )
        entry["count"] += 1
        entry["last_at"] = max(entry.get("last_at", row.resolved_at), row.resolved_at)
        if row.kind == "no_activity":
            _count_silence_source(entry, row.basis, row.data_ts, row.since_ts)
    out = []
    for item in sorted(groups.values(), key=lambda e: (-e["count"], e["elder_id"], e["community"], e["kind"])):
        if item["count"] < min_count:
            continue
        net_hours = item.pop("net_hours", [])
        item.setdefault("sources", None)
        item["suggestion"] = suggest_threshold_change(conn, item["elder_id"], item["kind"], item["sources"], net_hours)
        out.append(item)
    return out


def _count_silence_source(entry: dict[str, Any], basis: str, data_ts: float, since_ts: float | None) -> None:
    """Count a silence case as the model's or the safety net's; of the net's, keep its window's hours."""
    sources = entry.setdefault("sources", {SILENCE_MODEL: 0, SAFETY_NET: 0})
    if basis != "rule":
        sources[SILENCE_MODEL] += 1
        return
    sources[SAFETY_NET] += 1
    if since_ts is not None:  # the net's finding starts its silence its hours before it (detect.rules)
        entry.setdefault("net_hours", []).append(round((data_ts - since_ts) / 3600.0, 2))


class Knob(NamedTuple):
    """A threshold to ease, and the factor that makes it less eager."""

    name: str
    factor: float


def _net_knob(current: Thresholds, net_hours: Sequence[float]) -> str:
    """The net's hours most of its calls were made with: the learning week's, or the learned net's.

    A call whose window is the learning week's hours (and not the learned net's too) was the learning week's;
    any other, the learned net's, which governs all but that week (a window neither is now: changed since).
    """
    if current.ceiling_hours == current.learned_ceiling_hours:
        return "learned_ceiling_hours"  # the windows cannot tell the two apart
    cold = sum(1 for h in net_hours if h == current.ceiling_hours)
    return "ceiling_hours" if cold > len(net_hours) - cold else "learned_ceiling_hours"


def _knob(kind: str, current: Thresholds, sources: dict[str, int] | None, net_hours: Sequence[float]) -> Knob | None:
    """The threshold behind most of the counted calls of ``kind``, and the factor that makes it less eager."""
    if kind == "no_activity" and sources and sources[SAFETY_NET] > sources[SILENCE_MODEL]:
        return Knob(_net_knob(current, net_hours), NET_HOURS_FACTOR)
    knob = FALSE_ALARM_KNOBS.get(kind)
    return None if knob is None else Knob(*knob)


def _silence_note(sources: dict[str, int], name: str) -> dict[str, str]:
    """Which share of the calls came from which, and so which threshold is suggested."""
    model, net = sources[SILENCE_MODEL], sources[SAFETY_NET]
    return {
        "zh": f"{model + net} 次误报中 {net} 次来自兜底规则、{model} 次来自老人的用水习惯模型，建议调整 {name}。",
        "en": (
            f"Of {model + net} false alarms, {net} came from the safety net and {model} from the elder's "
            f"silence model: {name} is the one to ease."
        ),
    }


def suggest_threshold_change(
    conn: Connection,
    elder_id: str,
    kind: str,
    sources: dict[str, int] | None = None,
    net_hours: Sequence[float] = (),
) -> dict[str, Any] | None:
    """A less eager value of the threshold behind ``kind`` for one elder, within its bounds; None if none applies.

    ``sources`` (silences only): how many calls the silence model and the safety net made, ``net_hours`` the
    net's hours on each of its own; when most were the net's, its hours are suggested, not the sensitivity.
    """
    if kind not in FALSE_ALARM_KNOBS:
        return None
    community = conn.execute(select(elders.c.community).where(elders.c.elder_id == elder_id)).scalar()
    if community is None:
        return None
    current, _sources = effective_thresholds(conn, elder_id, community)
    knob = _knob(kind, current, sources, net_hours)
    if knob is None:
        return None
    old = float(getattr(current, knob.name))
    spec = THRESHOLD_SPECS[knob.name]
    new = min(spec.high, max(spec.low, old * knob.factor))
    if new == old:
        return None  # already at its bound: an operator must look at this elder another way
    suggestion: dict[str, Any] = {
        "scope": "elder",
        "scope_id": elder_id,
        "name": knob.name,
        "old": old,
        "new": round(new, 6),
        "unit": spec.unit,
    }
    if sources:
        suggestion["note"] = _silence_note(sources, knob.name)
    return suggestion


# -- outcomes report: what the cadres found, per community (issue 17, GET /reports/outcomes) -----------------

#: A month, as ``tapwatch eval`` counts it: 30 days.
MONTH_S = 30 * 86400.0
#: Below this many months covered (3 elder-days) a rate says nothing: a community registered an hour ago
#: with one case would show thousands per elder-month. The counts are still given.
MIN_MONTHS = 0.1
#: A person's outcomes that say no one needed help: the false calls that reach a cadre (``away`` is apart).
FALSE_CALL_OUTCOMES = ("ok", "false_alarm")
#: A person's outcomes that say someone needed help.
CONFIRMED_OUTCOMES = ("needed_help", "hospital")
#: The outcome mix of a report, in this order: a person's outcomes, then the data's, then still open.
MIX_KEYS = ("needed_help", "hospital", "ok", "false_alarm", "away", "device_fault", "closed_by_data", "open")


def outcome_report(
    conn: Connection, since: float, until: float, communities: Collection[str] | None = None
) -> dict[str, Any]:
    """What happened to the cases raised in ``[since, until)``, per community and in total.

    ``communities`` limits it to those communities (None: all). Each figure set
    (:func:`_figures`) has the elders monitored (active and consenting now), the
    elder-months and meter-months the period covered (each elder while registered and
    consenting in the period, consent as it was then: :func:`_consenting`, under the community she
    lived in then: :func:`_homes`), the community-route
    and maintenance-route cases (:func:`alerts.policy.for_maintenance`) with their
    rates, the outcome mix, false calls (``ok``/``false_alarm`` a person recorded
    on a community case) and confirmed ones (``needed_help``/``hospital``) per
    elder-month, the minutes to acknowledge and to resolve (median, p90), and the
    same by kind (a case under each kind it held). Communities appear if they have an
    elder or a case.
    """
    # An elder who moved counts in each community for the time she lived there: scoped by where she lives
    # now, or any community in scope she left (a move is audited in both communities).
    elder_rows = conn.execute(_scoped_or_left(_covered_elders(since, until), communities)).all()
    meter_rows = conn.execute(_scoped_or_left(_covered_meters(since, until), communities)).all()
    cases = _cases(conn.execute(_scoped(_raised(since, until), alerts.c.community, communities)))
    history = _update_history(conn, sorted({r.elder_id for r in elder_rows}))
    consenting = _consenting(history, elder_rows)
    homes = _homes(history, elder_rows)
    elder_spans = [s for r in elder_rows for a, b in consenting[r.elder_id] for s in _lived(homes[r.elder_id], a, b)]
    meter_spans = [
        s
        for r in meter_rows
        for a, b in consenting.get(r.elder_id, ())
        if max(a, r.installed_at) < min(b, _end(r.retired_at))
        for s in _lived(homes[r.elder_id], max(a, r.installed_at), min(b, _end(r.retired_at)))
    ]
    now = [r for r in elder_rows if r.retired_at is None and r.consent]
    if communities is not None:
        elder_spans = [s for s in elder_spans if s.community in communities]
        meter_spans = [s for s in meter_spans if s.community in communities]
        now = [r for r in now if r.community in communities]
    by_community: dict[str, tuple[list[Any], list[Any], list[Any], list[Any]]] = {}
    for rows, at in ((now, 0), (elder_spans, 1), (meter_spans, 2), (cases, 3)):
        for row in rows:  # grouped once: a district has tens of communities and a year may hold 100,000 cases
            by_community.setdefault(row.community, ([], [], [], []))[at].append(row)
    names = sorted(by_community)
    per = {name: _figures(*by_community[name], since, until) for name in names}
    total = _figures(now, elder_spans, meter_spans, cases, since, until)
    return {"since": since, "until": until, "communities": [{"community": n, **per[n]} for n in names], "total": total}


class _Case(NamedTuple):
    """What the report needs of one case; ``maintenance`` is :func:`alerts.policy.for_maintenance`."""

    community: str
    kind: str
    maintenance: bool
    state: str
    outcome: str | None
    raised_at: float
    acknowledged_at: float | None
    resolved_at: float | None
    kinds: tuple[str, ...]  # every kind the case held, first one first (``kind``)


class _Span(NamedTuple):
    """A stretch of time an elder (or a meter) was monitored with consent, in a community."""

    community: str
    start: float
    end: float


def _end(retired_at: float | None) -> float:
    return float("inf") if retired_at is None else float(retired_at)


def _raised(since: float, until: float) -> Select[Any]:
    """Cases raised in ``[since, until)``; of ``details`` only ``route`` and ``kinds`` (JSON paths, on both stores)."""
    return select(
        alerts.c.community,
        alerts.c.kind,
        alerts.c.details["route"].as_string().label("route"),
        alerts.c.state,
        alerts.c.outcome,
        alerts.c.raised_at,
        alerts.c.acknowledged_at,
        alerts.c.resolved_at,
        alerts.c.details["kinds"].label("kinds"),
    ).where(alerts.c.raised_at >= since, alerts.c.raised_at < until)


def _cases(rows: Any) -> list[_Case]:
    """The rows of :func:`_raised` as :class:`_Case`, the route decided once per kind and stored route."""
    routes: dict[tuple[str, str | None], bool] = {}
    out = []
    for community, kind, route, state, outcome, raised_at, acknowledged_at, resolved_at, held in rows:
        maintenance = routes.get((kind, route))
        if maintenance is None:
            maintenance = routes[kind, route] = for_maintenance({"kind": kind, "details": {"route": route}})
        # A case stored before grouping holds its one kind.
        kinds = tuple(str(k) for k in held) if isinstance(held, list) and held else (kind,)
        out.append(_Case(community, kind, maintenance, state, outcome, raised_at, acknowledged_at, resolved_at, kinds))
    return out


def _scoped(query: Select[Any], column: Any, communities: Collection[str] | None) -> Select[Any]:
    return query if communities is None else query.where(column.in_(list(communities)))


def _scoped_or_left(query: Select[Any], communities: Collection[str] | None) -> Select[Any]:
    """``query`` (of elders) for elders in ``communities`` now, or whose update was audited in one (a move)."""
    if communities is None:
        return query
    audited = select(audit_log.c.target).where(
        audit_log.c.action == "elder.update", audit_log.c.community.in_(list(communities))
    )
    return query.where(
        or_(elders.c.community.in_(list(communities)), (literal("elder:") + elders.c.elder_id).in_(audited))
    )


def _covered_elders(since: float, until: float) -> Select[Any]:
    """Elders registered before ``until`` and not retired before ``since``, consenting now or not."""
    return select(
        elders.c.elder_id, elders.c.community, elders.c.created_at, elders.c.retired_at, elders.c.consent
    ).where(
        elders.c.created_at < until,
        or_(elders.c.retired_at.is_(None), elders.c.retired_at > since),
    )


def _covered_meters(since: float, until: float) -> Select[Any]:
    """Meters installed before ``until`` and not retired before ``since``, with their elder."""
    return (
        select(elders.c.elder_id, elders.c.community, meters.c.installed_at, meters.c.retired_at)
        .join(elders, elders.c.elder_id == meters.c.elder_id)
        .where(meters.c.installed_at < until, or_(meters.c.retired_at.is_(None), meters.c.retired_at > since))
    )


#: Elders whose audit history one query reads (bound parameters stay well under every database's limit).
_HISTORY_CHUNK = 500


def _update_history(conn: Connection, elder_ids: Sequence[str]) -> list[Any]:
    """The ``elder.update`` audit rows of these elders as (target, at, old, new), oldest first (by the
    (target, action) index, not the city's)."""
    rows: list[Any] = []
    for k in range(0, len(elder_ids), _HISTORY_CHUNK):
        targets = [f"elder:{e}" for e in elder_ids[k : k + _HISTORY_CHUNK]]
        rows += conn.execute(
            select(audit_log.c.target, audit_log.c.at, audit_log.c.id, audit_log.c.old, audit_log.c.new).where(
                audit_log.c.target.in_(targets), audit_log.c.action == "elder.update"
            )
        ).all()
    rows.sort(key=lambda r: (r.at, r.id))
    return [(r.target, r.at, r.old, r.new) for r in rows]


def _homes(history: Sequence[Any], elder_rows: Sequence[Any]) -> dict[str, list[tuple[float, str]]]:
    """Each elder's communities as (from, community), oldest first, from the moves in the audit log.

    Before her first recorded move she lived in the community that move left (``PATCH /elders`` and
    ``tapwatch register`` audit a move's old and new community); an elder who never moved lives where she is now.
    """
    moves: dict[str, list[tuple[float, Any, Any]]] = {}
    for target, at, old, new in history:
        if isinstance(new, dict) and isinstance(new.get("community"), str):
            before = old.get("community") if isinstance(old, dict) else None
            moves.setdefault(target.removeprefix("elder:"), []).append((float(at), before, new["community"]))
    out: dict[str, list[tuple[float, str]]] = {}
    for r in elder_rows:
        steps = moves.get(r.elder_id, [])
        first = steps[0][1] if steps and isinstance(steps[0][1], str) else r.community
        out[r.elder_id] = [(float("-inf"), first), *((at, community) for at, _, community in steps)]
    return out


def _lived(homes: Sequence[tuple[float, str]], start: float, end: float) -> list[_Span]:
    """``[start, end)`` cut where the elder moved: one span per community she lived in then."""
    out = []
    for k, (since, community) in enumerate(homes):
        a, b = max(start, since), min(end, homes[k + 1][0] if k + 1 < len(homes) else end)
        if a < b:
            out.append(_Span(community, a, b))
    return out


def _consenting(history: Sequence[Any], elder_rows: Sequence[Any]) -> dict[str, list[tuple[float, float]]]:
    """Each elder's stretches of consent while registered, from the audit log's history of consent.

    Every change of consent is an audited ``elder.update`` (``PATCH /elders/{id}`` and ``tapwatch register``:
    ``new.consent``; an older ``tapwatch register``: ``new.fields`` naming ``consent``, which it can only give).
    Consent before the first change is the opposite of that change; an elder whose consent never changed has had
    it as it is now since registration. Retirement ends the last stretch.
    """
    changes = _consent_changes(history)
    out: dict[str, list[tuple[float, float]]] = {}
    for r in elder_rows:
        steps = changes.get(r.elder_id, [])
        state = (not steps[0][1]) if steps else bool(r.consent)
        start, end = float(r.created_at), _end(r.retired_at)
        spans: list[tuple[float, float]] = []
        for at, value in steps:
            if state and not value and min(at, end) > start:
                spans.append((start, min(at, end)))
            if value and not state:
                start = max(at, float(r.created_at))
            state = value
        if state and end > start:
            spans.append((start, end))
        out[r.elder_id] = spans
    return out


def _consent_changes(history: Sequence[Any]) -> dict[str, list[tuple[float, bool]]]:
    """Each elder's changes of consent in the ``elder.update`` history (:func:`_update_history`), oldest first."""
    changes: dict[str, list[tuple[float, bool]]] = {}
    for target, at, _, new in history:
        elder_id = target.removeprefix("elder:")
        if not isinstance(new, dict):
            continue
        if isinstance(new.get("consent"), bool):
            changes.setdefault(elder_id, []).append((float(at), new["consent"]))
        elif "consent" in (new.get("fields") or ()):
            changes.setdefault(elder_id, []).append((float(at), True))  # the register file can only give it
    return changes


def consent_returns(conn: Connection, elder_ids: Sequence[str]) -> dict[str, list[float]]:
    """When each elder's consent was given back after it had been withdrawn, oldest first (elders with none left out).

    Withdrawing it erased her meters' routine and register (``store.registry.set_consent``) and her readings were
    dropped until then: monitoring started afresh there, which a replay of her stored readings must do too.
    """
    out: dict[str, list[float]] = {}
    for elder_id, steps in _consent_changes(_update_history(conn, sorted(elder_ids))).items():
        given = not steps[0][1]  # before its first recorded change, consent was the opposite of it
        for at, value in steps:
            if value and not given:
                out.setdefault(elder_id, []).append(at)
            given = value
    return out


def _months(spans: Sequence[_Span], since: float, until: float) -> float:
    """Months (30 days) of the spans inside ``[since, until)``, summed."""
    seconds = sum(max(0.0, min(until, s.end) - max(since, s.start)) for s in spans)
    return seconds / MONTH_S


def _figures(
    monitored: Sequence[Any],
    elder_spans: Sequence[_Span],
    meter_spans: Sequence[_Span],
    cases: Sequence[_Case],
    since: float,
    until: float,
) -> dict[str, Any]:
    """The figures of one community (or all of them) from its elders monitored now, consent spans and cases."""
    elder_months = _months(elder_spans, since, until)
    meter_months = _months(meter_spans, since, until)
    community = [c for c in cases if not c.maintenance]
    maintenance = [c for c in cases if c.maintenance]
    by_kind: dict[str, list[_Case]] = {}
    for case in cases:  # under each kind it held: a fall that joined a routine change's case is a fall's case too
        for kind in case.kinds:
            by_kind.setdefault(kind, []).append(case)
    mix = _mix(community)
    false_calls = sum(mix[o] for o in FALSE_CALL_OUTCOMES)
    confirmed = sum(mix[o] for o in CONFIRMED_OUTCOMES)
    return {
        "elders": len(monitored),
        "elder_months": round(elder_months, 2),
        "meter_months": round(meter_months, 2),
        "community_cases": len(community),
        "community_cases_per_elder_month": _rate(len(community), elder_months),
        "maintenance_cases": len(maintenance),
        "maintenance_cases_per_meter_month": _rate(len(maintenance), meter_months),
        "outcomes": mix,
        "maintenance_outcomes": _mix(maintenance),
        "false_calls": false_calls,
        "false_calls_per_elder_month": _rate(false_calls, elder_months),
        "confirmed": confirmed,
        "confirmed_per_elder_month": _rate(confirmed, elder_months),
        "acknowledge": _to_acknowledge(community),
        "resolve": _to_resolve(community),
        "by_kind": [_kind_figures(kind, by_kind[kind]) for kind in sorted(by_kind)],
    }


def _kind_figures(kind: str, cases: Sequence[_Case]) -> dict[str, Any]:
    """One kind's cases: how many on each route, its outcome mix, and its times to acknowledge and resolve."""
    maintenance = sum(1 for c in cases if c.maintenance)
    return {
        "kind": kind,
        "community_cases": len(cases) - maintenance,
        "maintenance_cases": maintenance,
        "outcomes": _mix(cases),
        "acknowledge": _to_acknowledge(cases),
        "resolve": _to_resolve(cases),
    }


def _resolved_by_person(case: _Case) -> bool:
    """A person recorded the outcome (also on a case the data had closed: then resolved_at is the closing)."""
    return case.state == "resolved" and case.outcome in HUMAN_OUTCOMES


def _to_acknowledge(cases: Sequence[_Case]) -> dict[str, Any]:
    """:func:`_timing` from the raise to the acknowledgement, over the cases acknowledged."""
    return _timing([c.acknowledged_at - c.raised_at for c in cases if c.acknowledged_at is not None])


def _to_resolve(cases: Sequence[_Case]) -> dict[str, Any]:
    """:func:`_timing` from the raise to the resolution, over the cases whose outcome a person recorded."""
    return _timing([c.resolved_at - c.raised_at for c in cases if c.resolved_at is not None and _resolved_by_person(c)])


def _mix(cases: Sequence[_Case]) -> dict[str, int]:
    """How many cases ended with each outcome; ``closed_by_data`` with no person's outcome; ``open`` not resolved."""
    mix = dict.fromkeys(MIX_KEYS, 0)
    for case in cases:
        if case.state != "resolved":
            mix["open"] += 1
        elif case.outcome in SYSTEM_OUTCOMES:
            mix["closed_by_data"] += 1
        elif case.outcome in mix:
            mix[case.outcome] += 1
    return mix


def _rate(count: int, months: float) -> float | None:
    """Per month, to 3 decimals; None when the period covered less than :data:`MIN_MONTHS`."""
    return round(count / months, 3) if months >= MIN_MONTHS else None


def _timing(seconds: Sequence[float]) -> dict[str, Any]:
    """How many, and the median and 90th percentile in minutes (None when there are none)."""
    minutes = sorted(max(0.0, s) / 60.0 for s in seconds)
    return {"count": len(minutes), "median_min": _quantile(minutes, 0.5), "p90_min": _quantile(minutes, 0.9)}


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, interpolated between neighbours (as numpy's default), 1 decimal.

    >>> _quantile([1.0, 2.0, 3.0, 4.0], 0.5), _quantile([10.0], 0.9), _quantile([], 0.5)
    (2.5, 10.0, None)
    >>> _quantile([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0], 0.9)
    90.0
    """
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 1)
