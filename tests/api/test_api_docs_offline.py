"""``/docs`` and ``/redoc`` work with no internet (issue 19 item 4).

The real app runs under uvicorn on a loopback port. Every asset the two pages
reference is fetched from it and none points off-host; then headless Chromium,
with every connection off this host refused by a dead proxy, must render Swagger
UI's operation list and ReDoc's menu, and load nothing from anywhere else.
With FastAPI's default CDN links those pages stay blank here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from core.settings import get_settings
from tests import browser
from tests.browser import LiveServer, chromium, chromium_missing, free_port, wait_for

PAGES = ("/docs", "/redoc")
#: src/href attributes, ReDoc's spec-url, and the url Swagger UI is told to load.
REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|\burl:\s*'([^']+)'""")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from api.main import create_app
    from store import open_store

    tmp = tmp_path_factory.mktemp("docs")
    url = f"sqlite:///{tmp / 'docs.db'}"
    engine = open_store(url)
    with LiveServer(create_app(get_settings(data_dir=tmp, database_url=url), engine)) as server:
        yield server.url
    engine.dispose()


def _references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


@pytest.mark.parametrize("page", PAGES)
def test_every_asset_of_the_docs_is_served_here(base_url: str, page: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        html = client.get(page)
        assert html.status_code == 200
        refs = _references(html.text)
        assert any(r.endswith(".js") for r in refs) and "/openapi.json" in refs, refs
        assert not re.search(r"https?://|//[a-z]", html.text), "the page names another host"
        for ref in refs:
            assert urlsplit(urljoin(base_url + page, ref)).netloc == urlsplit(base_url).netloc, ref
            asset = client.get(ref)
            assert asset.status_code == 200, ref
            assert len(asset.content) > 0, ref
        types = {ref.rsplit(".", 1)[-1]: client.get(ref).headers["content-type"] for ref in refs}
        assert types["json"].startswith("application/json")
        assert "javascript" in types["js"]


def test_the_openapi_document_itself_names_no_asset_host(base_url: str) -> None:
    spec = httpx.get(base_url + "/openapi.json", timeout=10).text
    assert "cdn.jsdelivr.net" not in spec and "fonts.googleapis" not in spec


@pytest.fixture(scope="module")
def offline_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium whose every request off this host goes to a dead proxy (loopback bypasses proxies)."""
    if (why := chromium_missing()) is not None:
        pytest.skip(f"no browser: {why}")
    dead = f"--proxy-server=http://127.0.0.1:{free_port()}"  # nothing listens there: off-host loads fail
    flags = browser.CHROMIUM_FLAGS
    browser.CHROMIUM_FLAGS = (*flags, dead)
    try:
        driver = chromium(Path(tmp_path_factory.mktemp("profile")))
    finally:
        browser.CHROMIUM_FLAGS = flags
    yield driver
    driver.quit()


def _resources(driver: Any) -> list[str]:
    return list(driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"))


def _assert_nothing_left_this_host(driver: Any, base_url: str) -> None:
    """Every resource came from here, or the page's content security policy stopped it before it left."""
    blocked = " ".join(
        entry["message"]
        for entry in driver.get_log("browser")
        if "violates the following Content Security" in entry["message"]
    )
    away = [r for r in _resources(driver) if not r.startswith(base_url + "/")]
    assert all(f"'{r}'" in blocked for r in away), (away, blocked)


def test_swagger_ui_renders_the_operations_with_the_network_closed(offline_browser: Any, base_url: str) -> None:
    driver = offline_browser
    driver.get(base_url + "/docs")
    wait_for(driver, ".opblock-tag-section", timeout=20)
    paths = {e.get_attribute("data-path") for e in driver.find_elements("css selector", ".opblock-summary-path") if e}
    assert {"/elders", "/alerts", "/auth/token"} <= paths, paths
    loaded = _resources(driver)
    assert any(r.endswith("/openapi.json") for r in loaded)
    _assert_nothing_left_this_host(driver, base_url)


def test_redoc_renders_with_the_network_closed(offline_browser: Any, base_url: str) -> None:
    driver = offline_browser
    driver.get(base_url + "/redoc")
    wait_for(driver, "li[data-item-id='tag/elders']", timeout=20)
    assert "tapwatch" in wait_for(driver, ".api-info h1").text
    assert any(r.endswith("/openapi.json") for r in _resources(driver))
    _assert_nothing_left_this_host(driver, base_url)
