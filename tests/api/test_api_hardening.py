"""Issue 20, API side: bodies bounded before they are read, the platform's data minimised, API keys
listed and revoked one by one, taken ids that reveal nothing, bounded times, no hidden characters in
names, reads and lists audited.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from api.main import create_app
from api.problems import PROBLEM_JSON
from core.settings import get_settings
from store.schema import audit_log, meters
from tapwatch.usercli import (
    create_token_in,
    create_user_in,
    disable_user_in,
    list_tokens_in,
    reset_password_in,
    revoke_token_in,
)
from tests.api_fixtures import ELDER_A, Api, B, add_elder, add_user, api_env, serving  # noqa: F401

NEW_ELDER = {**ELDER_A, "elder_id": "EA7", "meter_id": "MA7", "contacts": []}
WINDOW = {"kind": "away", "start": "2026-11-24T09:00:00+08:00", "end": "2026-11-25T09:00:00+08:00"}


# -- item 5: request bodies -----------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(api: Api) -> None:
    limit = get_settings().max_body_bytes
    big = {**NEW_ELDER, "name": "张" * 10, "grid": "x" * 64}
    headers = {**api.headers("cadre_a"), "Content-Type": "application/json"}
    padded = api.client.post("/elders", content=b" " * (limit + 1), headers=headers)
    assert padded.status_code == 413 and padded.headers["content-type"] == PROBLEM_JSON
    assert "larger than 1048576 bytes" in padded.json()["detail"]
    assert api.post("cadre_a", "/elders", json=big).status_code == 201  # a normal body passes


def test_a_chunked_body_is_counted_as_it_streams_and_stopped_at_the_limit(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"elder_id": "EA8", "name": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    headers = {**api.headers("cadre_a"), "Content-Type": "application/json"}
    refused = api.client.post("/elders", content=chunks(), headers=headers)
    assert refused.status_code == 413 and refused.headers["content-type"] == PROBLEM_JSON
    login = api.client.post(
        "/auth/token", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert login.status_code == 413


def test_a_body_without_credentials_is_refused_with_401_unread(api: Api) -> None:
    refused = api.client.post("/elders", json=NEW_ELDER)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert 'tapwatch_request_bodies_refused_total{reason="no_credentials"} 1.0' in api.client.get("/metrics").text
    assert api.client.post("/auth/token", data={"username": "x", "password": "y"}).status_code == 401  # login: read


def _send_head_of_a_huge_body(port: int, path: str, headers: str) -> tuple[bytes, int]:
    """Announce a 400 MB body, send 1 MiB of it, and read the answer: it must come before the rest is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {400 * 2**20}\r\n{headers}\r\n".encode()
        )
        sent = 0
        try:
            for _ in range(16):
                sock.sendall(b"x" * 65536)
                sent += 65536
        except OSError:  # the server answered and closed: it will not read the rest
            pass
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:  # reset after the answer: what was read is kept
            pass
    return answer, sent


def test_a_real_server_answers_a_400_mb_upload_without_reading_it(engine: Engine) -> None:
    _admin, token = add_user(engine, "cadre_a", "cadre", ["A"])
    with serving(create_app(get_settings(), engine)) as (_base, port):
        answer, _sent = _send_head_of_a_huge_body(port, "/elders", "")
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        answer, _sent = _send_head_of_a_huge_body(port, "/elders", f"Authorization: Bearer {token}\r\n")
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


# -- item 6: the platform's data minimisation, API keys one by one ----------------------------------


def test_the_platform_gets_no_contacts_readings_usage_routine_or_elder_thresholds(api: Api) -> None:
    elder = api.get("platform_all", "/elders/EA1").json()
    assert elder["contacts"] is None and "13900000000" not in str(elder)
    for path in ("/meters/MA1/readings", "/meters/MA1/usage", "/elders/EA1/routine", "/elders/EA1/thresholds"):
        assert api.get("platform_all", path).status_code == 403, path
        assert api.get("cadre_a", path).status_code == 200, path
    assert api.get("platform_all", "/thresholds/elder/EA1").status_code == 403
    assert api.get("platform_all", "/alerts").status_code == 200  # what the work order needs stays


