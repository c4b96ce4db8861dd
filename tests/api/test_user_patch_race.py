"""Two changes of one user at once (PostgreSQL): together they may not leave a login that sees nothing.

A user who is no admin needs a community (``PATCH /users`` refuses to empty them, or to demote an admin who has
none). One admin empties an admin's communities while another demotes that admin to cadre: each change alone is
allowed, and each was judged on the user as read before the other committed, so both went through and left a
cadre with no community, the login that sees nothing which either request alone is refused.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from store.schema import users
from tests.api_fixtures import A, add_user, serving_on, waiting_on_a_lock
from tests.conftest import wait_until


@pytest.fixture
def pg_server(postgres_server: Any) -> Iterator[tuple[str, str, Engine]]:
    with serving_on(postgres_server.new_database()) as served:
        yield served


def test_two_changes_at_once_leave_no_user_without_a_community(pg_server: tuple[str, str, Engine]) -> None:
    base, token, engine = pg_server
    user_id, _ = add_user(engine, "deputy", "admin", [A])
    answers: dict[str, int] = {}

    def patch(name: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=30) as client:
            answer = client.patch(f"{base}/users/{user_id}", json=body, headers={"Authorization": f"Bearer {token}"})
            answers[name] = answer.status_code

    changes = [("empty", {"communities": []}), ("demote", {"role": "cadre"})]
    with engine.connect() as holder:
        holding = holder.begin()  # another change of the user under way: both wait on her row
        holder.execute(select(users.c.user_id).where(users.c.user_id == user_id).with_for_update())
        threads = []
        for waiting, (name, body) in enumerate(changes, start=1):
            threads.append(threading.Thread(target=patch, args=(name, body)))
            threads[-1].start()
            assert wait_until(functools.partial(_waiting, engine, waiting), 10)
        holding.rollback()
    for thread in threads:
        thread.join(30)

    with engine.connect() as conn:
        role, communities = conn.execute(
            select(users.c.role, users.c.communities).where(users.c.user_id == user_id)
        ).one()
    assert role == "admin" or communities, (role, communities)
    assert answers == {"empty": 200, "demote": 422}


def _waiting(engine: Engine, sessions: int) -> bool:
    """At least ``sessions`` requests wait on a lock: each has reached the user's row."""
    return waiting_on_a_lock(engine) >= sessions


def test_two_admins_demoting_each_other_at_once_leave_an_admin(pg_server: tuple[str, str, Engine]) -> None:
    """Each admin demotes (or disables) the other: each alone leaves an admin, both together left none."""
    base, token, engine = pg_server
    with engine.connect() as conn:
        admin_id = conn.execute(select(users.c.user_id).where(users.c.username == "admin")).scalar_one()
    deputy_id, deputy_token = add_user(engine, "deputy", "admin", [A])
    answers: dict[int, int] = {}

    def patch(target: int, bearer: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=30) as client:
            answer = client.patch(f"{base}/users/{target}", json=body, headers={"Authorization": f"Bearer {bearer}"})
            answers[target] = answer.status_code

    changes = [(deputy_id, token, {"role": "cadre"}), (admin_id, deputy_token, {"disabled": True})]
    with engine.connect() as holder:
        holding = holder.begin()  # another change of both admins under way: each request waits on an admin's row
        holder.execute(select(users.c.user_id).where(users.c.role == "admin").with_for_update())
        threads = []
        for waiting, args in enumerate(changes, start=1):
            threads.append(threading.Thread(target=patch, args=args))
            threads[-1].start()
            assert wait_until(functools.partial(_waiting, engine, waiting), 10)
        holding.rollback()
    for thread in threads:
        thread.join(30)

    with engine.connect() as conn:
        admins = conn.execute(
            select(users.c.username).where(users.c.role == "admin", users.c.disabled.is_(False))
        ).all()
    assert len(admins) == 1, (admins, answers)
    assert sorted(answers.values()) == [200, 409], answers
