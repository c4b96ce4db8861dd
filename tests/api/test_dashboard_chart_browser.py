"""An elder's 7-day chart on the cadre's page, in real headless Chromium, for elders new to the system.

A meter installed two days ago: the green band of "what is usual" comes from those two days alone, and the page
must say the routine is still being learned. It asked the routine for its ``days`` (the 28-day window, whatever
was read), so the note never showed and two days passed for a learned month.

An elder whose meter was replaced three days ago: the chart drew the new meter's use alone, so the four days
before were shaded grey as hours without any reading (a meter that had gone silent) and left out of the day
table and the total, though the old meter read them all (both keep their readings, docs/api.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from store.registry import replace_meter
from tests.api_fixtures import ELDER_A, A, add_elder
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    TEST_PASSWORD,
    browser_env,
    create_users,
    go,
    live_site,
    needs_chromium,
    sign_in,
    wait_for_text,
)
from tests.helpers import daily_pattern, ingest

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD
NEW = {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "周玉珍", "room": "202"}
REPLACED = {**ELDER_A, "elder_id": "EA3", "meter_id": "MA3", "name": "吴凤英", "room": "203"}
UNREAD = {**ELDER_A, "elder_id": "EA4", "meter_id": "MA4", "name": "郑淑珍", "room": "204"}


def _fill(engine: Engine) -> None:
    for elder in (ELDER_A, NEW, REPLACED, UNREAD):
        add_elder(engine, elder)
    now = time.time()
    ingest(engine, ELDER_A["meter_id"], daily_pattern(30, now))
    ingest(engine, NEW["meter_id"], daily_pattern(2, now))  # two days and today's part: three local dates
    # 20 L at 07:00 every day, read by the old meter until three days ago and by the new one since
    replaced_at = now - 3 * 86400
    ingest(engine, REPLACED["meter_id"], daily_pattern(30, replaced_at))
    with engine.begin() as conn:
        replace_meter(conn, REPLACED["elder_id"], "MA9", replaced_at)
    ingest(engine, "MA9", [(ts, total) for ts, total in daily_pattern(5, now) if ts > replaced_at])
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "chart", _fill) as (url, _, _):
        yield url


def test_a_routine_learned_from_a_few_days_says_so_under_the_chart(site: str, browser: Any) -> None:
    sign_in(browser, site, "cadre.a", PASSWORD)
    go(browser, f"#/elder/{NEW['elder_id']}", ".uplot")
    note = wait_for_text(browser, "#chart-note", "习惯仍在学习中", "天数据")
    # Two days and today's part: 3 local dates, or 4 where the first day's part was read (by the hour of the run).
    assert re.search(r"已有 [34] 天数据", note), note
    go(browser, f"#/elder/{ELDER_A['elder_id']}", f"#main[data-elder='{ELDER_A['elder_id']}'] .uplot")
    assert not browser.find_element("id", "chart-note").is_displayed()  # a month read: the band is her usual
    go(browser, f"#/elder/{UNREAD['elder_id']}", f"#main[data-elder='{UNREAD['elder_id']}'] #history li")
    wait_for_text(browser, "#chart", "近 7 天没有数据")  # no band drawn: nothing to say of it
    assert not browser.find_element("id", "chart-note").is_displayed()


def test_the_chart_of_an_elder_whose_meter_was_replaced_shows_both_meters_days(site: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, site, "cadre.a", PASSWORD)
    go(browser, f"#/elder/{REPLACED['elder_id']}", ".uplot")
    wait_for_text(browser, ".elder-head", "MA9")
    daily = [
        int(cell.get_attribute("textContent")) for cell in browser.find_elements(By.CSS_SELECTOR, "#daily tbody td")
    ]
    # 20 L on each of the 7 days (the oldest and today maybe cut before 07:00): none of them lost with the meter
    assert len(daily) >= 7 and sum(daily) >= 6 * 20, daily
    label = browser.find_element(By.ID, "chart").get_attribute("aria-label")
    assert f"共 {sum(daily)} 升" in label, label
