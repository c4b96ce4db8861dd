"""Escalation policy: who hears about an unacknowledged alert, and when.

As in Jing'an: level 1 tells the elder's emergency contact, level 2 sends a
work order to the grid platform for the community, level 3 goes to the street
supervisor. One :class:`LevelPlan` per severity says how long to wait for an
acknowledgement before each next level; ``None`` means "stop here".

Device kinds (``meter_offline``, ``meter_fault``) never escalate: they go to
the water utility's maintenance, not to cadres.

>>> policy = EscalationPolicy.from_config({"low": {"work_order_after_min": 120}})
>>> policy.steps("low")
[(1, 0.0), (2, 7200.0)]
>>> policy.steps("critical")
[(1, 0.0), (2, 300.0), (3, 900.0)]
>>> EscalationPolicy.from_config({"urgent": {}})
Traceback (most recent call last):
...
ValueError: escalation policy: unknown severity 'urgent' (known: critical, high, medium, low)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from core.domain import DEVICE_KINDS, MAINTENANCE, SEVERITIES

LEVEL_CONTACT = 1
LEVEL_WORK_ORDER = 2
LEVEL_SUPERVISOR = 3
#: Route of each level, as the platform sees it in ``data.route``.
LEVEL_ROUTES = {LEVEL_CONTACT: "contact", LEVEL_WORK_ORDER: "community", LEVEL_SUPERVISOR: "street"}
#: What the platform is asked to do at each level, as it sees it in ``data.action``.
LEVEL_ACTIONS = {0: "inform", LEVEL_CONTACT: "inform", LEVEL_WORK_ORDER: "dispatch", LEVEL_SUPERVISOR: "supervise"}


def for_maintenance(alert: Mapping[str, Any]) -> bool:
    """A device kind, or a finding the detectors routed to maintenance (a slow leak): never the cadres'."""
    return alert["kind"] in DEVICE_KINDS or (alert.get("details") or {}).get("route") == MAINTENANCE


def route(alert: Mapping[str, Any]) -> str:
    """maintenance for device kinds and slow leaks; else community, or street once the supervisor level fired."""
    if for_maintenance(alert):
        return "maintenance"
    return "street" if int(alert.get("escalation_level") or 0) >= LEVEL_SUPERVISOR else "community"


def action(alert: Mapping[str, Any]) -> str:
    """maintenance for device kinds and slow leaks; else what the alert's escalation level asks of the platform."""
    if for_maintenance(alert):
        return "maintenance"
    return LEVEL_ACTIONS[int(alert.get("escalation_level") or 0)]


@dataclass(frozen=True, slots=True)
class LevelPlan:
    """Escalation for one severity; times in minutes.

    ``work_order_after_min`` counts from the raise (level 1);
    ``supervisor_after_min`` counts from the level-2 work order.
    """

    contact: bool = True
    work_order_after_min: float | None = 15.0
    supervisor_after_min: float | None = 45.0

    def validate(self, severity: str) -> None:
        for name in ("work_order_after_min", "supervisor_after_min"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 7 * 24 * 60:
                raise ValueError(f"escalation policy: {severity}.{name} must be 0..10080 minutes, got {value}")
        if self.work_order_after_min is None and self.supervisor_after_min is not None:
            raise ValueError(f"escalation policy: {severity} has a supervisor level without a work order")


#: Defaults: the more severe, the sooner a cadre is sent.
DEFAULT_PLANS: dict[str, LevelPlan] = {
    "critical": LevelPlan(True, 5.0, 15.0),
    "high": LevelPlan(True, 15.0, 45.0),
    "medium": LevelPlan(True, 60.0, 120.0),
    "low": LevelPlan(True, 240.0, None),
}


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """A validated plan per severity."""

    plans: Mapping[str, LevelPlan]

    @classmethod
    def default(cls) -> EscalationPolicy:
        return cls(dict(DEFAULT_PLANS))

    @classmethod
    def from_config(cls, config: Mapping[str, Mapping[str, Any]] | None) -> EscalationPolicy:
        """Defaults overridden per severity and field, e.g. ``{"high": {"work_order_after_min": 10}}``."""
        plans = dict(DEFAULT_PLANS)
        known = {f.name for f in fields(LevelPlan)}
        for severity, override in (config or {}).items():
            if severity not in SEVERITIES:
                raise ValueError(f"escalation policy: unknown severity {severity!r} (known: {', '.join(SEVERITIES)})")
            unknown = set(override) - known
            if unknown:
                raise ValueError(f"escalation policy: unknown field(s) {sorted(unknown)} for {severity}")
            plans[severity] = replace(plans[severity], **dict(override))
        for severity, plan in plans.items():
            plan.validate(severity)
        return cls(plans)

    def steps(self, severity: str) -> list[tuple[int, float]]:
        """``[(level, delay_s_after_previous_level)]``; level 1 is at the raise itself."""
        plan = self.plans.get(severity, DEFAULT_PLANS["high"])
        out: list[tuple[int, float]] = []
        if plan.contact:
            out.append((LEVEL_CONTACT, 0.0))
        if plan.work_order_after_min is None:
            return out
        out.append((LEVEL_WORK_ORDER, plan.work_order_after_min * 60.0))
        if plan.supervisor_after_min is not None:
            out.append((LEVEL_SUPERVISOR, plan.supervisor_after_min * 60.0))
        return out

    def next_step(self, severity: str, after_level: int) -> tuple[int, float] | None:
        """The level that follows ``after_level`` and its delay, or None at the top."""
        for level, delay in self.steps(severity):
            if level > after_level:
                return level, delay
        return None
