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
from alerts.notifiers import CONTACT_CHANNELS
from store.schema import OUTBOX_UNSENT, elders, outbox

#: Why a family's text still queued when its case closed is not sent (its job's ``last_error``).
CASE_CLOSED = "not sent: the case closed before the text went out (no call to her is needed for it now)"


class FanOut:
    """The configured channel names, split into platform and contact channels."""

    def __init__(self, channels: Sequence[str], language: str = "zh") -> None:
        self.channels = tuple(channels)
        self.platform = tuple(n for n in self.channels if n not in CONTACT_CHANNELS)
        self.contact = tuple(n for n in self.channels if n in CONTACT_CHANNELS)
        self.language = language

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
