"""Two threshold changes at once that clash together, though each fits what was stored (PostgreSQL); the same
for an elder's move to a community and a change of that community's thresholds.

An operator lowers her community's daily_max_l to 500 L while another raises one elder's own daily_min_l to
600 L. Each request checked the thresholds as they were stored, before the other committed, and both were
saved: the elder's day must now be above 600 L and below 500 L, her monitor refuses such thresholds, and every
reading of hers became a dead letter (monitoring of her stopped). One of the two must be refused (422).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update

from store.registry import effective_thresholds, require_fitting_thresholds
from store.schema import elders, thresholds
from tests.api_fixtures import ELDER_A, A, B, add_elder, serving_on, waiting_on_a_lock
from tests.conftest import wait_until


@pytest.fixture
def pg_server(postgres_server: Any) -> Iterator[tuple[str, str, Engine]]:
    with serving_on(postgres_server.new_database()) as served:
        yield served


def test_two_changes_that_clash_together_are_not_both_saved(pg_server: tuple[str, str, Engine]) -> None:
    base, token, engine = pg_server
    headers = {"Authorization": f"Bearer {token}"}
    community = {"values": {"daily_max_l": 500}, "reason": "small flats"}
    elder = {"values": {"daily_min_l": 600}, "reason": "she waters a garden"}
    with httpx.Client(timeout=30) as client:
        client.put(
            f"{base}/thresholds/community/{A}",
            json={"values": {"daily_max_l": 1500}, "reason": "start"},
            headers=headers,
        ).raise_for_status()
    answers: dict[str, int] = {}

    def put(name: str, path: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=30) as client:
            answers[name] = client.put(f"{base}{path}", json=body, headers=headers).status_code

    with engine.connect() as holder:
        holding = holder.begin()  # holds the community's row: its change checks, then waits to write it
        row = (thresholds.c.scope == "community") & (thresholds.c.scope_id == A) & (thresholds.c.name == "daily_max_l")
        holder.execute(select(thresholds.c.value).where(row).with_for_update())
        first = threading.Thread(target=put, args=("community", f"/thresholds/community/{A}", community))
        first.start()
        assert wait_until(lambda: waiting_on_a_lock(engine) >= 1, 10)
        second = threading.Thread(target=put, args=("elder", f"/thresholds/elder/{ELDER_A['elder_id']}", elder))
        second.start()
        # The elder's change is saved at once, or waits for the community's: either way, let the first go on.
        assert wait_until(lambda: "elder" in answers or waiting_on_a_lock(engine) >= 2, 10)
        holding.rollback()
    first.join(30)
    second.join(30)
    assert sorted(answers.values()) == [200, 422], answers
    with engine.connect() as conn:
        effective_thresholds(conn, ELDER_A["elder_id"], A)[0].validate()  # what her monitor will load


def test_a_move_and_a_change_that_clash_together_are_not_both_saved(pg_server: tuple[str, str, Engine]) -> None:
    """An elder with her own daily_min_l of 600 L moves to B while B's daily_max_l is lowered to 500 L: each fit."""
    base, token, engine = pg_server
    headers = {"Authorization": f"Bearer {token}"}
    elder_id = ELDER_A["elder_id"]
    add_elder(engine, {**ELDER_A, "elder_id": "EB1", "meter_id": "MB1", "community": B})
    with httpx.Client(timeout=30) as client:
        own = {"values": {"daily_min_l": 600}, "reason": "she waters a garden"}
        client.put(f"{base}/thresholds/elder/{elder_id}", json=own, headers=headers).raise_for_status()
    answers: dict[str, int] = {}

    def send(name: str, method: str, path: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=30) as client:
            answers[name] = client.request(method, f"{base}{path}", json=body, headers=headers).status_code

    with engine.connect() as holder:
        holding = holder.begin()  # holds the elder's row: her move checks, then waits to write it
        holder.execute(select(elders.c.elder_id).where(elders.c.elder_id == elder_id).with_for_update())
        move = {"community": B, "reason": "moved in with her son"}
        first = threading.Thread(target=send, args=("move", "PATCH", f"/elders/{elder_id}", move))
        first.start()
        assert wait_until(lambda: waiting_on_a_lock(engine) >= 1, 10)
        lower = {"values": {"daily_max_l": 500}, "reason": "small flats"}
        second = threading.Thread(target=send, args=("change", "PUT", f"/thresholds/community/{B}", lower))
        second.start()
        assert wait_until(lambda: "change" in answers or waiting_on_a_lock(engine) >= 2, 10)
        holding.rollback()
    first.join(30)
    second.join(30)
    assert sorted(answers.values()) == [200, 422], answers
    with engine.connect() as conn:
        community = conn.execute(select(elders.c.community).where(elders.c.elder_id == elder_id)).scalar_one()
        effective_thresholds(conn, elder_id, community)[0].validate()  # what her monitor will load


def test_a_move_and_a_change_of_her_own_thresholds_that_clash_together_are_not_both_saved(
    pg_server: tuple[str, str, Engine],
) -> None:
    """Her own daily_min_l raised to 600 L while she moves to B, whose daily_max_l is 500 L: the change read her
    community before it took its turn, so it was checked against the community she was leaving, and both were
    saved; her monitor refused the result and every reading of hers became a dead letter. The change must now be
    checked against the community she is in once the move committed (422)."""
    base, token, engine = pg_server
    headers = {"Authorization": f"Bearer {token}"}
    elder_id = ELDER_A["elder_id"]
    add_elder(engine, {**ELDER_A, "elder_id": "EB1", "meter_id": "MB1", "community": B})
    with httpx.Client(timeout=30) as client:
        small = {"values": {"daily_max_l": 500}, "reason": "small flats"}
        client.put(f"{base}/thresholds/community/{B}", json=small, headers=headers).raise_for_status()
    answers: dict[str, int] = {}

    def raise_her_minimum() -> None:
        with httpx.Client(timeout=30) as client:
            own = {"values": {"daily_min_l": 600}, "reason": "she waters a garden"}
            answers["change"] = client.put(f"{base}/thresholds/elder/{elder_id}", json=own, headers=headers).status_code

    with engine.connect() as mover:
        moving = mover.begin()  # her move, as PATCH /elders makes it: its turn, its check, then the move itself
        require_fitting_thresholds(mover, elder_id, B)
        mover.execute(update(elders).where(elders.c.elder_id == elder_id).values(community=B))
        change = threading.Thread(target=raise_her_minimum)
        change.start()
        assert wait_until(lambda: waiting_on_a_lock(engine) >= 1, 10)  # the change waits for its turn
        moving.commit()
    change.join(30)
    assert answers == {"change": 422}
    with engine.connect() as conn:
        community = conn.execute(select(elders.c.community).where(elders.c.elder_id == elder_id)).scalar_one()
        effective_thresholds(conn, elder_id, community)[0].validate()  # what her monitor will load
