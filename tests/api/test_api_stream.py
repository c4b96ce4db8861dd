"""Live alerts over server-sent events, against a real uvicorn on a loopback port."""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from api.main import create_app
from core.settings import get_settings
from tests.api_fixtures import ELDER_A, ELDER_B, USERS, add_elder, add_user, raise_alert, serving
from tests.conftest import wait_until
from tests.helpers import first_event, next_event


@pytest.fixture
def server(engine: Engine) -> Iterator[tuple[str, dict[str, str]]]:
    tokens = {name: add_user(engine, name, role, communities)[1] for name, (role, communities) in USERS.items()}
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    with serving(create_app(get_settings(sse_poll_s=0.1), engine)) as (base, _port):
        yield base, tokens


def test_stream_sends_alerts_of_own_communities_only(server: tuple[str, dict[str, str]], engine: Engine) -> None:
    base, tokens = server
    raised: list[str] = []

    def raise_later() -> None:
        time.sleep(0.5)
        raise_alert(engine, "MB1")  # community B first: a cadre of A must never see it
        raised.append(raise_alert(engine, "MA1"))

    with httpx.Client(timeout=10) as client:
        url = f"{base}/alerts/stream"
        with client.stream("GET", url, params={"access_token": tokens["cadre_a"]}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            threading.Thread(target=raise_later, daemon=True).start()
            event = first_event(response, 8)
    assert event["event"] == "alert"
    assert event["data"]["alert_id"] == raised[0] and event["data"]["community"] == ELDER_A["community"]
    assert event["data"]["state"] in ("open", "notified")
    assert int(event["id"]) > 0


def test_stream_resumes_after_last_event_id_and_reports_changes(
    server: tuple[str, dict[str, str]], engine: Engine
) -> None:
    base, tokens = server
    alert_id = raise_alert(engine, "MA1")
    headers = {"Authorization": f"Bearer {tokens['cadre_a']}", "Last-Event-ID": "0"}
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", f"{base}/alerts/stream", headers=headers) as response:
            first = first_event(response, 5)  # events already stored are replayed after id 0
        assert first["data"]["alert_id"] == alert_id
        client.post(
            f"{base}/alerts/{alert_id}/ack",
            json={"note": "on my way"},
            headers={"Authorization": f"Bearer {tokens['cadre_a']}"},
        ).raise_for_status()
        headers["Last-Event-ID"] = first["id"]
        with client.stream("GET", f"{base}/alerts/stream", headers=headers) as response:
            change = first_event(response, 5)
    assert change["data"]["alert_id"] == alert_id and change["data"]["state"] == "acknowledged"


def test_stream_needs_a_token(server: tuple[str, dict[str, str]]) -> None:
    base, _tokens = server
    response = httpx.get(f"{base}/alerts/stream", params={"access_token": "nope"}, timeout=5)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def _user_id(base: str, token: str) -> int:
    return int(httpx.get(f"{base}/me", headers={"Authorization": f"Bearer {token}"}, timeout=5).json()["user_id"])


def _token_id(base: str, admin: str, username: str) -> int:
    listed = httpx.get(
        f"{base}/tokens", params={"username": username}, headers={"Authorization": f"Bearer {admin}"}, timeout=5
    ).json()
    return int(listed["data"][0]["token_id"])


@pytest.mark.parametrize(
    "change",
    ["disabled", "communities changed", "role changed", "token revoked", "password changed"],
)
def test_a_stream_ends_promptly_when_its_caller_loses_their_rights(
    server: tuple[str, dict[str, str]], engine: Engine, change: str
) -> None:
    """Issue 20 item 4: a stream kept sending to a user disabled or changed after they connected."""
    base, tokens = server
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    user_id = _user_id(base, tokens["cadre_a"])
    edits = {
        "disabled": {"disabled": True},
        "communities changed": {"communities": [ELDER_B["community"]]},
        "role changed": {"role": "operator"},
        "password changed": {"password": "a fresh blue kettle"},
    }
    lines: list[str] = []
    url, params = f"{base}/alerts/stream", {"access_token": tokens["cadre_a"]}
    with httpx.Client(timeout=10) as client, client.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        stream = response.iter_lines()
        assert next(stream) == ": connected"
        if change == "token revoked":
            token_id = _token_id(base, tokens["admin"], "cadre_a")
            client.delete(f"{base}/tokens/{token_id}", headers=admin).raise_for_status()
        else:
            client.patch(f"{base}/users/{user_id}", json=edits[change], headers=admin).raise_for_status()
        changed_at = time.monotonic()
        raise_alert(engine, "MA1")  # raised after the change: must not reach the stream
        lines.extend(stream)  # ends when the server closes the stream
        ended_after = time.monotonic() - changed_at
    assert "event: revoked" in lines and not any(line.startswith("event: alert") for line in lines)
    assert ended_after < 3.0  # polls every 0.1 s here (sse_poll_s); the default 1 s poll ends it within a second
    if change in ("disabled", "token revoked", "password changed"):  # the client's reconnect is refused
        again = httpx.get(f"{base}/alerts/stream", params={"access_token": tokens["cadre_a"]}, timeout=5)
        assert again.status_code == 401


def test_a_stream_goes_on_for_an_unchanged_caller(server: tuple[str, dict[str, str]], engine: Engine) -> None:
    base, tokens = server
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    other = _user_id(base, tokens["cadre_b"])
    url, params = f"{base}/alerts/stream", {"access_token": tokens["cadre_a"]}
    with httpx.Client(timeout=10) as client, client.stream("GET", url, params=params) as response:
        client.patch(f"{base}/users/{other}", json={"disabled": True}, headers=admin).raise_for_status()
        alert_id = raise_alert(engine, "MA1")
        event = first_event(response, 8)
    assert event["data"]["alert_id"] == alert_id


def test_a_last_event_id_that_is_not_ascii_digits_starts_from_now_not_500(
    server: tuple[str, dict[str, str]], engine: Engine
) -> None:
    """'²' (a Latin-1 header byte) passed str.isdigit() and then failed int(): the stream answered 500."""
    base, tokens = server
    headers = {"Authorization": f"Bearer {tokens['cadre_a']}", "Last-Event-ID": b"\xb2"}
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{base}/alerts/stream", headers=headers) as response:
        assert response.status_code == 200
        alert_id = raise_alert(engine, "MA1")
        event = first_event(response, 8)
    assert event["data"]["alert_id"] == alert_id


def test_a_last_event_id_beyond_this_store_s_events_does_not_silence_the_stream(
    server: tuple[str, dict[str, str]], engine: Engine
) -> None:
    """A dashboard or platform that saw event 5000 reconnects, after the store was restored from an older backup,
    with Last-Event-ID 5000: the stream waited for ids above it, and every alert raised until the restored store
    passed 5000 never reached that cadre, on a page that said it was live."""
    base, tokens = server
    raise_alert(engine, "MB1")  # the restored store's newest event: far below the client's
    headers = {"Authorization": f"Bearer {tokens['cadre_a']}", "Last-Event-ID": "5000"}
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{base}/alerts/stream", headers=headers) as response:
        assert response.status_code == 200
        alert_id = raise_alert(engine, "MA1")
        event = first_event(response, 8)
    assert event["data"]["alert_id"] == alert_id


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _polling_the_caller() -> bool:
    """Some thread is in a stream's poll, looking its caller up again (where it notes the token's use)."""
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_name == "_still_the_same":
                return True
            frame = frame.f_back  # type: ignore[assignment]
    return False


def test_a_stream_goes_on_after_the_store_was_busy_at_one_poll(
    server: tuple[str, dict[str, str]], engine: Engine, db_url: str
) -> None:
    """The store locked past its busy timeout at one poll (a long ingest batch holding SQLite's write lock) raised
    out of the stream: the response broke off mid-body with a traceback in the log, where every request answers
    503 and is sent again. The poll is tried again at the next one; nothing is lost."""
    base, tokens = server
    records = _Records()
    logging.getLogger().addHandler(records)
    url, params = f"{base}/alerts/stream", {"access_token": tokens["cadre_a"]}
    try:
        with httpx.Client(timeout=30) as client, client.stream("GET", url, params=params) as response:
            assert response.status_code == 200
            holder = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
            try:
                while True:  # the stream's next poll notes the token's use, a write: hold the write lock from then
                    holder.execute("UPDATE api_tokens SET last_used_at = 0")
                    holder.execute("BEGIN IMMEDIATE")  # the write lock, held past the stream's busy timeout
                    if holder.execute("SELECT max(last_used_at) FROM api_tokens").fetchone()[0] == 0:
                        break  # no poll wrote in between: every poll from now on meets the lock
                    holder.execute("ROLLBACK")
                assert wait_until(_polling_the_caller, 10), "the poll never met the locked store"
                assert wait_until(lambda: not _polling_the_caller(), 20)  # its busy timeout ran out
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            alert_id = raise_alert(engine, "MA1")
            event = first_event(response, 8)
    finally:
        logging.getLogger().removeHandler(records)
    assert event["data"]["alert_id"] == alert_id
    assert not any(r.exc_info for r in records.records)  # a warning, not a traceback


def test_a_case_that_follows_its_elder_to_another_community_reaches_that_community_s_stream(
    server: tuple[str, dict[str, str]], engine: Engine
) -> None:
    """Moving an elder moved her open case without an event: B's cadres, whose page was live, never saw the fallen
    elder's case until their stream reconnected (the page lists open cases on connect), and its work order went
    on naming the community she left. The move is now an event of the case (``moved``)."""
    base, tokens = server
    alert_id = raise_alert(engine, "MA1")
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    url, params = f"{base}/alerts/stream", {"access_token": tokens["cadre_b"]}
    with httpx.Client(timeout=5) as client, client.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        moved = client.patch(
            f"{base}/elders/EA1", json={"community": ELDER_B["community"], "reason": "搬家"}, headers=admin
        )
        assert moved.status_code == 200, moved.text
        event = first_event(response, 4)
    assert event["data"]["alert_id"] == alert_id and event["data"]["community"] == ELDER_B["community"]
    history = httpx.get(f"{base}/alerts/{alert_id}/events", headers=admin, timeout=5).json()["data"]
    assert history[-1]["type"] == "moved" and history[-1]["actor"] == "admin"
    assert history[-1]["data"]["moved_from"] == ELDER_A["community"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))  # one seq per event, as ever


