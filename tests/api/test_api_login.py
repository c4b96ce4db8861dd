"""Login limits that slow guessing without locking anyone out; failed logins seen; weak passwords refused.

Issue 20 item 8: limiting was keyed on (username, address), so behind a proxy
anyone could lock out a known cadre, spraying many usernames was not limited,
X-Forwarded-For was believed from loopback, and failed logins left no trace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.main import create_app
from api.security import LoginLimiter
from core.settings import Settings, get_settings
from store.schema import audit_log
from tests.api_fixtures import PASSWORD, USERS, A, add_user

PROXY = "10.0.0.2"


@pytest.fixture
def app_settings() -> Settings:
    return get_settings(
        login_max_failures=3,
        login_window_s=60,
        login_backoff_max_s=30,
        login_max_failures_per_address=8,
        login_max_failures_global=50,
        trusted_proxies=["10.0.0.0/24"],
    )


@pytest.fixture
def clients(engine: Engine, app_settings: Settings) -> Iterator[dict[str, TestClient]]:
    """One app; test clients at different peer addresses (a trusted proxy, loopback, strangers)."""
    for name, (role, communities) in USERS.items():
        add_user(engine, name, role, communities)
    app = create_app(app_settings, engine)
    app.state.login_limiter.first_pause_s = 20  # the pause asserted below outlasts any slowness of the test machine
    peers = {"proxy": PROXY, "loopback": "127.0.0.1", "stranger": "198.51.100.7", "home": "203.0.113.5"}
    made = {name: TestClient(app, client=(ip, 40000)) for name, ip in peers.items()}
    yield made
    for client in made.values():
        client.close()


def _login(client: TestClient, username: str, password: str = PASSWORD, via: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": via} if via else {}
    return client.post("/auth/token", data={"username": username, "password": password}, headers=headers)


def test_guessing_one_username_from_many_addresses_is_slowed_per_username(clients: dict[str, TestClient]) -> None:
    proxy = clients["proxy"]
    for k in range(3):  # three attackers behind the proxy, each a different forwarded address
        assert _login(proxy, "cadre_a", "wrong guess 1", via=f"192.0.2.{k + 1}").status_code == 401
    refused = _login(proxy, "cadre_a", "wrong guess 2", via="192.0.2.9")  # a fourth address: same username
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    assert _login(proxy, "cadre_b", via="192.0.2.9").status_code == 200  # other users untouched


def test_a_cadre_under_attack_still_logs_in_from_where_she_did_before(clients: dict[str, TestClient]) -> None:
    home, stranger = clients["home"], clients["stranger"]
    assert _login(home, "cadre_a").status_code == 200  # she has logged in from home before
    for _ in range(6):
        _login(stranger, "cadre_a", "wrong guess 3")
    assert _login(stranger, "cadre_a", "wrong guess 4").status_code == 429  # the attacker is slowed
    assert _login(home, "cadre_a").status_code == 200  # she is not locked out


def test_backoff_grows_then_stops_at_the_cap_so_nobody_is_locked_out(engine: Engine) -> None:
    limiter = LoginLimiter(engine, max_failures=3, window_s=3600, backoff_max_s=30)
    t = 0.0
    waits = []
    for _ in range(12):  # an attacker who tries again the moment each pause ends
        t += limiter.retry_after("cadre_a", "192.0.2.1", now=t)
        limiter.failed("cadre_a", "192.0.2.1", now=t)
        waits.append(limiter.retry_after("cadre_a", "192.0.2.1", now=t))
    assert waits[:2] == [0, 0] and waits[2:8] == [1, 2, 4, 8, 16, 30] and set(waits[8:]) == {30}
    # the real cadre, from a new address, waits at most the cap and then her right password is taken
    assert limiter.retry_after("cadre_a", "203.0.113.5", now=t) <= 30
    assert limiter.retry_after("cadre_a", "203.0.113.5", now=t + 30) == 0


def test_every_api_worker_counts_the_same_failures(any_engine: Engine) -> None:
    """Two API processes over one store (workers behind one proxy): guessing across them gains nothing."""
    add_user(any_engine, "cadre_a", "cadre", ["A"])
    settings = get_settings(login_max_failures=3)
    workers = [create_app(settings, any_engine) for _ in range(3)]
    for worker in workers:
        worker.state.login_limiter.first_pause_s = 20  # outlasts any slowness of the test machine
    with TestClient(workers[0], client=("192.0.2.7", 1)) as one, TestClient(workers[1], client=("192.0.2.7", 1)) as two:
        for k in range(3):  # alternate workers, as a round-robin proxy would
            assert _login((one, two)[k % 2], "cadre_a", "wrong guess 7").status_code == 401
        assert _login(two, "cadre_a", "wrong guess 7").status_code == 429
        assert _login(one, "cadre_a", "wrong guess 7").status_code == 429
    # A worker started later (or after a restart) knows the pause too.
    with TestClient(workers[2], client=("192.0.2.7", 1)) as three:
        assert _login(three, "cadre_a").status_code == 429


def test_spraying_many_usernames_from_one_address_is_refused_before_any_password_check(
    clients: dict[str, TestClient], engine: Engine
) -> None:
    stranger = clients["stranger"]
    answers = [_login(stranger, f"user{k:03d}", "spray password 1").status_code for k in range(30)]
    assert answers[:8] == [401] * 8 and set(answers[8:]) == {429}  # per address: 8 per window
    assert _login(clients["home"], "op_a").status_code == 200  # others are not affected
    with engine.connect() as conn:
        failures = conn.execute(select(audit_log).where(audit_log.c.action == "auth.failed")).all()
    assert len(failures) == 8  # refused tries did no scrypt work and wrote nothing


def test_spraying_from_many_addresses_meets_the_global_limit(engine: Engine) -> None:
    add_user(engine, "op_a", "operator", ["A"])
    app = create_app(get_settings(login_max_failures_global=10, login_max_failures_per_address=100), engine)
    with (
        TestClient(app, client=("198.51.100.1", 1)) as one,
        TestClient(app, client=("198.51.100.2", 1)) as two,
        TestClient(app, client=("203.0.113.5", 1)) as home,
        TestClient(app, client=("203.0.113.99", 1)) as new_phone,
    ):
        assert _login(home, "op_a").status_code == 200  # she logged in from home before the spray
        answers = [_login(one if k % 2 else two, f"user{k}", "spray password 2").status_code for k in range(20)]
        assert answers[:10] == [401] * 10 and set(answers[10:]) == {429}
        assert _login(home, "op_a").status_code == 200  # known addresses go on during a spray
        assert _login(new_phone, "op_a").status_code == 429  # unfamiliar ones wait for the window to pass


def test_forwarded_for_is_believed_only_from_configured_proxies(clients: dict[str, TestClient]) -> None:
    loopback, proxy = clients["loopback"], clients["proxy"]
    # From loopback (not configured): the header is ignored, every try counts against 127.0.0.1.
    for k in range(8):
        _login(loopback, f"nobody{k}", "wrong guess 5", via=f"192.0.2.{k + 10}")
    assert _login(loopback, "nobody99", "wrong guess 5", via="192.0.2.99").status_code == 429
    # Through the configured proxy, each forwarded client has its own address count.
    for k in range(8):
        _login(proxy, f"someone{k}", "wrong guess 6", via="192.0.2.50")
    assert _login(proxy, "someone99", "wrong guess 6", via="192.0.2.50").status_code == 429
    assert _login(proxy, "op_a", via="192.0.2.51").status_code == 200


def test_the_default_trusts_no_proxy(engine: Engine) -> None:
    assert get_settings().trusted_proxies == []
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6"):
        get_settings(trusted_proxies=["not-an-address"])


def test_failed_logins_are_logged_audited_and_counted_without_the_password(
    clients: dict[str, TestClient], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    client = clients["home"]
    with caplog.at_level(logging.WARNING, logger="api.routes.auth"):
        assert _login(client, "cadre_a", "wrong secret 77").status_code == 401
        assert _login(client, "my password 88", "x").status_code == 401  # a password typed as the username
    text = caplog.text
    assert "user 'cadre_a' from 203.0.113.5" in text and "an unknown username from 203.0.113.5" in text
    assert "wrong secret 77" not in text and "my password 88" not in text
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.action == "auth.failed")).all()
    assert [(r.actor, r.target, r.new) for r in rows] == [
        ("cadre_a", "user:cadre_a", {"address": "203.0.113.5"}),
        ("(unknown)", "user:(unknown)", {"address": "203.0.113.5"}),
    ]
    assert "wrong secret" not in str(rows) and "my password" not in str(rows)
    metrics = client.get("/metrics").text
    assert 'tapwatch_login_failures_total{reason="password"} 1.0' in metrics
    assert 'tapwatch_login_failures_total{reason="unknown_user"} 1.0' in metrics


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("aaaaaaaaaaaa", "repeats too few characters"),
        ("abcabcabcabc", "repeats too few characters"),
        ("zhou.cadre1234", "must not contain the username"),
        ("Password123", "too common"),
        ("short", "at least 10 characters"),
    ],
)
def test_weak_passwords_are_refused_at_the_api(
    clients: dict[str, TestClient], engine: Engine, password: str, reason: str
) -> None:
    client = clients["home"]
    token = _login(client, "admin").json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    made = client.post(
        "/users",
        json={"username": "zhou.cadre", "password": password, "role": "cadre", "communities": [A]},
        headers=headers,
    )
    assert made.status_code == 422 and reason in made.text, made.text
    assert made.headers["content-type"] == "application/problem+json"
    ok = client.post(
        "/users",
        json={"username": "zhou.cadre", "password": "blue kettle 42", "role": "cadre", "communities": [A]},
        headers=headers,
    )
    assert ok.status_code == 201
    changed = client.patch(f"/users/{ok.json()['user_id']}", json={"password": password}, headers=headers)
    assert changed.status_code == 422 and reason in changed.text


def test_the_served_api_does_not_take_forwarded_for_from_loopback(engine: Engine) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default; the monitor's server must not."""
    import threading

    import uvicorn

    from tapwatch.serving import api_server_config
    from tests.conftest import free_port, wait_until

    settings = get_settings(api_port=free_port())
    server = uvicorn.Server(api_server_config(create_app(settings, engine), settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 10)
        answer = httpx.post(
            f"http://127.0.0.1:{settings.api_port}/auth/token",
            data={"username": "nobody", "password": "wrong guess 7"},
            headers={"X-Forwarded-For": "192.0.2.77"},
            timeout=10,
        )
        assert answer.status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)
    with engine.connect() as conn:
        address = conn.execute(select(audit_log.c.new).where(audit_log.c.action == "auth.failed")).scalar_one()
    assert address == {"address": "127.0.0.1"}
