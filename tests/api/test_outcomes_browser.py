"""The dashboard's outcomes page (效果) in real headless Chromium: an operator reads her communities' figures.

A small store: one elder in each of two communities, a case in each resolved as a false alarm by the
real AlertManager; the operator of A opens #/outcomes and sees A's false calls, never B, on a phone too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from alerts.cases import load_case
from alerts.manager import AlertManager
from tests.api_fixtures import ELDER_A, ELDER_B, A, B, add_elder, raise_alert
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    PHONE,
    TEST_PASSWORD,
    browser_env,
    click,
    create_users,
    emulate,
    go,
    live_site,
    needs_chromium,
    sign_in,
    wait_for,
    wait_for_text,
)

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD


def _fill(engine: Engine) -> None:
    for elder in (ELDER_A, ELDER_B):
        add_elder(engine, elder)
        alert_id = raise_alert(engine, elder["meter_id"], ts=time.time() - 3600)
        with engine.begin() as conn:
            case = load_case(conn, alert_id)
            assert case is not None
            AlertManager().resolve(conn, case, "cadre", "false_alarm", "", time.time())
    create_users(engine, [("operator.a", PASSWORD, "operator", [A]), ("cadre.a", PASSWORD, "cadre", [A])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "outcomes", _fill) as (url, _, _):
        yield url


def test_an_operator_reads_her_community_s_false_calls_and_never_another_s(site: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, site, "operator.a", PASSWORD)
    wait_for(browser, "#nav a[data-nav='outcomes']")  # the menu offers the page to operators
    go(browser, "#/outcomes", "#main[data-view='outcomes']")
    table = wait_for_text(browser, "table.outcomes", "误报", A)
    assert B not in browser.find_element(By.ID, "main").text
    row = browser.find_element(By.CSS_SELECTOR, "table.outcomes tbody tr")
    cells = [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]
    assert cells[0] == A and cells[4].startswith("1（")  # one false call, its rate in the translation's brackets
    assert not any(re.search(r"[()]", cell) for cell in cells), cells  # Chinese text takes full-width brackets
    assert "长时间未用水" in wait_for_text(browser, "table.outcome-kinds", "误报 1")
    click(browser, "[data-action='outcomes-days'][data-days='7']")
    wait_for(browser, "[data-action='outcomes-days'][data-days='7'][aria-pressed='true']")
    browser.find_element(By.ID, "lang").click()
    wait_for_text(browser, "table.outcomes", "False calls", "Elder-months")
    row = browser.find_element(By.CSS_SELECTOR, "table.outcomes tbody tr")
    assert row.find_elements(By.CSS_SELECTOR, "td")[3].text.startswith("1 (")  # and English its own
    emulate(browser, PHONE)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0], f"page is {width} px wide on a {PHONE[0]} px phone"
    assert table  # read in Chinese first
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_cadre_has_no_outcomes_page_in_her_menu(site: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, site, "cadre.a", PASSWORD)
    wait_for(browser, "#main[data-view='alerts']")
    assert not browser.find_element(By.CSS_SELECTOR, "#nav a[data-nav='outcomes']").is_displayed()


def test_the_period_is_told_on_the_reader_s_clock(site: str, browser: Any) -> None:
    """An operator in Madrid read the period as ending at 13:05 at 06:05: it was told on Shanghai's clock."""
    import re
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Europe/Madrid"})
    sign_in(browser, site, "operator.a", PASSWORD)
    go(browser, "#/outcomes", "#main[data-view='outcomes']")
    shown = re.search(r"至 \S+ (\d\d:\d\d) 发出的提醒", wait_for_text(browser, "#main", "发出的提醒"))
    assert shown is not None
    now = datetime.now(ZoneInfo("Europe/Madrid"))
    around = {(now + timedelta(minutes=m)).strftime("%H:%M") for m in (-2, -1, 0)}
    assert shown.group(1) in around, f"the period ends at {shown.group(1)}; in Madrid it is {now:%H:%M}"
