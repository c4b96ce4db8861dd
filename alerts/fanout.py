"""Fan-out: which channels and which people get each step of an alert.

Platform channels (``webhook``, ``mqtt``, robots, any name not a contact
channel) get every lifecycle event; contact channels (``sms``) get the level-1
message only, one job per emergency-contact phone and channel, each with its
own idempotency key. The platform learns how many contacts were texted, never
their numbers. A text still queued when its case closes is not sent
(:func:`withdraw_family_texts`): it asks the family to phone her now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from alerts.events import cloud_event, expire_jobs, queue
from alerts.grouping import told
from alerts.messages import compose_both
from alerts.notifiers import CONTACT_CHANNELS, ROBOT_CHANNELS
from alerts.policy import for_maintenance
from store.schema import OUTBOX_UNSENT, elders, outbox

#: Why a family's text still queued when its case closed is not sent (its job's ``last_error``).
CASE_CLOSED = "not sent: the case closed before the text went out (no call to her is needed for it now)"


class FanOut:
    """The configured channel names, split into platform and contact channels.

    The group robots (WeCom, DingTalk) post to the chats cadres and street offices read: a maintenance case (a
    meter offline or faulty, a slow leak) is the water utility's to act on, so they get it only when
    ``robots_maintenance`` (``TAPWATCH_ROBOTS_MAINTENANCE``: a district whose groups are the utility's too). Before,
    each was a message there, one per meter of a street's power cut. The platform's channels get every case.

    >>> fan = FanOut(["webhook", "wecom", "sms"])
    >>> fan.platform_for({"kind": "no_activity"}), fan.platform_for({"kind": "meter_offline"})
    (('webhook', 'wecom'), ('webhook',))
    """

    def __init__(self, channels: Sequence[str], language: str = "zh", robots_maintenance: bool = False) -> None:
        self.channels = tuple(channels)
        self.platform = tuple(n for n in self.channels if n not in CONTACT_CHANNELS)
        self.maintenance = tuple(n for n in self.platform if robots_maintenance or n not in ROBOT_CHANNELS)
        self.contact = tuple(n for n in self.channels if n in CONTACT_CHANNELS)
        self.language = language

    def platform_for(self, alert: Mapping[str, Any]) -> tuple[str, ...]:
        """The platform channels that get ``alert``'s events: its route's."""
        return self.maintenance if for_maintenance(alert) else self.platform

    def contact_phones(self, conn: Connection, elder_id: str) -> list[str]:
        """The elder's emergency-contact phones, each once; none when no contact channel is configured."""
        if not self.contact:
            return []
        contacts = conn.execute(select(elders.c.contacts).where(elders.c.elder_id == elder_id)).scalar() or []
        phones = [str(c["phone"]) for c in contacts if isinstance(c, Mapping) and c.get("phone")]
        return list(dict.fromkeys(phones))

    def text_contacts(
        self, conn: Connection, alert: Mapping[str, Any], who: Mapping[str, Any], phones: list[str], now: float
    ) -> None:
        """Queue the level-1 text to every phone on every contact channel."""
        text = compose_both(told(alert), who, "contact")[self.language]
        for i, phone in enumerate(phones):
            event = cloud_event(dict(alert), int(alert["seq"]), "contact", now, {"to": phone, "text": text})
            event["id"] = f"{event['id']}:c{i}"  # one message per contact, each with its own idempotency key
            for channel in self.contact:
                queue(conn, alert, event, channel, now)


def withdraw_family_texts(conn: Connection, alert_id: str) -> int:
    """The case closed: its texts to her family not sent yet (a gateway down, or raised and closed in one batch of
    readings caught up; parked too, which an operator would requeue) are not sent; how many. Each asks the family
    to phone her now, over a condition the data, or a person, has since closed. They expire as a day's note after
    its day does: final, not parked (nobody is to pass them on). The platform's events of the case all go out:
    they are its history."""
    return expire_jobs(
        conn,
        outbox.c.alert_id == alert_id,
        outbox.c.notifier.in_(sorted(CONTACT_CHANNELS)),
        outbox.c.status.in_(OUTBOX_UNSENT),  # parked too: an operator would requeue it once the gateway works
        reason=CASE_CLOSED,
    )
