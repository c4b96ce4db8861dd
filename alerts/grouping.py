"""Which case a finding belongs to, and how a case holds several findings: one rule for live and replay.

Work orders, not findings, are what cost a cadre or a plumber a trip, so
findings are grouped into cases as Alertmanager groups notifications:

* **one open community case per elder**: a second community kind found while
  the elder's community case is open (``continuous_flow`` during a
  ``no_activity`` case) *joins* that case; its severity rises to the more
  severe of the two;
* **one maintenance case per meter**: device kinds (``meter_offline``,
  ``meter_fault``) and findings routed to maintenance (a slow leak) join the
  meter's open maintenance case, or reopen it when the data closed it within
  the maintenance hold-down (7 days by default), counting occurrences ("3rd
  time this week"); a person's resolution ends the grouping;
* **flapping**: a community condition that comes back within the flap
  hold-down (6 h by default) of the data closing the elder's community case
  reopens that case (same id, same work order, one visit) instead of raising
  a new one, if the case held that kind. Both hold-downs count **data time**
  (the finding's time against the data time the case's last kind cleared):
  live, after an outage caught up, and in a replay alike. A person's
  resolution (or an outcome recorded on the closed case) ends the grouping.
  :func:`reopens` is the one rule; :class:`HoldDowns` carries its two spans.

A case keeps its kinds in ``details`` (a JSON column both stores already
have; the kinds are read only with their case, never searched across cases):
``kinds`` every kind it has held, first one first (also the row's ``kind``);
``cleared`` the data time each kind cleared at (a kind back again leaves it);
``occurrences`` how many findings the case grouped; ``first_ts`` the data time
of its first finding (``data_ts`` moves on when the case reopens); ``last`` the data time of
each kind's newest finding; ``severities`` each kind's severity; ``episodes`` what a person's
resolution teaches per kind (:func:`taught`): the meter, start (``since``), data time and rate
(``lpm``) of each kind's newest finding. The case's
severity is that of its most severe active kind: it rises when a more severe
kind joins (re-notified and escalated as a raise would be, even if someone had
acknowledged the case), and falls back as kinds clear, so a kind that never
clears by the data (``routine_change``) cannot hide a fall that joins later.
The data closes a case when every kind it holds has cleared.

The functions here are pure: :class:`alerts.lifecycle.Lifecycle` applies them
to stored rows, :class:`engine.alerting.OpenAlerts` to rows it keeps in memory.

>>> f = Finding("M1", "no_activity", "high", 100.0, "", "")
>>> case = {"kind": "no_activity", "meter_id": "M1", "details": started(f)}
>>> case_key(f), active_kinds(case)
('community', ['no_activity'])
>>> flow = Finding("M1", "continuous_flow", "medium", 200.0, "", "")
>>> case["details"] = joined(case, flow)
>>> kinds_of(case), active_kinds(case), occurrences(case)
(['no_activity', 'continuous_flow'], ['no_activity', 'continuous_flow'], 2)
>>> [(a["kind"], a["data_ts"]) for a in taught(case)]  # a person's outcome teaches both
[('no_activity', 100.0), ('continuous_flow', 200.0)]
>>> case["details"] = cleared(case, "no_activity", 300.0)
>>> active_kinds(case), closed_at(case), severity({**case, "severity": "high"})
(['continuous_flow'], 300.0, 'medium')
>>> [a["kind"] for a in taught({**case, "details": cleared(case, "continuous_flow", 400.0, withdrawn=True)})]
['no_activity']
>>> case_key(Finding("M1", "meter_offline", "low", 100.0, "", ""))
'maintenance:M1'
>>> more_severe("medium", "high"), more_severe("high", "low")
('high', 'high')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from core.domain import DEVICE_KINDS, MAINTENANCE, WITHDRAWN, Finding, severity_rank

_Case = TypeVar("_Case", bound=Mapping[str, Any])

#: The elder's one community case.
COMMUNITY_CASE = "community"
#: Prefix of a meter's maintenance case key: ``maintenance:<meter_id>``.
MAINTENANCE_CASE = "maintenance:"
#: How long after the data closed a meter's maintenance case a new finding of that meter reopens it (default).
MAINTENANCE_HOLD_DOWN_S = 7 * 86400.0
#: How long after the data closed an elder's community case the same condition back reopens it (default).
FLAP_HOLD_DOWN_S = 6 * 3600.0
#: Keys the case adds to a finding's details (a detector's own details never use them).
CASE_FIELDS = (
    "kinds",
    "cleared",
    "occurrences",
    "first_ts",
    "last",
    "severities",
    "episodes",
    "messages",
    "reopened",
    "message_kind",
)


class HoldDowns(NamedTuple):
    """How long after the data closed a case a finding reopens it, in data time (seconds), per route.

    Live: ``TAPWATCH_FLAP_HOLD_DOWN_HOURS`` and ``TAPWATCH_MAINTENANCE_HOLD_DOWN_DAYS``
    (:meth:`from_settings`); replay, backtest and eval take the same.
    """

    flap_s: float = FLAP_HOLD_DOWN_S
    maintenance_s: float = MAINTENANCE_HOLD_DOWN_S

    @classmethod
    def from_settings(cls, settings: Any) -> HoldDowns:
        """The hold-downs a :class:`core.settings.Settings` sets."""
        return cls(settings.flap_hold_down_hours * 3600.0, settings.maintenance_hold_down_days * 86400.0)


#: The defaults' hold-downs (6 h flapping, 7 days maintenance).
HOLD_DOWNS = HoldDowns()


def case_key(f: Finding) -> str:
    """The case ``f`` belongs to: the elder's community case, or its meter's maintenance case."""
    if f.kind in DEVICE_KINDS or f.route == MAINTENANCE:
        return MAINTENANCE_CASE + f.meter_id
    return COMMUNITY_CASE


def row_key(case: Mapping[str, Any]) -> str:
    """The key of a stored case (kind and ``details.route`` say its route, as :func:`alerts.policy.for_maintenance`)."""
    if case["kind"] in DEVICE_KINDS or (case.get("details") or {}).get("route") == MAINTENANCE:
        return MAINTENANCE_CASE + str(case["meter_id"])
    return COMMUNITY_CASE


def kinds_of(case: Mapping[str, Any]) -> list[str]:
    """Every kind the case has held, first one first (a case stored before grouping: its one kind)."""
    kinds = (case.get("details") or {}).get("kinds")
    return [str(k) for k in kinds] if isinstance(kinds, list) and kinds else [str(case["kind"])]


def active_kinds(case: Mapping[str, Any]) -> list[str]:
    """The kinds of the case that have not cleared: the data closes the case when none is left."""
    gone = (case.get("details") or {}).get("cleared") or {}
    return [k for k in kinds_of(case) if k not in gone]


def withdrawn_kinds(case: Mapping[str, Any]) -> list[str]:
    """The kinds of the case the detector took back (a misread reading, :func:`cleared`): no water ran for them.

    >>> case = {"kind": "continuous_flow", "meter_id": "M1", "details": started(Finding("M1", "continuous_flow",
    ...         "high", 100.0, "", ""))}
    >>> withdrawn_kinds(case), withdrawn_kinds({**case, "details": cleared(case, "continuous_flow", 200.0, True)})
    ([], ['continuous_flow'])
    """
    known = (case.get("details") or {}).get("episodes")
    if not isinstance(known, Mapping):
        return []
    return [k for k in kinds_of(case) if isinstance(known.get(k), Mapping) and known[k].get(WITHDRAWN)]


def occurrences(case: Mapping[str, Any]) -> int:
    """How many findings the case grouped (1 for a case that grouped none)."""
    return int((case.get("details") or {}).get("occurrences") or 1)


def last_ts(case: Mapping[str, Any], kind: str) -> float:
    """Data time of the newest finding of ``kind`` the case grouped (a case stored before grouping: its data time)."""
    last = (case.get("details") or {}).get("last") or {}
    if kind in last:
        return float(last[kind])
    return float(case.get("data_ts") or 0.0) if kind == case.get("kind") else float("-inf")


def closed_at(case: Mapping[str, Any]) -> float:
    """Data time the newest of its kinds cleared (a case stored before grouping: its data time)."""
    gone = (case.get("details") or {}).get("cleared") or {}
    return max((float(t) for t in gone.values()), default=float(case.get("data_ts") or 0.0))


def started(f: Finding, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The details of a case ``f`` raises: its own (or ``base``) plus the case's fields."""
    details = dict(f.details or {} if base is None else base)
    details.update(
        kinds=[f.kind],
        cleared={},
        occurrences=1,
        first_ts=f.ts,
        last={f.kind: f.ts},
        severities={f.kind: f.severity},
        episodes={f.kind: episode(f)},
        messages={f.kind: said(f)},
    )
    return details


