"""Shared fixtures: real Mosquitto on a free loopback port, a migrated SQLite store, a webhook receiver.

Nothing here is mocked: tests talk to real processes on 127.0.0.1. An autouse
fixture fails any test during which tapwatch logged an exception, so errors
swallowed in threads (paho callbacks, the outbox sender) cannot pass unseen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import MOSQUITTO, Mosquitto, free_port, wait_until

__all__ = ["MOSQUITTO", "REAL_DATA", "REPO", "Mosquitto", "free_port", "wait_until"]

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = REPO.parent / "shared" / "data" / "real-water" / "dev.csv.gz"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")
    broker = Mosquitto(_mkdir(tmp_path / "mosquitto"))
    broker.start()
    yield broker
    broker.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tapwatch.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[object]:
    from store import open_store

    eng = open_store(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def receiver() -> Iterator[object]:
    from alerts.receiver import WebhookReceiver

    rec = WebhookReceiver(secret=b"test-secret").start()
    yield rec
    rec.stop()


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.exists():
        pytest.skip(f"real meter data not found at {REAL_DATA} (it sits beside the repository in CI only)")
    return REAL_DATA


class _ExceptionLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.name.split(".")[0] in {
            "tapwatch",
            "ingest",
            "detect",
            "alerts",
            "api",
            "simulator",
        }:
            self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_log_exception(request: pytest.FixtureRequest) -> Iterator[None]:
    handler = _ExceptionLog()
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)
    if handler.records and "allow_log_exceptions" not in request.keywords:
        first = handler.records[0]
        trace = logging.Formatter().formatException(first.exc_info) if first.exc_info else ""
        pytest.fail(f"exception logged by {first.name}: {first.getMessage()}\n{trace}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_log_exceptions: the test expects tapwatch to log exceptions")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    from tests.pg_fixtures import PostgresServer, pg_bin

    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql)")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """The same test on both relational stores: one code path for SQLite and PostgreSQL."""
    from store import open_store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'any.db'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    eng = open_store(url)
    yield eng
    eng.dispose()
