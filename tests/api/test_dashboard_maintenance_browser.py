"""A slow leak on the cadre's page, in real headless Chromium.

The detectors route a slow leak (a continuous_flow of a few litres an hour, low) to maintenance, as they route
offline and faulty meters: a plumber's job, never the cadres' (docs/alerts.md section 5). The page told the two
apart by kind alone, so a slow leak came in as a tap left running: a chime, the red banner, a card among the
people to visit and one more in the tab title, for a case no cadre is asked to act on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from alerts.manager import AlertManager
from core.domain import MAINTENANCE, Finding
from store.registry import meter_context
from tests.api_fixtures import ELDER_A, A, add_elder
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    TEST_PASSWORD,
    browser_env,
    create_users,
    live_site,
    needs_chromium,
    sign_in,
    wait_for,
    wait_for_text,
)

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD


def _fill(engine: Engine) -> None:
    add_elder(engine, ELDER_A)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    with live_site(tmp_path, "maintenance", _fill, sse_poll_s=0.2) as (url, engine, _):
        yield url, engine


def _slow_leak(engine: Engine) -> str:
    now = time.time()
    leak = Finding(ELDER_A["meter_id"], "continuous_flow", "low", now, "缓慢漏水", "slow leak", route=MAINTENANCE)
    with engine.begin() as conn:
        context = meter_context(conn, ELDER_A["meter_id"])
        assert context is not None
        alert_id = AlertManager().apply(conn, context, leak, now)
    assert alert_id is not None
    return alert_id


def test_a_slow_leak_goes_with_the_meter_problems_and_calls_no_cadre(site: tuple[str, Engine], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, engine = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    wait_for(browser, "#main[data-view='alerts']")
    wait_for(browser, "#live[data-on='true']", visible=False)
    leak = _slow_leak(engine)
    wait_for_text(browser, "#device-alerts summary", "（1，")  # folded with the meter problems, arrived live
    assert not browser.find_elements(By.CSS_SELECTOR, f"#alert-list [data-alert='{leak}']")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-cues") is None  # no chime, no banner
    assert not browser.find_element(By.ID, "banner").is_displayed()
    assert not browser.title.startswith("(")  # nobody to visit
    card = browser.find_element(By.CSS_SELECTOR, f"#device-alerts [data-alert='{leak}']")
    assert not card.find_elements(By.CSS_SELECTOR, "[data-action='ack'], [data-action='resolve']")
