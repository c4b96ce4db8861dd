"""The console script: every subcommand answers --help."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from tapwatch.cli import build_parser
from tests.conftest import REPO, free_port
from tests.helpers import this_tree


def _commands() -> list[str]:
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


def test_expected_commands_exist() -> None:
    assert {"run", "demo", "simulate", "replay", "eval", "migrate", "register"} <= set(_commands())


def test_a_subprocess_runs_the_tapwatch_of_the_tree_under_test(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Given an environment of its own, a tapwatch process imported the tree the venv's editable install points to:
    run from a git worktree, the subprocess tests tested another tree's code than the one they were run in."""
    env = this_tree({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    code = "import tapwatch.cli; print(tapwatch.cli.__file__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(REPO), (done.stdout, REPO)


@pytest.mark.parametrize("command", _commands())
def test_help(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tapwatch.cli", command, "--help"], capture_output=True, text=True, env=this_tree()
    )
    assert done.returncode == 0, done.stderr
    assert "usage: tapwatch" in done.stdout


def test_register_and_migrate(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from tapwatch.cli import main

    monkeypatch.setenv("TAPWATCH_DATA_DIR", str(tmp_path))
    elders = [{"elder_id": "E1", "meter_id": "M1", "name": "赵", "community": "C1"}]
    (tmp_path / "elders.json").write_text(json.dumps(elders, ensure_ascii=False))
    assert main(["migrate"]) == 0
    assert main(["register", str(tmp_path / "elders.json")]) == 0
    assert main(["register", str(tmp_path / "elders.json")]) == 0
    assert "registered 0 elders, updated 0, 1 unchanged, 0 refused" in capsys.readouterr().out


def test_user_commands_refuse_to_create_a_store_nobody_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch user create` against a data dir without a store says where it looked, instead of making one."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path / "nowhere"), "HOME": str(tmp_path)})

    def tapwatch(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tapwatch.cli", *args]
        return subprocess.run(
            command, input="a long passphrase\n", capture_output=True, text=True, env=env, cwd=tmp_path
        )

    refused = tapwatch("user", "create", "wang.op", "--role", "operator", "--password-stdin")
    assert refused.returncode == 1
    assert "TAPWATCH_DATA_DIR" in refused.stderr and "tapwatch migrate" in refused.stderr
    assert not (tmp_path / "nowhere" / "tapwatch.db").exists()
    migrated = tapwatch("migrate")
    assert migrated.returncode == 0, migrated.stderr
    new_community = ("--community", "大宁社区", "--allow-new-community")  # a fresh store: no elder yet
    made = tapwatch("user", "create", "wang.op", "--role", "operator", *new_community, "--password-stdin")
    assert made.returncode == 0, made.stderr


def test_broker_credentials_refuse_a_store_nobody_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run against a data dir without a store, broker-credentials made an empty one and rewrote passwd without
    a single meter: every meter's broker account was gone at the next reload, and their readings with it."""
    import json

    elders = [{"elder_id": "E1", "meter_id": "M1", "name": "赵", "community": "C1"}]
    (tmp_path / "elders.json").write_text(json.dumps(elders, ensure_ascii=False))
    broker = tmp_path / "broker"

    def tapwatch(data_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path / data_dir), "HOME": str(tmp_path)})
        command = [sys.executable, "-m", "tapwatch.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)

    for args in (("migrate",), ("register", "elders.json"), ("broker-credentials", "--out", str(broker))):
        done = tapwatch("var", *args)
        assert done.returncode == 0, done.stderr
    written = (broker / "passwd").read_text()
    assert written.startswith("M1:")

    refused = tapwatch("nowhere", "broker-credentials", "--out", str(broker))
    assert refused.returncode == 1
    assert "TAPWATCH_DATA_DIR" in refused.stderr and "tapwatch migrate" in refused.stderr
    assert (broker / "passwd").read_text() == written
    assert not (tmp_path / "nowhere" / "tapwatch.db").exists()


def test_report_refuses_a_store_nobody_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch report` with the wrong data dir made an empty store and said "no community to show": a district
    read that as no cases at all, instead of being told the store it asked about does not exist."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path / "nowhere"), "HOME": str(tmp_path)})
    command = [sys.executable, "-m", "tapwatch.cli", "report"]
    refused = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout
    assert "TAPWATCH_DATA_DIR" in refused.stderr and "tapwatch migrate" in refused.stderr
    assert not (tmp_path / "nowhere" / "tapwatch.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "."),  # a directory where a readings CSV was meant
        ("simulate", "--elders", "1", "--days", "1", "--out", "taken/out"),  # 'taken' is a file
    ],
)
def test_unusable_paths_are_a_clear_error(tmp_path, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """A path that exists but cannot be used gave a Python traceback; a missing one already gave one line."""
    (tmp_path / "taken").write_text("")
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path / "var"), "HOME": str(tmp_path)})
    command = [sys.executable, "-m", "tapwatch.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("tapwatch: error: [Errno"), done.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TAPWATCH_DINGTALK_COMMUNITY_ROBOTS", '["https://oapi.dingtalk.com/robot/send?access_token=s3cr3t-token"]'),
        ("TAPWATCH_MQTT_URL", "http://tapwatch:s3cr3t-token@broker:1883"),
    ],
)
def test_bad_settings_are_named_without_their_values(tmp_path, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    """A wrongly written setting printed pydantic's report, which quotes the value whole: a robot's access token
    or the broker password went to the console and the service's log. The variable is named, its value is not."""
    env = this_tree(
        {"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path / "var"), "HOME": str(tmp_path), name: value}
    )
    command = [sys.executable, "-m", "tapwatch.cli", "report"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "s3cr3t-token" not in done.stdout + done.stderr
    assert name in done.stderr, done.stderr


def test_a_mistyped_time_zone_is_refused_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """TAPWATCH_TIMEZONE=Asia/Urumqi mistyped was taken as given: `tapwatch report` died in a traceback, and the
    monitor read every elder registered without a zone in Shanghai time, silently. It is refused by name."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    for args in (["migrate"], ["report"]):
        done = subprocess.run(
            [sys.executable, "-m", "tapwatch.cli", *args],
            capture_output=True,
            text=True,
            env={**env, "TAPWATCH_TIMEZONE": "Asia/Urumchi"} if args == ["report"] else env,
            cwd=tmp_path,
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "TAPWATCH_TIMEZONE" in done.stderr and "Asia/Urumchi" in done.stderr


@pytest.mark.parametrize("days", ["nan", "inf", "1e9"])
def test_token_days_must_be_a_real_lifetime(tmp_path, days: str) -> None:  # type: ignore[no-untyped-def]
    """`token create --days nan` made a key that never expires (SQLite stores NaN as NULL, 'no expiry') while
    saying "valid nan days"; --days 1e9 made `token list` fail for every key until it was revoked by an id
    only that list shows."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})

    def tapwatch(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tapwatch.cli", *args]
        return subprocess.run(command, input="", capture_output=True, text=True, env=env, cwd=tmp_path)

    for args in (("migrate",), ("user", "create", "grid.platform", "--role", "platform", "--community", "*")):
        assert tapwatch(*args).returncode == 0
    refused = tapwatch("token", "create", "grid.platform", "--days", days)
    assert refused.returncode == 2
    assert "--days" in refused.stderr and "Traceback" not in refused.stderr
    listed = tapwatch("token", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("\n") == 1  # the heading only: no key was made


def test_token_list_shows_its_times_in_the_configured_zone(tmp_path: Path) -> None:
    """`token list` wrote created, expires and last used in UTC ("2026-12-07T19:29Z", a key made at 03:29 on the
    8th in Shanghai) where every other time an operator reads (the dashboard, `tapwatch report`) is in
    TAPWATCH_TIMEZONE; they are in that zone, with its offset."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from store import open_store
    from store.users import list_tokens

    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    env["TAPWATCH_TIMEZONE"] = "Asia/Shanghai"

    def tapwatch(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tapwatch.cli", *args]
        return subprocess.run(command, input="", capture_output=True, text=True, env=env, cwd=tmp_path)

    for args in (("migrate",), ("user", "create", "grid.platform", "--role", "platform", "--community", "*")):
        assert tapwatch(*args).returncode == 0
    assert tapwatch("token", "create", "grid.platform", "--days", "30").returncode == 0
    listed = tapwatch("token", "list")
    assert listed.returncode == 0, listed.stderr
    created, expires = listed.stdout.splitlines()[1].split("\t")[4:6]
    engine = open_store(f"sqlite:///{tmp_path / 'tapwatch.db'}")
    with engine.connect() as conn:
        (stored,) = list_tokens(conn, username=None, now=0.0)
    engine.dispose()
    shanghai = ZoneInfo("Asia/Shanghai")
    for shown, at in ((created, stored["created_at"]), (expires, stored["expires_at"])):
        assert shown == datetime.fromtimestamp(at, shanghai).isoformat(timespec="minutes"), listed.stdout


def _tapwatch_in(tmp_path, data_dir: str, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path / data_dir), "HOME": str(tmp_path)})
    command = [sys.executable, "-m", "tapwatch.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)


def test_purge_refuses_a_store_nobody_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch purge` with the wrong data dir made an empty store and said "purged 0 readings": the operator
    read that as nothing past retention, while the real store's old readings and personal data stayed."""
    refused = _tapwatch_in(tmp_path, "nowhere", "purge")
    assert refused.returncode == 1, refused.stdout
    assert str(tmp_path / "nowhere" / "tapwatch.db") in refused.stderr and "TAPWATCH_DATA_DIR" in refused.stderr
    assert "purged" not in refused.stdout
    assert not (tmp_path / "nowhere" / "tapwatch.db").exists()


def test_register_refuses_a_missing_store_unless_asked_to_create_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch register` with the wrong data dir registered the elders into a new, empty store nobody runs and
    said "registered 1 elders": their meters were unknown to the monitor, and their readings dead-lettered.
    Registering before the first start is still possible, but only when asked for (--create-store)."""
    import json

    elders = [{"elder_id": "E1", "meter_id": "M1", "name": "赵", "community": "C1"}]
    (tmp_path / "elders.json").write_text(json.dumps(elders, ensure_ascii=False))
    refused = _tapwatch_in(tmp_path, "nowhere", "register", "elders.json")
    assert refused.returncode == 1, refused.stdout
    assert str(tmp_path / "nowhere" / "tapwatch.db") in refused.stderr and "--create-store" in refused.stderr
    assert "registered" not in refused.stdout
    assert not (tmp_path / "nowhere" / "tapwatch.db").exists()

    made = _tapwatch_in(tmp_path, "first-start", "register", "--create-store", "elders.json")
    assert made.returncode == 0, made.stderr
    assert "registered 1 elders" in made.stdout
    again = _tapwatch_in(tmp_path, "first-start", "register", "elders.json")  # the store exists now
    assert again.returncode == 0, again.stderr
    assert "1 unchanged" in again.stdout


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_register_reads_an_elders_file_windows_wrote(tmp_path, encoding: str) -> None:  # type: ignore[no-untyped-def]
    """An elders.json edited in Windows Notepad (UTF-8 with a byte order mark) was refused whole ("Unexpected UTF-8
    BOM"), and one Windows PowerShell 5 wrote (`ConvertTo-Json ... > elders.json`, Notepad's "Unicode": UTF-16
    behind its byte order mark) too ("'utf-8' codec can't decode byte 0xff"): nobody was registered."""
    import json

    elders = [{"elder_id": "E1", "meter_id": "M1", "name": "赵", "community": "C1"}]
    (tmp_path / "elders.json").write_text(json.dumps(elders, ensure_ascii=False), encoding=encoding)
    done = _tapwatch_in(tmp_path, "store", "register", "--create-store", "elders.json")
    assert done.returncode == 0, done.stderr
    assert "registered 1 elders" in done.stdout


def test_register_names_an_elders_file_in_a_legacy_encoding_as_such(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file saved as GBK (Notepad's "ANSI" on a Chinese Windows) was refused with Python's codec error, which
    tells an operator neither what is wrong nor what to do: it says the file is not UTF-8 and to save it so."""
    import json

    elders = [{"elder_id": "E1", "meter_id": "M1", "name": "赵", "community": "C1"}]
    (tmp_path / "elders.json").write_text(json.dumps(elders, ensure_ascii=False), encoding="gbk")
    done = _tapwatch_in(tmp_path, "store", "register", "--create-store", "elders.json")
    assert done.returncode == 2, done.stderr
    assert "codec" not in done.stderr and "UTF-8" in done.stderr, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("migrate",),
        ("purge",),
        ("report",),
        ("user", "list"),
        ("register", "elders.json"),
        ("broker-credentials", "--out", "broker"),
        ("run",),
    ],
)
def test_an_unreachable_postgresql_store_is_one_line_naming_where(tmp_path, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """A PostgreSQL store that could not be reached ended every command in a Python traceback of SQLAlchemy's
    and psycopg's internals; the operator needs where it looked (host and port, never the password) and a
    non-zero exit, in one line."""
    (tmp_path / "elders.json").write_text("[]")
    port = free_port()  # nothing listens there
    env = this_tree(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TAPWATCH_DATABASE_URL": f"postgresql+psycopg://tapwatch:s3cr3t-pg@127.0.0.1:{port}/tapwatch",
            "TAPWATCH_API_PORT": str(free_port()),  # `run` binds it first: 8000 may be another's
        }
    )
    command = [sys.executable, "-m", "tapwatch.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("tapwatch: error:") and done.stderr.count("\n") == 1, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "s3cr3t-pg" not in done.stdout + done.stderr


def test_the_demo_names_its_own_store_when_it_cannot_use_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The demo runs on its own SQLite under --data-dir, but a store it could not open was reported as the
    settings' store: in a deployment's checkout the district's PostgreSQL host, which was never touched, and the
    operator went looking there."""
    (tmp_path / "demo" / "tapwatch.db").mkdir(parents=True)  # a directory where the database file should be
    env = this_tree(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TAPWATCH_DATABASE_URL": "postgresql+psycopg://tapwatch:s3cr3t-pg@192.0.2.7:5433/tapwatch",
        }
    )
    args = ["demo", "--keep", "--data-dir", "demo", "--port", str(free_port()), "--mqtt-port", str(free_port())]
    command = [sys.executable, "-m", "tapwatch.cli", *args, "--exit-after", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("tapwatch: error: cannot use the store at demo/tapwatch.db:"), done.stderr
    assert "192.0.2.7" not in done.stderr and "s3cr3t-pg" not in done.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        *[(("simulate", "--speed", bad), "--speed") for bad in ("nan", "inf", "-1")],
        *[(("simulate", "--history-days", bad), "--history-days") for bad in ("nan", "inf", "-1")],
        *[(("replay", "r.csv", "--visit-delay-h", bad), "--visit-delay-h") for bad in ("nan", "inf", "-1")],
        *[(("eval", "--visit-delay-h", bad), "--visit-delay-h") for bad in ("nan", "inf", "-1")],
        *[(("demo", "--speed", bad), "--speed") for bad in ("nan", "inf", "-1", "0")],
        *[(("demo", "--exit-after", bad), "--exit-after") for bad in ("nan", "inf", "-1")],
        (("simulate", "--speed", "fast"), "--speed"),
    ],
)
def test_float_options_refuse_what_is_not_a_usable_number(capsys, args: tuple[str, ...], option: str) -> None:  # type: ignore[no-untyped-def]
    """`simulate --speed nan` published as fast as it could, `replay --visit-delay-h nan` taught no outcome,
    `demo --speed 0` died dividing by zero in its feeder, `demo --exit-after nan` never stopped: each was taken
    quietly. They are usage errors, as argparse reports them (exit 2, naming the option)."""
    parser = build_parser(load=(args[0],))
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(list(args))
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "args",
    [
        ("simulate", "--speed", "0", "--history-days", "0"),  # 0: as fast as possible; no history first
        ("replay", "r.csv", "--visit-delay-h", "0"),
        ("eval", "--visit-delay-h", "2.5"),
        ("demo", "--speed", "3600", "--exit-after", "0"),  # 0: run until Ctrl-C
    ],
)
def test_float_options_still_take_their_documented_values(args: tuple[str, ...]) -> None:
    parser = build_parser(load=(args[0],))
    parsed = parser.parse_args(list(args))
    assert all(isinstance(v, float) for k, v in vars(parsed).items() if k in {"speed", "history_days", "exit_after"})


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_upgrade_and_rollback_commands_of_docs_deploy_run_on_a_store_of_an_older_revision(  # type: ignore[no-untyped-def]
    tmp_path, request, store
) -> None:
    """docs/deploy.md, Upgrade: `tapwatch migrate` brings a store of an older release to the newest revision with
    its data steps (0017's here), and `tapwatch migrate --to REVISION` takes it back to the release before. There was
    no way back but restoring the backup (every alert, acknowledgement and registration since lost): the downgrades
    existed, no command ran them. A revision it does not know, or a downgrade that cannot go back, is one line."""
    from alembic import command
    from sqlalchemy import text

    from store import alembic_config, create_store_engine

    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if store == "sqlite"
        else request.getfixturevalue("postgres_server").new_database()
    )
    env = this_tree({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TAPWATCH_DATABASE_URL": url})

    def tapwatch(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tapwatch.cli", "migrate", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)

    engine = create_store_engine(url)
    cfg = alembic_config()
    with engine.begin() as conn:  # what the release of revision 0016 left: a safety net of 0 L
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0016")
        conn.execute(
            text(
                "INSERT INTO thresholds (scope, scope_id, name, value, updated_at, updated_by) "
                "VALUES ('global', '', 'ceiling_litres', 0, 0, 'wang.op')"
            )
        )

    def stored() -> tuple[str, float]:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            return revision, conn.execute(text("SELECT value FROM thresholds")).scalar_one()

    head = ScriptDirectory.from_config(cfg).get_current_head()
    upgraded = tapwatch()
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"is up to date (schema revision {head}, was 0016)" in upgraded.stdout
    assert stored() == (head, 1.0)
    back = tapwatch("--to", "0016")
    assert back.returncode == 0, back.stderr
    assert f"schema at revision 0016 (was {head})" in back.stdout
    assert stored() == ("0016", 1.0)  # 1 L is a value the release before takes too
    unknown = tapwatch("--to", "0099")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == (
        f"tapwatch: error: no schema revision '0099' in this tapwatch: its revisions run from 0001 to {head}\n"
    )
    assert tapwatch().returncode == 0
    assert stored() == (head, 1.0)
    engine.dispose()


def test_migrate_does_not_print_the_database_password(tmp_path, postgres_server) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch migrate` (the upgrade step in docs/deploy.md) printed "database at postgresql+psycopg://tapwatch:
    PASSWORD@postgres:5432/tapwatch is up to date": the store's password went to the console and CI logs."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_server.new_database()).set(password="s3cr3t-pg")  # trust auth: any password logs in
    env = this_tree(
        {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TAPWATCH_DATABASE_URL": url.render_as_string(False)}
    )
    command = [sys.executable, "-m", "tapwatch.cli", "migrate"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout and f"127.0.0.1:{url.port}" in done.stdout
    assert "s3cr3t-pg" not in done.stdout + done.stderr


def test_migrate_does_not_print_a_database_password_given_as_a_parameter(tmp_path, postgres_server) -> None:  # type: ignore[no-untyped-def]
    """libpq's parameters may ride in the URL's query (`...tapwatch?password=...&sslmode=require`), which
    SQLAlchemy hands to the driver and does not hide: `tapwatch migrate` and the monitor's start line printed it."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_server.new_database()).update_query_dict({"password": "s3cr3t-pg", "sslmode": "disable"})
    env = this_tree(
        {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TAPWATCH_DATABASE_URL": url.render_as_string(False)}
    )
    command = [sys.executable, "-m", "tapwatch.cli", "migrate"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout and "sslmode=disable" in done.stdout, done.stdout
    assert "s3cr3t-pg" not in done.stdout + done.stderr


def test_the_monitors_start_line_does_not_log_a_database_password_given_as_a_parameter(  # type: ignore[no-untyped-def]
    tmp_path, postgres_server, mosquitto, caplog
) -> None:
    """The start line ("tapwatch started: broker ..., store ...") logged a libpq password of the URL's query."""
    import logging

    from sqlalchemy.engine import make_url

    from core.settings import get_settings
    from tapwatch.service import Service

    url = make_url(postgres_server.new_database()).update_query_dict({"password": "s3cr3t-pg"})
    caplog.set_level(logging.INFO)
    settings = get_settings(
        data_dir=tmp_path, database_url=url.render_as_string(False), mqtt_url=mosquitto.url, mqtt_client_id="pw-log"
    )
    service = Service(settings)
    service.start()
    service.stop()
    assert "tapwatch started" in caplog.text and "password=***" in caplog.text, caplog.text
    assert "s3cr3t-pg" not in caplog.text


#: The start of the one line a port taken at start is refused with, in each TAPWATCH_LANGUAGE (the webhook
#: secret's refusal is said in it too); the default is Chinese. Before, English whatever the setting.
PORT_TAKEN = {
    "zh": ("内置 MQTT 代理：127.0.0.1:{port} 已被占用", "API：127.0.0.1:{port} 已被占用"),
    "en": ("embedded MQTT broker: 127.0.0.1:{port} is taken", "API: 127.0.0.1:{port} is taken"),
}


@pytest.mark.parametrize("language", ["zh", "en"])
def test_an_embedded_broker_whose_port_is_taken_is_a_one_line_error(tmp_path, language: str) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch run` with TAPWATCH_EMBEDDED_BROKER=true on a port another process holds (a system mosquitto on
    1883) ended in a traceback of RuntimeError; it says so in one line, in TAPWATCH_LANGUAGE, and the exit
    status is not 0."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = this_tree(
            {
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path),
                "TAPWATCH_DATA_DIR": str(tmp_path),
                "TAPWATCH_EMBEDDED_BROKER": "true",
                "TAPWATCH_MQTT_URL": f"mqtt://127.0.0.1:{port}",
                "TAPWATCH_API_PORT": str(free_port()),
                "TAPWATCH_LANGUAGE": language,
            }
        )
        command = [sys.executable, "-m", "tapwatch.cli", "run"]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("tapwatch: error: " + PORT_TAKEN[language][0].format(port=port)), done.stderr
    assert "TAPWATCH_MQTT_URL" in error and "TAPWATCH_EMBEDDED_BROKER=false" in error


def _run_env(tmp_path: Path, api_port: int) -> dict[str, str]:
    """`tapwatch run` on its embedded broker (a free port) and SQLite under ``tmp_path``, the API on ``api_port``."""
    return this_tree(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TAPWATCH_DATA_DIR": str(tmp_path),
            "TAPWATCH_EMBEDDED_BROKER": "true",
            "TAPWATCH_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",
            "TAPWATCH_API_PORT": str(api_port),
        }
    )


@pytest.mark.parametrize("language", ["zh", "en"])
def test_an_api_port_that_is_taken_is_a_one_line_error_and_no_address_is_announced(tmp_path, language: str) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch run` printed "API and dashboard on http://127.0.0.1:PORT/" before it bound the port: with the
    port taken a user read an address that never served, then uvicorn's bind error and exit 1. The port is bound
    before anything starts; taken, it is one line naming it and the way out (in TAPWATCH_LANGUAGE), and no
    address is announced."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "tapwatch.cli", "run"]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_run_env(tmp_path, port) | {"TAPWATCH_LANGUAGE": language},
            cwd=tmp_path,
            timeout=120,
        )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "http://" not in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("tapwatch: error: " + PORT_TAKEN[language][1].format(port=port)), done.stderr
    assert "TAPWATCH_API_PORT" in error


def test_the_api_address_is_announced_once_it_serves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The announcement came before uvicorn had bound the port; a connection made on reading it is accepted."""
    import socket

    port = free_port()
    command = [sys.executable, "-m", "tapwatch.cli", "run"]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_run_env(tmp_path, port)
    )
    try:
        assert proc.stdout is not None
        announced = next((line for line in proc.stdout if "http://" in line), "")
        assert f"http://127.0.0.1:{port}/" in announced, announced
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # refused when the address came before the port was bound
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TAPWATCH_WEBHOOK_TIMEOUT_S", "nan"),  # every webhook, SMS and robot delivery failed in httpx
        ("TAPWATCH_WEBHOOK_TIMEOUT_S", "-1"),
        ("TAPWATCH_WEBHOOK_TIMEOUT_S", "0"),
        ("TAPWATCH_OFFLINE_CHECK_S", "inf"),  # the silent-meter thread died on its first wait
        ("TAPWATCH_ESCALATION_CHECK_S", "inf"),
        ("TAPWATCH_API_PORT", "70000"),
        # Not numbers, but the same fault: only warned about at every write, for ever.
        ("TAPWATCH_INFLUX_URL", "influxdb:8086"),
        ("TAPWATCH_INFLUX_URL", "http://influxdb:80866"),
    ],
)
def test_settings_refuse_numbers_no_part_of_tapwatch_can_use(tmp_path, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    """Number settings took nan, inf and, without a bound, negatives: TAPWATCH_WEBHOOK_TIMEOUT_S=nan started
    a monitor whose every alert delivery then failed ("Invalid value NaN"), TAPWATCH_OFFLINE_CHECK_S=inf one
    that never looked for a silent meter again. They are refused at start, by name, like any bad setting."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path), name: value})
    done = subprocess.run(
        [sys.executable, "-m", "tapwatch.cli", "migrate"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(f"tapwatch: error: {name}:"), done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://tapwatch:s3cr3t-token@broker:99999",  # the MQTT process crashed at every restart, forever
        "mqtt://tapwatch:s3cr3t-token@broker:18830x",
        "mqtt:/broker:1883",  # no host: it quietly connected to 127.0.0.1 instead
        "mqtts://:8883",
    ],
)
def test_a_broker_url_without_a_usable_host_and_port_is_refused_at_start(tmp_path, url: str) -> None:  # type: ignore[no-untyped-def]
    """TAPWATCH_MQTT_URL with a port out of range or not a number passed the settings: `tapwatch run` started,
    said it was up, and its MQTT process died on a traceback and was restarted, again and again, with not one
    reading taken. One with no host connected to 127.0.0.1. Both are refused by name, the password unsaid."""
    env = this_tree(
        {"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path), "TAPWATCH_MQTT_URL": url}
    )
    done = subprocess.run(
        [sys.executable, "-m", "tapwatch.cli", "migrate"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("tapwatch: error: TAPWATCH_MQTT_URL:"), done.stderr
    assert "s3cr3t-token" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgres://tapwatch:s3cr3t-pg@db:5432/tapwatch",  # the scheme many hosting guides print
        "postgresql+nodriver://tapwatch:s3cr3t-pg@db:5432/tapwatch",
        "postgresql+psycopg2://tapwatch:s3cr3t-pg@db:5432/tapwatch",  # a driver tapwatch does not ship
        "mysql://tapwatch:s3cr3t-pg@db/tapwatch",
        "tapwatch:s3cr3t-pg@db/tapwatch",
    ],
)
def test_a_store_url_tapwatch_cannot_use_is_refused_by_name(tmp_path, url: str) -> None:  # type: ignore[no-untyped-def]
    """A TAPWATCH_DATABASE_URL SQLAlchemy could not parse or load (postgres://, an unknown driver, another
    database, a driver not installed) ended every command in a traceback (NoSuchModuleError, ArgumentError,
    No module named 'MySQLdb' or 'psycopg2') instead of naming the setting and what it should look like."""
    env = this_tree({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TAPWATCH_DATABASE_URL": url})
    done = subprocess.run(
        [sys.executable, "-m", "tapwatch.cli", "migrate"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 2, done.stdout
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("tapwatch: error: TAPWATCH_DATABASE_URL:"), done.stderr
    assert "postgresql+psycopg://" in done.stderr
    assert "s3cr3t-pg" not in done.stdout + done.stderr


def test_sigterm_stops_a_command_that_does_not_serve(tmp_path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    """The SIGTERM handler meant for `run` and `demo` (finish the batch, then stop) was installed for every
    command, and only those two ever look at it: `tapwatch simulate --mqtt` (the compose demo's publisher),
    `eval` and `replay` took `kill`, `timeout` and a service manager's stop as nothing and ran on."""
    import signal

    from tests.conftest import wait_until

    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    args = ["simulate", "--elders", "1", "--days", "3", "--mqtt", mosquitto.url, "--speed", "1", "--history-days", "0"]
    log = tmp_path / "simulate.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tapwatch.cli", *args], stdout=out, stderr=out, env=env)
    try:
        assert wait_until(lambda: "live messages follow" in log.read_text(), 30), log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: proc.poll() is not None, 10), "SIGTERM did not stop tapwatch simulate"
        assert proc.returncode == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_reader_that_stops_early_is_no_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch replay FILE | head` ended with "tapwatch: error: [Errno 32] Broken pipe" and exit status 2, the
    status of a bad input, though nothing was wrong: the reader had all it wanted. It ends quietly now, with
    the status a shell gives a command stopped by SIGPIPE (141)."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    simulate = [sys.executable, "-m", "tapwatch.cli", "simulate", "--elders", "30", "--days", "20", "--out", "sim"]
    subprocess.run(simulate, check=True, capture_output=True, env=env, cwd=tmp_path)
    command = [sys.executable, "-m", "tapwatch.cli", "replay", "sim/readings.csv", "--resolutions"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"{")  # more than a pipe holds follows
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err, err


def test_an_empty_mqtt_client_id_is_refused_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """TAPWATCH_MQTT_CLIENT_ID= (empty, as a .env line left blank gives it) passed the settings: `tapwatch run`
    said it had started, then its MQTT process died on paho's "A client id must be provided if clean session is
    False" at every restart, forever, and not one reading was taken. It is refused at start, by name."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    done = subprocess.run(
        [sys.executable, "-m", "tapwatch.cli", "migrate"],
        capture_output=True,
        text=True,
        env={**env, "TAPWATCH_MQTT_CLIENT_ID": ""},
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("tapwatch: error: TAPWATCH_MQTT_CLIENT_ID:"), done.stderr


@pytest.mark.parametrize("ca", ["missing.crt", "not-a-bundle.crt"])
def test_an_unreadable_mqtt_ca_file_is_refused_at_start(tmp_path, ca: str) -> None:  # type: ignore[no-untyped-def]
    """TAPWATCH_MQTT_CA_FILE naming a file that is missing or no CA bundle passed the settings: `tapwatch run`
    said it had started, then its MQTT process died on FileNotFoundError (or SSLError) at every restart, and
    not one reading was taken. It is refused at start, by name and path."""
    (tmp_path / "not-a-bundle.crt").write_text("this is no certificate\n")
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    env |= {"TAPWATCH_MQTT_URL": "mqtts://broker:8883", "TAPWATCH_MQTT_CA_FILE": str(tmp_path / ca)}
    done = subprocess.run(
        [sys.executable, "-m", "tapwatch.cli", "migrate"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("tapwatch: error: TAPWATCH_MQTT_CA_FILE:"), done.stderr
    assert ca in done.stderr


def test_a_data_dir_under_home_is_expanded_as_a_shell_would(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """TAPWATCH_DATA_DIR=~/tapwatch in .env (no shell to expand it) made a directory named "~" where tapwatch ran."""
    from core.settings import Settings

    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings(data_dir="~/tapwatch").data_dir == tmp_path / "tapwatch"


@pytest.mark.parametrize("data_dir", ["q?x", "100%41", "a#b c"])
def test_the_store_is_made_in_the_data_dir_whatever_its_name(tmp_path, data_dir: str) -> None:  # type: ignore[no-untyped-def]
    """The SQLite URL was the data dir pasted after sqlite:///, which SQLAlchemy reads as a URL: a dir named
    "q?x" put the store in a file "q" beside it (outside the data dir the backups copy), one named "100%41"
    was made while SQLAlchemy opened "100A" ("unable to open database file")."""
    done = _tapwatch_in(tmp_path, data_dir, "migrate")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / data_dir / "tapwatch.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [data_dir]


def test_a_user_created_meanwhile_by_another_command_is_named_not_a_traceback(tmp_path, postgres_server) -> None:  # type: ignore[no-untyped-def]
    """`tapwatch user create` looks the name up, then inserts: when another command (a second administrator
    following docs/deploy.md) made the same user in between, the insert's unique-key violation ended in an
    IntegrityError traceback. It is now the same one line as a user that already existed."""
    import time as clock

    from sqlalchemy import insert, text

    from store import open_store
    from store.schema import users
    from tests.conftest import wait_until

    url = postgres_server.new_database()
    engine = open_store(url)
    env = this_tree({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TAPWATCH_DATABASE_URL": url})
    command = [sys.executable, "-m", "tapwatch.cli", "user", "create", "wang.fang", "--role", "cadre"]
    command += ["--community", "大宁社区", "--allow-new-community"]  # a fresh store: no elder yet
    try:
        with engine.connect() as other:
            other.begin()
            values = {"password_hash": "x", "role": "cadre", "communities": [], "created_at": clock.time()}
            other.execute(insert(users).values(username="wang.fang", **values))  # not committed: not seen yet
            create = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )

            def waits_for_our_insert() -> bool:
                query = (
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                with engine.connect() as conn:
                    return bool(conn.execute(text(query)).scalar_one())

            assert wait_until(waits_for_our_insert, timeout=30), "the command never reached its insert"
            other.commit()
        out, err = create.communicate(timeout=30)
    finally:
        engine.dispose()
    assert create.returncode == 2, out + err
    assert "Traceback" not in err
    assert err == "tapwatch: error: user 'wang.fang' already exists\n"


def test_a_blank_mqtt_ca_file_in_the_env_means_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ "TAPWATCH_MQTT_CA_FILE=" left blank (a .env copied with the line emptied) was read as the path "." and
    refused at start ("cannot read a CA bundle from ."): a blank line means no CA file, as for the other paths."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    done = subprocess.run(
        [sys.executable, "-m", "tapwatch.cli", "migrate"],
        capture_output=True,
        text=True,
        env={**env, "TAPWATCH_MQTT_CA_FILE": ""},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr


def test_a_short_store_password_is_kept_out_of_the_message_without_garbling_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The password was masked by replacing its text anywhere in the driver's message: a one-letter password
    ("e") turned the message into 'conn***ction fail***d' and said nothing an operator could read."""
    port = free_port()  # nothing listens there
    env = this_tree(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TAPWATCH_DATABASE_URL": f"postgresql+psycopg://tapwatch:e@127.0.0.1:{port}/tapwatch",
        }
    )
    command = [sys.executable, "-m", "tapwatch.cli", "migrate"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "***" not in done.stderr and "connection refused" in done.stderr.lower(), done.stderr


def _at_a_terminal(command: list[str], env: dict[str, str], answer_to: bytes, answer: bytes) -> tuple[int, str]:
    """Run ``command`` on a pseudo-terminal, type ``answer`` once ``answer_to`` is shown; (exit code, all it wrote)."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the terminal is its stdin, stdout, stderr and controlling terminal
        os.execve(command[0], command, env)
    shown, answered = b"", False
    while select.select([terminal], [], [], 60)[0]:  # until it closes the terminal (or says nothing for a minute)
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the child has exited and the terminal is gone
            break
        if not chunk:
            break
        shown += chunk
        if not answered and answer_to in shown:
            os.write(terminal, answer)
            answered = True
    os.close(terminal)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_end_of_input_at_the_password_prompt_is_a_one_line_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-D at `user create`'s password prompt (an administrator who means to give no password, or changes
    their mind) ended in getpass's EOFError traceback; it is a one-line error, and no user is made."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    subprocess.run([sys.executable, "-m", "tapwatch.cli", "migrate"], check=True, capture_output=True, env=env)
    create = [sys.executable, "-m", "tapwatch.cli", "user", "create", "li.cadre", "--role", "cadre"]
    create += ["--community", "大宁社区", "--allow-new-community"]  # a fresh store: no elder yet
    code, shown = _at_a_terminal(create, env, b"password: ", b"\x04")  # Ctrl-D: the terminal's end of input
    assert "Traceback" not in shown, shown
    assert code == 2, shown
    assert "tapwatch: error:" in shown and "password" in shown.split("tapwatch: error:", 1)[1], shown
    listed = subprocess.run(
        [sys.executable, "-m", "tapwatch.cli", "user", "list"], check=True, capture_output=True, text=True, env=env
    )
    assert "li.cadre" not in listed.stdout


def test_user_create_refuses_what_it_can_before_asking_for_the_password(tmp_path: Path) -> None:
    """`user create` asked for the password (twice) before it looked at the community, the name or the store: an
    administrator who mistyped the community typed the password for nothing. The refusal now comes first."""
    env = this_tree({"PATH": "/usr/bin:/bin", "TAPWATCH_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    tapwatch = [sys.executable, "-m", "tapwatch.cli"]
    no_store = {**env, "TAPWATCH_DATA_DIR": str(tmp_path / "nowhere")}
    subprocess.run([*tapwatch, "migrate"], check=True, capture_output=True, env=env)
    made = ["li.cadre", "--role", "cadre", "--allow-new-community", "--community", "大宁社区"]
    # Without a password (stdin not a terminal): a user of API keys only.
    subprocess.run(
        [*tapwatch, "user", "create", *made], check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL
    )
    refusals = {
        "'大宁社'": (["wang.cadre", "--role", "cadre", "--community", "大宁社"], env),  # a typo of a known community
        "至少一个社区": (["wang.cadre", "--role", "cadre"], env),  # no community: a login that sees nothing
        "already exists": (["li.cadre", "--role", "cadre", "--community", "大宁社区"], env),
        "only in case from 'li.cadre'": (["Li.Cadre", "--role", "cadre", "--community", "大宁社区"], env),
        "a username is": (["li", "--role", "cadre", "--community", "大宁社区"], env),
        "no store at": (["wang.cadre", "--role", "cadre", "--community", "大宁社区"], no_store),
    }
    for said, (args, where) in refusals.items():
        code, shown = _at_a_terminal([*tapwatch, "user", "create", *args], where, b"password: ", b"\x04")
        assert code in (1, 2) and "password: " not in shown, (said, shown)  # (no store: exit 1, as before)
        assert said in shown, (said, shown)


def test_purge_says_it_erases_the_personal_data_of_elders_past_their_retention() -> None:
    """`tapwatch purge` also erases, for good, the name, address, contacts and routine of elders retired or
    without consent for TAPWATCH_PERSONAL_DATA_RETENTION_DAYS (store.retention.purge_personal_data), but its
    help, the line `tapwatch --help` lists and the README's commands table named only readings, dead letters and
    delivered alert jobs: an administrator could not tell from them that it does that."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    listed = parser.format_help().replace("\n", " ")
    purge_help = commands.choices["purge"].format_help().replace("\n", " ")  # type: ignore[index]
    (row,) = [
        line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines() if "| `tapwatch purge`" in line
    ]
    for text in (" ".join(listed.split()), " ".join(purge_help.split()), row):
        assert "personal data" in text, text
    assert "TAPWATCH_PERSONAL_DATA_RETENTION_DAYS" in " ".join(purge_help.split())


def test_the_help_of_register_and_replay_says_what_they_do() -> None:
    """`register --help` said only that it registers, where it also updates the elders already registered (a
    district re-running it with a corrected file needs to know its records change them); `replay --help` said
    it prints "one JSON object per alert (meter_id, kind, ts, severity, message)", where each line is a finding
    that raised, joined or reopened a case, with the case's route and number (README, "Commands")."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]

    def helped(name: str) -> str:
        return " ".join(commands.choices[name].format_help().split())  # type: ignore[index]

    assert "update" in helped("register") and "POST /elders" in helped("register")
    replay = helped("replay")
    assert all(word in replay for word in ("raised, joined or reopened a case", "route", "case_event")), replay
