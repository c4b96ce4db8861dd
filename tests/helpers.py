"""Small builders shared by tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

SHANGHAI = timezone(timedelta(hours=8))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(SHANGHAI).isoformat()


def message(meter_id: str, readings: list[tuple[float, float]], **extra: Any) -> bytes:
    body = {
        "meter_id": meter_id,
        "readings": [{"ts": iso(ts), "total_l": total} for ts, total in readings],
        **extra,
    }
    return orjson.dumps(body)


def register(engine: Any, elder_id: str, meter_id: str, community: str = "大宁社区", name: str = "王秀兰") -> None:
    from store.registry import register_elder

    with engine.begin() as conn:
        register_elder(
            conn,
            {"elder_id": elder_id, "name": name, "community": community, "building": "3号楼", "room": "502"},
            meter_id,
            time.time(),
        )


#: Starting points for the atheris fuzzer (tests/fuzz_payload.py).
FUZZ_SEEDS = [
    b'{"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_l": 123456.0}], "battery_pct": 87}',
    b'{"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:30:00Z", "total_m3": 1.5}], "rssi": -95}',
]
