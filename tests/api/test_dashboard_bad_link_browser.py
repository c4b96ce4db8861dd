"""A link to the dashboard cut short or mistyped, in real headless Chromium.

``#/elder/%`` (a link cut after its escape sign, as chat apps do) made the page's URL decoding throw outside its
error handling: the page stayed on "loading" with no way on but the address bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.api_fixtures import ELDER_A, A, add_elder
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    TEST_PASSWORD,
    browser_env,
    create_users,
    go,
    live_site,
    needs_chromium,
    sign_in,
    wait_for,
)

pytestmark = needs_chromium


def _fill(engine: Engine) -> None:
    add_elder(engine, ELDER_A)
    create_users(engine, [("cadre.a", TEST_PASSWORD, "cadre", [A])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "badlink", _fill) as (url, _engine, _seeded):
        yield url


def test_a_link_cut_after_its_escape_sign_leads_to_the_alerts_not_a_page_stuck_loading(site: str, browser: Any) -> None:
    sign_in(browser, site, "cadre.a", TEST_PASSWORD)
    go(browser, f"#/elder/{ELDER_A['elder_id']}", "#main[data-view='elder']")
    browser.execute_script("location.hash = arguments[0]", "#/elder/%")
    wait_for(browser, "#main[data-view='alerts']")
    assert browser.execute_script("return location.hash") == "#/alerts"