def test_the_community_an_elder_left_is_told_her_open_case_is_no_longer_theirs(
    server: tuple[str, dict[str, str]], engine: Engine
) -> None:
    """A's live page kept her open case after she moved to B (nothing on A's stream said it left): A's cadres went
    on seeing, and going to, a case B's cadres now work. A's stream now says it is gone (its id only), and sends
    nothing of it after; B's stream gets the case."""
    base, tokens = server
    alert_id = raise_alert(engine, "MA1")
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    url, params = f"{base}/alerts/stream", {"access_token": tokens["cadre_a"]}
    with httpx.Client(timeout=5) as client, client.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        moved = client.patch(
            f"{base}/elders/EA1", json={"community": ELDER_B["community"], "reason": "搬家"}, headers=admin
        )
        assert moved.status_code == 200, moved.text
        gone = next_event(lines)
        client.post(
            f"{base}/alerts/{alert_id}/ack",
            json={"note": "在路上"},
            headers={"Authorization": f"Bearer {tokens['cadre_b']}"},
        ).raise_for_status()
        mine = add_and_raise_in_a(engine)
        after = next_event(lines)
    assert gone["event"] == "gone" and gone["data"] == {"alert_id": alert_id} and int(gone["id"]) > 0
    assert after["event"] == "alert" and after["data"]["alert_id"] == mine  # B's acknowledgement never reached A


