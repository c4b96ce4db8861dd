"""After years: the lists a dashboard loads read what they show, not every case the district ever had.

Cases are kept for good (the record of what was done); every dashboard load, and every reload after its live
stream reconnects, asks for the open ones of the cadre's communities (``GET /alerts?state=...``, a count and a
page). On SQLite and PostgreSQL alike, the statements' plans (store indexes) must pass over no closed case.
(PostgreSQL takes the unique index of the open cases, ``state != 'resolved'``, for ``state IN (...)``; SQLite
never does.)
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event, insert, text

from core.settings import get_settings
from store.schema import alerts
from tests.api_fixtures import ELDER_A, ELDER_B, A, Api, B, add_elder, raise_alert
from tests.helpers import rows_passed_over

DAY = 86400.0
OPEN = "state=open&state=notified&state=acknowledged"


def _closed_cases(engine: Engine, count: int) -> None:
    """``count`` cases closed over the years, in both communities."""
    now = time.time()
    rows = []
    for k in range(count):
        elder, community = (ELDER_A["elder_id"], A) if k % 2 else (ELDER_B["elder_id"], B)
        at = now - (k + 1) * 3600
        rows.append(
            {
                "alert_id": f"closed-{k}", "elder_id": elder, "meter_id": "M", "community": community,
                "kind": "no_activity", "severity": "high", "state": "resolved", "basis": "learned", "data_ts": at,
                "raised_at": at, "message_zh": "未用水", "message_en": "no use", "details": {}, "case_key": "community",
                "resolved_at": at + 600, "resolved_by": "li.cadre", "outcome": "false_alarm",
            }
        )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(alerts), rows)
        if conn.dialect.name == "postgresql":  # autovacuum's statistics; tapwatch never analyzes SQLite's tables
            conn.execute(text("ANALYZE"))


def test_the_open_cases_list_reads_the_open_cases_only(any_engine: Engine) -> None:
    engine = any_engine
    api = Api(engine, get_settings())
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    _closed_cases(engine, 8000)
    raise_alert(engine, str(ELDER_A["meter_id"]))  # the one open case
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "FROM alerts" in statement:
            statements.append((statement, parameters))

    with api.client:
        event.listen(engine, "before_cursor_execute", seen)
        try:
            mine = api.get("cadre_a", f"/alerts?{OPEN}&limit=500&offset=0&sort=-raised_at")
            every = api.get("admin", f"/alerts?{OPEN}&limit=500&offset=0&sort=-raised_at")
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert mine.status_code == every.status_code == 200
    assert mine.json()["count"] == every.json()["count"] == 1
    assert len(statements) == 4  # a count and a page each
    assert rows_passed_over(engine, "alerts", statements) == []
