"""A user whose role or communities an admin changed sees the change on the dashboard's next call, in real
headless Chromium.

The API answers every request with the user's current role and communities, but the dashboard kept the ones
of her sign-in (in the tab's session) until she signed in again: an operator made a cadre of A went on seeing
the thresholds page in her menu, named an operator, and the communities she no longer works among her own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from store.schema import users
from tests.api_fixtures import ELDER_A, ELDER_B, A, B, add_elder
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    TEST_PASSWORD,
    browser_env,
    create_users,
    go,
    live_site,
    needs_chromium,
    sign_in,
    wait_for,
    wait_for_text,
)

pytestmark = needs_chromium


def _fill(engine: Engine) -> None:
    add_elder(engine, ELDER_A)
    add_elder(engine, ELDER_B)
    create_users(engine, [("op.ab", TEST_PASSWORD, "operator", [A, B]), ("admin.x", TEST_PASSWORD, "admin", [])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    with live_site(tmp_path, "access", _fill) as (url, engine, _filled):
        yield url, engine


def test_a_demoted_user_s_dashboard_takes_her_new_role_and_communities_at_its_next_call(
    site: tuple[str, Engine], browser: Any
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    url, engine = site
    sign_in(browser, url, "op.ab", TEST_PASSWORD)
    wait_for(browser, "a[data-nav='thresholds']")  # an operator's menu
    wait_for_text(browser, "#who", "运营人员")
    with engine.connect() as conn:
        user_id = conn.execute(select(users.c.user_id).where(users.c.username == "op.ab")).scalar_one()
    token = httpx.post(f"{url}/auth/token", data={"username": "admin.x", "password": TEST_PASSWORD}).json()
    changed = httpx.patch(
        f"{url}/users/{user_id}",
        json={"role": "cadre", "communities": [A]},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert changed.status_code == 200, changed.text

    go(browser, "#/elders", "#elder-list li")  # her next call
    wait_for_text(browser, "#who", "社区工作人员")
    WebDriverWait(browser, 10).until(
        lambda d: not d.find_element("css selector", "a[data-nav='thresholds']").is_displayed()
    )
    communities = browser.execute_script("return JSON.parse(sessionStorage.getItem('tapwatch.session')).communities")
    assert communities == [A]
