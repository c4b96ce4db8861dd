"""What the cadre's page says when alerts change under it (issue 19 item 6), in real headless Chromium.

Two alerts arrive live, for two elders (one elder's second kind would join its
open case: docs/alerts.md); the data then closes one by itself. The
banner's "另有 N 条新提醒" must count what the list still shows, and the elder's
history must say, in Chinese only, when the alert was closed and that tapwatch
closed it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from alerts.manager import AlertManager
from core.domain import Finding
from detect.messages import use_resumed
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    TEST_PASSWORD,
    browser_env,
    create_users,
    go,
    live_site,
    needs_chromium,
    raise_alert,
    seed_store,
    sign_in,
    wait_for,
    wait_for_text,
)

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD


def _fill(engine: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    seeded = seed_store(engine, elders=6, days=9)
    elder, other = seeded.quiet[:2]
    create_users(engine, [("cadre.w", PASSWORD, "cadre", sorted({elder["community"], other["community"]}))])
    return elder, other


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, dict[str, Any], dict[str, Any]]]:
    with live_site(tmp_path_factory.mktemp("words"), "words", _fill, sse_poll_s=0.2) as (url, engine, (elder, other)):
        yield url, engine, elder, other


def _resolve_by_data(engine: Any, elder: dict[str, Any]) -> None:
    """Water use resumed: the pipeline's finding closes the open no_activity alert as tapwatch."""
    now = time.time()
    zh, en = use_resumed(now, 8 * 3600, 12.0)
    finding = Finding(elder["meter_id"], "no_activity", "high", now, zh, en, "learned", resolved=True)
    with engine.begin() as conn:
        AlertManager().apply(conn, elder, finding, now)


def test_the_banner_counts_what_the_list_shows_and_history_names_tapwatch(site: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, engine, elder, other = site
    sign_in(browser, url, "cadre.w", PASSWORD)
    wait_for(browser, "#main[data-view='alerts']")
    wait_for(browser, "#live[data-on='true']", visible=False)

    silent = raise_alert(engine, elder, kind="no_activity")
    low = raise_alert(engine, other, kind="low_usage")
    wait_for(browser, f".alert-card[data-alert='{low}']")
    wait_for_text(browser, "#banner-more", "另有 1 条新提醒")

    _resolve_by_data(engine, elder)  # the data closes the silence; the page learns it live
    WebDriverWait(browser, 10).until(lambda d: not d.find_elements(By.CSS_SELECTOR, f"[data-alert='{silent}']"))
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "banner-more").text == "")
    shown = browser.find_elements(
        By.CSS_SELECTOR, "#alert-list .alert-card.st-open, #alert-list .alert-card.st-notified"
    )
    assert [c.get_attribute("data-alert") for c in shown] == [low]
    assert "已通知" not in browser.find_element(By.ID, "alert-list").text

    go(browser, f"#/elder/{elder['elder_id']}", "#main[data-view='elder']")
    line = wait_for_text(browser, "#history", "由 tapwatch 系统自动 关闭", "已恢复用水")
    assert "Water" not in line and "resumed" not in line, line  # one language per line
    closed = browser.find_element(By.CSS_SELECTOR, "#history .closed").text
    assert closed.split(" 由 ")[0].strip(), closed  # the closing date and time come first
