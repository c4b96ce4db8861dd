"""The authorization matrix: every route x every role x own/other community x revoked/changed user.

Routes are enumerated from the app (as tests/api/test_api_auth_routes.py does), so a route
added without a row in :data:`EXPECTED` fails this test. Each cell is one real HTTP
request to a uvicorn server on loopback, with a fresh target where the call changes it
(a new elder to retire, a new alert to acknowledge, a new window to delete ...).

* **own**: the target lies in community A, the caller's (the admin's: any).
* **other**: the target lies in community B (for lists: ``?community=B``); anything
  outside the caller's communities answers 404 as if absent, or 403 when the role
  may not do this anywhere.
* **revoked / disabled**: the same call with a revoked token, or by a disabled user: 401.
* **moved**: a user of the role whose communities changed from A to B after the token
  was issued, calling on A: answers as "other" (the token carries no stale rights).
* **demoted**: an admin turned cadre of A after the token was issued: answers as a cadre.

Across every answer: users of A never see B's elder (by name), the platform never sees
a contact's phone number, and the live stream replays only the caller's communities.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete, insert, select, update

from api.main import create_app
from core.settings import get_settings
from store.schema import alerts, api_tokens, away_windows, outbox, users
from store.users import issue_token
from tests.api_fixtures import ELDER_A, ELDER_B, USERS, A, B, add_elder, add_user, raise_alert, serving
from tests.helpers import protected_routes

ROLES = ("admin", "operator", "cadre", "platform")
CALLER = {"admin": "admin", "operator": "op_a", "cadre": "cadre_a", "platform": "platform_a"}
B_NAME = ELDER_B["name"]  # 王秀兰: no user of A may ever read it
PHONE = "13900000000"  # contacts' phone numbers: never the platform's


def row(admin: str, operator: str, cadre: str, platform: str) -> dict[str, tuple[int, int]]:
    """Expected statuses per role as ``"own/other"``."""
    cells = {"admin": admin, "operator": operator, "cadre": cadre, "platform": platform}
    return {role: (int(cell.split("/")[0]), int(cell.split("/")[1])) for role, cell in cells.items()}


#: (method, path) -> role -> (own, other). The table the promises of docs/api.md make.
EXPECTED: dict[tuple[str, str], dict[str, tuple[int, int]]] = {
    ("POST", "/auth/logout"): row("204/204", "204/204", "204/204", "204/204"),
    ("GET", "/me"): row("200/200", "200/200", "200/200", "200/200"),
    ("GET", "/elders"): row("200/200", "200/200", "200/200", "200/200"),
    ("POST", "/elders"): row("201/201", "403/403", "201/403", "403/403"),
    ("GET", "/elders/{elder_id}"): row("200/200", "200/404", "200/404", "200/404"),
    ("PATCH", "/elders/{elder_id}"): row("200/200", "403/403", "200/404", "403/403"),
    ("POST", "/elders/{elder_id}/retire"): row("200/200", "403/403", "200/404", "403/403"),
    ("POST", "/elders/{elder_id}/meter"): row("200/200", "403/403", "200/404", "403/403"),
    ("GET", "/meters/{meter_id}/readings"): row("200/200", "200/404", "200/404", "403/403"),
    ("GET", "/meters/{meter_id}/usage"): row("200/200", "200/404", "200/404", "403/403"),
    ("GET", "/elders/{elder_id}/routine"): row("200/200", "200/404", "200/404", "403/403"),
    ("GET", "/alerts"): row("200/200", "200/200", "200/200", "200/200"),
    ("GET", "/alerts/stream"): row("200/200", "200/200", "200/200", "200/200"),
    ("GET", "/alerts/{alert_id}"): row("200/200", "200/404", "200/404", "200/404"),
    ("GET", "/alerts/{alert_id}/events"): row("200/200", "200/404", "200/404", "200/404"),
    ("POST", "/alerts/{alert_id}/ack"): row("200/200", "403/403", "200/404", "200/404"),
    ("POST", "/alerts/{alert_id}/resolve"): row("200/200", "403/403", "200/404", "200/404"),
    ("GET", "/thresholds/spec"): row("200/200", "200/200", "200/200", "200/200"),
    ("GET", "/thresholds/global"): row("200/200", "200/200", "200/200", "200/200"),
    ("PUT", "/thresholds/global"): row("200/200", "403/403", "403/403", "403/403"),
    ("GET", "/thresholds/{scope}/{scope_id}"): row("200/200", "200/404", "200/404", "403/403"),
    ("PUT", "/thresholds/{scope}/{scope_id}"): row("200/200", "200/404", "403/403", "403/403"),
    ("GET", "/thresholds/false-alarms"): row("200/200", "200/200", "403/403", "403/403"),
    ("GET", "/elders/{elder_id}/thresholds"): row("200/200", "200/404", "200/404", "403/403"),
    ("POST", "/backtest"): row("200/200", "200/404", "403/403", "403/403"),
    ("POST", "/backtest/prepare"): row("202/202", "202/404", "403/403", "403/403"),
    ("GET", "/elders/{elder_id}/away"): row("200/200", "200/404", "200/404", "200/404"),
    ("POST", "/elders/{elder_id}/away"): row("201/201", "403/403", "201/404", "403/403"),
    ("DELETE", "/elders/{elder_id}/away/{window_id}"): row("204/204", "403/403", "204/404", "403/403"),
    ("GET", "/devices"): row("200/200", "200/200", "403/403", "200/200"),
    ("GET", "/audit"): row("200/200", "200/200", "403/403", "403/403"),
    ("GET", "/reports/outcomes"): row("200/200", "200/404", "200/404", "403/403"),
    ("GET", "/dead-letters"): row("200/200", "200/200", "403/403", "403/403"),
    ("GET", "/deliveries"): row("200/200", "200/200", "403/403", "403/403"),
    ("GET", "/deliveries/parked"): row("200/200", "200/200", "403/403", "403/403"),
    ("POST", "/deliveries/parked/{job_id}/requeue"): row("200/200", "200/404", "403/403", "403/403"),
    ("POST", "/deliveries/parked/{job_id}/dismiss"): row("200/200", "200/404", "403/403", "403/403"),
    ("GET", "/users"): row("200/200", "403/403", "403/403", "403/403"),
    ("POST", "/users"): row("201/201", "403/403", "403/403", "403/403"),
    ("PATCH", "/users/{user_id}"): row("200/200", "403/403", "403/403", "403/403"),
    ("GET", "/tokens"): row("200/200", "403/403", "403/403", "403/403"),
    ("DELETE", "/tokens/{token_id}"): row("204/204", "403/403", "403/403", "403/403"),
}

WINDOW = {"kind": "away", "start": "2026-11-24T09:00:00+08:00", "end": "2026-11-25T09:00:00+08:00"}
CHANGE = {"values": {"ceiling_hours": 10}, "reason": "matrix"}
Request = tuple[str, dict[str, Any] | None, dict[str, str]]  # url, json body, query


class World:
    """The store behind the server, and fresh targets in community A (own) or B (other)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.serial = itertools.count(1)
        self.alert = {A: raise_alert(engine, "MA1"), B: raise_alert(engine, "MB1")}

    def community(self, scope: str) -> str:
        return A if scope == "own" else B

    def base(self, scope: str) -> dict[str, Any]:
        return ELDER_A if scope == "own" else ELDER_B

    def elder(self, scope: str) -> str:
        """A fresh elder of the scope's community, with a meter and an alert job."""
        n = next(self.serial)
        elder = {**self.base(scope), "elder_id": f"X{scope[0]}{n}", "meter_id": f"XM{scope[0]}{n}"}
        add_elder(self.engine, elder)
        return str(elder["elder_id"])

    def open_alert(self, scope: str) -> str:
        elder_id = self.elder(scope)
        return raise_alert(self.engine, f"XM{elder_id[1:]}")

    def window(self, elder_id: str) -> int:
        with self.engine.begin() as conn:
            values = {"elder_id": elder_id, "kind": "away", "start_ts": 1.8e9, "end_ts": 1.8e9 + 3600}
            result = conn.execute(insert(away_windows).values(**values, created_by="t", created_at=time.time()))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def parked_job(self, scope: str) -> int:
        alert_id = self.alert[self.community(scope)]
        n = next(self.serial)
        with self.engine.begin() as conn:
            elder_id = conn.execute(select(alerts.c.elder_id).where(alerts.c.alert_id == alert_id)).scalar_one()
            job = {
                "alert_id": alert_id,
                "event_seq": 1,
                "elder_id": elder_id,
                "notifier": "webhook",
                "idempotency_key": f"matrix:{n}",
                "payload": {"type": "org.tapwatch.alert.raised", "id": f"{alert_id}:1"},
                "status": "parked",
                "next_attempt_at": 0.0,
                "created_at": time.time(),
            }
            return int(conn.execute(insert(outbox).values(**job)).inserted_primary_key[0])  # type: ignore[index]

    def user(self) -> int:
        return add_user(self.engine, f"matrix{next(self.serial)}", "cadre", [A])[0]

    def token(self) -> int:
        user_id = self.user()
        with self.engine.begin() as conn:
            return issue_token(conn, user_id, "matrix", time.time(), 3600)[1]


