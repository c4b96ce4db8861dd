"""Screenshots of the cadre dashboard at desktop and phone widths, from a seeded app in real Chromium.

    python -m tests.browser --out docs/screenshots

Starts the real app (uvicorn on a free loopback port, SQLite in a temporary
directory), fills the store through the real ingest pipeline with simulated
elders (one has fallen, one has a tap running, one meter went silent), creates
demo users, and drives Debian's ``chromium`` with Selenium (``chromium`` and
``chromium-driver`` from apt; ``selenium`` from PyPI). Nothing is fetched
from the internet. Pages: sign in, open alerts (also in English), an elder,
resolving with an outcome, thresholds with a backtest, meter maintenance, and
the outcomes report (效果).

It is also the browser tests' shared setup (``tests/api/test_*_browser.py``):
:data:`needs_chromium` (skip, saying why, without a browser), :func:`live_site`
(the real app over a fresh SQLite store that the test fills), the ``browser``
fixture (:func:`browser_env`, a headless Chromium per test), :data:`TEST_PASSWORD`,
and the page steps (:func:`sign_in`, :func:`go`, :func:`wait_for_text`, ...).
It lives with the tests, outside the installed packages: users never run it.
"""

from __future__ import annotations

import argparse
import base64
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from sqlalchemy import Engine, select

from alerts.manager import AlertManager
from core.domain import Finding
from detect.messages import no_activity_learned
from store.schema import alerts

_T = TypeVar("_T")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = (1280, 860)
PHONE = (360, 740)
SHANGHAI_S = 8 * 3600
# The flags that keep headless Chromium quiet and offline (without them it tries to reach Google).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--lang=zh-CN",
)

# -- seeding --------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What :func:`seed_store` put in the store."""

    now: float
    elders: list[dict[str, Any]]
    fallen: dict[str, Any]
    leaking: dict[str, Any]
    silent: dict[str, Any]
    quiet: list[dict[str, Any]] = field(default_factory=list)  # elders without open alerts

    @property
    def communities(self) -> list[str]:
        return sorted({e["community"] for e in self.elders})


def seed_store(
    engine: Engine, *, elders: int = 8, days: int = 21, seed: int = 20261123, now: float | None = None
) -> Seeded:
    """Simulated elders' readings up to ``now``, through :class:`engine.pipeline.Pipeline` (no broker).

    Elder 1 fell yesterday at 09:00 (local) and has not used water since; elder 2 has had
    a tap running since about seven hours ago; elder 3's meter stopped reporting 30 hours
    ago; elder 4's meter reports a low battery. The others live their usual lives.
    """
    from engine.pipeline import Pipeline
    from ingest.payload import RawMessage
    from simulator import IncidentSpec, SimConfig, simulate
    from simulator.publisher import payload, plan_messages
    from store.registry import register_elder

    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now + SHANGHAI_S, UTC).date()
    start = today - timedelta(days=days)
    into_today = (now + SHANGHAI_S) % 86400 / 86400
    cfg = SimConfig(
        elders=elders,
        days=days + 1,
        seed=seed,
        start=start.isoformat(),
        random_incidents=False,
        random_events=False,
        faults=False,
        incidents=[
            IncidentSpec(elder=1, kind="fall", start_day=days - 1 + 9 / 24, duration_h=24 * 4),
            IncidentSpec(elder=2, kind="tap_running", start_day=days + into_today - 7 / 24, duration_h=48),
        ],
    )
    sim = simulate(cfg)
    cutoff = {i: now for i in range(elders)}
    cutoff[3] = now - 30 * 3600
    with engine.begin() as conn:
        for elder in sim.elders:
            register_elder(conn, elder, elder["meter_id"], now - (days + 1) * 86400)
    pipeline = Pipeline(engine, AlertManager(), late_window_s=(days + 2) * 86400.0, clock=lambda: now)
    history, live = plan_messages(sim, history_days=float(cfg.days))
    batch: list[RawMessage] = []
    last_msg: dict[int, RawMessage] = {}
    for msg in history + live:
        rows = [r for r in msg.rows if sim.ts[r] <= cutoff[msg.meter_idx] and sim.delivered_at[r] <= now]
        if not rows:
            continue
        msg.rows = rows
        raw = RawMessage("seed", payload(sim, msg), sim.meter_ids[msg.meter_idx], now)
        batch.append(raw)
        last_msg[msg.meter_idx] = raw
        if len(batch) >= 200:
            pipeline.process(batch)
            batch = []
    pipeline.process(batch)
    low = orjson.loads(last_msg[4].payload)  # the same last readings again, now with a weak battery
    low["battery_pct"] = 12
    pipeline.process([RawMessage("seed", orjson.dumps(low), sim.meter_ids[4], now)])
    pipeline.tick(now, 6 * 3600)  # the silent meter goes offline through the live check
    by_index = sim.elders
    quiet = [e for i, e in enumerate(by_index) if i not in (1, 2, 3)]
    _history(engine, by_index[5], now)
    return Seeded(now=now, elders=by_index, fallen=by_index[1], leaking=by_index[2], silent=by_index[3], quiet=quiet)


