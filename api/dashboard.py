"""The cadre dashboard: one page at ``/`` (sign in, alerts live, elders, thresholds, devices) and its static files.

The page is plain HTML, CSS and JavaScript in ``api/static`` with no build step;
charts come from uPlot, vendored in the same folder (see docs/dashboard.md).
Everything it shows comes from the API with the signed-in user's bearer token.
The page itself holds no data, so ``/`` and ``/static/*`` need no token.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from core.settings import Settings

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent / "static"
PAGE = STATIC / "index.html"
ASSETS = ("app.js", "app.css", "i18n.json", "uPlot.iife.min.js", "uPlot.min.css")

#: Only our own scripts, styles and API; no inline script, no framing, nothing from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def asset_version() -> str:
    """A short hash of the assets, so browsers fetch new files after an upgrade (``?v=...``)."""
    stamp = "|".join(f"{name}:{(STATIC / name).stat().st_mtime_ns}:{(STATIC / name).stat().st_size}" for name in ASSETS)
    return _digest(stamp)


@lru_cache(maxsize=8)
def _digest(stamp: str) -> str:
    h = hashlib.sha256()
    for name in ASSETS:
        h.update((STATIC / name).read_bytes())
    return h.hexdigest()[:12]


def page_html(undo_s: float) -> str:
    """The page, its asset URLs versioned; ``undo_s`` is how long it holds a tapped outcome before sending it."""
    page = PAGE.read_text(encoding="utf-8").replace("{{version}}", asset_version())
    # On the script's tag (CSP allows no inline script): the page needs it before any request, signed in or not.
    return page.replace("{{undo_s}}", f"{undo_s:g}")


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    return HTMLResponse(page_html(settings.dashboard_undo_s), headers=HEADERS)