def joined(case: Mapping[str, Any], f: Finding) -> dict[str, Any]:
    """The case's details once ``f`` joined it (or came back to it): one more occurrence, ``f.kind`` active."""
    details = dict(case.get("details") or {})
    kinds = kinds_of(case)
    gone = {k: t for k, t in (details.get("cleared") or {}).items() if k != f.kind}
    details.update(
        kinds=kinds if f.kind in kinds else [*kinds, f.kind],
        cleared=gone,
        occurrences=occurrences(case) + 1,
        last={**(details.get("last") or {}), f.kind: max(last_ts(case, f.kind), f.ts)},
        severities={**(details.get("severities") or {}), f.kind: f.severity},
        episodes={**(details.get("episodes") or {}), f.kind: episode(f)},
        messages={**(details.get("messages") or {}), f.kind: said(f)},
    )
    return details


def said(f: Finding) -> dict[str, str]:
    """What ``f`` said, in each language: a case's later texts tell its gravest open kind in its own words."""
    return {"zh": f.message_zh, "en": f.message_en}


def episode(f: Finding) -> dict[str, Any]:
    """What a person's outcome teaches of ``f`` (:func:`engine.outcomes.apply_outcome`): meter, start, time, rate."""
    lpm = (f.details or {}).get("lpm")
    return {"meter_id": f.meter_id, "since": f.since, "ts": f.ts, "lpm": lpm if isinstance(lpm, int | float) else None}