def _history(engine: Engine, elder: dict[str, Any], now: float) -> None:
    """A past alert a cadre resolved (the elder was away), for the alert history on the elder's page."""
    manager = AlertManager()
    ts = now - 9 * 86400
    finding = Finding(
        meter_id=elder["meter_id"],
        kind="low_usage",
        severity="medium",
        ts=ts,
        message_zh="昨日用水 3 升，远低于该老人平时的 120 升左右。",
        message_en="Used 3 L yesterday, far below this elder's usual 120 L or so.",
        basis="learned",
        since=ts - 86400,
    )
    with engine.begin() as conn:
        alert_id = manager.apply(conn, elder, finding, ts + 600)
        row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()._mapping
        manager.resolve(conn, dict(row), "demo.cadre", "away", "去女儿家住了两天 / stayed with her daughter", ts + 5400)


def raise_alert(engine: Engine, elder: dict[str, Any], now: float | None = None, kind: str = "no_activity") -> str:
    """Raise an alert for ``elder`` as the live pipeline does (:meth:`AlertManager.apply`); returns its id."""
    now = time.time() if now is None else now
    since = now - 5.5 * 3600
    msg_zh, msg_en = no_activity_learned(since, SHANGHAI_S, 5.5, 0.999, 2.5, "learned")
    finding = Finding(
        meter_id=elder["meter_id"],
        kind=kind,
        severity="critical",
        ts=now,
        message_zh=msg_zh,
        message_en=msg_en,
        basis="learned",
        since=since,
    )
    with engine.begin() as conn:
        alert_id = AlertManager().apply(conn, elder, finding, now)
    if alert_id is None:
        raise RuntimeError(f"no alert raised for {elder['elder_id']} (one already open?)")
    return alert_id


def create_users(engine: Engine, users: Iterable[tuple[str, str, str, list[str]]]) -> None:
    """(username, password, role, communities) each, through :func:`store.users.create_user`."""
    from store.users import create_user

    with engine.begin() as conn:
        for username, password, role, communities in users:
            create_user(conn, username=username, password=password, role=role, communities=communities, now=time.time())


# -- the app on a loopback port -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# -- the browser ----------------------------------------------------------------------------


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or ``None`` when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


#: A browser test module's mark: skipped, saying why, where Chromium, its driver or Selenium is missing.
needs_chromium = pytest.mark.skipif(chromium_missing() is not None, reason=f"no browser: {chromium_missing()}")
#: The browser tests' users' password (the screenshots' is :data:`DEMO_PASSWORD`).
TEST_PASSWORD = "a long test password"


