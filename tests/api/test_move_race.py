"""Two moves of one elder at once (PostgreSQL): each is audited from the community she was in when it was made.

An admin moves her from A to B while another (or ``tapwatch register``) moves her to C. Both read her community
(A) before the first committed; the second then moved her from B and audited the move as one from A: in A's trail
(she had already left it) and not in B's, whose operators never saw in their own audit where she went.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete, select, update

from store.registry import take_thresholds_turn
from store.schema import audit_log, elders
from tapwatch.cli import main
from tests.api_fixtures import ELDER_A, A, B, add_user, serving_on, waiting_on_a_lock
from tests.conftest import wait_until

C = "延长新村"


@pytest.fixture
def pg_server(postgres_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, Engine]]:
    url = postgres_server.new_database()
    monkeypatch.setenv("TAPWATCH_DATABASE_URL", url)  # for tapwatch register
    with serving_on(url) as served:
        yield served


def test_two_moves_at_once_are_each_audited_from_where_she_was(
    pg_server: tuple[str, str, Engine], tmp_path: Path
) -> None:
    base, token, engine = pg_server
    elder_id = ELDER_A["elder_id"]
    answers: dict[str, int] = {}

    def by_api(to: str) -> None:
        with httpx.Client(timeout=30) as client:
            body = {"community": to, "reason": "moved"}
            headers = {"Authorization": f"Bearer {token}"}
            answers[to] = client.patch(f"{base}/elders/{elder_id}", json=body, headers=headers).status_code

    def by_register(to: str) -> None:
        path = tmp_path / "elders.json"
        path.write_text(json.dumps([{**ELDER_A, "community": to}], ensure_ascii=False), encoding="utf-8")
        answers[to] = 200 if main(["register", str(path)]) == 0 else 500

    races: list[tuple[Callable[[str], None], str, Callable[[str], None], str]] = [
        (by_api, B, by_api, C),
        (by_api, B, by_register, C),
    ]
    for first_mover, first_to, second_mover, second_to in races:
        _put_back(engine, elder_id)
        answers.clear()
        with engine.connect() as holder:
            holding = holder.begin()  # a threshold change under way: both moves wait for their turn
            take_thresholds_turn(holder)
            first = threading.Thread(target=first_mover, args=(first_to,))
            first.start()
            assert wait_until(lambda: waiting_on_a_lock(engine) >= 1, 10)
            second = threading.Thread(target=second_mover, args=(second_to,))
            second.start()
            assert wait_until(lambda: waiting_on_a_lock(engine) >= 2, 10)
            holding.rollback()
        first.join(30)
        second.join(30)
        assert answers == {first_to: 200, second_to: 200}, second_mover.__name__
        _assert_each_move_audited_where_she_left(engine, elder_id, second_mover.__name__)


def _put_back(engine: Engine, elder_id: str) -> None:
    """Her in A with an empty audit trail, for the next two moves."""
    with engine.begin() as conn:
        conn.execute(update(elders).where(elders.c.elder_id == elder_id).values(community=A))
        conn.execute(delete(audit_log))


def _assert_each_move_audited_where_she_left(engine: Engine, elder_id: str, how: str) -> None:
    with engine.connect() as conn:
        now = conn.execute(select(elders.c.community).where(elders.c.elder_id == elder_id)).scalar_one()
        entries = conn.execute(
            select(audit_log.c.community, audit_log.c.old, audit_log.c.new).where(
                audit_log.c.action == "elder.update", audit_log.c.target == f"elder:{elder_id}"
            )
        ).all()
    middle = B if now == C else C
    # Each move in the trail of the community she left, saying where she went; and in every community she was in.
    left = {(e.community, e.old["community"], e.new["community"]) for e in entries if "community" in (e.old or {})}
    assert left >= {(A, A, middle), (middle, middle, now)}, how
    assert {e.old["community"] for e in entries if "community" in (e.old or {})} == {A, middle}, how
    assert {e.community for e in entries} == {A, B, C}, how


def test_a_cadre_cannot_retire_an_elder_moved_out_of_her_community_meanwhile(
    pg_server: tuple[str, str, Engine],
) -> None:
    """A's cadre retires her while an admin moves her to B: the retire read her in A (so allowed it) before the
    move committed, then retired an elder of B, closed B's cases and audited it in A's trail."""
    base, admin, engine = pg_server
    elder_id = ELDER_A["elder_id"]
    _put_back(engine, elder_id)
    _cadre_id, cadre = add_user(engine, "cadre-a", "cadre", [A])
    answers: dict[str, int] = {}

    def call(name: str, method: str, path: str, token: str, body: dict[str, str]) -> None:
        with httpx.Client(timeout=30) as client:
            headers = {"Authorization": f"Bearer {token}"}
            answers[name] = client.request(method, f"{base}{path}", json=body, headers=headers).status_code

    move = ("move", "PATCH", f"/elders/{elder_id}", admin, {"community": B, "reason": "moved"})
    retire = ("retire", "POST", f"/elders/{elder_id}/retire", cadre, {"reason": "passed away"})
    with engine.connect() as holder:
        holding = holder.begin()  # a threshold change under way: the move waits for its turn, holding her row
        take_thresholds_turn(holder)
        mover = threading.Thread(target=call, args=move)
        mover.start()
        assert wait_until(lambda: waiting_on_a_lock(engine) >= 1, 10)
        retirer = threading.Thread(target=call, args=retire)
        retirer.start()
        assert wait_until(lambda: waiting_on_a_lock(engine) >= 2, 10)
        holding.rollback()
    mover.join(30)
    retirer.join(30)
    assert answers == {"move": 200, "retire": 404}  # she is B's now: A's cadre no longer sees her
    with engine.connect() as conn:
        row = conn.execute(select(elders.c.community, elders.c.retired_at).where(elders.c.elder_id == elder_id)).one()
    assert (row.community, row.retired_at) == (B, None)
