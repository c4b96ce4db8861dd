"""deploy/backup/tapwatch-backup.sh against real SQLite and PostgreSQL stores, with real age keys.

Back up a filled store, check the file is encrypted, restore it into a fresh
database with the drill and compare every table's row count with the source;
a damaged backup and wrong recorded counts must make restore and drill fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from store import open_store
from store.schema import metadata
from tests.api_fixtures import raise_alert
from tests.conftest import REPO
from tests.helpers import register

SCRIPT = REPO / "deploy" / "backup" / "tapwatch-backup.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("age") is None or shutil.which("sqlite3") is None or shutil.which("pg_dump") is None,
    reason="needs Debian's age, sqlite3 and postgresql-client",
)


def _fill(engine: Engine) -> None:
    register(engine, "E1", "WM1")
    register(engine, "E2", "WM2", name="张\n建国")  # a newline inside a value: one row, not two
    register(engine, "E3", "WM3", community="曹家渡社区")
    raise_alert(engine, "WM1")


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in metadata.sorted_tables}


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    identity = tmp_path / "backup.key"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True).stdout
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(public)
    return {"BACKUP_AGE_RECIPIENTS": str(recipients), "BACKUP_AGE_IDENTITY": str(identity)}


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def fresh_target(any_engine: Engine, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if any_engine.dialect.name == "sqlite":
        return f"sqlite:///{tmp_path / 'restored' / 'tapwatch.db'}"
    return str(request.getfixturevalue("postgres_server").new_database())


def test_backup_is_encrypted_and_the_drill_restores_every_row(
    any_engine: Engine, fresh_target: str, keys: dict[str, str], tmp_path: Path
) -> None:
    _fill(any_engine)
    backups = tmp_path / "backups"
    accounts = tmp_path / "broker"
    accounts.mkdir()
    (accounts / "passwd").write_text("WM1:$7$101$c2FsdA==$aGFzaA==\n")
    env = {"BACKUP_DATABASE": _url(any_engine), "BACKUP_DIR": str(backups), "BACKUP_BROKER_DIR": str(accounts), **keys}
    done = _run("backup", **env)
    assert done.returncode == 0, done.stderr
    (backup,) = [*backups.glob("tapwatch-*.sqlite.age"), *backups.glob("tapwatch-*.pgdump.age")]
    (broker,) = backups.glob("tapwatch-*.broker.tar.age")
    plain = subprocess.run(
        ["age", "-d", "-i", keys["BACKUP_AGE_IDENTITY"], str(broker)], check=True, capture_output=True
    ).stdout
    assert b"WM1:$7$101$" in plain, "the meters' broker accounts are not in the backup"
    data = backup.read_bytes()
    assert data.startswith(b"age-encryption.org/v1")
    # Markers long enough that random ciphertext cannot hold them by chance (a 3-byte id did, about 1 run in 100).
    for plain in ("王秀兰".encode(), "曹家渡社区".encode(), b"SQLite format 3", b"PGDMP"):
        assert plain not in data, f"{plain!r} readable in the backup"
    assert backup.stat().st_mode & 0o077 == 0, "the backup is readable by other users"

    if fresh_target.startswith("sqlite"):
        Path(fresh_target.removeprefix("sqlite:///")).parent.mkdir()
    drill = _run("drill", **env, RESTORE_DATABASE=fresh_target)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert "drill passed" in drill.stdout
    restored = open_store(fresh_target)  # also proves the schema is at the newest revision, nothing to migrate
    try:
        counts = _counts(restored)
        assert counts == _counts(any_engine)
        assert counts["elders"] == 3 and counts["meters"] == 3 and counts["alerts"] == 1
    finally:
        restored.dispose()


def test_damaged_backup_and_wrong_counts_fail_loudly(
    any_engine: Engine, fresh_target: str, keys: dict[str, str], tmp_path: Path
) -> None:
    _fill(any_engine)
    backups = tmp_path / "backups"
    env = {"BACKUP_DATABASE": _url(any_engine), "BACKUP_DIR": str(backups), **keys}
    assert _run("backup", **env).returncode == 0
    (backup,) = backups.glob("tapwatch-*.age")
    if fresh_target.startswith("sqlite"):
        Path(fresh_target.removeprefix("sqlite:///")).parent.mkdir()

    damaged = tmp_path / backup.name
    data = bytearray(backup.read_bytes())
    data[-40] ^= 0x01
    damaged.write_bytes(bytes(data))
    restore = _run("restore", str(damaged), **env, RESTORE_DATABASE=fresh_target)
    assert restore.returncode != 0, "a damaged backup was restored"
    if fresh_target.startswith("sqlite"):
        assert not Path(fresh_target.removeprefix("sqlite:///")).exists()

    counts_file = backup.with_name(backup.name.split(".")[0] + ".counts")
    lines = counts_file.read_text().splitlines()
    assert "elders 3" in lines
    counts_file.write_text("\n".join("elders 4" if line == "elders 3" else line for line in lines) + "\n")
    drill = _run("drill", **env, RESTORE_DATABASE=fresh_target)
    assert drill.returncode != 0 and "drill FAILED" in drill.stderr


def test_backup_refuses_to_run_without_recipients(any_engine: Engine, tmp_path: Path) -> None:
    done = _run("backup", BACKUP_DATABASE=_url(any_engine), BACKUP_DIR=str(tmp_path / "b"), BACKUP_AGE_RECIPIENTS="")
    assert done.returncode != 0 and "BACKUP_AGE_RECIPIENTS" in done.stderr
    assert not list((tmp_path).glob("b/*.age")), "an unencrypted or empty backup was left behind"


def test_restore_and_drill_do_not_print_the_targets_password(
    postgres_server, keys: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """`restore` and `drill` ended with "restored FILE into ${target%%@*}...": for postgresql://user:PASSWORD@host
    that cut kept exactly the password, which went to the console and the journal of whoever ran the drill."""
    from sqlalchemy.engine import make_url

    source = open_store(postgres_server.new_database())
    try:
        _fill(source)
        env = {"BACKUP_DATABASE": _url(source), "BACKUP_DIR": str(tmp_path / "backups"), **keys}
        assert _run("backup", **env).returncode == 0
    finally:
        source.dispose()
    # trust authentication: the server takes any password, as a real one would take the right one
    target = make_url(postgres_server.new_database()).set(password="s3cr3t-drill").render_as_string(False)
    drill = _run("drill", **env, RESTORE_DATABASE=target)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert "drill passed" in drill.stdout and "restored" in drill.stdout
    assert "s3cr3t-drill" not in drill.stdout + drill.stderr


@pytest.mark.parametrize("among_parameters", [False, True])
@pytest.mark.parametrize("key_password", [False, True])
def test_the_database_password_is_never_on_a_command_line(
    postgres_server, keys: dict[str, str], tmp_path: Path, among_parameters: bool, key_password: bool
) -> None:  # type: ignore[no-untyped-def]
    """pg_dump, pg_restore and psql were run with `-d postgresql://user:PASSWORD@host/db`: for as long as the
    nightly backup or a drill ran, any local user could read the store's password in `ps` or /proc/PID/cmdline.
    The password now reaches libpq through PGPASSWORD. The client key's password (?sslpassword=..., which no
    libpq takes from the environment) stayed on the command line, and in the drill's "restored ... into" line.
    Each PostgreSQL tool is run through a recorder of its arguments placed first on PATH, which then runs the
    real tool."""
    from sqlalchemy.engine import make_url

    shims = tmp_path / "shims"
    shims.mkdir()
    argv_log = tmp_path / "argv.log"
    for tool in ("pg_dump", "pg_restore", "psql"):
        real = shutil.which(tool)
        assert real is not None
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "{tool} $*" >> "{argv_log}"\nexec "{real}" "$@"\n')
        shim.chmod(0o755)
    path = f"{shims}:{os.environ['PATH']}"

    def with_password(url: str, password: str) -> str:  # trust authentication: any password logs in
        parsed = make_url(url)
        if key_password:  # read only when a client key is: there is none here, so any value connects
            parsed = parsed.update_query_dict({"sslpassword": f"{password}-key"})
        if among_parameters:  # libpq's own form (?password=...), which tapwatch's URL takes too: it was left there
            return parsed.update_query_dict({"password": password}).render_as_string(False)
        return parsed.set(password=password).render_as_string(False)

    source = open_store(postgres_server.new_database())
    try:
        _fill(source)
        database = with_password(_url(source), "s3cr3t/backup%")
    finally:
        source.dispose()
    env = {"BACKUP_DATABASE": database, "BACKUP_DIR": str(tmp_path / "backups"), "PATH": path, **keys}
    done = _run("backup", **env)
    assert done.returncode == 0, done.stderr
    target = with_password(postgres_server.new_database(), "s3cr3t-drill")
    drill = _run("drill", **env, RESTORE_DATABASE=target)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert "drill passed" in drill.stdout
    recorded = argv_log.read_text()
    assert "pg_dump " in recorded and "pg_restore " in recorded and "psql " in recorded
    assert "s3cr3t" not in recorded, recorded
    assert "s3cr3t" not in done.stdout + done.stderr + drill.stdout + drill.stderr


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def ssl_postgres(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A PostgreSQL server of its own that speaks TLS (the session's does not): its certificate made here."""
    from tests.conftest import wait_until
    from tests.pg_fixtures import PostgresServer, pg_bin

    if pg_bin() is None or shutil.which("openssl") is None:
        pytest.skip("needs Debian's postgresql and openssl")
    server = PostgresServer().start()
    try:
        crt, key = server.root / "server.crt", server.root / "server.key"
        _openssl(
            *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(crt)),
        )
        key.chmod(0o600)
        if os.geteuid() == 0:  # the server runs as postgres, and reads its key only if it owns it
            for path in (crt, key):
                shutil.chown(path, "postgres", "postgres")
        import psycopg

        admin = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET ssl_cert_file = '{crt}'")
            conn.execute(f"ALTER SYSTEM SET ssl_key_file = '{key}'")
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute("SELECT pg_reload_conf()")

        def speaks_tls() -> bool:
            try:
                with psycopg.connect(f"{admin} sslmode=require"):
                    return True
            except psycopg.OperationalError:
                return False

        assert wait_until(speaks_tls, 30), "the server did not take TLS"
        yield server
    finally:
        server.stop()


