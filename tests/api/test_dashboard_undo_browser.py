"""An outcome a cadre taps in the resolve sheet can be undone for a few seconds, in real headless Chromium.

One tap on an outcome saved it: a thumb that hit "误报" (false alarm) on a real emergency, or "已送医" on a false
one, was final, and the elder's detectors learned from it in the same transaction (a benign outcome makes that
silence part of her routine). The sheet now closes at the tap and the toast says what will be recorded, with an
"撤销" button, for ``TAPWATCH_DASHBOARD_UNDO_S``; the request goes when that time is over, at once when she leaves
the page or starts on another case. Undo brings the sheet back on the same case with her note.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, update

from store.schema import alert_events, alerts, api_tokens, users
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
#: Long enough that nothing a test does inside the window races its end; only leaving or another case ends it.
LONG_UNDO_S = 60.0  # the most the setting allows


def _fill(engine: Engine) -> tuple[str, str]:
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_A2)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A]), ("wang.fang", PASSWORD, "cadre", [A])])
    first = raise_alert(engine, str(ELDER_A["meter_id"]), ts=time.time() - 600)
    second = raise_alert(engine, str(ELDER_A2["meter_id"]), ts=time.time() - 600)
    return first, second


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine, tuple[str, str]]]:
    undo_s = getattr(request, "param", 2.0)
    with live_site(tmp_path, "undo", _fill, sse_poll_s=0.2, dashboard_undo_s=undo_s) as (url, engine, ids):
        yield url, engine, ids


def _row(engine: Engine, alert_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()


def _resolved_events(engine: Engine, alert_id: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(alert_events.c.alert_id == alert_id, alert_events.c.type == "resolved")
        return int(conn.execute(query).scalar_one())


def _tap_outcome(driver: Any, alert_id: str, outcome: str, note: str = "") -> None:
    """From the open list: the case's sheet, her note, one tap on ``outcome``."""
    go(driver, "#/alerts", f"#alert-list [data-action='resolve'][data-id='{alert_id}']")
    click(driver, f"#alert-list [data-action='resolve'][data-id='{alert_id}']")
    wait_for(driver, "#resolve-dialog[open]")
    if note:
        driver.find_element("id", "resolve-note").send_keys(note)
    click(driver, f"#resolve-outcomes [data-outcome='{outcome}']")


def _sheet_closed(driver: Any) -> bool:
    return driver.find_element("id", "resolve-dialog").get_attribute("open") is None


def _in_list(driver: Any, alert_id: str) -> bool:
    return bool(driver.find_elements("css selector", f"#alert-list [data-alert='{alert_id}']"))


def test_an_outcome_undone_in_time_is_never_sent_and_the_sheet_comes_back_with_her_note(
    site: tuple[str, Engine, tuple[str, str]], browser: Any
) -> None:
    from selenium.webdriver.common.keys import Keys

    url, engine, (mistapped, other) = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    _tap_outcome(browser, mistapped, "false_alarm", "敲门没人应，邻居说没见她出门")
    wait_for_text(browser, "#toast", "误报", "撤销")
    assert _sheet_closed(browser)
    assert not _in_list(browser, mistapped)  # off her list at the tap
    undo = browser.switch_to.active_element  # the keyboard is on the undo button: Enter reaches it
    assert undo.get_attribute("id") == "toast-undo", undo.get_attribute("outerHTML")
    undo.send_keys(Keys.ENTER)
    wait_for(browser, "#resolve-dialog[open]")
    assert browser.find_element("id", "resolve-note").get_attribute("value") == "敲门没人应，邻居说没见她出门"
    assert ELDER_A["name"] in browser.find_element("id", "resolve-title").text
    click(browser, "#resolve-dialog [data-action='cancel']")  # she goes back to knock again first
    wait_for(browser, f"#alert-list [data-alert='{mistapped}']")  # back on her list

    # Another case recorded after the undo: its window started later and ends later than the undone one's would
    # have, so once it is saved, the undone outcome had had its time to go out, and did not.
    _tap_outcome(browser, other, "ok")
    wait_for_text(browser, "#toast", "已保存", "见到老人，平安", timeout=30)
    assert (_row(engine, other).state, _row(engine, other).outcome) == ("resolved", "ok")
    row = _row(engine, mistapped)
    assert (row.state, row.outcome) != ("resolved", "false_alarm"), row
    assert _resolved_events(engine, mistapped) == 0
    assert _in_list(browser, mistapped)


