"""A login under way while an admin resets the user's password or disables her (PostgreSQL).

A new password or disabling a user revokes all her tokens: whoever knew the old password is out. A login checks
the password, then (after the login limits' bookkeeping) issues its token in a transaction of its own; a reset
committed in between revoked the tokens there were, and the login went on to issue one for the old password,
valid for the token's whole lifetime (12 h), and after the user was enabled again for a disabled one.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from store.users import disable_user, set_password
from tapwatch.usercli import create_token_in
from tests.api_fixtures import PASSWORD, A, add_user, serving_on, waiting_on_a_lock
from tests.conftest import wait_until


@pytest.fixture
def pg_server(postgres_server: Any) -> Iterator[tuple[str, str, Engine]]:
    with serving_on(postgres_server.new_database()) as served:
        yield served


@pytest.mark.parametrize("change", ["new password", "disabled"])
def test_a_login_under_way_when_her_password_is_reset_gets_no_token(
    pg_server: tuple[str, str, Engine], change: str
) -> None:
    base, _admin_token, engine = pg_server
    add_user(engine, "li", "cadre", [A])
    answers: list[httpx.Response] = []

    def login() -> None:
        with httpx.Client(timeout=30) as client:
            answers.append(client.post(f"{base}/auth/token", data={"username": "li", "password": PASSWORD}))

    with engine.connect() as holder:
        holding = holder.begin()
        # The login's bookkeeping after a right password (remembering her address) waits on this lock: the
        # password has been checked, the token not yet issued.
        holder.execute(text("LOCK TABLE login_familiar IN EXCLUSIVE MODE"))
        thread = threading.Thread(target=login)
        thread.start()
        assert wait_until(lambda: waiting_on_a_lock(engine) >= 1, 10), "the login never reached its bookkeeping"
        with engine.begin() as conn:  # the admin, meanwhile
            if change == "new password":
                set_password(conn, "li", "a new long passphrase, seven words")
            else:
                disable_user(conn, "li")
        holding.rollback()
    thread.join(30)

    (answer,) = answers
    if answer.status_code == 200:  # a token issued: it must not work
        me = httpx.get(f"{base}/me", headers={"Authorization": f"Bearer {answer.json()['access_token']}"})
        assert me.status_code == 401, "a login that checked the old password got a token surviving the reset"
        if change == "disabled":
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET disabled = false WHERE username = 'li'"))
            me = httpx.get(f"{base}/me", headers={"Authorization": f"Bearer {answer.json()['access_token']}"})
            assert me.status_code == 401, "enabling her again revived the token issued while she was disabled"
    else:
        assert answer.status_code == 401, answer.text


def test_an_api_key_made_while_she_is_being_disabled_does_not_outlive_it(pg_server: tuple[str, str, Engine]) -> None:
    """``tapwatch token create`` read the user as enabled while ``tapwatch user disable`` (or PATCH /users) was
    under way, then issued its key: the disable revoked the keys there were, not this one, which worked again (a
    year's API key) once she was enabled."""
    base, _admin_token, engine = pg_server
    add_user(engine, "grid", "platform", [A])
    made: list[str | Exception] = []

    def create() -> None:
        try:
            made.append(create_token_in(engine, "grid", "grid-platform", 365, io.StringIO()))
        except ValueError as exc:
            made.append(exc)

    with engine.connect() as holder:
        disabling = holder.begin()
        disable_user(holder, "grid")  # not committed yet
        thread = threading.Thread(target=create)
        thread.start()
        assert wait_until(lambda: bool(made) or waiting_on_a_lock(engine) >= 1, 10)
        disabling.commit()
    thread.join(30)
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET disabled = false WHERE username = 'grid'"))

    (key,) = made
    if isinstance(key, str):
        me = httpx.get(f"{base}/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 401, "enabling her again revived the key made while she was being disabled"