def _builders(w: World) -> dict[tuple[str, str], Callable[[str], Request]]:
    """For each route: scope -> (url, body, query) of one call, its target made fresh where the call changes it."""

    def eid(scope: str) -> str:
        return "EA1" if scope == "own" else "EB1"

    def mid(scope: str) -> str:
        return "MA1" if scope == "own" else "MB1"

    def scoped_list(path: str) -> Callable[[str], Request]:
        return lambda s: (path, None, {} if s == "own" else {"community": B})

    def new_elder(s: str) -> Request:
        n = next(w.serial)
        return "/elders", {**w.base(s), "elder_id": f"N{n}", "meter_id": f"NM{n}", "contacts": []}, {}

    return {
        ("POST", "/auth/logout"): lambda s: ("/auth/logout", None, {}),
        ("GET", "/me"): lambda s: ("/me", None, {}),
        ("GET", "/elders"): scoped_list("/elders"),
        ("POST", "/elders"): new_elder,
        ("GET", "/elders/{elder_id}"): lambda s: (f"/elders/{eid(s)}", None, {}),
        ("PATCH", "/elders/{elder_id}"): lambda s: (f"/elders/{eid(s)}", {"room": "9", "reason": "m"}, {}),
        ("POST", "/elders/{elder_id}/retire"): lambda s: (f"/elders/{w.elder(s)}/retire", {"reason": "moved"}, {}),
        ("POST", "/elders/{elder_id}/meter"): lambda s: (
            f"/elders/{eid(s)}/meter",
            {"meter_id": f"R{next(w.serial)}", "reason": "battery"},
            {},
        ),
        ("GET", "/meters/{meter_id}/readings"): lambda s: (f"/meters/{mid(s)}/readings", None, {}),
        ("GET", "/meters/{meter_id}/usage"): lambda s: (f"/meters/{mid(s)}/usage", None, {}),
        ("GET", "/elders/{elder_id}/routine"): lambda s: (f"/elders/{eid(s)}/routine", None, {}),
        ("GET", "/alerts"): scoped_list("/alerts"),
        ("GET", "/alerts/stream"): lambda s: ("/alerts/stream", None, {}),
        ("GET", "/alerts/{alert_id}"): lambda s: (f"/alerts/{w.alert[w.community(s)]}", None, {}),
        ("GET", "/alerts/{alert_id}/events"): lambda s: (f"/alerts/{w.alert[w.community(s)]}/events", None, {}),
        ("POST", "/alerts/{alert_id}/ack"): lambda s: (f"/alerts/{w.open_alert(s)}/ack", {"note": "on it"}, {}),
        ("POST", "/alerts/{alert_id}/resolve"): lambda s: (
            f"/alerts/{w.open_alert(s)}/resolve",
            {"outcome": "ok"},
            {},
        ),
        ("GET", "/thresholds/spec"): lambda s: ("/thresholds/spec", None, {}),
        ("GET", "/thresholds/global"): lambda s: ("/thresholds/global", None, {}),
        ("PUT", "/thresholds/global"): lambda s: ("/thresholds/global", CHANGE, {}),
        ("GET", "/thresholds/{scope}/{scope_id}"): lambda s: (f"/thresholds/elder/{eid(s)}", None, {}),
        ("PUT", "/thresholds/{scope}/{scope_id}"): lambda s: (f"/thresholds/community/{w.community(s)}", CHANGE, {}),
        ("GET", "/thresholds/false-alarms"): lambda s: ("/thresholds/false-alarms", None, {}),
        ("GET", "/elders/{elder_id}/thresholds"): lambda s: (f"/elders/{eid(s)}/thresholds", None, {}),
        ("POST", "/backtest"): lambda s: ("/backtest", {"community": w.community(s), "days": 1}, {}),
        ("POST", "/backtest/prepare"): lambda s: ("/backtest/prepare", {"community": w.community(s), "days": 1}, {}),
        ("GET", "/elders/{elder_id}/away"): lambda s: (f"/elders/{eid(s)}/away", None, {}),
        ("POST", "/elders/{elder_id}/away"): lambda s: (f"/elders/{eid(s)}/away", WINDOW, {}),
        ("DELETE", "/elders/{elder_id}/away/{window_id}"): lambda s: (
            f"/elders/{eid(s)}/away/{w.window(eid(s))}",
            None,
            {},
        ),
        ("GET", "/devices"): scoped_list("/devices"),
        ("GET", "/audit"): scoped_list("/audit"),
        ("GET", "/reports/outcomes"): lambda s: ("/reports/outcomes", None, {"community": w.community(s)}),
        ("GET", "/dead-letters"): lambda s: ("/dead-letters", None, {} if s == "own" else {"meter_id": "MB1"}),
        ("GET", "/deliveries"): lambda s: ("/deliveries", None, {}),
        ("GET", "/deliveries/parked"): scoped_list("/deliveries/parked"),
        ("POST", "/deliveries/parked/{job_id}/requeue"): lambda s: (
            f"/deliveries/parked/{w.parked_job(s)}/requeue",
            {"reason": "fixed"},
            {},
        ),
        ("POST", "/deliveries/parked/{job_id}/dismiss"): lambda s: (
            f"/deliveries/parked/{w.parked_job(s)}/dismiss",
            {"reason": "refused for good"},
            {},
        ),
        ("GET", "/users"): lambda s: ("/users", None, {}),
        ("POST", "/users"): lambda s: (
            "/users",
            {"username": f"new{next(w.serial)}", "password": "blue kettle 42", "role": "cadre", "communities": [A]},
            {},
        ),
        ("PATCH", "/users/{user_id}"): lambda s: (f"/users/{w.user()}", {"communities": [A]}, {}),
        ("GET", "/tokens"): lambda s: ("/tokens", None, {}),
        ("DELETE", "/tokens/{token_id}"): lambda s: (f"/tokens/{w.token()}", None, {}),
    }