def test_admin_lists_and_revokes_api_keys_one_by_one(api: Api) -> None:
    listed = api.get("admin", "/tokens", params={"username": "platform_all"}).json()
    assert listed["count"] == 1 and listed["data"][0]["username"] == "platform_all"
    assert "token_hash" not in str(listed) and api.tokens["platform_all"] not in str(listed)
    token_id = listed["data"][0]["token_id"]
    assert api.get("platform_all", "/alerts").status_code == 200
    assert api.get("op_a", "/tokens").status_code == 403
    assert api.delete("op_a", f"/tokens/{token_id}").status_code == 403
    assert api.delete("admin", f"/tokens/{token_id}").status_code == 204
    assert api.get("platform_all", "/alerts").status_code == 401  # refused from the next request on
    assert api.get("platform_a", "/alerts").status_code == 200  # only that key
    assert api.delete("admin", f"/tokens/{token_id}").status_code == 404
    entry = api.get("admin", "/audit", params={"action": "token.revoke"}).json()["data"][0]
    assert entry["target"] == "user:platform_all" and entry["old"]["token_id"] == token_id


def test_token_and_user_cli_list_revoke_reset_and_disable(api: Api) -> None:
    create_user_in(api.engine, "grid", "platform", ["*"], None, io.StringIO())
    key = create_token_in(api.engine, "grid", "grid-platform", 30, io.StringIO())
    auth = {"Authorization": f"Bearer {key}"}
    out = io.StringIO()
    assert list_tokens_in(api.engine, "grid", out) == 1
    line = out.getvalue().splitlines()[1]
    assert "\tgrid\tplatform\tgrid-platform\t" in line and key not in out.getvalue()
    revoke_token_in(api.engine, int(line.split("\t")[0]), io.StringIO())
    assert api.client.get("/me", headers=auth).status_code == 401
    with pytest.raises(ValueError, match="no token"):
        revoke_token_in(api.engine, 999_999, io.StringIO())
    assert api.get("cadre_a", "/me").status_code == 200
    with pytest.raises(ValueError, match="repeats too few"):
        reset_password_in(api.engine, "cadre_a", "aaaaaaaaaaaa", io.StringIO())
    assert reset_password_in(api.engine, "cadre_a", "a new blue kettle", io.StringIO()) == 1
    assert api.get("cadre_a", "/me").status_code == 401  # a new password revokes the old tokens
    login = api.client.post("/auth/token", data={"username": "cadre_a", "password": "a new blue kettle"})
    assert login.status_code == 200
    assert disable_user_in(api.engine, "cadre_a", io.StringIO()) == 1
    refused = api.client.post("/auth/token", data={"username": "cadre_a", "password": "a new blue kettle"})
    assert refused.status_code == 401
    assert api.get("op_a", "/me").status_code == 200


def test_the_cli_takes_the_user_positionally_and_keeps_the_old_flag() -> None:
    import argparse

    from tapwatch import usercli

    parser = argparse.ArgumentParser()
    usercli.add_parsers(parser.add_subparsers(dest="command"))
    new = parser.parse_args(["token", "create", "grid", "--days", "7"])
    old = parser.parse_args(["token", "create", "--user", "grid"])
    assert (new.name_arg, new.user_flag, old.name_arg, old.user_flag) == ("grid", None, None, "grid")
    assert parser.parse_args(["token", "revoke", "12"]).token_id == 12
    assert parser.parse_args(["user", "disable", "li"]).func is usercli.cmd_user_disable
    reset = parser.parse_args(["user", "reset-password", "li", "--password-stdin"])
    assert reset.func is usercli.cmd_user_reset_password and reset.password_stdin


# -- item 9: taken ids reveal nothing ----------------------------------------------------------------


def test_a_taken_id_answers_the_same_whoever_holds_it(api: Api) -> None:
    own_elder = api.post("cadre_a", "/elders", json={**NEW_ELDER, "elder_id": "EA1"})
    other_elder = api.post("cadre_a", "/elders", json={**NEW_ELDER, "elder_id": "EB1"})
    own_meter = api.post("cadre_a", "/elders", json={**NEW_ELDER, "meter_id": "MA1"})
    other_meter = api.post("cadre_a", "/elders", json={**NEW_ELDER, "meter_id": "MB1"})
    answers = {(r.status_code, r.text) for r in (own_elder, other_elder, own_meter, other_meter)}
    assert len(answers) == 1 and next(iter(answers))[0] == 409
    assert B not in other_elder.text and "EB1" not in other_elder.text and "MB1" not in other_meter.text
    replace = api.post("cadre_a", "/elders/EA1/meter", json={"meter_id": "MB1", "reason": "battery"})
    assert (replace.status_code, replace.text) == next(iter(answers))


