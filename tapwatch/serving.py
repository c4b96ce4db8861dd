"""Serve the API and dashboard with uvicorn until interrupted or terminated.

Shared by ``tapwatch run`` and ``tapwatch demo``; ``shutdown`` is the SIGTERM
handler :func:`tapwatch.cli.main` installs.
"""

from __future__ import annotations

import threading
from typing import Any

import uvicorn

from api.main import create_app
from core.settings import Settings
from tapwatch.service import Service


class Shutdown:
    """SIGTERM handling that never raises inside arbitrary code: it only asks the server to stop.

    uvicorn handles SIGTERM itself while it runs and then re-raises it to this handler; a
    SIGTERM during start-up is remembered and stops the server before it starts. Either way
    ``serve`` returns and the caller's clean-up (finish the batch, save state) runs.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.server: Any = None

    def __call__(self, _signum: int, _frame: object) -> None:
        self.requested.set()
        if self.server is not None:
            self.server.should_exit = True


shutdown = Shutdown()


def serve(settings: Settings, service: Service) -> None:
    """Serve the API (and dashboard) in this thread until interrupted or terminated."""
    app = create_app(settings, service.engine, service)
    config = uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="warning")
    server = uvicorn.Server(config)
    shutdown.server = server
    if shutdown.requested.is_set():  # SIGTERM came while starting: stop without serving
        return
    server.run()
