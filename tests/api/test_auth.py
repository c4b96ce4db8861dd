"""Authentication: login, tokens stored as hashes, expiry, rate limit, public routes, the user CLI."""

from __future__ import annotations

import hashlib
import io
import time

import httpx
import pytest
from sqlalchemy import Engine, select, update

from alerts.cases import SYSTEM_ACTOR
from api.security import LoginLimiter
from store.schema import api_tokens, audit_log, users
from store.users import hash_password, verify_password
from tapwatch.usercli import create_token_in, create_user_in, list_users_in
from tests.api_fixtures import PASSWORD, Api, api_env  # noqa: F401

PROTECTED = [
    ("get", "/elders"),
    ("get", "/elders/EA1"),
    ("get", "/alerts"),
    ("get", "/me"),
    ("get", "/thresholds/spec"),
    ("post", "/backtest"),
    ("post", "/backtest/prepare"),
    ("get", "/devices"),
    ("get", "/audit"),
    ("get", "/users"),
    ("get", "/meters/MA1/readings"),
]


def login(api: Api, username: str, password: str = PASSWORD) -> httpx.Response:
    return api.client.post("/auth/token", data={"username": username, "password": password})


def test_login_returns_a_token_that_works_and_is_stored_only_as_a_hash(api: Api) -> None:
    response = login(api, "cadre_a")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["role"] == "cadre" and body["communities"] == ["大宁社区"]
    assert body["username"] == "cadre_a" and body["expires_in"] > 0
    token = body["access_token"]
    me = api.client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["username"] == "cadre_a"
    with api.engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.token_hash)).scalars().all()
        passwords = conn.execute(select(users.c.password_hash)).scalars().all()
        logged = str(conn.execute(select(audit_log)).all())
    assert hashlib.sha256(token.encode()).hexdigest() in stored and token not in stored
    assert all(p.startswith("scrypt$") and PASSWORD not in p for p in passwords)
    assert token not in logged and PASSWORD not in logged
    assert "auth.login" in logged  # access is audited


def test_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    wrong, unknown = login(api, "cadre_a", "nope"), login(api, "nobody", "nope")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.headers["content-type"] == "application/problem+json"


def test_login_is_rate_limited_per_user_and_client(api: Api) -> None:
    api.app.state.login_limiter.first_pause_s = 20  # outlasts any slowness of the test machine
    for _ in range(3):  # the fixture allows 3 failures a minute
        assert login(api, "op_a", "wrong password").status_code == 401
    limited = login(api, "op_a")  # even the right password waits
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.headers["content-type"] == "application/problem+json"
    assert login(api, "op_b").status_code == 200  # other users are not affected


