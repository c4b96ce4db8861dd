"""Serve the API and dashboard with uvicorn until interrupted or terminated, and ``tapwatch run``.

Shared by ``tapwatch run`` (defined here) and ``tapwatch demo``; both stop on
:data:`tapwatch.shutdown.shutdown`, the SIGTERM handler :func:`tapwatch.cli.main` installs.
"""

from __future__ import annotations

import argparse
import errno
import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from api.main import create_app
from core import __version__
from core.settings import Settings, get_settings
from tapwatch.service import Service
from tapwatch.shutdown import shutdown


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server that calls ``on_listening`` once it accepts connections, and not before."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_listening()


#: The refusal of an API port another process holds, in each TAPWATCH_LANGUAGE.
PORT_TAKEN = {
    "zh": "API：{where} 已被占用（另一个 tapwatch 正在运行？）：请给 {named_by} 换一个空闲端口，或停止占用该端口的程序",
    "en": "API: {where} is taken (address already in use; another tapwatch?): give {named_by} a free port, "
    "or stop what listens there",
}


def bind_api(host: str, port: int, port_named_by: str = "TAPWATCH_API_PORT", language: str = "zh") -> socket.socket:
    """The API's socket, bound before anything starts; a port taken is an OSError naming it and the way out.

    ``port_named_by`` is what the user sets the port with (the demo's ``--port``); ``language`` is the
    refusal's (TAPWATCH_LANGUAGE, as the other refusals at start).

    Bound here, not by uvicorn: uvicorn's bind error comes after the monitor has started and said where it
    serves, and it exits 1 in a log line naming neither the setting nor the cure.
    """
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart reuses its port at once
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            words = PORT_TAKEN.get(language, PORT_TAKEN["en"])
            raise OSError(words.format(where=where, named_by=port_named_by)) from exc
        raise OSError(f"API: cannot listen on {where}: {exc.strerror}") from exc
    return listener


def serve(
    settings: Settings, service: Service, listener: socket.socket, on_listening: Callable[[], None] = lambda: None
) -> None:
    """Serve the API (and dashboard) on ``listener`` in this thread until interrupted or terminated.

    ``on_listening`` runs once connections are accepted: where the API is is said only when it is there.
    """
    app = create_app(settings, service.engine, service)
    server = _AnnouncingServer(api_server_config(app, settings), on_listening)
    shutdown.server = server
    try:
        if shutdown.requested.is_set():  # SIGTERM came while starting: stop without serving
            return
        server.run(sockets=[listener])
    finally:
        listener.close()


def api_server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for the API.

    ``proxy_headers`` off: uvicorn would otherwise believe ``X-Forwarded-For`` from
    loopback; the API reads it itself, from ``settings.trusted_proxies`` only
    (``api.security.client_address``).
    """
    return uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="warning", proxy_headers=False)


def cmd_run(args: argparse.Namespace) -> int:
    settings = get_settings()
    # Bound before anything starts: a port taken stops the command here, before it says where it serves.
    listener = bind_api(settings.api_host, settings.api_port, language=settings.language)
    try:
        service = Service(settings)
        service.start()
    except BaseException:
        listener.close()
        raise
    try:
        serve(settings, service, listener, lambda: _announce(settings, listener))
    finally:
        service.stop()
    return 0


def _announce(settings: Settings, listener: socket.socket) -> None:
    port = listener.getsockname()[1]  # the port bound: TAPWATCH_API_PORT=0 takes any free one
    print(f"tapwatch {__version__}: API and dashboard on http://{settings.api_host}:{port}/", flush=True)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="Run the monitor: ingest from MQTT, detect, alert, serve the API.",
        description="Run the monitor with the configured broker and store, and serve the API.",
    )
    p.set_defaults(func=cmd_run)
