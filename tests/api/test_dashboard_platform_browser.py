"""The grid platform's dispatcher on the dashboard, in real headless Chromium.

The platform acknowledges and resolves work orders (the page offers it the buttons) and may read an elder's
address, but never her water use (readings, usage, routine: 403, docs/api.md). The elder's page asked for her
use all the same, and the refusal replaced the whole page with "您的角色不能执行此操作": the dispatcher who
followed an alert to its elder saw neither her address nor her open case.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

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
)

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD


def _fill(engine: Engine) -> None:
    add_elder(engine, ELDER_A)
    raise_alert(engine, ELDER_A["meter_id"], ts=time.time() - 600)
    create_users(engine, [("grid.desk", PASSWORD, "platform", [A])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "platform", _fill) as (url, _, _):
        yield url


def test_the_platform_sees_an_elder_s_page_without_her_water_use(site: str, browser: Any) -> None:
    sign_in(browser, site, "grid.desk", PASSWORD)
    go(browser, f"#/elder/{ELDER_A['elder_id']}", "#main[data-view='elder'] #history li")
    head = wait_for(browser, ".elder-head").text
    assert ELDER_A["name"] in head and ELDER_A["room"] in head
    wait_for(browser, "#elder-open .alert-card [data-action='resolve']")  # her open case, to be acted on
    assert not browser.find_element("id", "s-chart").is_displayed()  # her water use is not the platform's
    assert not browser.find_element("id", "s-contacts").is_displayed()
