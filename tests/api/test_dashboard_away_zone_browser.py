"""The away form reads and fills times on the elder's clock, as the rest of the page shows them.

Every time on an elder's page (alerts, history, chart, the away list) is in the elder's zone. The
form's fields took the device's: on a computer whose clock runs in UTC (a district's virtual
desktops often do) "from now" showed 00:40 at 08:40 in Shanghai, and a window typed as 08:00 was
saved as 08:00 UTC and listed as 16:00. Real headless Chromium with its zone set to UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine

from tests.api_fixtures import ELDER_A, A, add_elder
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    TEST_PASSWORD,
    browser_env,
    click,
    create_users,
    go,
    live_site,
    needs_chromium,
    sign_in,
    wait_for_text,
)

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _fill(engine: Engine) -> None:
    add_elder(engine, ELDER_A)  # Asia/Shanghai
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "awayzone", _fill) as (url, _, _):
        yield url


def test_away_times_are_the_elder_s_on_a_device_in_utc(site: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "UTC"})
    sign_in(browser, site, "cadre.a", PASSWORD)
    go(browser, f"#/elder/{ELDER_A['elder_id']}", "#away-form")

    # "3 days from now", filled when the page opens, is now on the elder's clock
    start = browser.find_element(By.ID, "away-start").get_attribute("value")
    here = datetime.now(SHANGHAI)
    shown = datetime.fromisoformat(start).replace(tzinfo=SHANGHAI)
    assert abs((shown - here).total_seconds()) < 180, f"the form says {start} at {here:%H:%M} in Shanghai"

    browser.execute_script(
        "document.querySelector('#away-start').value = arguments[0];"
        "document.querySelector('#away-end').value = arguments[1];",
        "2026-12-20T08:00",
        "2026-12-22T08:00",
    )
    click(browser, "#away-form button[type='submit']")
    wait_for_text(browser, "#away-list", "12/20 08:00", "12/22 08:00")  # listed as typed

    token = httpx.post(f"{site}/auth/token", data={"username": "cadre.a", "password": PASSWORD}).json()
    saved = httpx.get(
        f"{site}/elders/{ELDER_A['elder_id']}/away",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    ).json()["data"]
    assert [datetime.fromisoformat(w["start"]) for w in saved] == [datetime(2026, 12, 20, 8, tzinfo=SHANGHAI)]