def taught(case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each kind the case held with its newest finding's episode, first kind first, shaped as a case row.

    What a person's resolution teaches the detectors (live :func:`engine.meterstate.teach_outcome`, replay
    :class:`engine.replay.Replayer`): every kind, each on the meter that found it, with its own start and
    time, whether it is still active or the data cleared it. A case stored before episodes were kept
    teaches its row (its first kind), as it did then.
    """
    known = (case.get("details") or {}).get("episodes")
    if not isinstance(known, Mapping) or not known:
        return [dict(case)]
    out = []
    for kind in kinds_of(case):
        ep = known.get(kind)
        if isinstance(ep, Mapping) and not ep.get(WITHDRAWN):
            details = {} if ep.get("lpm") is None else {"lpm": ep["lpm"]}
            row = {"since_ts": ep.get("since"), "data_ts": ep["ts"], "details": details}
            out.append({"kind": kind, "meter_id": ep.get("meter_id", case["meter_id"]), **row})
    return out


def cleared(case: Mapping[str, Any], kind: str, ts: float, withdrawn: bool = False) -> dict[str, Any]:
    """The case's details once ``kind`` cleared at data time ``ts``.

    ``withdrawn``: the detector took that finding back (a misread reading, :data:`core.domain.WITHDRAWN`): its
    episode is marked, and a person's resolution teaches nothing of it (:func:`taught`), no water having run;
    the kind found again starts a fresh episode.
    """
    details = dict(case.get("details") or {})
    details.setdefault("kinds", kinds_of(case))
    details["cleared"] = {**(details.get("cleared") or {}), kind: ts}
    episodes = details.get("episodes")
    if withdrawn and isinstance(episodes, Mapping) and isinstance(episodes.get(kind), Mapping):
        details["episodes"] = {**episodes, kind: {**episodes[kind], WITHDRAWN: True}}
    return details


def stale(case: Mapping[str, Any], f: Finding) -> bool:
    """``f`` is of a kind the case holds and no newer than what it already grouped: a finding applied again.

    A restart rebuilding a meter's state from stored readings may apply findings again; none counts twice.
    """
    return f.ts <= last_ts(case, f.kind)


def repeats(case: Mapping[str, Any], f: Finding) -> bool:
    """``f`` adds nothing to the open case: its kind is active there, or it is :func:`stale`."""
    return f.kind in active_kinds(case) or stale(case, f)


def regroups(case: Mapping[str, Any], f: Finding, hold_down_s: float) -> bool:
    """A closed case ``f`` could reopen: the data closed it, ``hold_down_s`` or less (data time) before ``f``."""
    return bool(case.get("by_data")) and 0.0 <= f.ts - closed_at(case) <= hold_down_s


def reopens(case: Mapping[str, Any], f: Finding, hold_downs: HoldDowns) -> bool:
    """``f`` reopens ``case``, the newest closed case of its key (``by_data``: the data closed it, no person).

    A meter's maintenance case: any of the meter's maintenance findings within the maintenance
    hold-down. The elder's community case: a kind the case held, back within the flap hold-down
    (flapping: a silence broken by one flush, a tap turned off and on). Live and in a replay the
    reopened case re-notifies and escalates afresh (a call to the cadre) but stays one case with
    one work order and one visit.

    >>> f = Finding("M1", "no_activity", "high", 100.0, "", "")
    >>> case = {"kind": "no_activity", "meter_id": "M1", "details": cleared({"details": started(f),
    ...         "kind": "no_activity"}, "no_activity", 1000.0), "by_data": True}
    >>> back = Finding("M1", "no_activity", "high", 1000.0 + 6 * 3600, "", "")
    >>> later = Finding("M1", "no_activity", "high", back.ts + 1, "", "")
    >>> reopens(case, back, HoldDowns()), reopens(case, later, HoldDowns())
    (True, False)
    >>> flow = Finding("M1", "continuous_flow", "high", back.ts, "", "")
    >>> reopens(case, flow, HoldDowns())  # another condition: a new case
    False
    >>> reopens({**case, "by_data": False}, back, HoldDowns())  # a person judged it
    False
    """
    if (case.get("case_key") or row_key(case)) == COMMUNITY_CASE:  # a stored key wins: replay's cases have no route
        return f.kind in kinds_of(case) and regroups(case, f, hold_downs.flap_s)
    return regroups(case, f, hold_downs.maintenance_s)


def told(case: _Case) -> _Case:
    """The case as its texts tell it now: under its most severe kind still open, in that kind's newest finding's words
    (message and start), the case's first kind on a tie.

    A fall that joined a routine change's case and raised it to high is what the work order its rise brings on is
    about: labelled, worded and advised as a routine change, it asked the cadre to "see how they are". A case
    reopened by another kind it held (a flow back after a silence's case closed) is told as that flow, not "no water
    use". A case stored before its kinds kept their words (no ``messages``) is labelled with the kind its message
    is of (``message_kind``).

    >>> routine = Finding("M1", "routine_change", "low", 100.0, "起床晚了。", "Rose late.")
    >>> case = {"kind": "routine_change", "severity": "low", "message_zh": "起床晚了。", "since_ts": None,
    ...         "details": started(routine)}
    >>> fall = Finding("M1", "no_activity", "high", 200.0, "9 小时未用水。", "No water for 9 h.", since=150.0)
    >>> case = {**case, "severity": "high", "details": joined(case, fall)}
    >>> [told(case)[k] for k in ("kind", "message_zh", "since_ts")]
    ['no_activity', '9 小时未用水。', 150.0]
    >>> [told({**case, "details": cleared(case, "no_activity", 300.0)})[k] for k in ("kind", "message_zh")]
    ['routine_change', '起床晚了。']
    >>> told({"kind": "no_activity", "details": {"message_kind": "continuous_flow"}})["kind"]
    'continuous_flow'
    """
    details = case.get("details") or {}
    words = details.get("messages")
    kind = gravest_open(case)
    if isinstance(words, Mapping) and isinstance(words.get(kind), Mapping):
        episodes = details.get("episodes") or {}
        since = episodes[kind].get("since") if isinstance(episodes.get(kind), Mapping) else case.get("since_ts")
        text = words[kind]
        return {
            **case,
            "kind": kind,
            "message_zh": text.get("zh", ""),
            "message_en": text.get("en", ""),
            "since_ts": since,
        }  # type: ignore[return-value]
    labelled = details.get("message_kind")
    return {**case, "kind": labelled} if labelled else case  # type: ignore[return-value]


def family_told(case: Mapping[str, Any]) -> list[str]:
    """The kinds the family's level-1 texts of the case told of: ``details.family_told``, else the case's first kind
    (the one its level 1 told at the raise)."""
    kinds = (case.get("details") or {}).get("family_told")
    return [str(k) for k in kinds] if isinstance(kinds, list) else [str(case["kind"])]


def family_news(case: Mapping[str, Any], details: Mapping[str, Any]) -> str | None:
    """The kind a rise in severity to ``details`` (a graver kind joined ``case``) must text the family of: the case's
    gravest open kind then, unless a level-1 text of the case already told of it (:func:`family_told`); else None.

    The family is the fastest to reach her: texted of a routine change, they must hear of the fall that joined it.

    >>> routine = Finding("M1", "routine_change", "low", 100.0, "", "")
    >>> case = {"kind": "routine_change", "severity": "low", "details": started(routine)}
    >>> fall = Finding("M1", "no_activity", "high", 200.0, "", "")
    >>> family_news(case, joined(case, fall)), family_news({**case, "details": {"family_told": ["no_activity"]}},
    ...     joined(case, fall))
    ('no_activity', None)
    """
    kind = gravest_open({**case, "details": details})
    return None if kind in family_told(case) else kind


def gravest_open(case: Mapping[str, Any]) -> str:
    """The most severe kind of the case still open (the first of them on a tie); its first kind when none is."""
    known = (case.get("details") or {}).get("severities") or {}
    open_kinds = active_kinds(case)
    if not open_kinds:
        return str(case["kind"])
    return min(open_kinds, key=lambda k: severity_rank(str(known.get(k, case.get("severity", "")))))


def severity(case: Mapping[str, Any]) -> str:
    """The severity of the case's most severe active kind (no active kind: the case's stored severity)."""
    known = (case.get("details") or {}).get("severities") or {}
    found = [str(known.get(k, case["severity"])) for k in active_kinds(case)]
    return min(found, key=severity_rank) if found else str(case["severity"])


def rises(before: str, after: str) -> bool:
    """``after`` is more severe than ``before``."""
    return severity_rank(after) < severity_rank(before)


def more_severe(a: str, b: str) -> str:
    """The more severe of two severities (unknown ones count as least severe)."""
    return a if severity_rank(a) <= severity_rank(b) else b


def clear_order(cases: Sequence[_Case], f: Finding) -> _Case | None:
    """The open case a resolved finding clears a kind of, if any.

    The finding's meter's maintenance case first (the detectors do not say which route a clear
    belongs to), then the elder's community case, then any other open case holding the kind
    (cases opened before grouping).
    """
    holding = [c for c in cases if f.kind in active_kinds(c)]
    for key in (MAINTENANCE_CASE + f.meter_id, COMMUNITY_CASE):
        for c in holding:
            if c.get("case_key", row_key(c)) == key:
                return c
    others = [c for c in holding if not str(c.get("case_key", row_key(c))).startswith(MAINTENANCE_CASE)]
    return others[0] if others else None
