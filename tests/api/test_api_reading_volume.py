"""A meter read every minute (a firmware set wrong, or a hostile one) keeps 1,440 readings a day for 400 days,
and a city keeps every meter's: a page must cost what it shows, not every reading stored (docs/reliability.md).

The work is counted on a real SQLite database: the rows its cursors fetch into Python, and the virtual machine
instructions it runs (``set_progress_handler``); the sums and pages are checked on SQLite and PostgreSQL too.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, insert

from api.models import RoutineSlot
from api.routes.readings import MAX_INTERVAL_S, litres_by_slot_and_day, routine_from_litres
from core.settings import get_settings
from store.schema import meters, readings
from tests.api_fixtures import ELDER_A, ELDER_B, Api, add_elder
from timeseries.sql import SqlTimeseries, slot_shift, slot_use_of

DAYS = 3
START = time.time() // 86400 * 86400 - DAYS * 86400  # a UTC midnight: 08:00 in Shanghai


def _every_minute(meter_id: str) -> list[dict[str, Any]]:
    """Three days of a register read every minute: 0.1 L a minute, an unknown interval every 500th."""
    return [
        {
            "meter_id": meter_id,
            "ts": START + 60.0 * k,
            "total_l": 100.0 + 0.1 * k,
            "usage_l": None if k % 500 == 0 else 0.1,
            "status": "glitch" if k % 500 == 0 else "ok",
            "received_at": START + 60.0 * k,
        }
        for k in range(DAYS * 1440)
    ]


#: Rows fetched per kind of statement ("readings" for any statement reading that table); "steps": thousands of
#: SQLite virtual machine instructions run.
FETCHED: Counter[str] = Counter()


class _CountingCursor(sqlite3.Cursor):
    statement = ""

    def execute(self, sql: str, parameters: Any = ()) -> _CountingCursor:  # type: ignore[override]
        self.statement = sql
        return super().execute(sql, parameters)  # type: ignore[return-value]

    def _count(self, rows: list[Any]) -> list[Any]:
        FETCHED["readings" if "FROM readings" in self.statement else "other"] += len(rows)
        return rows

    def fetchall(self) -> list[Any]:
        return self._count(super().fetchall())

    def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._count(super().fetchmany(size if size is not None else self.arraysize))

    def fetchone(self) -> Any:
        row = super().fetchone()
        self._count([] if row is None else [row])
        return row


class _CountingConnection(sqlite3.Connection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_progress_handler(self._step, 1000)

    @staticmethod
    def _step() -> int:
        FETCHED["steps"] += 1
        return 0  # go on

    def cursor(self, factory: Any = None) -> Any:  # type: ignore[override]
        return super().cursor(factory or _CountingCursor)


@pytest.fixture
def counted(engine: Engine, db_url: str) -> Iterator[Engine]:
    """An engine on the test's migrated SQLite file whose cursors count the rows they fetch."""
    path = db_url.removeprefix("sqlite:///")
    counting = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(path, factory=_CountingConnection, check_same_thread=False),
    )
    yield counting
    counting.dispose()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def test_a_page_of_a_meter_read_every_minute_fetches_the_page_not_its_history(engine: Engine, counted: Engine) -> None:
    """Before: every reading of the span was fetched and turned into a dict for any page or sum (a 93-day page of
    10 readings took 1.8 s, 400 days of daily use 9 s for a meter read every minute)."""
    api = Api(counted, get_settings())
    add_elder(engine, ELDER_A)
    rows = _every_minute("MA1")
    with engine.begin() as conn:
        conn.execute(insert(readings), rows)
    span = {"start": _iso(START), "end": _iso(START + DAYS * 86400)}
    with api.client:
        FETCHED.clear()
        page = api.get("cadre_a", "/meters/MA1/readings", params={**span, "limit": 10, "offset": 5, "sort": "-ts"})
        assert page.status_code == 200
        assert page.json()["count"] == len(rows)
        assert [r["total_l"] for r in page.json()["data"]] == [r["total_l"] for r in rows[::-1][5:15]]
        assert FETCHED["readings"] <= 11, FETCHED  # the page and its count
        FETCHED.clear()
        days = api.get("cadre_a", "/meters/MA1/usage", params={**span, "every": "day"})
        assert days.status_code == 200
        # Shanghai's days: the span starts at 08:00 and ends at 08:00 three days on.
        assert [d["readings"] for d in days.json()["data"]] == [960, 1440, 1440, 480]
        assert FETCHED["readings"] <= 4 * 24, FETCHED  # the hours the store summed
    # The glitches' unknown intervals are not water: 0.1 L a minute for the others.
    midnight = START + 16 * 3600
    unknown = sum(1 for r in rows if r["usage_l"] is None and midnight <= r["ts"] < midnight + 86400)
    assert days.json()["data"][1]["usage_l"] == pytest.approx(0.1 * (1440 - unknown))


