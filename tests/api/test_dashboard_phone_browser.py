"""The alert list on a 360 px phone with a cadre's many alerts, in real headless Chromium.

A cadre with many open alerts scrolls down her list; a new alert's banner appears. The banner and the header
were both pinned to the top of the screen, the banner over the header: the language switch, the sign-out, the
live dot and the menu were under it, out of reach until she dismissed the alarm.

Her thumb on a cheap phone needs targets of about 40 px and more (the page's own rule is 44): the header's
sound, language and sign-out buttons were 36 px high side by side, the elder's name on each card 23 px,
the away window's quick chips and delete button 36 px, the daily table's fold 24 px.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.api_fixtures import ELDER_A, A, add_elder, raise_alert
from tests.browser import (
    PHONE,
    TEST_PASSWORD,
    chromium,
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
ELDERS = [
    {**ELDER_A, "elder_id": f"EA{i}", "meter_id": f"MA{i}", "name": f"老人{i}", "room": f"{i}"} for i in range(1, 13)
]


def _fill(engine: Engine) -> None:
    for elder in ELDERS:
        add_elder(engine, elder)
    for elder in ELDERS[:-1]:
        raise_alert(engine, str(elder["meter_id"]), ts=time.time() - 3600)
    create_users(engine, [("cadre.a", PASSWORD, "cadre", [A])])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    # An undo window longer than any test here: the toast of an outcome tapped stays while its controls are measured.
    with live_site(tmp_path, "phone", _fill, sse_poll_s=0.2, dashboard_undo_s=60) as (url, engine, _):
        yield url, engine


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Any]:
    driver = chromium(tmp_path / "profile", PHONE)
    yield driver
    driver.quit()


def _reachable(driver: Any, element_id: str) -> bool:
    """A tap at the middle of the element lands on it (nothing drawn over it)."""
    return bool(
        driver.execute_script(
            "const el = document.getElementById(arguments[0]); const r = el.getBoundingClientRect();"
            "const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
            "return r.width > 0 && !!hit && el.contains(hit);",
            element_id,
        )
    )


def test_the_header_stays_reachable_under_a_new_alert_s_banner(site: tuple[str, Engine], phone: Any) -> None:
    url, engine = site
    sign_in(phone, url, "cadre.a", PASSWORD)
    go(phone, "#/alerts", "[data-alert]")
    wait_for(phone, "#live[data-on='true']", visible=False)
    phone.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # down her long list
    raise_alert(engine, str(ELDERS[-1]["meter_id"]), ts=time.time())
    wait_for_text(phone, "#banner-text", str(ELDERS[-1]["name"]))
    assert phone.execute_script("return window.scrollY") > 0
    for control in ("lang", "logout"):
        assert _reachable(phone, control), f"#{control} is covered"
    assert _reachable(phone, "banner-open")


#: Every control a finger may aim at, with its size in CSS pixels, the small ones only.
_SMALL_TARGETS = """return Array.from(document.querySelectorAll('a, button, input, select, textarea, summary'))
  .filter((e) => !e.closest('.u-legend, .skip'))
  .map((e) => [e, e.getBoundingClientRect()])
  .filter(([e, r]) => r.width > 0 && r.height > 0 && (r.height < 40 || r.width < 40))
  .map(([e, r]) => `${e.tagName.toLowerCase()} '${(e.textContent || e.id).trim().slice(0, 16)}' `
    + `${Math.round(r.width)}x${Math.round(r.height)}`);"""


RESOLVE = "#elder-open [data-action='resolve']"


def test_every_control_is_a_thumb_s_size(site: tuple[str, Engine], phone: Any) -> None:
    from tests.browser import click

    url, _ = site
    sign_in(phone, url, "cadre.a", PASSWORD)
    go(phone, "#/alerts", "[data-alert]")
    small = {"alerts": phone.execute_script(_SMALL_TARGETS)}
    go(phone, f"#/elder/{ELDERS[0]['elder_id']}", "#away-form")
    click(phone, "#away-form [data-action='away-days'][data-days='1']")
    click(phone, "#away-form button[type='submit']")
    wait_for(phone, "#away-list [data-action='away-delete']")
    wait_for(phone, "#chart[aria-label]", visible=False)
    small["elder"] = phone.execute_script(_SMALL_TARGETS)
    # In the middle of the screen, as she would tap it (Selenium scrolls it under the pinned header).
    phone.execute_script("document.querySelector(arguments[0]).scrollIntoView({block: 'center'})", RESOLVE)
    click(phone, RESOLVE)
    wait_for(phone, "#resolve-dialog[open]")
    small["sheet"] = phone.execute_script(_SMALL_TARGETS)
    click(phone, "#resolve-outcomes [data-outcome='ok']")
    wait_for(phone, "#toast-undo")  # the outcome's undo, in the toast at the bottom of the screen
    small["toast"] = phone.execute_script(_SMALL_TARGETS)
    assert _reachable(phone, "toast-undo")
    assert not any(small.values()), small
