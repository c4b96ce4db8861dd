"""The one audit writer: who did or read what, when, from what, to what, and why. Never tokens or passwords.

Every audit row in the store is written here (the API, the CLI, alert
operations, failed logins), in the caller's transaction, so an action and its
audit entry commit or roll back together.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, insert

from store.schema import audit_log


def without_contacts(values: dict[str, Any]) -> dict[str, Any]:
    """An elder's fields as the trail keeps them: contacts are personal, so it notes how many, not the phone numbers.

    >>> without_contacts({"room": "301", "contacts": [{"phone": "13800000000"}]})
    {'room': '301', 'contacts': '1 contacts'}
    """
    if "contacts" in values:
        return {**values, "contacts": f"{len(values['contacts'] or [])} contacts"}
    return values


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str,
    community: str | None,
    old: Any = None,
    new: Any = None,
    reason: str = "",
    at: float | None = None,
) -> None:
    """Append one entry; ``community`` scopes who may read it (``None``: admins only)."""
    conn.execute(
        insert(audit_log).values(
            at=time.time() if at is None else at,
            actor=actor[:128],
            action=action[:64],
            target=target[:128],
            community=community,
            old=old,
            new=new,
            reason=reason,
        )
    )
