"""What a shared screen shows once a cadre's session ends under an open dialog, in real headless Chromium.

A cadre opens the outcome sheet of an elder's case and walks away; her session ends (it expired, an admin
revoked it or disabled her) and the page goes back to the sign-in form. The sheet stayed open over it with
the elder's name, the case's words and the note she had begun: the next person at the community office's
computer read them without signing in (and had to close the sheet to reach the form).

A cadre on her phone whose session expires while she types what she found lost her note with it: the sheet was
cleared, and signing in again brought back an empty page. The note is kept in the tab's memory only (never on
the screen, nor for anyone else who signs in there), and the sheet comes back with it once she signs in again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update

from store.schema import alerts, api_tokens, users
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

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD


def _fill(engine: Engine) -> str:
    add_elder(engine, ELDER_A)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A])])
    return raise_alert(engine, str(ELDER_A["meter_id"]), ts=time.time() - 600)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Engine, str]]:
    # No undo window: the outcome she taps after signing in again is saved before the test reads the store.
    with live_site(tmp_path, "signout", _fill, sse_poll_s=0.2, dashboard_undo_s=0) as (url, engine, alert_id):
        yield url, engine, alert_id


def test_a_session_that_ends_leaves_no_elder_on_the_screen(site: tuple[str, Engine, str], browser: Any) -> None:
    url, engine, alert_id = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    go(browser, f"#/elder/{ELDER_A['elder_id']}", f"#elder-open [data-action='resolve'][data-id='{alert_id}']")
    click(browser, f"#elder-open [data-action='resolve'][data-id='{alert_id}']")
    wait_for(browser, "#resolve-dialog[open]")
    browser.find_element("id", "resolve-note").send_keys("老人说腿疼，明天再去")
    with engine.begin() as conn:  # an admin revokes her session (as DELETE /tokens/{id} does)
        user_id = conn.execute(select(users.c.user_id).where(users.c.username == "cadre.a")).scalar_one()
        conn.execute(delete(api_tokens).where(api_tokens.c.user_id == user_id))
    wait_for(browser, "#main[data-view='login']", timeout=20)  # the live stream finds out and signs her out
    assert browser.find_element("id", "resolve-dialog").get_attribute("open") is None
    shown = browser.find_element("tag name", "body").text
    assert ELDER_A["name"] not in shown and "腿疼" not in shown
    assert browser.find_element("id", "resolve-note").get_attribute("value") == ""


def _sign_in_again(driver: Any, username: str) -> None:
    """The sign-in form the page went back to, on the same page (no reload), with the keyboard."""
    from selenium.webdriver.common.keys import Keys

    wait_for(driver, "#login-username").send_keys(username)
    driver.find_element("id", "login-password").send_keys(PASSWORD, Keys.ENTER)
    wait_for(driver, "#main[data-view]:not([data-view='login'])")


def _expire(engine: Engine, username: str) -> None:
    """Her token's time is up (``token_ttl_hours`` after she signed in)."""
    with engine.begin() as conn:
        user_id = conn.execute(select(users.c.user_id).where(users.c.username == username)).scalar_one()
        conn.execute(update(api_tokens).where(api_tokens.c.user_id == user_id).values(expires_at=time.time() - 1))


def test_a_note_begun_when_the_session_expired_comes_back_when_she_signs_in(
    site: tuple[str, Engine, str], browser: Any
) -> None:
    url, engine, alert_id = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    go(browser, "#/alerts", f"[data-action='resolve'][data-id='{alert_id}']")
    click(browser, f"[data-action='resolve'][data-id='{alert_id}']")
    wait_for(browser, "#resolve-dialog[open]")
    browser.find_element("id", "resolve-note").send_keys("老人说腿疼，已联系她女儿")
    _expire(engine, "cadre.a")
    wait_for(browser, "#main[data-view='login']", timeout=20)
    assert browser.find_element("id", "resolve-note").get_attribute("value") == ""  # nothing left on the screen
    _sign_in_again(browser, "cadre.a")
    wait_for(browser, "#resolve-dialog[open]")
    assert browser.find_element("id", "resolve-note").get_attribute("value") == "老人说腿疼，已联系她女儿"
    assert ELDER_A["name"] in browser.find_element("id", "resolve-title").text
    click(browser, "#resolve-outcomes [data-outcome='ok']")
    wait_for_text(browser, "#toast", "已保存")
    with engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()
    assert (row.state, row.note) == ("resolved", "老人说腿疼，已联系她女儿")


def test_a_note_begun_is_not_shown_to_someone_else_signing_in(site: tuple[str, Engine, str], browser: Any) -> None:
    url, engine, alert_id = site
    create_users(engine, [("cadre.b", PASSWORD, "cadre", [A])])
    sign_in(browser, url, "cadre.a", PASSWORD)
    go(browser, "#/alerts", f"[data-action='resolve'][data-id='{alert_id}']")
    click(browser, f"[data-action='resolve'][data-id='{alert_id}']")
    wait_for(browser, "#resolve-dialog[open]")
    browser.find_element("id", "resolve-note").send_keys("老人说腿疼")
    _expire(engine, "cadre.a")
    wait_for(browser, "#main[data-view='login']", timeout=20)
    _sign_in_again(browser, "cadre.b")
    wait_for(browser, f"[data-action='resolve'][data-id='{alert_id}']")
    assert browser.find_element("id", "resolve-dialog").get_attribute("open") is None
    assert browser.find_element("id", "resolve-note").get_attribute("value") == ""
