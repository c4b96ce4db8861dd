"""The one rule for a meter's local time: its elder's zone, else the configured one.

Slots of the day (when an elder rises, sleeps, cooks) follow the elder's own
clock, whatever offset a meter or a file writes beside its readings. A zone
name that zoneinfo does not know (registered outside the API, mistyped) counts
as no zone: the configured default (``Settings.timezone``) applies.

>>> meter_zone("Europe/Madrid", "Asia/Shanghai"), meter_zone(None, "Asia/Shanghai"), meter_zone("no/such", "UTC")
('Europe/Madrid', 'Asia/Shanghai', 'UTC')
>>> local_offset("Asia/Shanghai", 0), local_offset("Europe/Madrid", 1_467_000_000)
(28800, 7200)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: When neither the elder's zone nor the configured one is a zone zoneinfo knows.
LAST_RESORT_TZ = "Asia/Shanghai"
#: Offsets change on quarter-hour boundaries in every zone: they are remembered by quarter hour (``ts // QUARTER_S``).
QUARTER_S = 900
#: Quarter hours remembered per zone before the memo starts again (about 14 years of data).
_MEMO_MAX = 500_000


@lru_cache(maxsize=256)
def _known(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def meter_zone(elder_tz: str | None, default_tz: str) -> str:
    """The zone a meter's readings are read in: the elder's, else ``default_tz`` (both checked)."""
    if elder_tz and _known(elder_tz):
        return elder_tz
    return default_tz if _known(default_tz) else LAST_RESORT_TZ


def offsets(tz_name: str) -> Callable[[float], int]:
    """A function from a time to the UTC offset (s) of zone ``tz_name`` then; one per zone, shared.

    Offsets change on quarter-hour boundaries in every zone, so each quarter hour is asked of
    zoneinfo once and remembered: the step calls this once per reading, a memo hit costs one dict
    look-up where zoneinfo costs a datetime and a conversion.
    """
    return _zone_offsets(tz_name)[0]


def quarter_offsets(tz_name: str) -> dict[float, int]:
    """What :func:`offsets` remembers for zone ``tz_name``: the UTC offset (s) by quarter hour (``ts // QUARTER_S``).

    For a loop that runs once per reading: it looks a remembered quarter up itself (no call) and
    asks :func:`offsets` for the others, which remembers them.
    """
    return _zone_offsets(tz_name)[1]


@lru_cache(maxsize=256)
def _zone_offsets(tz_name: str) -> tuple[Callable[[float], int], dict[float, int]]:
    zone = ZoneInfo(meter_zone(tz_name, LAST_RESORT_TZ))
    memo: dict[float, int] = {}

    def offset_at(ts: float) -> int:
        quarter = ts // QUARTER_S
        seconds = memo.get(quarter)
        if seconds is None:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            delta = datetime.fromtimestamp(ts, UTC).astimezone(zone).utcoffset()
            seconds = memo[quarter] = int(delta.total_seconds()) if delta is not None else 0
        return seconds

    return offset_at, memo


def local_offset(tz_name: str, ts: float) -> int:
    """UTC offset in seconds of ``tz_name`` at ``ts`` (DST-aware)."""
    return offsets(tz_name)(ts)
