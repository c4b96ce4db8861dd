"""Migrations: a fresh database upgrades to exactly the schema the code declares, and back down."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from store import MIGRATIONS, migrate
from store.schema import metadata


def test_migrations_match_the_declared_schema(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], f"schema.py and the migrations disagree; add a migration: {diff}"


def test_downgrade_to_base_and_up_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from alembic.config import Config

    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert "alerts" in inspect(engine).get_table_names()


def test_two_workers_starting_together_on_a_new_postgresql_store_both_start(postgres_server) -> None:  # type: ignore[no-untyped-def]
    """Every worker migrates its store at start. Two started together on a new (or not yet upgraded) PostgreSQL
    store each found the tables missing and created them: the later one died at start on DuplicateTable.
    Here both are held at their first CREATE by a table the test creates and rolls back once both wait there."""
    import subprocess
    import sys

    from sqlalchemy import text

    from tests.conftest import REPO, wait_until
    from tests.helpers import this_tree

    url = postgres_server.new_database()
    blocker = create_engine(url)
    code = "import sys; from store import open_store; open_store(sys.argv[1]).dispose()"
    with blocker.connect() as conn:
        hold = conn.begin()
        conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)"))
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", code, url], cwd=REPO, env=this_tree(), stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = :db")

        def both_wait() -> bool:
            with blocker.connect() as watch:  # a new transaction each time: it sees the activity of now
                return watch.execute(waiting, {"db": make_url(url).database}).scalar_one() == 2

        assert wait_until(both_wait, timeout=60)
        hold.rollback()
    errors = [worker.communicate(timeout=60)[1] for worker in workers]
    blocker.dispose()
    assert [worker.returncode for worker in workers] == [0, 0], errors
    engine = create_engine(url)
    assert "alerts" in inspect(engine).get_table_names()
    engine.dispose()
