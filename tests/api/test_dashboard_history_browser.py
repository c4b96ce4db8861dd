"""What an elder's alert history says of who closed a case and why, in real headless Chromium.

A cadre who retires an elder, withdraws her consent or replaces her meter closes her open cases with it; the API
writes the case's note as an English phrase before the reason she gave ("elder retired: 搬去养老院",
docs/api.md), and the Chinese page showed it as it was, English in a Chinese line.

An elder retired long enough ago loses her personal data, what cadres wrote on her cases too: each note becomes
"(purged)" (store.retention), and the Chinese page showed that word in every line of her history.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from alerts.manager import AlertManager
from store.registry import retire_elder
from store.retention import purge_personal_data
from store.schema import alerts
from tests.api_fixtures import ELDER_A, A, add_elder, raise_alert
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

pytestmark = needs_chromium
PASSWORD = TEST_PASSWORD
RETIRED = {**ELDER_A, "elder_id": "EA2", "meter_id": "MA2", "name": "周玉珍", "room": "202"}
OPTED_OUT = {**ELDER_A, "elder_id": "EA3", "meter_id": "MA3", "name": "吴凤英", "room": "203"}
REPLACED = {**ELDER_A, "elder_id": "EA4", "meter_id": "MA4", "name": "郑淑珍", "room": "204"}
PURGED = {**ELDER_A, "elder_id": "EA5", "meter_id": "MA5", "name": "冯桂英", "room": "205"}


def _fill(engine: Engine) -> None:
    for elder in (RETIRED, OPTED_OUT, REPLACED):
        add_elder(engine, elder)
        raise_alert(engine, elder["meter_id"], ts=time.time() - 600)
    raise_alert(engine, REPLACED["meter_id"], kind="meter_offline", severity="low", ts=time.time() - 600)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A])])
    _purged_after_a_visit(engine)


def _purged_after_a_visit(engine: Engine) -> None:
    """A cadre visited her and wrote what she found; she moved away, and retention purged her data."""
    add_elder(engine, PURGED)
    alert_id = raise_alert(engine, PURGED["meter_id"], ts=time.time() - 600)
    now = time.time()
    with engine.begin() as conn:
        case = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()._mapping
        AlertManager().resolve(conn, dict(case), "cadre.a", "ok", "她在女儿家，身体很好", now)
        retire_elder(conn, PURGED["elder_id"], now)
    assert purge_personal_data(engine, cutoff=now + 1, now=now) == 1


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with live_site(tmp_path, "history", _fill) as (url, _, _):
        token = httpx.post(f"{url}/auth/token", data={"username": "cadre.a", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        changes = [
            (f"/elders/{RETIRED['elder_id']}/retire", "post", {"reason": "搬去养老院"}),
            (f"/elders/{OPTED_OUT['elder_id']}", "patch", {"consent": False, "reason": "女儿不同意"}),
            (f"/elders/{REPLACED['elder_id']}/meter", "post", {"meter_id": "MA9", "reason": "电池没电"}),
        ]
        for path, method, body in changes:
            answer = httpx.request(method, f"{url}{path}", json=body, headers=auth)
            assert answer.status_code == 200, answer.text
        yield url


@pytest.mark.parametrize(
    ("elder", "zh", "en"),
    [
        (RETIRED, "老人已注销登记：搬去养老院", "Elder retired from monitoring: 搬去养老院"),
        (OPTED_OUT, "已撤回监测同意：女儿不同意", "Consent to monitoring withdrawn: 女儿不同意"),
        (REPLACED, "已更换水表：电池没电", "Meter replaced: 电池没电"),
    ],
)
def test_a_case_closed_by_a_change_of_the_registry_says_why_in_the_reader_s_language(
    site: str, browser: Any, elder: dict[str, Any], zh: str, en: str
) -> None:
    sign_in(browser, site, "cadre.a", PASSWORD)
    go(browser, f"#/elder/{elder['elder_id']}", "#main[data-view='elder']")
    history = wait_for_text(browser, "#history", "由 cadre.a 关闭", zh)
    assert not any(word in history for word in ("retired", "withdrawn", "replaced")), history
    browser.find_element("id", "lang").click()
    wait_for_text(browser, "#history", "by cadre.a", en)


def test_the_notes_of_a_purged_elder_s_cases_say_so_in_the_reader_s_language(site: str, browser: Any) -> None:
    sign_in(browser, site, "cadre.a", PASSWORD)
    go(browser, f"#/elder/{PURGED['elder_id']}", "#main[data-view='elder']")
    history = wait_for_text(browser, "#history", "见到老人，平安", "（已清除）")
    assert "purged" not in history and "女儿" not in history, history
    browser.find_element("id", "lang").click()
    wait_for_text(browser, "#history", "Saw the elder, well", "(purged)")
