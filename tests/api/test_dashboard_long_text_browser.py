"""Long words on a phone, in real headless Chromium: the pages never scroll sideways.

Ids may be 64 characters without a space (meter WM-…), names 128, and a cadre's note or an away
reason may hold a link pasted from WeCom. Chinese wraps anywhere; such Latin runs do not, unless
the page lets them: on a 360 px phone one of them made the whole page wider than the screen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from alerts.manager import AlertManager
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from tests.api_fixtures import ELDER_A, A, add_elder, raise_alert
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    PHONE,
    TEST_PASSWORD,
    browser_env,
    create_users,
    emulate,
    go,
    live_site,
    needs_chromium,
    sign_in,
    wait_for,
    wait_for_text,
)
from tests.helpers import message

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD
LONG = {
    **ELDER_A,
    "elder_id": "EA-" + "0123456789" * 6,  # 63 characters
    "meter_id": "WM-" + "9876543210" * 6,
    "name": "Fatima" + "binte" * 20,
}
OTHER = {**LONG, "elder_id": "EA-" + "5" * 60, "meter_id": "WM-" + "7" * 60, "name": "Nur" + "binti" * 20}
LINK = "https://work.weixin.qq.com/wework_admin/frame#/apps/modApiApp/5629501025?ticket=" + "a1b2c3d4e5" * 6


def _fill(engine: Engine) -> str:
    add_elder(engine, LONG)
    add_elder(engine, OTHER)
    raise_alert(engine, OTHER["meter_id"], ts=time.time())  # an open alert, for the alert list
    low = message(LONG["meter_id"], [(time.time() // 1800 * 1800, 100.0)], battery_pct=8)  # for the meters page
    Pipeline(engine, AlertManager()).process([RawMessage("test", low)])
    alert_id = raise_alert(engine, LONG["meter_id"], ts=time.time() - 600)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A]), ("operator.a", PASSWORD, "operator", [A])])
    return alert_id


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "long", _fill) as (url, _, alert_id):
        token = httpx.post(f"{url}/auth/token", data={"username": "cadre.a", "password": PASSWORD}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        elder = f"{url}/elders/{LONG['elder_id']}"
        window = {"kind": "away", "start": "2026-12-01T08:00:00+08:00", "end": "2026-12-03T08:00:00+08:00"}
        assert httpx.post(f"{elder}/away", json={**window, "reason": LINK}, headers=auth).status_code == 201
        resolved = httpx.post(f"{url}/alerts/{alert_id}/resolve", json={"outcome": "ok", "note": LINK}, headers=auth)
        assert resolved.status_code == 200, resolved.text
        yield url


def _no_sideways_scroll(driver: Any, page: str) -> None:
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0], f"{page}: the page is {width} px wide on a {PHONE[0]} px phone"


def test_long_ids_names_notes_and_reasons_wrap_on_a_phone(site: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    emulate(browser, PHONE)
    sign_in(browser, site, "cadre.a", PASSWORD)
    wait_for_text(browser, "#alert-list", OTHER["name"])
    _no_sideways_scroll(browser, "the alert list")
    go(browser, f"#/elder/{LONG['elder_id']}", "#main[data-view='elder']")
    wait_for_text(browser, "#history", LINK[:20])
    wait_for_text(browser, "#away-list", LINK[:20])
    _no_sideways_scroll(browser, "the elder's page")
    go(browser, "#/elders", "#elder-list a")
    _no_sideways_scroll(browser, "the elders list")
    browser.find_element(By.ID, "logout").click()
    sign_in(browser, site, "operator.a", PASSWORD)
    go(browser, "#/devices", ".device-card")
    wait_for_text(browser, ".device-list", LONG["meter_id"])
    _no_sideways_scroll(browser, "the meters page")
