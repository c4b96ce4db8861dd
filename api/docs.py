"""The interactive API docs (``/docs`` Swagger UI, ``/redoc`` ReDoc) served with no internet.

FastAPI's own pages load Swagger UI, ReDoc, a favicon and Google Fonts from CDNs
that government intranets cannot reach, so the pages stay blank there. Here the
same pages point at copies of those files that the ``fastapi-offline`` package
ships (Swagger UI 5 and ReDoc 2 bundles, MIT/Apache-2.0), served from
``/docs-static`` on this host; ReDoc uses the system fonts. A content security
policy keeps the pages from loading anything else (ReDoc's bundle would fetch its
maker's logo from a CDN; that link is hidden). Like the OpenAPI document itself
these pages hold no data, so they need no token.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the Swagger UI and ReDoc bundles live on disk (inside the installed package).
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-static"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

#: Nothing from another host. Swagger UI starts from an inline script and both bundles set inline styles;
#: ReDoc runs its search in a blob: worker.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
#: ReDoc's "API docs by Redocly" link shows an image from the maker's CDN: not wanted offline.
REDOC_STYLE = '<style>a[href*="redocly.com"] { display: none; }</style>'

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Serve the docs pages and their assets; the app must be made with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-static")
    app.include_router(router)


def _root(request: Request) -> str:
    """The prefix a reverse proxy serves the app under (``root_path``), so links work behind one."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.api_route(DOCS_URL, methods=["GET", "HEAD"], response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
        # No call to the public validator service (it would leak the API's shape and fail offline).
        swagger_ui_parameters={"validatorUrl": None},
    )
    return HTMLResponse(bytes(page.body), headers=HEADERS)


@router.api_route(OAUTH2_REDIRECT_URL, methods=["GET", "HEAD"], response_class=HTMLResponse)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.api_route(REDOC_URL, methods=["GET", "HEAD"], response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} API",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )
    html = bytes(page.body).decode().replace("</head>", REDOC_STYLE + "\n</head>", 1)
    return HTMLResponse(html, headers=HEADERS)
