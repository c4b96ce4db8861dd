"""The facade the pipeline, the escalation runner and the API call: one object wiring the alert stages.

:class:`AlertManager` holds no rules of its own. It builds the stages from
configuration and hands each call to the stage that does the job:

* :mod:`alerts.lifecycle`: apply a finding (raise, join, reopen, clear, resolve;
  grouped into cases by :mod:`alerts.grouping`),
  acknowledge, resolve;
* :mod:`alerts.escalation`: arm and fire escalation levels;
* :mod:`alerts.fanout`: which channels and contacts get which step;
* :mod:`alerts.events`: emit each event to the history and the outbox;
* :mod:`alerts.cases`: the one store of cases every stage reads and writes.

Everything runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from alerts.escalation import Escalator
from alerts.fanout import FanOut
from alerts.grouping import MAINTENANCE_HOLD_DOWN_S
from alerts.lifecycle import Lifecycle
from alerts.notifiers import channel_names
from alerts.policy import EscalationPolicy
from core.domain import Finding
from core.metrics import Metrics
from core.settings import Settings

__all__ = ["AlertManager"]


class AlertManager:
    """Applies findings to the alert table and queues their delivery.

    ``notifiers`` names the outbox channels: platform channels (``webhook``,
    ``mqtt``, or any other name) get every lifecycle event; ``sms`` gets
    level-1 messages to the elder's emergency contacts only.
    """

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None = None) -> AlertManager:
        """The manager a monitor or an API process runs, from :class:`core.settings.Settings`.

        Channel names come from configuration without building (or connecting) the channels,
        so every process queues events to the same channels the sender works.
        """
        return cls(
            notifiers=channel_names(settings),
            policy=EscalationPolicy.from_config(settings.escalation_policy),
            hold_down_s=settings.flap_hold_down_hours * 3600,
            maintenance_hold_down_s=settings.maintenance_hold_down_days * 86400,
            language=settings.language,
            metrics=metrics,
            robots_maintenance=settings.robots_maintenance,
        )

    def __init__(
        self,
        notifiers: Sequence[str] = (),
        *,
        policy: EscalationPolicy | None = None,
        hold_down_s: float = 6 * 3600,
        maintenance_hold_down_s: float = MAINTENANCE_HOLD_DOWN_S,
        language: str = "zh",
        metrics: Metrics | None = None,
        robots_maintenance: bool = False,
    ) -> None:
        self.fanout = FanOut(notifiers, language, robots_maintenance)
        self.escalator = Escalator(policy or EscalationPolicy.default(), self.fanout, metrics)
        self.lifecycle = Lifecycle(self.escalator, hold_down_s, maintenance_hold_down_s)

    @property
    def contact(self) -> tuple[str, ...]:
        """The contact channels (``sms``): the daily note to families goes there too."""
        return self.fanout.contact

    @property
    def language(self) -> str:
        return self.fanout.language

    def apply(self, conn: Connection, elder: Mapping[str, Any], finding: Finding, now: float) -> str | None:
        """Raise, join, reopen, clear or resolve for one finding; returns the alert id touched, if any."""
        return self.lifecycle.apply(conn, elder, finding, now)

    def acknowledge(self, conn: Connection, alert: Mapping[str, Any], actor: str, note: str, now: float) -> None:
        """Someone took the case: stops escalation; :class:`alerts.cases.AlertStateError` unless open or notified."""
        self.lifecycle.acknowledge(conn, alert, actor, note, now)

    def resolve(
        self,
        conn: Connection,
        alert: Mapping[str, Any],
        actor: str,
        outcome: str,
        note: str,
        now: float,
        data_ts: float | None = None,
    ) -> None:
        """Close the case with an outcome (:data:`alerts.cases.OUTCOMES`) and a note; stops escalation."""
        self.lifecycle.resolve(conn, alert, actor, outcome, note, now, data_ts)

    def record_outcome(
        self,
        conn: Connection,
        alert: Mapping[str, Any],
        actor: str,
        outcome: str,
        note: str,
        now: float,
        window_s: float,
    ) -> dict[str, Any]:
        """What a person found on a case the data closed, within ``window_s`` of its closing (see Lifecycle)."""
        return self.lifecycle.record_outcome(conn, alert, actor, outcome, note, now, window_s)

    def move(self, conn: Connection, elder_id: str, community: str, actor: str, now: float) -> None:
        """The elder's open cases follow her to ``community``, each with a ``moved`` event (see Lifecycle)."""
        self.lifecycle.move(conn, elder_id, community, actor, now)

    def elder_changed(
        self,
        conn: Connection,
        elder_id: str,
        was: Mapping[str, Any],
        changed: Mapping[str, Any],
        actor: str,
        now: float,
    ) -> None:
        """Her registration changed (``changed``: the new values; ``was``: her registration before, name and time
        zone at least): a move takes her open cases to her new community (:meth:`move`); a new building or room
        takes her cases' steps still queued to her new door, a name put right has them (and her family's texts)
        name her by it, a new time zone has them (and her family's daily note) say when in it
        (:meth:`alerts.lifecycle.Lifecycle.readdress`)."""
        if changed.keys() & {"name", "building", "room", "tz"}:  # first: a move's own event is written in her new zone
            self.lifecycle.readdress(conn, elder_id, was)
        if "community" in changed:
            self.move(conn, elder_id, changed["community"], actor, now)

    def release(self, conn: Connection, held: Mapping[str, Any], now: float) -> str | None:
        """A finding a snooze held, the snooze over: raised (or joined) now if still going on (see Lifecycle)."""
        return self.lifecycle.release(conn, held, now)

    def fire_escalation(self, conn: Connection, timer: Mapping[str, Any], now: float) -> bool:
        """Fire a claimed timer (see :class:`alerts.escalation.EscalationRunner`); False if no longer needed."""
        return self.escalator.fire_escalation(conn, timer, now)
