"""A cadre on a flaky phone link records what she found, in real headless Chromium.

She taps an outcome; the answer is lost on the way back (her link dropped while the server, slow under a
writer's lock, was still saving it). The page tells her the network failed and keeps the sheet open, so she taps
the same outcome again. The first request had landed: the second was refused with a 409 that the page showed as
"状态已变化，请刷新后再试", so she believed nothing was saved (and a reload and retry failed again). A retry of what
she already recorded is answered as done, and nothing is recorded twice.

The browser reaches the app through :class:`Relay`, a TCP relay on loopback that the test cuts as a dropped
mobile link does (every connection closed mid-request); the lock is a real SQLite writer's.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from store.schema import alert_events, alerts
from tests.api_fixtures import ELDER_A, A, add_elder, raise_alert
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    TEST_PASSWORD,
    browser_env,
    click,
    create_users,
    go,
    live_site,
    needs_chromium,
    sign_in,
    wait_for,
    wait_for_text,
)
from tests.processes import wait_until

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD


ELDER_A2 = {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "周玉珍", "room": "202"}


def _fill(engine: Engine) -> str:
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_A2)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A])])
    return raise_alert(engine, str(ELDER_A["meter_id"]), ts=time.time() - 600)


class Relay:
    """A loopback TCP relay to the app whose :meth:`cut` drops every connection through it, as a lost link does,
    and whose :meth:`freeze` makes them a black hole, as a phone's link gone dead without a word does.

    The server is not told: a request it was handling goes on to its end, its answer going nowhere.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.frozen: set[socket.socket] = set()  # the browser's ends of the connections that carry nothing
        self.dead = False  # new connections carry nothing either
        self.sent = bytearray()  # what the browser sent, to wait on a request having reached the server
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open.append(client)
                if self.dead:
                    self.frozen.add(client)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, client: socket.socket) -> None:
        from_browser = src is client
        try:
            while data := src.recv(65536):
                if client in self.frozen:
                    continue  # lost on the way, both ways; neither end hears of it
                dst.sendall(data)
                if from_browser:
                    with self.lock:
                        self.sent += data
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def requests(self, line: str) -> int:
        """How many requests with this request line (``POST /alerts/x/resolve``) the browser sent so far."""
        with self.lock:
            return self.sent.count(f"{line} HTTP/1.1\r\n".encode())

    def cut(self) -> None:
        """Close the browser's side of every connection now open (new ones go through)."""
        with self.lock:
            cut, self.open = self.open, []
        for client in cut:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def freeze(self, *, new_ones_too: bool = False) -> None:
        """Every connection now open carries nothing from now on, and none is closed; with ``new_ones_too``, those
        opened later neither (the link is dead until :meth:`revive`), else they go through."""
        with self.lock:
            self.frozen.update(self.open)
            self.dead = new_ones_too

    def revive(self) -> None:
        """The link works again: the dead connections are closed (the phone drops them), new ones go through."""
        with self.lock:
            self.dead = False
        self.cut()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Engine, str, Relay]]:
    # The sheet waits for her outcome's answer (no undo window): what these tests are about happens in it.
    with live_site(tmp_path, "flaky", _fill, sse_poll_s=0.2, dashboard_undo_s=0) as (url, engine, alert_id):
        relay = Relay(int(url.rsplit(":", 1)[1]))
        try:
            yield relay.url, engine, alert_id, relay
        finally:
            relay.close()


