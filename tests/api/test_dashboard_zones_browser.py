"""Elders in zones other than Shanghai's on the cadre's pages, in real headless Chromium.

An elder whose time zone the browser does not know: the API takes any zone Python's zoneinfo
reads, and on Debian that includes names of files under /usr/share/zoneinfo that no browser knows
("posix/Asia/Shanghai", "right/Asia/Shanghai", "localtime"). Intl.DateTimeFormat throws on them:
one such elder must not blank the alert list of the whole community, nor their own page; their
times are shown in the zone the name stands for.

An elder whose hours start at half past in UTC (India, UTC+5:30): the API's hourly buckets start
on the elder's hours, and the chart of the elder's last 7 days must show that water use.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update

from store.schema import elders
from tests.api_fixtures import ELDER_A, A, add_elder, raise_alert
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
from tests.helpers import ingest

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD
ODD = {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "周玉珍", "room": "202"}
KOLKATA = {**ELDER_A, "elder_id": "EA3", "meter_id": "MA3", "name": "Meera", "room": "203", "tz": "Asia/Kolkata"}
# 2026-11-20 01:00 UTC: 09:00 in Shanghai, where this elder lives
SINCE = 1_795_136_400.0


def _fill(engine: Engine) -> None:
    for elder in (ELDER_A, ODD, KOLKATA):
        add_elder(engine, elder)
    now = time.time()
    total, rows = 0.0, []
    for k in range(int(5 * 86400 / 1800)):  # 5 days, half-hourly: 10 L in every 12th half hour (40 L a day)
        total += 10.0 if k % 12 == 5 else 0.0
        rows.append((now - 5 * 86400 + (k + 1) * 1800, total))
    ingest(engine, KOLKATA["meter_id"], rows)
    raise_alert(engine, ELDER_A["meter_id"], ts=time.time() - 600)
    raise_alert(engine, ODD["meter_id"], ts=SINCE)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A]), ("admin.z", PASSWORD, "admin", ["*"])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "zones", _fill) as (url, engine, _):
        # Stored before the API refused such names (core.settings.known_zone): zoneinfo reads the file,
        # no browser knows the name. The API now answers 422 to it.
        with engine.begin() as conn:
            conn.execute(update(elders).where(elders.c.elder_id == ODD["elder_id"]).values(tz="posix/Asia/Shanghai"))
        token = httpx.post(f"{url}/auth/token", data={"username": "admin.z", "password": PASSWORD}).json()
        refused = httpx.patch(
            f"{url}/elders/{ODD['elder_id']}",
            json={"tz": "posix/Asia/Shanghai", "reason": "zone as written in /usr/share/zoneinfo"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        assert refused.status_code == 422, refused.text
        yield url


def test_an_elder_in_a_zone_the_browser_does_not_know_leaves_the_pages_working(site: str, browser: Any) -> None:
    sign_in(browser, site, "cadre.a", PASSWORD)
    wait_for(browser, "#main[data-view='alerts']")
    # both elders' alerts are listed, the odd one's time read in Shanghai (09:00), not an error
    wait_for_text(browser, "#alert-list", ELDER_A["name"], ODD["name"])
    wait_for_text(browser, f".alert-card[data-elder='{ODD['elder_id']}'] .when", "11/20 09:00")
    go(browser, f"#/elder/{ODD['elder_id']}", "#main[data-view='elder']")
    wait_for_text(browser, "#history", "11/20 09:00")


def test_the_chart_of_an_elder_at_utc_plus_5_30_shows_the_water_used(site: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, site, "cadre.a", PASSWORD)
    go(browser, f"#/elder/{KOLKATA['elder_id']}", ".uplot")
    daily = [
        int(cell.get_attribute("textContent")) for cell in browser.find_elements(By.CSS_SELECTOR, "#daily tbody td")
    ]
    assert sum(daily) >= 190  # the day table sums the API's buckets: the use is there
    label = browser.find_element(By.ID, "chart").get_attribute("aria-label")
    assert f"共 {sum(daily)} 升" in label, label  # the chart (and what a screen reader says of it) holds it all
