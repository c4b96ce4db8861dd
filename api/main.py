"""Build the FastAPI app: routers, error format, and the store and service it serves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from api import dashboard, problems
from api.routes import alerts, elders, health
from tapwatch import __version__
from tapwatch.settings import Settings


def create_app(settings: Settings, engine: Engine, service: Any = None) -> FastAPI:
    """An app over ``engine``; ``service`` (a running monitor) adds readiness and metrics."""
    app = FastAPI(
        title="tapwatch",
        version=__version__,
        summary="Water-use monitor for elders who live alone: registry, alerts, operations.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.service = service
    problems.install(app)
    app.include_router(health.router)
    app.include_router(elders.router)
    app.include_router(alerts.router)
    app.include_router(dashboard.router)
    return app
