"""A registry change that closes an elder's open cases while one of them is being closed too (PostgreSQL).

Retiring an elder, withdrawing her consent and replacing her meter close her open cases (the meter's device
cases for a replacement) as ``cleared``. Each change read the cases open, then closed them one by one; a case
another cadre's resolve (or the data) closed in between was refused by the lifecycle (AlertStateError), which
nothing caught: the change answered 500 and was rolled back, though the case it found closed was closed as it
wanted. The change goes on without it (200), and the case keeps the other's outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from alerts.manager import AlertManager
from store.schema import alerts
from tests.api_fixtures import ELDER_A, raise_alert, serving_on, waiting_on_a_lock
from tests.conftest import wait_until

ELDER = ELDER_A["elder_id"]
CHANGES = {
    "retire": ("POST", f"/elders/{ELDER}/retire", {"reason": "搬去养老院"}, "no_activity"),
    "consent": ("PATCH", f"/elders/{ELDER}", {"consent": False, "reason": "女儿不同意"}, "no_activity"),
    "meter": ("POST", f"/elders/{ELDER}/meter", {"meter_id": "MA9", "reason": "电池没电"}, "meter_offline"),
}


@pytest.fixture
def pg_server(postgres_server: Any) -> Iterator[tuple[str, str, Engine]]:
    with serving_on(postgres_server.new_database()) as served:
        yield served


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_that_closes_her_cases_goes_on_when_one_was_closed_meanwhile(
    pg_server: tuple[str, str, Engine], change: str
) -> None:
    base, token, engine = pg_server
    method, path, body, kind = CHANGES[change]
    alert_id = raise_alert(engine, ELDER_A["meter_id"], kind, severity="low" if kind == "meter_offline" else "high")
    answers: list[httpx.Response] = []
    headers = {"Authorization": f"Bearer {token}"}

    def send() -> None:
        with httpx.Client(timeout=30) as client:
            answers.append(client.request(method, f"{base}{path}", json=body, headers=headers))

    with engine.connect() as other:
        resolving = other.begin()  # another cadre's resolve, not yet committed: it holds the case's row
        case = other.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()._mapping
        AlertManager().resolve(other, dict(case), "cadre.b", "ok", "见到老人，平安", time.time())
        sender = threading.Thread(target=send)
        sender.start()
        assert wait_until(lambda: waiting_on_a_lock(engine) >= 1, 10)  # the change waits to close the case
        resolving.commit()
    sender.join(30)
    assert answers and answers[0].status_code == 200, answers[0].text if answers else "no answer"
    with engine.connect() as conn:
        closed = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()
    assert (closed.state, closed.outcome, closed.resolved_by) == ("resolved", "ok", "cadre.b")