# -- item 10: every API time bounded --------------------------------------------------------------------


@pytest.mark.parametrize(
    "when", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2200-01-01T00:00:00Z", "1900-01-01T00:00Z"]
)
def test_far_future_and_far_past_times_answer_422_everywhere(api: Api, when: str) -> None:
    away = api.post("cadre_a", "/elders/EA1/away", json={**WINDOW, "end": when})
    assert away.status_code == 422 and away.headers["content-type"] == PROBLEM_JSON
    for path, params in (
        ("/alerts", {"since": when}),
        ("/alerts", {"until": when}),
        ("/audit", {"since": when}),
        ("/dead-letters", {"until": when}),
        ("/meters/MA1/readings", {"end": when}),
        ("/meters/MA1/usage", {"start": when}),
    ):
        response = api.get("admin", path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON


def test_an_absurd_stored_time_does_not_break_the_pages_that_show_it(api: Api) -> None:
    with api.engine.begin() as conn:  # as a meter clock of 9999 left it before ingest refused such times
        conn.execute(update(meters).where(meters.c.meter_id == "MA1").values(last_reading_ts=253402300799.0 + 50400))
    assert api.get("admin", "/devices", params={"include_healthy": "true"}).status_code == 200
    assert api.get("admin", "/elders/EA1").status_code == 200


# -- item 12: no hidden characters in names and free text ---------------------------------------------


@pytest.mark.parametrize("hidden", ["\u200b", "\u202e", "\u2066", "\ufeff", "\u0007", "\u2028"])
def test_names_and_free_text_refuse_invisible_and_control_characters(api: Api, hidden: str) -> None:
    bad = f"张{hidden}秀英"
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("post", "/elders", {**NEW_ELDER, "name": bad}),
        ("post", "/elders", {**NEW_ELDER, "building": bad}),
        ("post", "/elders", {**NEW_ELDER, "contacts": [{"name": bad, "phone": "13900000000"}]}),
        ("patch", "/elders/EA1", {"name": bad}),
        ("patch", "/elders/EA1", {"room": "1", "reason": bad}),
        ("post", "/elders/EA1/away", {**WINDOW, "reason": bad}),
        ("post", "/elders/EA1/retire", {"reason": bad}),
    ]
    for method, path, body in cases:
        response = api.request("cadre_a", method, path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert f"U+{ord(hidden):04X}" in response.text
    user = {"username": "li.cadre", "password": "blue kettle 42", "role": "cadre", "communities": [bad]}
    assert api.post("admin", "/users", json=user).status_code == 422
    assert api.get("cadre_a", "/elders/EA1").json()["name"] == ELDER_A["name"]  # nothing changed


def test_line_breaks_are_allowed_in_notes_but_not_in_names(api: Api) -> None:
    assert api.patch("cadre_a", "/elders/EA1", json={"room": "1", "reason": "line one\nline two"}).status_code == 200
    assert api.patch("cadre_a", "/elders/EA1", json={"name": "张\n秀英"}).status_code == 422


# -- item 13: reads and lists audited ----------------------------------------------------------------------


def test_reads_of_water_use_and_list_calls_are_audited(api: Api) -> None:
    api.get("cadre_a", "/meters/MA1/readings")
    api.get("op_a", "/meters/MA1/usage", params={"every": "day"})
    api.get("cadre_a", "/elders/EA1/routine")
    api.get("cadre_a", "/elders", params={"q": "李"})
    with api.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    seen = [(r.actor, r.action, r.target, r.community) for r in rows]
    assert seen == [
        ("cadre_a", "readings.read", "meter:MA1", ELDER_A["community"]),
        ("op_a", "usage.read", "meter:MA1", ELDER_A["community"]),
        ("cadre_a", "routine.read", "elder:EA1", ELDER_A["community"]),
        ("cadre_a", "list.read", "/elders", None),
    ]
    assert rows[-1].new == {"q": "李"}
    assert set(rows[0].new) == {"start", "end"}
    # the community's operator sees who read its elders' water use; list calls are for admins
    actions = {e["action"] for e in api.get("op_a", "/audit").json()["data"]}
    assert actions == {"readings.read", "usage.read", "routine.read"}


def test_a_list_calls_repeated_filters_are_all_audited(api: Api) -> None:
    """Only the last value of a repeated filter was recorded: the audit said one kind where two were listed."""
    kinds = ["no_activity", "continuous_flow"]
    assert api.get("cadre_a", "/alerts", params={"kind": kinds, "open": "true"}).status_code == 200
    with api.engine.connect() as conn:
        entry = conn.execute(select(audit_log).order_by(audit_log.c.id.desc())).first()
    assert entry is not None and entry.action == "list.read"
    assert entry.new == {"kind": kinds, "open": "true"}


def test_a_token_also_sent_in_the_url_of_a_list_call_stays_out_of_the_audit_log(api: Api) -> None:
    """A client sending ?access_token= (as to the stream) beside its header had the token stored as a filter."""
    token = api.tokens["cadre_a"]
    assert api.get("cadre_a", "/alerts", params={"access_token": token, "open": "true"}).status_code == 200
    with api.engine.connect() as conn:
        stored = str(conn.execute(select(audit_log.c.old, audit_log.c.new, audit_log.c.reason)).all())
        entry = conn.execute(select(audit_log).order_by(audit_log.c.id.desc())).first()
    assert token not in stored
    assert entry is not None and entry.new == {"open": "true"}


def test_a_search_for_a_purged_elder_s_name_leaves_the_audit_log_with_her_name(api: Api) -> None:
    """The dashboard's search box audits each list call with its filter: her name, and each part of it as it was
    typed. Ninety days after she left, her name was purged everywhere but there."""
    import time

    from store.retention import purge_personal_data

    name = ELDER_A["name"]  # 李桂芳
    for typed in (name[:1], name[:2], name, name[1:], "EA"):
        assert api.get("cadre_a", "/elders", params={"q": typed, "limit": 500}).status_code == 200
    assert api.post("cadre_a", "/elders/EA1/retire", json={"reason": "moved to a care home"}).status_code == 200
    assert purge_personal_data(api.engine, cutoff=time.time() + 1, now=time.time()) == 1
    with api.engine.connect() as conn:
        searches = [r.new for r in conn.execute(select(audit_log).where(audit_log.c.action == "list.read"))]
    assert not any(part in str(searches) for part in (name, name[:2], name[1:])), searches
    assert {"q": "EA", "limit": "500"} in searches  # a search that was not for her name stays as it was


@pytest.mark.parametrize("name", ["access%5Ftoken", "%61ccess_token", "access_token"])
def test_a_token_in_the_url_stays_out_of_the_access_log_however_its_name_is_encoded(api: Api, name: str) -> None:
    """The server reads ``access%5Ftoken`` as ``access_token``; the access log hid only the plain spelling."""
    import logging

    from api.security import RedactTokens

    read = api.client.get(f"/alerts/stream?{name}=not-a-real-token")
    assert read.status_code == 401 and "unknown or expired" in read.text  # it was taken for the token
    secret = "k3Jd9-secret-token"
    args = ("127.0.0.1:5000", "GET", f"/alerts/stream?x=1&{name}={secret}", "1.1", 200)
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None)
    assert RedactTokens().filter(record)
    assert secret not in record.getMessage() and "x=1" in record.getMessage()


