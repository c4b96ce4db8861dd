"""A case that turns grave while the dashboard is open, in real headless Chromium.

An elder's case began as a late rising (``routine_change``, low): no alarm worth a call, the cadre leaves it for
her round. Hours later no water has run since: a ``no_activity`` finding joins the case and raises it to high; the
server re-notifies and escalates it as a new raise (docs: alerts.grouping). The page had cued only cases it did
not know: the same case turned grave with no banner and no chime, so a fall waited behind a "routine change"
until her round. A rise in severity of a case waiting for someone is
cued once, naming the kind that joined; the same case coming again at the same severity is not cued again.
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
    wait_for_text,
)

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD


def _fill(engine: Engine) -> str:
    add_elder(engine, ELDER_A)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A])])
    return raise_alert(engine, str(ELDER_A["meter_id"]), kind="routine_change", severity="low", ts=time.time() - 3600)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Engine, str]]:
    with live_site(tmp_path, "graver", _fill, sse_poll_s=0.2) as (url, engine, alert_id):
        yield url, engine, alert_id


def _cues(driver: Any) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.cues || 0)"))


def test_a_case_that_turns_grave_is_cued_once(site: tuple[str, Engine, str], browser: Any) -> None:
    url, engine, alert_id = site
    sign_in(browser, url, "cadre.a", PASSWORD)
    go(browser, "#/alerts", f"[data-alert='{alert_id}'].sev-low")
    wait_for(browser, "#live[data-on='true']", visible=False)
    assert _cues(browser) == 0 and not browser.find_element("id", "banner").is_displayed()
    joined = raise_alert(engine, str(ELDER_A["meter_id"]), kind="no_activity", severity="high", ts=time.time())
    assert joined == alert_id  # the same case, now high
    wait_for(browser, f"[data-alert='{alert_id}'].sev-high")
    banner = wait_for_text(browser, "#banner-text", str(ELDER_A["name"]), "长时间未用水")
    assert "生活规律变化" not in banner, banner
    assert _cues(browser) == 1
    # The card is the fall's now (its label and words), the routine change one of the kinds it groups.
    wait_for_text(browser, f"[data-alert='{alert_id}'] .kind", "长时间未用水")
    wait_for_text(browser, f"[data-alert='{alert_id}'] .grouped", "生活规律变化")
    # A lesser kind joins too: the case changes, as grave as it was: no second alarm.
    raise_alert(engine, str(ELDER_A["meter_id"]), kind="continuous_flow", severity="medium", ts=time.time())
    wait_for_text(browser, f"[data-alert='{alert_id}'] .grouped", "持续用水")
    assert _cues(browser) == 1
