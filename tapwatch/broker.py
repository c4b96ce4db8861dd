"""The embedded MQTT broker for ``tapwatch demo`` (amqtt, in a thread of this process).

Production runs Mosquitto (see docker-compose.yml); this exists so the demo
needs nothing installed beyond Python packages.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import warnings
from typing import Any

log = logging.getLogger(__name__)

QUIET_PLUGINS = ("amqtt.broker.plugins.auth_file", "amqtt.broker.plugins.broker_sys")

#: The refusal of a broker port another process holds, in each TAPWATCH_LANGUAGE.
PORT_TAKEN = {
    "zh": "内置 MQTT 代理：{where} 已被占用（另一个代理正在运行？）：请在 TAPWATCH_MQTT_URL 中换一个空闲端口，"
    "或设置 TAPWATCH_EMBEDDED_BROKER=false 以使用该端口上的代理",
    "en": "embedded MQTT broker: {where} is taken (address already in use; another broker?): give TAPWATCH_MQTT_URL "
    "a free port, or set TAPWATCH_EMBEDDED_BROKER=false to use that broker",
}


class EmbeddedBroker:
    """Start with :meth:`start`, stop with :meth:`stop`; listens on 127.0.0.1 only."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 1883, overrides: dict[str, Any] | None = None, language: str = "zh"
    ) -> None:
        self.host = host
        self.port = port
        self.language = language  # of the refusal of a port taken (TAPWATCH_LANGUAGE)
        self.overrides = overrides or {}  # amqtt config sections replacing ours (tests: an ACL)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Listen, or raise OSError: the command line says an OSError in one line, where a RuntimeError was a
        traceback."""
        if port_in_use(self.host, self.port):  # asked first: amqtt logs a traceback of its own for a port taken
            words = PORT_TAKEN.get(self.language, PORT_TAKEN["en"])
            raise OSError(words.format(where=f"{self.host}:{self.port}"))
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("embedded MQTT broker did not start in time")
        if self._error is not None:
            raise OSError(f"embedded MQTT broker failed: {self._error}") from self._error

    def _run(self) -> None:
        from amqtt.broker import Broker  # imported here: only the demo needs it

        # amqtt loads every installed plugin, whatever the config names, and two of them warn at each start about
        # settings the demo leaves out on purpose (a password file; $SYS, off at interval 0): a newcomer's first
        # `make demo` read as misconfigured. Their errors still show.
        for plugin in QUIET_PLUGINS:
            logging.getLogger(plugin).setLevel(logging.ERROR)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
            **self.overrides,
        }
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self._broker = Broker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # report to start() instead of dying silently in a thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._broker.shutdown())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0