def test_limiter_forgets_after_the_window_and_on_success(engine: Engine) -> None:
    limiter = LoginLimiter(engine, max_failures=2, window_s=10, backoff_max_s=60)
    limiter.failed("u", "1.2.3.4", now=0)
    limiter.failed("u", "1.2.3.4", now=1)
    assert limiter.retry_after("u", "1.2.3.4", now=1.5) == 1  # the first pause: 1 s after the last failure
    assert limiter.retry_after("u", "1.2.3.4", now=2.5) == 0
    assert limiter.retry_after("u", "1.2.3.4", now=11.5) == 0  # both failures left the window
    limiter.succeeded("u", "1.2.3.4", now=12)
    assert limiter.retry_after("u", "1.2.3.4", now=12) == 0


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_routes_need_a_token(api: Api, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"}):
        response = api.client.request(method, path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"


def test_public_routes(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/", "/openapi.json", "/docs"):
        assert api.client.get(path).status_code == 200, path


def test_expired_token_and_disabled_user_are_refused(api: Api) -> None:
    with api.engine.begin() as conn:
        conn.execute(update(api_tokens).where(api_tokens.c.user_id == api.user_ids["op_a"]).values(expires_at=1.0))
    assert api.get("op_a", "/me").status_code == 401
    assert api.get("cadre_a", "/me").status_code == 200
    disabled = api.patch("admin", f"/users/{api.user_ids['cadre_a']}", json={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert api.get("cadre_a", "/me").status_code == 401
    assert login(api, "cadre_a").status_code == 401


def test_logout_revokes_the_token_and_is_audited(api: Api) -> None:
    assert api.post("op_b", "/auth/logout").status_code == 204
    assert api.get("op_b", "/me").status_code == 401
    with api.engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.actor, audit_log.c.target).where(audit_log.c.action == "auth.logout"))
        assert rows.all() == [("op_b", "user:op_b")]


def test_admin_manages_users(api: Api) -> None:
    made = api.post(
        "admin",
        "/users",
        json={"username": "zhou.cadre", "password": "a long passphrase", "role": "cadre", "communities": ["大宁社区"]},
    )
    assert made.status_code == 201, made.text
    assert "password" not in made.json() and "password_hash" not in made.json()
    assert login(api, "zhou.cadre", "a long passphrase").status_code == 200
    cadre = {"role": "cadre", "communities": ["大宁社区"]}
    dup = api.post("admin", "/users", json={"username": "zhou.cadre", "password": "blue kettle 42", **cadre})
    assert dup.status_code == 409
    # A name differing only in case is a look-alike in the audit trail and at login: refused, naming the other.
    alike = api.post("admin", "/users", json={"username": "Zhou.Cadre", "password": "blue kettle 42", **cadre})
    assert alike.status_code == 409 and "'zhou.cadre'" in alike.json()["detail"], alike.text
    assert alike.headers["content-type"].startswith("application/problem+json")
    short = api.post("admin", "/users", json={"username": "wu", "password": "short", **cadre})
    assert short.status_code == 422 and "10 characters" in short.text
    listed = api.get("admin", "/users", params={"role": "cadre", "sort": "-username"}).json()
    assert [u["username"] for u in listed["data"]] == ["zhou.cadre", "cadre_b", "cadre_a"]
    for who in ("op_a", "cadre_a", "platform_all"):
        assert api.get(who, "/users").status_code == 403
        assert (
            api.post(who, "/users", json={"username": "x" * 5, "password": "y" * 12, "role": "admin"}).status_code
            == 403
        )
    me = api.user_ids["admin"]
    assert api.patch("admin", f"/users/{me}", json={"disabled": True}).status_code == 409  # no lock-out
    assert api.patch("admin", f"/users/{me}", json={"role": "cadre"}).status_code == 409
    entry = api.get("admin", "/audit", params={"action": "user.create"}).json()["data"][0]
    assert entry["target"] == "user:zhou.cadre" and "password" not in str(entry)


def test_password_hashing() -> None:
    stored = hash_password("s3cret passphrase")
    assert stored != hash_password("s3cret passphrase")  # salted
    assert verify_password("s3cret passphrase", stored)
    assert not verify_password("s3cret passphrasE", stored)
    assert not verify_password("anything", "garbage")


def test_user_and_token_cli(api: Api) -> None:
    out = io.StringIO()
    create_user_in(api.engine, "grid.platform", "platform", ["*"], None, out)
    assert "no password" in out.getvalue()
    with pytest.raises(ValueError, match="already exists"):
        create_user_in(api.engine, "grid.platform", "platform", [], None, io.StringIO())
    with pytest.raises(ValueError, match="unknown role"):
        create_user_in(api.engine, "someone", "root", [], "long enough pw", io.StringIO())
    with pytest.raises(ValueError, match="10 characters"):
        create_user_in(api.engine, "someone", "cadre", ["大宁社区"], "short", io.StringIO())
    key_out = io.StringIO()
    token = create_token_in(api.engine, "grid.platform", "grid", 30, key_out)
    assert key_out.getvalue().strip() == token
    me = api.client.get("/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["role"] == "platform" and me["communities"] == ["*"]
    assert api.client.get("/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with pytest.raises(ValueError, match="no active user"):
        create_token_in(api.engine, "ghost", "x", 30, io.StringIO())
    with api.engine.connect() as conn:
        expires = conn.execute(select(api_tokens.c.expires_at).where(api_tokens.c.name == "grid")).scalar_one()
    assert 29 * 86400 < expires - time.time() <= 30 * 86400
    listing = io.StringIO()
    assert list_users_in(api.engine, listing) == 8
    assert "grid.platform\tplatform\t*" in listing.getvalue()


def test_user_cli_parsers() -> None:
    import argparse

    from tapwatch import usercli

    parser = argparse.ArgumentParser()
    usercli.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["user", "create", "li", "--role", "cadre", "--community", "A", "--community", "B"])
    assert args.func is usercli.cmd_user_create and args.communities == ["A", "B"] and not args.password_stdin
    args = parser.parse_args(["token", "create", "--user", "li", "--days", "7"])
    assert args.func is usercli.cmd_token_create and args.days == 7 and args.name == "api-key"


def test_a_users_communities_are_trimmed_as_elders_are_so_the_user_sees_them(api: Api) -> None:
    """ " 大宁社区 " matched no elder (whose community is trimmed): the user was given a community and saw nothing."""
    body = {"username": "qian.cadre", "password": "a long passphrase", "role": "cadre", "communities": [" 大宁社区 "]}
    made = api.post("admin", "/users", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["communities"] == ["大宁社区"]
    changed = api.patch("admin", f"/users/{made.json()['user_id']}", json={"communities": ["大宁社区", " 彭浦社区 "]})
    assert changed.status_code == 200 and changed.json()["communities"] == ["大宁社区", "彭浦社区"]
    blank = api.patch("admin", f"/users/{made.json()['user_id']}", json={"communities": ["  "]})
    assert blank.status_code == 422


@pytest.mark.parametrize("name", [SYSTEM_ACTOR, "TapWatch", "cli", "retention"])
def test_nobody_takes_a_name_tapwatch_itself_acts_under(api: Api, name: str) -> None:
    """A user named 'tapwatch' (a platform account named after the system it serves) resolved cases as the data
    does: the dashboard said 'tapwatch 系统自动' and hid her note, and a case she closed with an elder's retirement
    (outcome cleared) read as closed by the data, open to an outcome and a lesson. The audit trail's own actors
    (the CLI, retention) are not anyone's name either."""
    body = {"username": name, "password": "a long passphrase", "role": "platform", "communities": ["*"]}
    refused = api.post("admin", "/users", json=body)
    assert refused.status_code == 422 and "reserved" in refused.text, refused.text
    with pytest.raises(ValueError, match="reserved"):
        create_user_in(api.engine, name, "platform", ["*"], None, io.StringIO())
    with api.engine.connect() as conn:
        assert conn.execute(select(users).where(users.c.username == name)).first() is None


def test_a_user_is_refused_a_community_no_elder_belongs_to_unless_set_up_on_purpose(api: Api) -> None:
    """POST /users took any community: a typo ("大宁社" for 大宁社区) gave a cadre a login that saw nothing, and
    nobody was told. A community no elder belongs to is refused, naming the closest known; a community set up
    before its elders are registered is given on purpose, and is known from then on."""
    typo = {"username": "zhao.cadre", "password": "a long passphrase", "role": "cadre", "communities": ["大宁社"]}
    refused = api.post("admin", "/users", json=typo)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert "'大宁社'" in detail and "大宁社区" in detail and "allow_new_community" in detail, detail
    assert api.get("admin", "/users", params={"role": "cadre"}).json()["count"] == 2  # cadre_a, cadre_b only
    new = {**typo, "communities": ["临汾路街道"], "allow_new_community": True}
    made = api.post("admin", "/users", json=new)
    assert made.status_code == 201 and made.json()["communities"] == ["临汾路街道"], made.text
    second = api.post("admin", "/users", json={**typo, "username": "sun.cadre", "communities": ["临汾路街道"]})
    assert second.status_code == 201, second.text
    moved = api.patch("admin", f"/users/{made.json()['user_id']}", json={"communities": ["彭浦社"]})
    assert moved.status_code == 422 and "彭浦社区" in moved.json()["detail"], moved.text
    assert api.get("admin", "/users", params={"role": "cadre"}).json()["count"] == 4
    created = api.get("admin", "/audit", params={"action": "user.create"}).json()["data"]
    assert sorted(entry["target"] for entry in created) == ["user:sun.cadre", "user:zhao.cadre"]


def test_user_create_refuses_an_unknown_community_naming_the_closest(
    api: Api, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tapwatch user create --community 彭浦社` made the user; it is one line naming 彭浦社区 and the flag."""
    from tapwatch.cli import main

    monkeypatch.setenv("TAPWATCH_DATABASE_URL", db_url)
    assert main(["user", "create", "zhao.cadre", "--role", "cadre", "--community", "彭浦社"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tapwatch: error: ") and err.count("\n") == 1, err
    assert "'彭浦社'" in err and "彭浦社区" in err and "--allow-new-community" in err, err
    args = ["user", "create", "zhao.cadre", "--role", "cadre", "--community", "临汾路街道", "--allow-new-community"]
    assert main(args) == 0
    assert "created user zhao.cadre" in capsys.readouterr().out
    with api.engine.connect() as conn:
        assert conn.execute(select(users.c.communities).where(users.c.username == "zhao.cadre")).scalar_one() == [
            "临汾路街道"
        ]


@pytest.mark.parametrize("role", ["cadre", "operator", "platform"])
def test_a_user_who_is_no_admin_is_refused_without_a_community(
    api: Api, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /users and `tapwatch user create` made a cadre, operator or platform user with no community: a login
    that saw nothing, what the unknown-community check exists to prevent. Refused, in the server's language
    (TAPWATCH_LANGUAGE: zh, or en), unless the user is an admin, who sees every community."""
    body = {"username": f"no.{role}", "password": "a long passphrase", "role": role}
    for given in ({}, {"communities": []}):
        refused = api.post("admin", "/users", json={**body, **given})
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
        assert "至少一个社区" in refused.json()["detail"], refused.text
    with pytest.raises(ValueError, match="至少一个社区"):
        create_user_in(api.engine, f"no.{role}", role, [], None, io.StringIO())
    monkeypatch.setenv("TAPWATCH_LANGUAGE", "en")
    with pytest.raises(ValueError, match="at least one community"):
        create_user_in(api.engine, f"no.{role}", role, [], None, io.StringIO())
    monkeypatch.setattr(api.app.state, "settings", api.app.state.settings.model_copy(update={"language": "en"}))
    refused = api.post("admin", "/users", json=body)
    assert refused.status_code == 422 and "at least one community" in refused.json()["detail"], refused.text
    with api.engine.connect() as conn:
        assert conn.execute(select(users).where(users.c.username == f"no.{role}")).first() is None
    made = api.post("admin", "/users", json={**body, "communities": ["*"]})  # every community: sees them all
    assert made.status_code == 201, made.text


def test_an_admin_needs_no_community(api: Api) -> None:
    body = {"username": "zhou.admin", "password": "a long passphrase", "role": "admin"}
    assert api.post("admin", "/users", json=body).status_code == 201
    create_user_in(api.engine, "wu.admin", "admin", [], None, io.StringIO())


@pytest.mark.parametrize("who", ["cadre_a", "op_a", "platform_all"])
def test_patch_refuses_to_leave_a_user_who_is_no_admin_without_a_community(
    api: Api, who: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PATCH /users/{id} set a cadre's, operator's or platform user's communities to [], the login that sees nothing
    POST /users refuses. Refused the same way (422, zh by default, en), pointing at disabling the user instead."""
    url = f"/users/{api.user_ids[who]}"
    with api.engine.connect() as conn:
        before = conn.execute(select(users.c.communities).where(users.c.username == who)).scalar_one()
    refused = api.patch("admin", url, json={"communities": []})
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert "至少一个社区" in refused.json()["detail"] and "停用" in refused.json()["detail"], refused.text
    monkeypatch.setattr(api.app.state, "settings", api.app.state.settings.model_copy(update={"language": "en"}))
    refused = api.patch("admin", url, json={"communities": []})
    assert refused.status_code == 422 and "at least one community" in refused.json()["detail"], refused.text
    assert "disable the user" in refused.json()["detail"], refused.text
    with api.engine.connect() as conn:
        assert conn.execute(select(users.c.communities).where(users.c.username == who)).scalar_one() == before
    assert api.patch("admin", url, json={"disabled": True}).status_code == 200  # how access is taken away


def test_patch_refuses_to_demote_an_admin_with_no_community(api: Api) -> None:
    made = api.post(
        "admin", "/users", json={"username": "qian.admin", "password": "a long passphrase", "role": "admin"}
    )
    url = f"/users/{made.json()['user_id']}"
    assert api.patch("admin", url, json={"role": "cadre"}).status_code == 422
    assert api.patch("admin", url, json={"role": "cadre", "communities": ["*"]}).status_code == 200
    assert api.patch("admin", url, json={"role": "admin", "communities": []}).status_code == 200