@pytest.fixture
def server(engine: Engine) -> Iterator[str]:
    for name, (role, communities) in USERS.items():
        add_user(engine, name, role, communities)
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    with serving(create_app(get_settings(sse_poll_s=0.05, login_max_failures=1000), engine)) as (base, _port):
        yield base


def _fresh_token(engine: Engine, username: str) -> str:
    with engine.begin() as conn:
        user_id = conn.execute(select(users.c.user_id).where(users.c.username == username)).scalar_one()
        return issue_token(conn, int(user_id), "matrix", time.time(), 3600)[0]


def _call(client: httpx.Client, method: str, request: Request, token: str) -> tuple[int, str]:
    url, body, query = request
    headers = {"Authorization": f"Bearer {token}"}
    if url == "/alerts/stream":
        return _stream(client, query, {**headers, "Last-Event-ID": "0"})
    response = client.request(method, url, json=body, params=query, headers=headers)
    return response.status_code, response.text


def _stream(client: httpx.Client, query: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    """Open the stream from event 0 (everything stored is replayed at once) and read for a moment."""
    lines: list[str] = []
    with client.stream("GET", "/alerts/stream", params=query, headers=headers, timeout=httpx.Timeout(5, read=1)) as r:
        if r.status_code != 200:
            return r.status_code, r.read().decode()
        try:
            for line in r.iter_lines():
                lines.append(line)
        except httpx.ReadTimeout:  # the replay is over; the stream stays open for new events
            pass
    return 200, "\n".join(lines)


def _leaks(role: str, username: str, text: str) -> list[str]:
    found = []
    if role != "admin" and username != "platform_all" and B_NAME in text:
        found.append("another community's elder")
    if role == "platform" and PHONE in text:
        found.append("a contact's phone number")
    return found


def _revoked_and_disabled(engine: Engine) -> dict[str, dict[str, str]]:
    """Per role: a token revoked after issue, and the token of a user disabled after issue."""
    out: dict[str, dict[str, str]] = {}
    for role in ROLES:
        revoked = _fresh_token(engine, CALLER[role])
        disabled_id, disabled = add_user(engine, f"gone.{role}", role, [A])
        with engine.begin() as conn:
            conn.execute(delete(api_tokens).where(api_tokens.c.token_hash == _hash(revoked)))
            conn.execute(update(users).where(users.c.user_id == disabled_id).values(disabled=True))
        out[role] = {"revoked": revoked, "disabled": disabled}
    return out


def _hash(token: str) -> str:
    from store.users import token_hash

    return token_hash(token)


def test_every_route_has_a_row_in_the_matrix(server: str, engine: Engine) -> None:
    app = create_app(get_settings(), engine)
    routes = set(protected_routes(app))
    assert routes - set(EXPECTED) == set(), "a route without a row in the authorization matrix"
    assert set(EXPECTED) - routes == set(), "a matrix row for a route that no longer exists"


def test_authorization_matrix(server: str, engine: Engine) -> None:
    world = World(engine)
    builders = _builders(world)
    gone = _revoked_and_disabled(engine)
    wrong: list[tuple[Any, ...]] = []
    with httpx.Client(base_url=server, timeout=30) as client:
        for (method, path), expected in EXPECTED.items():
            for role, scope in itertools.product(ROLES, ("own", "other")):
                want = expected[role][0 if scope == "own" else 1]
                username = CALLER[role]
                status, text = _call(client, method, builders[(method, path)](scope), _fresh_token(engine, username))
                if status != want or _leaks(role, username, text):
                    wrong.append((method, path, role, scope, want, status, _leaks(role, username, text), text[:120]))
            for role, which in itertools.product(ROLES, ("revoked", "disabled")):
                status, _text = _call(client, method, builders[(method, path)]("own"), gone[role][which])
                if status != 401:
                    wrong.append((method, path, role, which, 401, status))
    assert wrong == []


def test_a_moved_or_demoted_user_has_only_the_new_rights(server: str, engine: Engine) -> None:
    """A token carries no rights of its own: after a change the same token answers as the new role and scope."""
    world = World(engine)
    builders = _builders(world)
    wrong: list[tuple[Any, ...]] = []
    with httpx.Client(base_url=server, timeout=30) as client:
        for (method, path), expected in EXPECTED.items():
            for role in ("operator", "cadre", "platform"):  # communities A -> B after the token was issued
                user_id, token = add_user(engine, f"moved{next(world.serial)}", role, [A])
                with engine.begin() as conn:
                    conn.execute(update(users).where(users.c.user_id == user_id).values(communities=[B]))
                status, _text = _call(client, method, builders[(method, path)]("own"), token)
                if status != expected[role][1]:
                    wrong.append((method, path, role, "moved", expected[role][1], status))
            for scope in ("own", "other"):  # an admin made cadre of A after the token was issued
                user_id, token = add_user(engine, f"demoted{next(world.serial)}", "admin", [])
                with engine.begin() as conn:
                    conn.execute(update(users).where(users.c.user_id == user_id).values(role="cadre", communities=[A]))
                want = expected["cadre"][0 if scope == "own" else 1]
                status, _text = _call(client, method, builders[(method, path)](scope), token)
                if status != want:
                    wrong.append((method, path, "admin->cadre", scope, want, status))
    assert wrong == []


def test_the_stream_replays_only_the_callers_communities(server: str, engine: Engine) -> None:
    World(engine)  # one open alert in A and one in B
    with httpx.Client(base_url=server, timeout=30) as client:
        for username, visible in (("cadre_a", {A}), ("platform_a", {A}), ("op_b", {B}), ("admin", {A, B})):
            status, text = _stream(
                client, {}, {"Authorization": f"Bearer {_fresh_token(engine, username)}", "Last-Event-ID": "0"}
            )
            assert status == 200
            seen = {c for c in (A, B) if f'"community":"{c}"' in text}
            assert seen == visible, (username, seen)