@contextmanager
def live_site(tmp: Path, name: str, fill: Callable[[Engine], _T], **settings: Any) -> Iterator[tuple[str, Engine, _T]]:
    """The real app on a loopback port over a fresh SQLite store (``tmp/name.db``) that ``fill`` seeds first.

    Yields the base URL, the engine (a test may change the store under the page) and what ``fill``
    returned; ``settings`` override :func:`core.settings.get_settings` (e.g. ``sse_poll_s``).
    """
    from api.main import create_app
    from core.settings import get_settings
    from store import open_store

    url = f"sqlite:///{tmp / f'{name}.db'}"
    engine = open_store(url)
    try:
        filled = fill(engine)
        app = create_app(get_settings(data_dir=tmp, database_url=url, **settings), engine)
        with LiveServer(app) as server:
            yield server.url, engine, filled
    finally:
        engine.dispose()


@pytest.fixture(name="browser")
def browser_env(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium for one test (import it into a test module as ``browser_env``)."""
    driver = chromium(tmp_path / "profile")
    yield driver
    driver.quit()


def chromium(profile_dir: Path, size: tuple[int, int] = DESKTOP) -> Any:
    """Headless Debian Chromium under Selenium, offline, with the browser console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    emulate(driver, size)
    return driver


def emulate(driver: Any, size: tuple[int, int]) -> None:
    """A viewport of exactly ``size`` CSS pixels; phone widths as a touch phone at 2x."""
    phone = size[0] < 600
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": size[0], "height": size[1], "deviceScaleFactor": 2 if phone else 1, "mobile": phone},
    )
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": phone})


def full_page_png(driver: Any, path: Path, size: tuple[int, int]) -> None:
    """The whole page at the emulated width: the viewport grows to the page's height for the shot."""
    height = int(driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)"))
    emulate(driver, (size[0], max(size[1], min(height, 4000))))
    time.sleep(0.3)
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        emulate(driver, size)


# -- page steps shared with the tests -------------------------------------------------------


def wait_for(driver: Any, css: str, timeout: float = 10.0, visible: bool = True) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    cond = ec.visibility_of_element_located if visible else ec.presence_of_element_located
    return WebDriverWait(driver, timeout).until(cond((By.CSS_SELECTOR, css)))


def wait_for_text(driver: Any, css: str, *needles: str, timeout: float = 10.0) -> str:
    """Wait until the element ``css`` names shows every one of ``needles``; return its text.

    The element is looked up afresh on each try: a live update may re-render it
    between finding it and reading it.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d: Any) -> str | bool:
        try:
            text = str(d.find_element(By.CSS_SELECTOR, css).text)
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return text if all(n in text for n in needles) else False

    return str(WebDriverWait(driver, timeout).until(shown))


def click(driver: Any, css: str, timeout: float = 10.0) -> None:
    """Click the element ``css`` names, looking it up afresh on each try: live updates re-render cards."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def clicked(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    # Both waits look again when the card was re-rendered between finding it and asking it (a stale element).
    stale = (StaleElementReferenceException,)
    WebDriverWait(driver, timeout, ignored_exceptions=stale).until(ec.element_to_be_clickable((By.CSS_SELECTOR, css)))
    WebDriverWait(driver, timeout, ignored_exceptions=stale).until(clicked)