@pytest.mark.parametrize("every", [3600, 86400])
def test_the_stores_sums_and_pages_match_the_readings(any_engine: Engine, every: int) -> None:
    """The buckets the store sums (floor in PostgreSQL, a truncating cast in SQLite) are the local hours and days."""
    rows = _every_minute("M1")
    with any_engine.begin() as conn:
        conn.execute(insert(readings), rows)
    history = SqlTimeseries(any_engine)
    offset_s = 8 * 3600
    start, end = START + 1234.5, START + DAYS * 86400 - 777.0  # inside buckets at both ends
    want: dict[float, list[float]] = {}
    for r in rows:
        if start <= r["ts"] <= end:
            key = (r["ts"] + offset_s) // every * every - offset_s
            want.setdefault(key, []).append(r["usage_l"] or 0.0)
    got = history.usage("M1", start, end, every, offset_s)
    assert [(b["start"], b["readings"]) for b in got] == [(k, len(v)) for k, v in sorted(want.items())]
    assert [b["usage_l"] for b in got] == pytest.approx([sum(v) for _, v in sorted(want.items())])
    inside = [{k: r[k] for k in ("ts", "total_l", "usage_l", "status")} for r in rows if start <= r["ts"] <= end]
    assert history.page("M1", start, end, 100, 50, False) == (inside[100:150], len(inside))
    assert history.page("M1", start, end, 0, 7, True) == (inside[::-1][:7], len(inside))
    assert history.page("M1", start, end, len(inside), 7, True) == ([], len(inside))


def test_the_devices_page_reads_the_last_day_of_readings_not_all_of_them(engine: Engine, counted: Engine) -> None:
    """A faulty register was found by reading every stored reading of the city on every page (0.5 s at 4.8 million
    readings, and growing with them); a month more of old readings must not change what the page costs."""
    api = Api(counted, get_settings())
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    now = time.time()
    day = [
        {
            "meter_id": m,
            "ts": now - 600.0 * k,
            "total_l": 1000.0 - k,
            "usage_l": 1.0,
            "status": "ok",
            "received_at": now,
        }
        for m in ("MA1", "MB1")
        for k in range(1, 100)
    ]
    day[5]["status"] = "glitch"  # MA1's register, 1 h ago
    with engine.begin() as conn:
        conn.execute(insert(readings), day)
    with api.client:

        def devices() -> tuple[dict[str, list[str]], int]:
            FETCHED.clear()
            answer = api.get("admin", "/devices", params={"include_healthy": True})
            assert answer.status_code == 200
            return {d["meter_id"]: d["statuses"] for d in answer.json()["data"]}, FETCHED["steps"]

        statuses, steps = devices()
        assert statuses == {"MA1": ["faulty"], "MB1": []}
        old = [  # a month of one a minute, each a faulty register, but long ago
            {
                "meter_id": m,
                "ts": now - 2 * 86400 - 60.0 * k,
                "total_l": 1.0,
                "usage_l": None,
                "status": "glitch",
                "received_at": now,
            }
            for m in ("MA1", "MB1")
            for k in range(30 * 1440)
        ]
        with engine.begin() as conn:
            conn.execute(insert(readings), old)
        statuses, steps_later = devices()
        assert statuses == {"MA1": ["faulty"], "MB1": []}
    assert steps_later <= steps + 20, (steps, steps_later)  # before: 1 -> 434 (thousand instructions)


def test_a_faulty_register_shows_on_the_devices_page_for_a_day(any_engine: Engine) -> None:
    """The per-meter question on PostgreSQL too: a glitch 1 h ago is a fault, one 25 h ago no longer."""
    api = Api(any_engine, get_settings())
    add_elder(any_engine, ELDER_A)
    add_elder(any_engine, ELDER_B)
    now = time.time()
    glitches = [(m, now - hours * 3600.0) for m, hours in (("MA1", 1), ("MB1", 25))]
    with any_engine.begin() as conn:
        conn.execute(
            insert(readings),
            [
                {"meter_id": m, "ts": ts, "total_l": 5.0, "usage_l": None, "status": "glitch", "received_at": ts}
                for m, ts in glitches
            ],
        )
    with api.client:
        answer = api.get("admin", "/devices", params={"include_healthy": True}).json()
    assert {d["meter_id"]: "faulty" in d["statuses"] for d in answer["data"]} == {"MA1": True, "MB1": False}