def add_and_raise_in_a(engine: Engine) -> str:
    add_elder(engine, {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "张玉珍"})
    return raise_alert(engine, "MA2")


def test_one_user_holds_at_most_a_few_streams_and_gets_them_back_when_they_close(engine: Engine) -> None:
    """Every stream polls the store once per poll: one token opening streams without end (a client that reconnects
    and never closes the old one, or a script) took a share of the store from every other request. A user holds at
    most ``sse_streams_per_user`` at once; one more is a 429 problem+json, and a closed stream frees its place."""
    tokens = {name: add_user(engine, name, role, communities)[1] for name, (role, communities) in USERS.items()}
    with serving(create_app(get_settings(sse_poll_s=0.1, sse_streams_per_user=2), engine)) as (base, _port):
        url = f"{base}/alerts/stream"
        with httpx.Client(timeout=10) as client, httpx.Client(timeout=10) as other:
            mine = {"access_token": tokens["cadre_a"]}
            with client.stream("GET", url, params=mine) as one, client.stream("GET", url, params=mine) as two:
                assert (one.status_code, two.status_code) == (200, 200)
                with other.stream("GET", url, params=mine) as third:
                    assert third.status_code == 429
                    assert third.headers["content-type"] == "application/problem+json"
                    assert int(third.headers["Retry-After"]) > 0
                    assert "streams" in third.read().decode()
                with other.stream("GET", url, params={"access_token": tokens["cadre_b"]}) as theirs:
                    assert theirs.status_code == 200  # another user's streams are their own

            # Both closed: their places come back once the server sees the client gone (at its next poll).
            def reopened() -> bool:
                with client.stream("GET", url, params=mine) as again:
                    return again.status_code == 200

            wait_until(reopened, timeout=10)


def test_a_slow_poll_still_keeps_the_stream_heard(engine: Engine) -> None:
    """A district that polls the store rarely (TAPWATCH_SSE_POLL_S = 60) wrote nothing between polls: a minute's
    silence, which the dashboard (whose phone's link may have died without a word) takes as a dead stream after
    40 s. Keep-alives still go out every KEEPALIVE_S whatever the poll."""
    token = add_user(engine, "cadre_a", *USERS["cadre_a"])[1]
    with serving(create_app(get_settings(sse_poll_s=60), engine)) as (base, _port):
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(timeout=30) as client, client.stream("GET", f"{base}/alerts/stream", headers=headers) as res:
            assert res.status_code == 200
            # Each read within 30 s (the client's timeout): the next poll is 60 s away, a keep-alive 15 s.
            kept_alive = 0
            for line in res.iter_lines():
                kept_alive += line == ": keep-alive"
                if kept_alive == 2:  # one after the first poll, one while waiting for the second
                    break
