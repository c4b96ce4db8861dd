"""The demo's embedded broker starts without warnings that do not apply to it.

A newcomer's first `make demo` printed two amqtt WARNING lines (a password file and a $SYS interval the demo
never asked for) above the banner, which read like something was misconfigured.
"""

from __future__ import annotations

import logging

import pytest

from tapwatch.broker import EmbeddedBroker
from tests.processes import free_port


def test_the_embedded_broker_starts_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="amqtt")
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    try:
        warned = [r.getMessage() for r in caplog.records if r.name.startswith("amqtt") and r.levelno >= logging.WARNING]
        assert warned == []
    finally:
        broker.stop()
