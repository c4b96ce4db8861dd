"""The dashboard page and its files: served without a token, locked down, both languages complete, in step with the API.

The browser walks through it in tests/api/test_dashboard_browser.py; these checks need no browser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.dashboard import STATIC
from core.settings import get_settings

APP_JS = (STATIC / "app.js").read_text(encoding="utf-8")
INDEX = (STATIC / "index.html").read_text(encoding="utf-8")
CATALOGUE = json.loads((STATIC / "i18n.json").read_text(encoding="utf-8"))


@pytest.fixture
def client(engine) -> TestClient:  # type: ignore[no-untyped-def]
    from api.main import create_app

    return TestClient(create_app(get_settings(), engine))


def test_page_is_public_chinese_first_and_locked_down(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in page.text
    assert "{{version}}" not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text and " on" + "click=" not in page.text  # CSP forbids inline scripts anyway
    assert client.head("/").status_code == 200


def test_every_asset_the_page_names_is_served_without_a_token(client: TestClient) -> None:
    page = client.get("/").text
    urls = re.findall(r'(?:src|href|data-catalogue)="(/static/[^"]+)"', page)
    assert {u.split("?")[0] for u in urls} == {
        "/static/uPlot.min.css",
        "/static/app.css",
        "/static/uPlot.iife.min.js",
        "/static/app.js",
        "/static/i18n.json",
    }
    version = urls[0].split("?v=")[1]
    assert re.fullmatch(r"[0-9a-f]{12}", version) and all(u.endswith(f"?v={version}") for u in urls)
    types = {".js": "javascript", ".css": "text/css", ".json": "application/json"}
    for url in urls:
        res = client.get(url)
        assert res.status_code == 200, url
        assert types[Path(url.split("?")[0]).suffix] in res.headers["content-type"], url
    assert client.get("/static/%2e%2e/dashboard.py").status_code == 404  # no way out of the folder
    assert client.get("/alerts").status_code == 401  # the data itself still needs a token


def test_nothing_is_loaded_from_elsewhere() -> None:
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, name
    uplot = (STATIC / "uPlot.iife.min.js").read_text(encoding="utf-8")
    assert uplot.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "MIT License" in (STATIC / "uPlot.LICENSE").read_text(encoding="utf-8")


def _used_keys() -> set[str]:
    keys = set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", APP_JS))
    keys |= set(re.findall(r'data-i18n(?:-label)?="([a-z_.]+)"', INDEX))
    return keys


def _prefixes() -> set[str]:
    return set(re.findall(r"\bt\(\s*`([a-z_.]+)\$\{", APP_JS))


def test_both_languages_have_every_word() -> None:
    zh, en = CATALOGUE["zh"], CATALOGUE["en"]
    assert set(zh) == set(en), f"only in one language: {set(zh) ^ set(en)}"
    missing = _used_keys() - set(zh)
    assert not missing, f"keys used but not in the catalogue: {missing}"
    for key in zh:
        assert set(re.findall(r"\{(\w+)\}", zh[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key
    assert re.search(r"[\u4e00-\u9fff]", zh["alerts.title"]) and not re.search(r"[\u4e00-\u9fff]", en["alerts.title"])


def test_words_cover_every_kind_state_outcome_and_role_the_api_uses() -> None:
    from typing import get_args

    from alerts.cases import OUTCOMES
    from alerts.queries import MIX_KEYS
    from api.models import AlertState, DeviceStatus, WindowKind
    from core.domain import ALERT_KINDS, SEVERITIES
    from core.thresholds import THRESHOLD_SPECS
    from store.users import ROLES

    families = {
        "kind.": ALERT_KINDS,
        "severity.": SEVERITIES,
        "state.": get_args(AlertState),
        "outcome.": OUTCOMES,
        "role.": ROLES,
        "devices.status.": get_args(DeviceStatus),
        "away.kind.": get_args(WindowKind),
        "alert.basis.": ("learned", "prior", "rule"),
        "thresholds.source.": ("default", "global", "community"),
        "unit.": {spec.unit for spec in THRESHOLD_SPECS.values()},
        "outcomes.mix.": MIX_KEYS,  # the outcomes page (GET /reports/outcomes)
        "outcomes.col.": _js_list("OUTCOME_COLUMNS"),
        "outcomes.kinds.": _js_list("OUTCOME_KIND_COLUMNS"),
    }
    assert _js_list("OUTCOME_MIX") == list(MIX_KEYS)
    assert _prefixes() <= set(families), f"word families without a check: {_prefixes() - set(families)}"
    for prefix, names in families.items():
        for name in names:
            assert prefix + name in CATALOGUE["zh"], prefix + name


def _js_list(name: str) -> list[str]:
    found = re.search(rf"const {name} = \[([^\]]*)\]", APP_JS)
    assert found, name
    return re.findall(r'"([a-z_]+)"', found.group(1))


def test_the_page_knows_what_the_api_knows() -> None:
    from alerts.cases import HUMAN_OUTCOMES, OPEN_STATES
    from api.deps import ALERT_HANDLERS, PERSONAL_READERS, REGISTRY_WRITERS, THRESHOLD_WRITERS
    from api.models import DeviceStatus
    from core.domain import ALERT_KINDS, DEVICE_KINDS

    assert _js_list("OUTCOMES") == list(HUMAN_OUTCOMES)
    assert _js_list("KINDS") == list(ALERT_KINDS)
    assert _js_list("OPEN") == list(OPEN_STATES)
    assert set(re.findall(r'"([a-z_]+)"', APP_JS.split("const DEVICE_KINDS = new Set(")[1].split(")")[0])) == set(
        DEVICE_KINDS
    )
    from typing import get_args

    assert _js_list("DEVICE_STATUSES") == list(get_args(DeviceStatus))
    can = APP_JS.split("const CAN = {")[1].split("};")[0]
    roles = {m[0]: set(re.findall(r'"(\w+)"', m[1])) for m in re.findall(r"(\w+): \[([^\]]*)\]", can)}
    assert roles["handle"] == set(ALERT_HANDLERS)
    assert roles["away"] == set(REGISTRY_WRITERS)
    assert roles["thresholds"] == set(THRESHOLD_WRITERS)
    assert roles["water"] == set(PERSONAL_READERS)


def test_demo_accounts_sign_in_and_are_reset_on_a_kept_store(engine) -> None:  # type: ignore[no-untyped-def]
    from api.security import authenticate
    from tapwatch.demo import _banner, demo_users

    with engine.begin() as conn:
        first = demo_users(conn, ["光华里居委会", "阳曲路居委会"])
    with engine.begin() as conn:
        again = demo_users(conn, ["光华里居委会"])  # --keep: the same accounts, new passwords
        for username, role, password in again:
            who = authenticate(conn, username, password)
            assert who is not None and who.role == role
        assert authenticate(conn, first[0][0], first[0][2]) is None
        cadre = authenticate(conn, "demo.cadre", again[0][2])
        assert cadre is not None and cadre.communities == ("光华里居委会",)
    assert [(u, r) for u, r, _ in again] == [
        ("demo.cadre", "cadre"),
        ("demo.operator", "operator"),
        ("demo.admin", "admin"),
    ]

    from types import SimpleNamespace

    settings = get_settings(api_host="127.0.0.1", api_port=8000, database_url="sqlite://")
    text = _banner(settings, SimpleNamespace(elders=[]), [], 1800.0, again)
    assert "http://127.0.0.1:8000/" in text and f"demo.cadre     password {again[0][2]}" in text