def _resolved(engine: Engine, alert_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()


def _events(engine: Engine, alert_id: str, kind: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(alert_events.c.alert_id == alert_id, alert_events.c.type == kind)
        return int(conn.execute(query).scalar_one())


def _open_sheet(driver: Any, alert_id: str, note: str) -> None:
    go(driver, f"#/elder/{ELDER_A['elder_id']}", f"#elder-open [data-action='resolve'][data-id='{alert_id}']")
    for loaded in ("#history li", "#away-list li"):  # the page's own reads done: none waits on the lock below
        wait_for(driver, loaded, visible=False)
    click(driver, f"#elder-open [data-action='resolve'][data-id='{alert_id}']")
    wait_for(driver, "#resolve-dialog[open]")
    driver.find_element("id", "resolve-note").send_keys(note)


def _sheet_done_or_error(driver: Any) -> str:
    """'' once the sheet closed (saved), else the error it shows; waits for one or the other."""
    shown: list[str] = []

    def settled() -> bool:
        error = driver.find_element("id", "resolve-error").text
        closed = driver.find_element("id", "resolve-dialog").get_attribute("open") is None
        shown[:] = [error]
        return closed or bool(error)

    assert wait_until(settled, timeout=20)
    return shown[0]


def test_a_resolve_whose_answer_was_lost_is_done_when_retried(
    site: tuple[str, Engine, str, Relay], browser: Any, tmp_path: Path
) -> None:
    url, engine, alert_id, relay = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    _open_sheet(browser, alert_id, "电话打通了，老人在女儿家")
    holder = sqlite3.connect(tmp_path / "flaky.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the server waits on this writer: her answer is still to come
        click(browser, "#resolve-outcomes [data-outcome='ok']")
        assert wait_until(lambda: relay.requests(f"POST /alerts/{alert_id}/resolve") >= 1, timeout=10)
        relay.cut()  # her link drops meanwhile (Chromium itself sends the request again on a new connection)
    finally:
        holder.close()  # the server saves what she sent; she never hears of it
    assert wait_until(lambda: _resolved(engine, alert_id).state == "resolved", timeout=15)
    error = _sheet_done_or_error(browser)
    if error:  # the page heard nothing back: it says so, keeps her note, and she taps the same outcome again
        assert "网络" in error, error
        assert browser.find_element("id", "resolve-note").get_attribute("value") == "电话打通了，老人在女儿家"
        click(browser, "#resolve-outcomes [data-outcome='ok']")
        assert _sheet_done_or_error(browser) == ""
    wait_for_text(browser, "#toast", "已保存")
    row = _resolved(engine, alert_id)
    assert (row.outcome, row.resolved_by, row.note) == ("ok", "cadre.a", "电话打通了，老人在女儿家")
    assert _events(engine, alert_id, "resolved") == 1


def test_a_stream_gone_silent_is_noticed_and_what_was_raised_meanwhile_arrives(
    site: tuple[str, Engine, str, Relay], browser: Any
) -> None:
    """Her phone's link died without a word (a dead cell, a switch of networks): the live stream's connection
    stayed open on her side, carrying nothing. The page went on reading it, its dot green, and an elder's fall
    raised meanwhile never reached her list. The server speaks at least every 15 s (a keep-alive): a stream
    silent far longer is taken as dead, and the page connects anew and catches up."""
    url, engine, alert_id, relay = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    go(browser, "#/alerts", f"[data-alert='{alert_id}']")
    wait_for(browser, "#live[data-on='true']", visible=False)
    relay.freeze()
    fallen = raise_alert(engine, str(ELDER_A2["meter_id"]), ts=time.time())
    wait_for(browser, f"#alert-list [data-alert='{fallen}']", timeout=90)
    assert len(browser.find_elements("css selector", f"[data-alert='{fallen}']")) == 1
    wait_for_text(browser, "#banner-text", str(ELDER_A2["name"]))


def test_a_resolve_that_gets_no_answer_says_so_and_can_be_tapped_again(
    site: tuple[str, Engine, str, Relay], browser: Any
) -> None:
    """The link went dead as she tapped: her request was never answered (nor refused). The sheet's buttons stayed
    greyed out, with nothing said, for as long as the phone kept the dead connection (minutes, or for good)."""
    url, engine, alert_id, relay = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    _open_sheet(browser, alert_id, "电话没人接，已上门")
    relay.freeze(new_ones_too=True)
    click(browser, "#resolve-outcomes [data-outcome='ok']")
    shown = wait_for_text(browser, "#resolve-error", "没有收到回应", timeout=60)
    assert "重复" in shown, shown  # she is told tapping again is safe
    assert browser.find_element("id", "resolve-note").get_attribute("value") == "电话没人接，已上门"
    relay.revive()  # her phone finds the network again: the dead connections go, new ones get through
    click(browser, "#resolve-outcomes [data-outcome='ok']")
    wait_for_text(browser, "#toast", "已保存", timeout=30)
    row = _resolved(engine, alert_id)
    assert (row.state, row.note) == ("resolved", "电话没人接，已上门")
    assert _events(engine, alert_id, "resolved") == 1
