"""Build the FastAPI app: routers, error format, security, and the store and service it serves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from alerts.manager import AlertManager
from api import dashboard, docs, problems
from api.deps import MonitorService
from api.limits import BodyLimit, RefuseNul
from api.routes import (
    alerts,
    audit,
    auth,
    away,
    backtest,
    dead_letters,
    deliveries,
    devices,
    elders,
    health,
    readings,
    reports,
    thresholds,
    users,
)
from api.security import AccessHeader, LoginLimiter, redact_access_logs, trusted_networks
from core import __version__
from core.metrics import Metrics
from core.settings import Settings
from timeseries.sql import SqlTimeseries, Timeseries

DESCRIPTION = """
Water-use monitor for elders who live alone: registry, alerts, thresholds, backtests, devices.

**Authentication.** `POST /auth/token` with a username and password (OAuth2 password flow) returns a
bearer token; platforms use a long-lived API key made with `tapwatch token create NAME` (listed and revoked
one by one: `GET /tokens`, `DELETE /tokens/{id}`). Send it as
`Authorization: Bearer <token>`. Only `/healthz`, `/readyz`, `/metrics` and the docs are public.

**Roles.** `admin` (everything), `operator` (reads; thresholds and backtests in assigned communities),
`cadre` (elders, alerts, away windows in assigned communities), `platform` (alerts and elders of its
communities without contacts, never readings, usage or routine; acknowledges and resolves work orders).
Anything outside your communities answers 404.

**Conventions.** Errors are `application/problem+json` (RFC 9457). Lists take `limit`, `offset`, `sort`
(`field` or `-field`) and return `{data, count}`. Times are ISO-8601 with an offset; volumes are litres.
"""

TAGS = [
    {"name": "auth", "description": "Tokens and the caller."},
    {"name": "elders", "description": "Elders, meters, routine, effective thresholds."},
    {"name": "readings", "description": "Meter readings and use per hour or day."},
    {"name": "alerts", "description": "Alerts and their history; acknowledge and resolve."},
    {"name": "thresholds", "description": "Detection thresholds and backtests."},
    {"name": "away", "description": "Away and snooze windows."},
    {"name": "devices", "description": "Meters offline, faulty or low on battery."},
    {"name": "reports", "description": "What the cadres found on the cases raised: false calls per elder-month."},
    {"name": "users", "description": "Users and roles (admin)."},
    {"name": "operations", "description": "Health, readiness, metrics, audit, dead letters, alert delivery."},
]


def create_app(
    settings: Settings, engine: Engine, service: MonitorService | None = None, timeseries: Timeseries | None = None
) -> FastAPI:
    """An app over ``engine``; ``service`` (a running monitor) adds readiness and ingest metrics."""
    app = FastAPI(
        title="tapwatch",
        version=__version__,
        summary="Water-use anomaly monitor for elders who live alone.",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,  # api/docs.py serves /docs and /redoc from local files: no CDN on an intranet
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.service = service
    app.state.timeseries = timeseries or (service.timeseries if service is not None else SqlTimeseries(engine))
    app.state.metrics = service.metrics if service is not None else Metrics()
    # Without a running service (API-only process), alert changes still queue events for the same channels.
    app.state.alert_manager = service.alert_manager if service is not None else AlertManager.from_settings(settings)
    app.state.login_limiter = LoginLimiter(
        engine,
        settings.login_max_failures,
        settings.login_window_s,
        backoff_max_s=settings.login_backoff_max_s,
        per_address=settings.login_max_failures_per_address,
        global_failures=settings.login_max_failures_global,
    )
    app.state.trusted_proxies = trusted_networks(settings.trusted_proxies)
    metrics: Metrics = app.state.metrics
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        on_refusal=lambda reason: metrics.request_bodies_refused.labels(reason=reason).inc(),
    )
    app.add_middleware(RefuseNul)
    app.add_middleware(AccessHeader)
    problems.install(app)
    redact_access_logs()
    for module in (health, auth, elders, readings, alerts, thresholds, backtest, away, devices, audit):
        app.include_router(module.router)
    app.include_router(dead_letters.router)
    app.include_router(deliveries.router)
    app.include_router(reports.router)
    app.include_router(users.router)
    app.include_router(users.tokens_router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")  # public: the page holds no data
    docs.install(app)
    _document_problems(app)
    return app


def _document_problems(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = problems.problem_media_types(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