def _four_weeks(meter_id: str, now: float, every_s: float) -> list[dict[str, Any]]:
    """28 days of readings ``every_s`` apart: 6 L in the minutes from 07:00 Shanghai, a glitch now and then."""
    out, first = [], now - 28 * 86400 + every_s
    for k in range(int(28 * 86400 // every_s) - 1):
        ts = first + k * every_s
        morning = (ts + 8 * 3600) % 86400 // 60 in range(7 * 60, 7 * 60 + 6)
        glitch = k % 997 == 0
        row = {"meter_id": meter_id, "ts": ts, "total_l": 100.0 + k, "received_at": ts}
        row |= {"usage_l": None if glitch else 1.0 if morning else 0.01, "status": "glitch" if glitch else "ok"}
        out.append(row)
    return out


def routine_from_readings(rows: list[dict[str, Any]], tz: ZoneInfo) -> tuple[list[RoutineSlot], list[RoutineSlot]]:
    """The routine page's answer from every reading, in Python, as the page computed it before the store summed
    the slots: each known interval's litres spread over the half hours it covers, then summarised per slot."""
    shift = slot_shift(tz, max((r["ts"] for r in rows), default=0.0))
    by_meter: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["meter_id"], r["ts"])):
        by_meter[row["meter_id"]].append(row)
    uses = [slot_use_of(meter_rows, shift, MAX_INTERVAL_S) for meter_rows in by_meter.values()]
    return routine_from_litres(litres_by_slot_and_day(uses, tz))


def test_every_readings_routine_finds_a_daily_use_in_its_half_hour() -> None:
    """The reference itself: 4 L in the half hour from 07:00 every day of a week, nothing else."""
    base = datetime(2026, 11, 2, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()  # a Monday
    rows = [
        {"meter_id": "m", "ts": base + k * 1800, "usage_l": 4.0 if k % 48 == 15 else 0.0, "status": "ok"}
        for k in range(1, 48 * 7)
    ]
    weekday, _weekend = routine_from_readings(rows, ZoneInfo("Asia/Shanghai"))
    assert (weekday[14].start, weekday[14].p_use, weekday[14].typical_l, weekday[3].p_use) == ("07:00", 1.0, 4.0, 0.0)


def test_the_routine_of_a_meter_read_every_minute_fetches_its_slots_not_its_readings(
    engine: Engine, counted: Engine
) -> None:
    """The routine page read 28 days of every meter of the elder into Python: 0.5 s for one meter read every minute,
    1.3-1.7 s after two replacements (SQLite and PostgreSQL); it is on every elder page of the dashboard."""
    api = Api(counted, get_settings())
    add_elder(engine, ELDER_A)
    now = time.time() // 60 * 60
    rows = _four_weeks("MA1", now, 60.0) + _four_weeks("MA0", now - 7.0, 3000.0)  # an old meter, 50 min apart
    with engine.begin() as conn:
        conn.execute(insert(meters).values(meter_id="MA0", elder_id="EA1", installed_at=0.0, retired_at=now))
        conn.execute(insert(readings), rows)
    with api.client:
        FETCHED.clear()
        answer = api.get("cadre_a", "/elders/EA1/routine")
    assert answer.status_code == 200
    assert FETCHED["readings"] <= 2 * 28 * 48 + 28 * 48, FETCHED  # slots of the one, intervals of the other
    weekday, weekend = routine_from_readings(rows, ZoneInfo("Asia/Shanghai"))  # every reading, in Python
    assert answer.json()["weekday"] == [slot.model_dump() for slot in weekday]
    assert answer.json()["weekend"] == [slot.model_dump() for slot in weekend]
    assert answer.json()["weekday"][14]["p_use"] == 1.0  # 07:00, every day


def test_the_stores_slot_sums_are_the_readings_intervals(any_engine: Engine) -> None:
    """The store pairs each reading with the one before (a window function, SQLite and PostgreSQL alike)."""
    now = time.time() // 60 * 60
    rows = _four_weeks("M1", now, 60.0)[:5000] + _four_weeks("M2", now, 2700.0)
    with any_engine.begin() as conn:
        conn.execute(insert(readings), rows)
    history = SqlTimeseries(any_engine)
    for meter_id in ("M1", "M2"):
        for shift in (0, 900):  # Shanghai's half hours, Kathmandu's
            mine = [r for r in rows if r["meter_id"] == meter_id]
            want = slot_use_of(mine, shift, MAX_INTERVAL_S)
            got = history.slot_use(meter_id, mine[0]["ts"], mine[-1]["ts"], shift, MAX_INTERVAL_S)
            assert got.crossing == want.crossing
            assert [s for s, _ in got.sums] == [s for s, _ in want.sums]
            assert [v for _, v in got.sums] == pytest.approx([v for _, v in want.sums])
