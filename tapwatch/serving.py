"""Serve the API and dashboard with uvicorn until interrupted or terminated, and ``tapwatch run``.

Shared by ``tapwatch run`` (defined here) and ``tapwatch demo``; both stop on
:data:`tapwatch.shutdown.shutdown`, the SIGTERM handler :func:`tapwatch.cli.main` installs.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from api.main import create_app
from core import __version__
from core.settings import Settings, get_settings
from tapwatch.service import Service
from tapwatch.shutdown import shutdown


def serve(settings: Settings, service: Service) -> None:
    """Serve the API (and dashboard) in this thread until interrupted or terminated."""
    app = create_app(settings, service.engine, service)
    server = uvicorn.Server(api_server_config(app, settings))
    shutdown.server = server
    if shutdown.requested.is_set():  # SIGTERM came while starting: stop without serving
        return
    server.run()


def api_server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for the API.

    ``proxy_headers`` off: uvicorn would otherwise believe ``X-Forwarded-For`` from
    loopback; the API reads it itself, from ``settings.trusted_proxies`` only
    (``api.security.client_address``).
    """
    return uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="warning", proxy_headers=False)


def cmd_run(args: argparse.Namespace) -> int:
    settings = get_settings()
    service = Service(settings)
    service.start()
    print(
        f"tapwatch {__version__}: API and dashboard on http://{settings.api_host}:{settings.api_port}/",
        flush=True,
    )
    try:
        serve(settings, service)
    finally:
        service.stop()
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="Run the monitor: ingest from MQTT, detect, alert, serve the API.",
        description="Run the monitor with the configured broker and store, and serve the API.",
    )
    p.set_defaults(func=cmd_run)
