"""The dashboard in real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

One app under uvicorn on a loopback port, a real SQLite store filled through the
ingest pipeline, real users and tokens. A cadre signs in, an alert raised by
:meth:`alerts.manager.AlertManager.apply` arrives live (server-sent events) with
a banner and a cue, she opens the elder and resolves it with an outcome, and the
API says it is resolved. A cadre of another community sees none of it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from store.registry import register_elder
from tests.browser import (  # noqa: F401  (browser_env: the browser fixture)
    PHONE,
    TEST_PASSWORD,
    Seeded,
    browser_env,
    click,
    create_users,
    emulate,
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


@dataclass
class Site:
    url: str
    engine: Any
    seeded: Seeded
    elder: dict[str, Any]  # the elder whose alert arrives live; in cadre A's community only
    other_community: str


def _fill(engine: Any) -> tuple[Seeded, dict[str, Any], str]:
    seeded = seed_store(engine, elders=6, days=9)
    elder = seeded.quiet[0]
    others = [c for c in seeded.communities if c != elder["community"]]
    other = others[0] if others else "另一个居委会"
    create_users(
        engine,
        [
            ("cadre.a", PASSWORD, "cadre", [elder["community"]]),
            ("cadre.b", PASSWORD, "cadre", [other]),
            ("operator.a", PASSWORD, "operator", [elder["community"]]),
        ],
    )
    return seeded, elder, other


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("dashboard")
    # A short undo window: an outcome is sent a second after the tap, well inside the waits on what it changes.
    settings = {"sse_poll_s": 0.2, "dashboard_undo_s": 1}
    with live_site(tmp, "dash", _fill, **settings) as (url, engine, (seeded, elder, other)):
        yield Site(url, engine, seeded, elder, other)


def _token(site: Site, username: str) -> str:
    res = httpx.post(f"{site.url}/auth/token", data={"username": username, "password": PASSWORD})
    res.raise_for_status()
    return str(res.json()["access_token"])


def _severe_console_errors(driver: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    logs = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return [m for m in logs if not any(a in m for a in allowed)]


def _title_count(driver: Any) -> int:
    found = re.match(r"\((\d+)\) ", driver.title)
    return int(found.group(1)) if found else 0


def _no_sideways_scroll(driver: Any) -> None:
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0], f"page is {width} px wide on a {PHONE[0]} px phone"


def test_cadre_sees_an_alert_arrive_live_and_resolves_it(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sign_in(browser, site.url, "cadre.a", PASSWORD)
    wait_for(browser, "#main[data-view='alerts']")
    wait_for(browser, "#live[data-on='true']", visible=False)  # the event stream is open
    assert browser.find_element(By.ID, "banner").is_displayed() is False
    assert site.elder["name"] not in browser.find_element(By.ID, "alert-list").text
    waiting = _title_count(browser)

    alert_id = raise_alert(site.engine, site.elder)  # as the pipeline would, while the page is open

    # Texts are read through wait_for_text: the live stream re-renders cards under the reader.
    wait_for_text(browser, f".alert-card[data-alert='{alert_id}']", site.elder["name"], "长时间未用水")
    wait_for(browser, "#banner")
    wait_for_text(browser, "#banner", site.elder["name"])
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-cues") == "1"
    assert _title_count(browser) == waiting + 1  # the tab title counts alerts nobody took yet

    click(browser, f".alert-card[data-alert='{alert_id}'] [data-action='ack']")  # one tap: "I'll handle it"
    wait_for_text(browser, f".alert-card.st-acknowledged[data-alert='{alert_id}']", "cadre.a")
    click(browser, f".alert-card[data-alert='{alert_id}'] h2 a")
    wait_for(browser, "#main[data-view='elder']")
    wait_for(browser, "#chart .uplot canvas")  # the 7-day chart was drawn
    assert browser.find_element(By.CSS_SELECTOR, "#chart").get_attribute("aria-label")
    wait_for_text(browser, "#s-contacts", site.elder["contacts"][0]["name"])

    click(browser, f"#elder-open [data-action='resolve'][data-id='{alert_id}']")
    wait_for(browser, "#resolve-dialog[open]")
    browser.find_element(By.ID, "resolve-note").send_keys("电话联系上了，老人在家午睡")
    browser.find_element(By.CSS_SELECTOR, "#resolve-dialog [data-outcome='ok']").click()  # the second tap saves
    WebDriverWait(browser, 10).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f"#elder-open [data-alert='{alert_id}']")
    )
    wait_for_text(browser, "#toast", "已保存", "见到老人，平安")  # sent when its undo window was over
    wait_for_text(browser, "#history", "见到老人，平安")

    res = httpx.get(f"{site.url}/alerts/{alert_id}", headers={"Authorization": f"Bearer {_token(site, 'cadre.a')}"})
    assert res.status_code == 200
    alert = res.json()
    assert (alert["state"], alert["outcome"], alert["resolved_by"]) == ("resolved", "ok", "cadre.a")
    assert alert["note"] == "电话联系上了，老人在家午睡"

    emulate(browser, PHONE)  # the same pages on a 360 px phone
    _no_sideways_scroll(browser)
    go(browser, "#/alerts", "#main[data-view='alerts']")
    _no_sideways_scroll(browser)
    assert _severe_console_errors(browser) == []


def test_a_cadre_records_what_she_found_on_a_case_the_data_closed(site: Site, browser: Any) -> None:
    import time

    from selenium.webdriver.common.by import By

    from alerts.manager import AlertManager
    from core.domain import Finding

    # A flow the data saw stop before anyone came: the cadre visits anyway and records what she found.
    alert_id = raise_alert(site.engine, site.elder, kind="continuous_flow")
    now = time.time()
    stopped = Finding(site.elder["meter_id"], "continuous_flow", "high", now, "已停止", "stopped", resolved=True)
    with site.engine.begin() as conn:
        assert AlertManager().apply(conn, site.elder, stopped, now) == alert_id

    sign_in(browser, site.url, "cadre.a", PASSWORD)
    wait_for(browser, "#main[data-view='alerts']")
    go(browser, f"#/elder/{site.elder['elder_id']}", "#main[data-view='elder']")
    wait_for_text(browser, "#history", "情况已消除")  # closed by the data
    click(browser, f"#history [data-action='record'][data-id='{alert_id}']")
    wait_for(browser, "#resolve-dialog[open]")
    wait_for_text(browser, "#resolve-kind", "上门看到的情况")
    browser.find_element(By.CSS_SELECTOR, "#resolve-dialog [data-outcome='false_alarm']").click()
    wait_for_text(browser, "#toast", "已保存", "误报")
    wait_for_text(browser, "#history", "误报")
    assert not browser.find_elements(By.CSS_SELECTOR, f"#history [data-action='record'][data-id='{alert_id}']")

    res = httpx.get(f"{site.url}/alerts/{alert_id}", headers={"Authorization": f"Bearer {_token(site, 'cadre.a')}"})
    alert = res.json()
    assert (alert["state"], alert["outcome"], alert["resolved_by"]) == ("resolved", "false_alarm", "cadre.a")
    assert _severe_console_errors(browser) == []


def test_a_cadre_recording_her_visit_to_a_withdrawn_case_is_told_it_was_withdrawn(site: Site, browser: Any) -> None:
    """A burst called her out and the detector took it back (one misread reading) before she came: the dialog
    for what she found said only that the data showed it over, as for a tap turned off. It says the alert was
    withdrawn, no water ran, and that what she records is kept but changes no threshold."""
    import time

    from selenium.webdriver.common.by import By

    from alerts.manager import AlertManager
    from core.domain import WITHDRAWN, Finding

    alert_id = raise_alert(site.engine, site.elder, kind="continuous_flow")
    now = time.time()
    misread = {WITHDRAWN: "misread"}
    meter = site.elder["meter_id"]
    back = Finding(meter, "continuous_flow", "high", now, "读数误读", "misread", details=misread, resolved=True)
    with site.engine.begin() as conn:
        assert AlertManager().apply(conn, site.elder, back, now) == alert_id

    sign_in(browser, site.url, "cadre.a", PASSWORD)
    wait_for(browser, "#main[data-view='alerts']")
    go(browser, f"#/elder/{site.elder['elder_id']}", "#main[data-view='elder']")
    click(browser, f"#history [data-action='record'][data-id='{alert_id}']")
    wait_for(browser, "#resolve-dialog[open]")
    wait_for_text(browser, "#resolve-kind", "此提醒已撤回")
    browser.find_element(By.CSS_SELECTOR, "#resolve-dialog [data-outcome='false_alarm']").click()
    wait_for_text(browser, "#history", "误报")
    assert _severe_console_errors(browser) == []


def test_a_cadre_of_another_community_sees_none_of_it(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    # One of B's elders without an open case (another kind for one with a case would join it, not add a card).
    seeded = next(e for e in site.seeded.elders if e["community"] == site.other_community)
    own = {**seeded, "elder_id": "EB-marker", "meter_id": "WMB-marker", "name": "周桂香", "contacts": []}
    with site.engine.begin() as conn:
        register_elder(conn, {k: v for k, v in own.items() if k != "meter_id"}, own["meter_id"], time.time())
    sign_in(browser, site.url, "cadre.b", PASSWORD)
    wait_for(browser, "#main[data-view='alerts']")
    wait_for(browser, "#live[data-on='true']", visible=False)
    waiting = _title_count(browser)
    alert_id = raise_alert(site.engine, site.elder, kind="low_usage")  # cadre A's elder, not B's
    # Then one of B's own elders: the event stream is in event order, so once B's alert is on the
    # page, A's would have arrived before it had it been let through.
    marker_id = raise_alert(site.engine, own, kind="routine_change")
    wait_for(browser, f".alert-card[data-alert='{marker_id}']")
    assert _title_count(browser) == waiting + 1  # B's alert alone
    assert not browser.find_elements(By.CSS_SELECTOR, f"[data-alert='{alert_id}']")
    assert site.elder["name"] not in browser.find_element(By.ID, "main").text

    go(browser, f"#/elder/{site.elder['elder_id']}", "#main[data-view='elder-missing']")
    assert "不在您负责的社区" in browser.find_element(By.ID, "main").text
    assert site.elder["name"] not in browser.page_source

    token_b = _token(site, "cadre.b")
    assert httpx.get(f"{site.url}/alerts/{alert_id}", headers={"Authorization": f"Bearer {token_b}"}).status_code == 404
    listed = httpx.get(f"{site.url}/alerts", headers={"Authorization": f"Bearer {token_b}"}).json()
    assert all(a["community"] == site.other_community for a in listed["data"])
    assert _severe_console_errors(browser, allowed=("404",)) == []


def test_an_elder_without_consent_is_marked_as_not_monitored(site: Site, browser: Any) -> None:
    from store.registry import set_consent

    others = [e for e in site.seeded.elders if e["community"] == site.elder["community"] and e is not site.elder]
    if not others:
        pytest.skip("the seeded store has one elder in cadre A's community")
    elder = others[0]
    with site.engine.begin() as conn:
        set_consent(conn, elder["elder_id"], False)
    try:
        sign_in(browser, site.url, "cadre.a", PASSWORD)
        wait_for(browser, "#main[data-view='alerts']")
        go(browser, "#/elders", "#main[data-view='elders']")
        row = f".elder-row[href='#/elder/{elder['elder_id']}']"
        wait_for_text(browser, row, elder["name"], "未同意监测")
        consenting = f".elder-row[href='#/elder/{site.elder['elder_id']}']"
        assert "未同意监测" not in wait_for_text(browser, consenting, site.elder["name"])
        go(browser, f"#/elder/{elder['elder_id']}", "#main[data-view='elder']")
        wait_for_text(browser, "#no-consent", "不会产生任何提醒")
        assert _severe_console_errors(browser) == []
    finally:
        with site.engine.begin() as conn:
            set_consent(conn, elder["elder_id"], True)


def test_sign_in_rejects_a_wrong_password_and_switches_language(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(site.url + "/")
    wait_for(browser, "#login-username").send_keys("cadre.a")
    browser.find_element(By.ID, "login-password").send_keys("not the password", Keys.ENTER)
    assert wait_for(browser, "#login-error").text == "用户名或密码不正确。"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    browser.find_element(By.ID, "lang").click()
    wait_for(browser, "#main[data-view='login']")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.CSS_SELECTOR, "#main h1").text == "Sign in"
    label = browser.find_element(By.CSS_SELECTOR, "label[for='login-password']")
    assert label.text == "Password"  # every field has its label


def test_operator_previews_thresholds_before_saving_them(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    community = site.elder["community"]
    sign_in(browser, site.url, "operator.a", PASSWORD)
    go(browser, "#/thresholds", "#threshold-form")
    assert browser.find_element(By.ID, "th-community").get_attribute("value") == community
    margin = browser.find_element(By.CSS_SELECTOR, "#threshold-form input[name='flow_margin_h']")  # session 8's knobs
    assert [margin.get_attribute(a) for a in ("min", "max", "value")] == ["0.5", "4", "1"]
    assert "倍" in browser.find_element(By.ID, "th-flow_run_factor").find_element(By.XPATH, "..").text
    field = browser.find_element(By.CSS_SELECTOR, "#threshold-form input[name='learned_ceiling_hours']")
    field.clear()
    field.send_keys("12")
    browser.find_element(By.ID, "th-reason").send_keys("夜间跌倒较多，提前兜底")
    browser.find_element(By.CSS_SELECTOR, "#threshold-form button[type='submit']").click()
    wait_for_text(browser, "#th-error", "预览")  # no saving blind
    browser.find_element(By.CSS_SELECTOR, "[data-action='preview']").click()
    wait_for_text(browser, "#backtest-result table", "合计", "现在", "修改后", timeout=30)
    browser.find_element(By.CSS_SELECTOR, "#threshold-form button[type='submit']").click()
    wait_for_text(browser, "#toast", "已保存")
    token = _token(site, "operator.a")
    saved = httpx.get(
        f"{site.url}/thresholds/community/{community}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert saved["values"] == {"learned_ceiling_hours": 12.0}
    assert saved["updated"][0]["updated_by"] == "operator.a"

    go(browser, "#/devices", "#main[data-view='devices']")
    assert browser.find_element(By.CSS_SELECTOR, ".chips [aria-pressed='true']").text == "全部"
    last = wait_for_text(browser, "#main", "最后读数")
    assert re.search(r"最后读数 [^\n]*（[^\n]*前）", last) and not re.search(r"\(\d", last), last  # Chinese brackets
    assert _severe_console_errors(browser) == []
