"""The audit trail: who changed what, when, from what, to what, and why. Never tokens or passwords."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, insert

from store.schema import audit_log


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
    conn.execute(
        insert(audit_log).values(
            at=time.time() if at is None else at,
            actor=actor,
            action=action,
            target=target[:128],
            community=community,
            old=old,
            new=new,
            reason=reason,
        )
    )