def test_an_outcome_not_undone_is_recorded_when_the_time_is_over(
    site: tuple[str, Engine, tuple[str, str]], browser: Any
) -> None:
    url, engine, (alert_id, _) = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    _tap_outcome(browser, alert_id, "hospital", "已送社区医院")
    wait_for_text(browser, "#toast", "已送医", "撤销")
    toast = browser.find_element("id", "toast")
    assert (toast.get_attribute("role"), toast.get_attribute("aria-live")) == ("status", "polite")
    assert browser.find_element("id", "toast-undo").rect["height"] >= 44  # a thumb's target
    wait_for_text(browser, "#toast", "已保存", "已送医", timeout=30)
    assert not browser.find_element("id", "toast-undo").is_displayed()
    row = _row(engine, alert_id)
    assert (row.state, row.outcome, row.resolved_by, row.note) == ("resolved", "hospital", "cadre.a", "已送社区医院")
    assert _resolved_events(engine, alert_id) == 1
    assert not _in_list(browser, alert_id)


@pytest.mark.parametrize("site", [LONG_UNDO_S], indirect=True)
def test_leaving_the_page_inside_the_time_still_records_it(
    site: tuple[str, Engine, tuple[str, str]], browser: Any
) -> None:
    url, engine, (alert_id, _) = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    _tap_outcome(browser, alert_id, "ok", "老人在家，电话没听见")
    wait_for_text(browser, "#toast", "撤销")
    assert _row(engine, alert_id).state != "resolved"  # held in the page for its window
    browser.get("about:blank")  # she closes the tab or goes elsewhere well inside the window
    assert wait_until(lambda: _row(engine, alert_id).state == "resolved", timeout=15)
    row = _row(engine, alert_id)
    assert (row.outcome, row.resolved_by, row.note) == ("ok", "cadre.a", "老人在家，电话没听见")


def _as_wang_fang(url: str, path: str, body: dict[str, str]) -> None:
    with httpx.Client(base_url=url) as client:
        form = {"username": "wang.fang", "password": PASSWORD, "grant_type": "password"}
        token = client.post("/auth/token", data=form).json()["access_token"]
        done = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert done.status_code == 200, done.text


@pytest.mark.parametrize("site", [LONG_UNDO_S], indirect=True)
def test_a_refusal_when_it_is_finally_sent_is_said_and_not_lost(
    site: tuple[str, Engine, tuple[str, str]], browser: Any
) -> None:
    """Another cadre recorded the case inside her window: the refusal (409) comes when hers is sent, with the sheet
    long closed. The toast says it as bad, who recorded what, and the list follows the store."""
    url, engine, (alert_id, other) = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    _tap_outcome(browser, alert_id, "ok", "见到了")
    wait_for_text(browser, "#toast", "撤销")
    _as_wang_fang(url, f"/alerts/{alert_id}/resolve", {"outcome": "needed_help", "note": "送去社区医院"})
    go(browser, "#/alerts", f"#alert-list [data-action='resolve'][data-id='{other}']")
    click(browser, f"#alert-list [data-action='resolve'][data-id='{other}']")  # starting another case sends hers
    shown = wait_for_text(browser, "#toast.bad", "wang.fang", "需要帮助", "见到老人，平安")
    assert "已保存" not in shown, shown
    row = _row(engine, alert_id)
    assert (row.outcome, row.resolved_by) == ("needed_help", "wang.fang")
    assert not _in_list(browser, alert_id)


@pytest.mark.parametrize("site", [LONG_UNDO_S], indirect=True)
def test_an_outcome_held_when_her_session_ends_is_said_unsent_and_comes_back_with_her_note(
    site: tuple[str, Engine, tuple[str, str]], browser: Any
) -> None:
    from selenium.webdriver.common.keys import Keys

    url, engine, (alert_id, _) = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    _tap_outcome(browser, alert_id, "needed_help", "老人摔倒，已扶起")
    wait_for_text(browser, "#toast", "撤销")
    with engine.begin() as conn:  # her token's time is up (token_ttl_hours after she signed in)
        user_id = conn.execute(select(users.c.user_id).where(users.c.username == "cadre.a")).scalar_one()
        conn.execute(update(api_tokens).where(api_tokens.c.user_id == user_id).values(expires_at=time.time() - 1))
    wait_for(browser, "#main[data-view='login']", timeout=20)  # the live stream finds out and signs her out
    wait_for_text(browser, "#toast.bad", "需要帮助", "登录已过期")
    assert _row(engine, alert_id).state != "resolved"
    wait_for(browser, "#login-username").send_keys("cadre.a")
    browser.find_element("id", "login-password").send_keys(PASSWORD, Keys.ENTER)
    wait_for(browser, "#resolve-dialog[open]")  # the sheet comes back to her, with what she wrote
    assert browser.find_element("id", "resolve-note").get_attribute("value") == "老人摔倒，已扶起"