def test_an_encrypted_client_keys_password_reaches_libpq(ssl_postgres, keys: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A store reached with a client certificate whose key is encrypted (?sslcert=...&sslkey=...&sslpassword=...)
    backs up with the key's password kept off the command line: libpq has no environment variable for it, and it
    reaches pg_dump and psql all the same. Without it libpq cannot read the key, so the backup fails."""
    from sqlalchemy.engine import make_url

    client_key, client_crt = tmp_path / "client.key", tmp_path / "client.crt"
    _openssl(
        *("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256"),
        *("-pass", "pass:s3cr3t key", "-out", str(client_key)),
    )
    _openssl(
        *("req", "-new", "-x509", "-days", "1", "-subj", "/CN=postgres", "-key", str(client_key)),
        *("-passin", "pass:s3cr3t key", "-out", str(client_crt)),
    )
    client_key.chmod(0o600)  # libpq refuses a key others may read
    source = open_store(ssl_postgres.new_database())
    try:
        _fill(source)
        tls = {"sslmode": "require", "sslcert": str(client_crt), "sslkey": str(client_key)}
        url = make_url(_url(source)).update_query_dict(tls)
    finally:
        source.dispose()
    env = {"BACKUP_DIR": str(tmp_path / "backups"), **keys}
    without = _run("backup", **env, BACKUP_DATABASE=url.render_as_string(False))
    assert without.returncode != 0, "the key was read without its password: this test tests nothing"
    with_key_password = url.update_query_dict({"sslpassword": "s3cr3t key"}).render_as_string(False)
    done = _run("backup", **env, BACKUP_DATABASE=with_key_password)
    assert done.returncode == 0, done.stderr
    drill = _run(
        "drill",
        **env,
        RESTORE_DATABASE=make_url(ssl_postgres.new_database())
        .update_query_dict({**tls, "sslpassword": "s3cr3t key"})
        .render_as_string(False),
    )
    assert drill.returncode == 0 and "drill passed" in drill.stdout, drill.stdout + drill.stderr


@pytest.mark.parametrize("password", ["100%sure-tw", "ab%2g-tw!", "p%40ss\\x41%25"])
def test_the_password_libpq_gets_is_the_one_tapwatch_logs_in_with(
    postgres_server, keys: dict[str, str], tmp_path: Path, password: str
) -> None:  # type: ignore[no-untyped-def]
    """BACKUP_DATABASE takes TAPWATCH_DATABASE_URL's form, whose password SQLAlchemy percent-decodes only where
    a % starts a valid escape ("100%sure" is itself). The script turned every % into a \\x escape, so such a
    password reached libpq mangled ("100\\xsure", or a control character) and the nightly backup failed to log
    in with the password the monitor uses. Each tool is run through a recorder of the PGPASSWORD it was given."""
    from sqlalchemy.engine import make_url

    shims = tmp_path / "shims"
    shims.mkdir()
    seen = tmp_path / "pgpassword.log"
    for tool in ("pg_dump", "pg_restore", "psql"):
        real = shutil.which(tool)
        assert real is not None
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$PGPASSWORD" >> "{seen}"\nexec "{real}" "$@"\n')
        shim.chmod(0o755)
    source = open_store(postgres_server.new_database())
    try:
        _fill(source)
        url = _url(source).replace("@", f":{password}@", 1)  # as an operator writes it: not percent-encoded
    finally:
        source.dispose()
    env = {"BACKUP_DATABASE": url, "BACKUP_DIR": str(tmp_path / "backups"), "PATH": f"{shims}:{os.environ['PATH']}"}
    done = _run("backup", **env, **keys)  # trust authentication: any password logs in
    assert done.returncode == 0, done.stderr
    given = {line for line in seen.read_text().splitlines() if line}  # pg_restore to a script needs none
    assert given == {make_url(url).password}


def test_a_backup_from_before_an_upgrade_restores_over_the_live_store_and_it_starts(
    postgres_server, keys: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Restoring for real replaces the live database, but `pg_restore --clean` drops only the tables in the dump:
    last night's backup, taken before today's upgrade, left the tables the upgrade had created (with today's
    rows) beside its older alembic_version, and tapwatch then died at start creating them again (DuplicateTable):
    the store could not be brought back to the night before."""
    from alembic import command
    from alembic.config import Config

    from store import MIGRATIONS

    source = open_store(postgres_server.new_database())
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        _fill(source)  # by today's code, then taken down: today's code writes columns an older store lacks
        with source.begin() as conn:  # the store as it was before the upgrade that added the login limits (0009)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0008")
        env = {"BACKUP_DATABASE": _url(source), "BACKUP_DIR": str(tmp_path / "backups"), **keys}
        assert _run("backup", **env).returncode == 0
    finally:
        source.dispose()
    live = open_store(postgres_server.new_database())  # upgraded since, with rows of its own
    register(live, "E9", "WM9")
    (backup,) = (tmp_path / "backups").glob("tapwatch-*.pgdump.age")
    restore = _run("restore", str(backup), **env, RESTORE_DATABASE=_url(live))
    live.dispose()
    assert restore.returncode == 0, restore.stderr
    restored = open_store(_url(live))  # tapwatch starts: the migrations bring the restored store up to date
    try:
        counts = _counts(restored)
        assert counts["elders"] == 3 and counts["meters"] == 3 and counts["alerts"] == 1
    finally:
        restored.dispose()


def test_a_sqlite_store_that_is_not_there_is_refused_not_backed_up_empty(keys: dict[str, str], tmp_path: Path) -> None:
    """sqlite3 creates the database it is asked to open: a BACKUP_DATABASE naming no store (a typo, or the
    relative sqlite:///var/tapwatch.db of a .env, read from the unit's working directory) made an empty file
    there and backed it up every night, "backup: ..." and a drill that passed with 0 tables."""
    missing = tmp_path / "lib" / "tapwatch.db"
    missing.parent.mkdir()
    env = {"BACKUP_DATABASE": f"sqlite:///{missing}", "BACKUP_DIR": str(tmp_path / "backups"), **keys}
    done = _run("backup", **env)
    assert done.returncode != 0 and str(missing) in done.stderr, done.stdout + done.stderr
    assert not missing.exists(), "an empty store was made where none was"
    assert not list(tmp_path.glob("backups/*.age"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the documented restore runs as root (sudo); only root can chown")
def test_a_sqlite_store_restored_as_root_belongs_to_the_owner_of_its_directory(
    keys: dict[str, str], tmp_path: Path
) -> None:
    """Restored with sudo, as docs/deploy.md shows, the SQLite file was root's with mode 0600 (the script's
    umask): tapwatch, running as its own user, could not open the store it was to start on until someone
    found the chown to make. The restored file now takes the owner of the directory it goes into."""
    source = open_store(f"sqlite:///{tmp_path / 'live.db'}")
    _fill(source)
    source.dispose()
    backups = tmp_path / "backups"
    assert (
        _run("backup", BACKUP_DATABASE=f"sqlite:///{tmp_path / 'live.db'}", BACKUP_DIR=str(backups), **keys).returncode
        == 0
    )
    (backup,) = backups.glob("tapwatch-*.sqlite.age")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chown(data_dir, 10001, 10001)  # the tapwatch user of the image, or a district's own service user
    target = data_dir / "tapwatch.db"
    done = _run("restore", str(backup), RESTORE_DATABASE=f"sqlite:///{target}", **keys)
    assert done.returncode == 0, done.stderr
    assert (target.stat().st_uid, target.stat().st_gid) == (10001, 10001)
    assert target.stat().st_mode & 0o077 == 0, "the restored store is readable by other users"


#: A stand-in for ``docker compose -f .../docker-compose.yml`` (no Docker engine runs here), as far as the script
#: uses it: ``exec`` in the postgres container runs the pg tool here, on the test's server, and ``exec`` in a
#: service that is not running fails as compose does; ``run`` starts a container of a stopped service, with its
#: volumes (the broker accounts' volume is $BROKER_VOLUME here).
STAND_IN_COMPOSE = r"""#!/bin/bash
set -euo pipefail
verb=$1; shift
[ "${1:-}" = --rm ] && shift
[ "${1:-}" = --no-deps ] && shift
[ "$1" = -T ] && shift
entrypoint=
if [ "$1" = --entrypoint ]; then entrypoint=$2; shift 2; fi
service=$1; shift
case "$verb $service" in
  "exec postgres")
    tool=$1; shift
    if [ "${1:-}" = -U ]; then shift 2; fi
    if [ "${1:-}" = -d ]; then shift 2; exec "$tool" -d "$STAND_IN_DATABASE" "$@"; fi
    exec "$tool" "$@" ;;
  "exec tapwatch")
    echo "service \"tapwatch\" is not running" >&2; exit 1 ;;
  "run tapwatch")
    args=("$@")
    exec "$entrypoint" "${args[@]//\/var\/lib\/tapwatch-broker/$BROKER_VOLUME}" ;;
esac
echo "stand-in compose: $verb $service not known" >&2
exit 2
"""


def test_a_compose_backup_saves_the_broker_accounts_while_tapwatch_is_stopped(
    postgres_server: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    """In compose mode the broker accounts were read with ``exec`` in the tapwatch container: stopped (an
    upgrade under way, a crash loop), the backup failed after the store's dump, saving no accounts and pruning
    no old backups, and the timer reported a failed night."""
    url = postgres_server.new_database()
    engine = open_store(url)
    _fill(engine)
    engine.dispose()
    compose = tmp_path / "compose"
    compose.write_text(STAND_IN_COMPOSE)
    compose.chmod(0o755)
    volume = tmp_path / "broker-volume"
    volume.mkdir()
    (volume / "passwd").write_text("WM1:$7$101$c2FsdA==$aGFzaA==\n")
    backups = tmp_path / "backups"
    database = url.replace("postgresql+psycopg://", "postgresql://")
    env = {"BACKUP_COMPOSE": str(compose), "BACKUP_DIR": str(backups), "STAND_IN_DATABASE": database, **keys}
    done = _run("backup", **env, BROKER_VOLUME=str(volume))
    assert done.returncode == 0, done.stderr
    (broker,) = backups.glob("tapwatch-*.broker.tar.age")
    plain = subprocess.run(
        ["age", "-d", "-i", keys["BACKUP_AGE_IDENTITY"], str(broker)], check=True, capture_output=True
    ).stdout
    assert b"WM1:$7$101$" in plain


@pytest.mark.parametrize("where", ["compose", "directory"])
def test_the_broker_accounts_are_restored_while_tapwatch_is_stopped(
    where: str, keys: dict[str, str], tmp_path: Path
) -> None:
    """docs/deploy.md had the broker accounts written back with ``compose exec`` into the tapwatch container, which
    a restore stops first: "service tapwatch is not running", and every meter locked out of the broker. The
    script restores them where the backup read them (``compose run`` with the service's volume, or the directory)."""
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "passwd").write_text("WM1:$7$101$c2FsdA==$aGFzaA==\n")
    (saved / "acl").write_text("user WM1\ntopic write tapwatch/meters/WM1/readings\n")
    tarball, backup = tmp_path / "broker.tar", tmp_path / "tapwatch-20261206T183000Z.broker.tar.age"
    subprocess.run(["tar", "-C", str(saved), "-cf", str(tarball), "."], check=True)
    subprocess.run(["age", "-R", keys["BACKUP_AGE_RECIPIENTS"], "-o", str(backup), str(tarball)], check=True)
    volume = tmp_path / "broker-volume"  # the volume of a server rebuilt from the backups: empty
    volume.mkdir()
    if where == "compose":
        compose = tmp_path / "compose"
        compose.write_text(STAND_IN_COMPOSE)
        compose.chmod(0o755)
        place = {"BACKUP_COMPOSE": str(compose), "BROKER_VOLUME": str(volume)}
    else:
        place = {"BACKUP_BROKER_DIR": str(volume)}
    done = _run("restore", str(backup), **place, BACKUP_AGE_IDENTITY=keys["BACKUP_AGE_IDENTITY"])
    assert done.returncode == 0, done.stderr
    assert {p.name: p.read_text() for p in volume.iterdir()} == {p.name: p.read_text() for p in saved.iterdir()}
