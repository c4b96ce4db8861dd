"""A case another cadre closed while a cadre had its outcome sheet open, in real headless Chromium.

Two cadres share a community; both go to the same elder. The first records what she found while the second
still has the sheet open, her note typed. The second's tap was refused (409) and the sheet said
"状态已变化，请刷新后再试": nothing of who recorded what, and advice that fails again (a reload and a retry
are refused the same). The sheet says who recorded the case, when (the elder's clock) and what, in the
reader's language, and her acknowledge of a case another took says who took it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

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
ELDER_A2 = {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "周玉珍", "room": "202"}


def _fill(engine: Engine) -> tuple[str, str]:
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_A2)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A]), ("wang.fang", PASSWORD, "cadre", [A])])
    first = raise_alert(engine, str(ELDER_A["meter_id"]), ts=time.time() - 600)
    second = raise_alert(engine, str(ELDER_A2["meter_id"]), ts=time.time() - 600)
    return first, second


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, tuple[str, str]]]:
    # A slow stream (a phone's, on a weak link): the page has not heard of the other cadre's change yet.
    # No undo window: the refusal comes while the sheet is open (test_dashboard_undo_browser.py: after the window).
    with live_site(tmp_path, "taken", _fill, sse_poll_s=60, dashboard_undo_s=0) as (url, _, alert_ids):
        yield url, alert_ids


def _as_wang_fang(url: str, path: str, body: dict[str, str]) -> None:
    with httpx.Client(base_url=url) as client:
        form = {"username": "wang.fang", "password": PASSWORD, "grant_type": "password"}
        token = client.post("/auth/token", data=form).json()["access_token"]
        done = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert done.status_code == 200, done.text


def test_a_case_another_cadre_resolved_says_who_and_what(site: tuple[str, tuple[str, str]], browser: Any) -> None:
    url, (alert_id, _) = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    go(browser, "#/alerts", f"[data-action='resolve'][data-id='{alert_id}']")
    click(browser, f"[data-action='resolve'][data-id='{alert_id}']")
    wait_for(browser, "#resolve-dialog[open]")
    browser.find_element("id", "resolve-note").send_keys("上门看了，老人在家")
    _as_wang_fang(url, f"/alerts/{alert_id}/resolve", {"outcome": "needed_help", "note": "送去社区医院"})
    click(browser, "#resolve-outcomes [data-outcome='ok']")
    shown = wait_for_text(browser, "#resolve-error", "wang.fang", "需要帮助")
    assert "刷新" not in shown, shown
    assert not browser.find_elements("css selector", f"#alert-list [data-alert='{alert_id}']")  # gone from her list


def test_a_case_another_cadre_took_says_who(site: tuple[str, tuple[str, str]], browser: Any) -> None:
    url, (_, alert_id) = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    click(browser, "#lang")  # in English this time
    go(browser, "#/alerts", f"[data-action='ack'][data-id='{alert_id}']")
    _as_wang_fang(url, f"/alerts/{alert_id}/ack", {"note": ""})
    click(browser, f"[data-action='ack'][data-id='{alert_id}']")
    shown = wait_for_text(browser, "#toast", "wang.fang")
    assert "reload" not in shown, shown