def sign_in(driver: Any, base_url: str, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(base_url + "/")
    user = wait_for(driver, "#login-username")
    user.clear()
    user.send_keys(username)
    pw = driver.find_element(By.ID, "login-password")
    pw.clear()
    pw.send_keys(password, Keys.ENTER)  # the keyboard, as a user would
    wait_for(driver, "#main[data-view]:not([data-view='login'])")


def go(driver: Any, route: str, ready_css: str) -> None:
    driver.execute_script("location.hash = arguments[0]", route)
    wait_for(driver, ready_css)


# -- the command ----------------------------------------------------------------------------


DEMO_PASSWORD = "screenshots-only"


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []

    def fill(engine: Engine) -> Seeded:
        seeded = seed_store(engine)
        _visited(engine, seeded)
        cadre_communities = sorted({seeded.fallen["community"], seeded.leaking["community"]})
        create_users(
            engine,
            [
                ("li.cadre", DEMO_PASSWORD, "cadre", cadre_communities),
                ("wang.operator", DEMO_PASSWORD, "operator", ["*"]),
            ],
        )
        return seeded

    with (
        tempfile.TemporaryDirectory(prefix="tapwatch-shots-") as tmp,
        live_site(Path(tmp), "shots", fill, sse_poll_s=0.3) as (url, _, seeded),
    ):
        for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            saved += _shots(url, seeded, out, name, size, Path(tmp) / f"profile-{name}")
    return saved


#: Cases of the last weeks the cadres visited, for the outcomes page: (days ago, kind, outcome).
VISITED = (
    (2.0, "no_activity", "false_alarm"),
    (6.0, "continuous_flow", "ok"),
    (11.0, "no_activity", "needed_help"),
    (17.0, "no_activity", "ok"),
)


def _visited(engine: Engine, seeded: Seeded) -> None:
    """Cases the cadres went to and resolved with what they found, on the quiet elders' meters."""
    manager = AlertManager()
    for (days_ago, kind, outcome), elder in zip(VISITED, seeded.quiet, strict=False):
        ts = seeded.now - days_ago * 86400
        finding = Finding(elder["meter_id"], kind, "high", ts, "未用水", "no use", "learned", since=ts - 6 * 3600)
        with engine.begin() as conn:
            alert_id = manager.apply(conn, elder, finding, ts)
            row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).one()._mapping
            manager.resolve(conn, dict(row), "demo.cadre", outcome, "", ts + 2400)


def _shots(base: str, seeded: Seeded, out: Path, name: str, size: tuple[int, int], profile: Path) -> list[Path]:
    from selenium.webdriver.common.by import By

    driver = chromium(profile, size)
    saved: list[Path] = []

    def shot(page: str) -> None:
        time.sleep(0.4)  # let the chart and fonts settle
        path = out / f"{page}-{name}.png"
        full_page_png(driver, path, size)
        saved.append(path)

    try:
        driver.get(base + "/")
        wait_for(driver, "#login-username")
        shot("signin")
        sign_in(driver, base, "li.cadre", DEMO_PASSWORD)
        wait_for(driver, ".alert-card")
        shot("alerts")
        go(driver, f"#/elder/{seeded.fallen['elder_id']}", ".uplot")
        shot("elder")
        driver.find_element(By.CSS_SELECTOR, "[data-action='resolve']").click()
        wait_for(driver, "#resolve-dialog[open] .outcomes")
        shot("resolve")
        driver.find_element(By.CSS_SELECTOR, "#resolve-dialog [data-action='cancel']").click()
        driver.find_element(By.ID, "lang").click()
        go(driver, "#/alerts", ".alert-card")
        shot("alerts-en")
        driver.find_element(By.ID, "lang").click()
        driver.find_element(By.ID, "logout").click()
        sign_in(driver, base, "wang.operator", DEMO_PASSWORD)
        go(driver, f"#/thresholds/{seeded.fallen['community']}", "#threshold-form")
        field_ = driver.find_element(By.CSS_SELECTOR, "#threshold-form input[name='learned_ceiling_hours']")
        field_.clear()
        field_.send_keys("12")
        driver.find_element(By.CSS_SELECTOR, "[data-action='preview']").click()
        wait_for(driver, "#backtest-result table", timeout=60)
        shot("thresholds")
        go(driver, "#/devices", ".device-card")
        shot("devices")
        go(driver, "#/outcomes", "table.outcomes")
        wait_for(driver, "table.outcome-kinds")
        shot("outcomes")
    finally:
        driver.quit()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/screenshots", help="where the PNGs go (default docs/screenshots)")
    args = parser.parse_args(argv)
    missing = chromium_missing()
    if missing:
        print(f"cannot take screenshots: {missing}", file=sys.stderr)
        return 2
    for path in take(Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