def test_a_locked_store_answers_503_with_retry_after_not_500(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's write lock held by another writer (a worker's batch) past the busy timeout: the request is fine and
    may be sent again, so 503 problem+json with Retry-After, and the log names no one."""
    import sqlite3

    from sqlalchemy import event
    from starlette.testclient import TestClient

    from store import open_store

    path = tmp_path / "locked.db"
    engine = open_store(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _short_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=200")  # the store's own 10 s, shortened for the test

    engine.dispose()  # connections made from here on wait 200 ms for a lock
    _admin, token = add_user(engine, "cadre_a", "cadre", [ELDER_A["community"]])
    add_elder(engine, ELDER_A)
    elder = {**ELDER_A, "elder_id": "EA7", "meter_id": "MA7", "name": "钱秀珍"}
    with TestClient(create_app(get_settings(), engine)) as client:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the store
        try:
            with caplog.at_level("WARNING", logger="api.problems"):
                busy = client.post("/elders", json=elder, headers={"Authorization": f"Bearer {token}"})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert busy.status_code == 503, busy.text
        assert busy.headers["content-type"] == PROBLEM_JSON and int(busy.headers["Retry-After"]) > 0
        assert "store busy" in caplog.text and "钱秀珍" not in caplog.text
        again = client.post("/elders", json=elder, headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 201, again.text
    engine.dispose()
