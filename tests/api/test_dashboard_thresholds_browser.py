"""The thresholds page of an operator with a community that has no elder yet, in real headless Chromium.

Users are often made before the elders of their communities are registered. The page offered the
operator's communities as her account lists them and opened the first; one without any elder is not
there for the API (404, docs/api.md), and when it came first the page showed only "找不到这位老人": no
form, no list to choose her other community from.
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
    wait_for_text,
)

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD
EMPTY = "光华里居委会"  # no elder registered yet; sorts before A (大宁社区) in the page's list


def _fill(engine: Engine) -> None:
    add_elder(engine, ELDER_A)
    create_users(engine, [("op.new", PASSWORD, "operator", [EMPTY, A])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "thresholds", _fill) as (url, _, _):
        yield url


def test_a_community_without_elders_does_not_keep_the_operator_from_her_thresholds(site: str, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    sign_in(browser, site, "op.new", PASSWORD)
    go(browser, "#/thresholds", "#main[data-view='thresholds'] #threshold-form")
    choice = Select(wait_for(browser, "#th-community"))
    assert choice.first_selected_option.text == A
    assert [option.text for option in choice.options] == [A]


@pytest.fixture
def short_history_site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "short-history", _fill, readings_retention_days=14) as (url, _, _):
        yield url


def test_a_preview_over_more_days_than_the_store_keeps_says_so(short_history_site: str, browser: Any) -> None:
    """The page replays 30 days and 14 of warm-up; a store keeping readings 14 days showed counts as if whole."""
    from selenium.webdriver.common.by import By

    sign_in(browser, short_history_site, "op.new", PASSWORD)
    go(browser, "#/thresholds", "#main[data-view='thresholds'] #threshold-form")
    browser.find_element(By.CSS_SELECTOR, "[data-action='preview']").click()
    note = wait_for_text(browser, "#backtest-result [role='note']", "只保留了", "以来的读数", timeout=30)
    assert "提醒可能偏少" in note
