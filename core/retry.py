"""Obeying a server's ``Retry-After`` within bounds: shared by every client that talks to a server it retries.

A receiver or proxy answering 503 decides when it is tried again, but only within reason: its "86400" must not
hold an elder's alerts (or the time series writer) for a day, nor its "-5" make a client retry in a tight loop.
"""

from __future__ import annotations

import math
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

#: The longest a ``Retry-After`` is obeyed.
RETRY_AFTER_MAX_S = 300.0


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), within 0 to :data:`RETRY_AFTER_MAX_S`.

    An HTTP date is in GMT: one that says no zone is read as GMT too, not in this machine's zone.

    >>> retry_after_s("30"), retry_after_s(None), retry_after_s("soon")
    (30.0, None, None)
    >>> retry_after_s("Tue, 14 Nov 2023 22:13:40 GMT", now=1_699_999_990.0)
    30.0
    >>> retry_after_s("Tue, 14 Nov 2023 22:13:40 -0000", now=1_699_999_990.0)
    30.0
    >>> retry_after_s("86400"), retry_after_s("-5"), retry_after_s("inf"), retry_after_s("nan")
    (300.0, 0.0, 300.0, None)
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)
