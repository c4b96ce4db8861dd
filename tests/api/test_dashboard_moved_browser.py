"""A case whose elder moved to another community leaves the live page of the community she left, in real headless
Chromium.

Her open case followed her to the new community with nothing on the old community's stream: its cadres' page went
on listing, and counting in its title, a case another community's cadres now work, until it was reloaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.api_fixtures import ELDER_A, A, B, add_elder
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    TEST_PASSWORD,
    browser_env,
    create_users,
    live_site,
    needs_chromium,
    raise_alert,
    sign_in,
    wait_for,
)

pytestmark = needs_chromium


def _fill(engine: Engine) -> None:
    add_elder(engine, ELDER_A)
    create_users(engine, [("cadre.a", TEST_PASSWORD, "cadre", [A]), ("admin.x", TEST_PASSWORD, "admin", [])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    with live_site(tmp_path, "moved", _fill, sse_poll_s=0.2) as (url, engine, _seeded):
        yield url, engine


def test_a_case_that_moved_away_with_its_elder_leaves_the_old_community_s_live_page(
    site: tuple[str, Engine], browser: Any
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    url, engine = site
    alert_id = raise_alert(engine, {**ELDER_A, "tz": "Asia/Shanghai"})
    sign_in(browser, url, "cadre.a", TEST_PASSWORD)
    wait_for(browser, f".alert-card[data-alert='{alert_id}']")
    wait_for(browser, "#live[data-on='true']", visible=False)
    token = httpx.post(f"{url}/auth/token", data={"username": "admin.x", "password": TEST_PASSWORD}).json()
    moved = httpx.patch(
        f"{url}/elders/{ELDER_A['elder_id']}",
        json={"community": B, "reason": "搬到女儿家"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert moved.status_code == 200, moved.text
    gone = WebDriverWait(browser, 10).until(
        lambda d: not d.find_elements("css selector", f"[data-alert='{alert_id}']") or None
    )
    assert gone
    assert not re.match(r"\(\d+\) ", browser.title)  # nothing left waiting on this page
