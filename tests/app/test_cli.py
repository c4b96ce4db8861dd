"""The console script: every subcommand answers --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tapwatch.cli import build_parser


def _commands() -> list[str]:
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


def test_expected_commands_exist() -> None:
    assert {"run", "demo", "simulate", "replay", "eval", "migrate", "register"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_help(command: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tapwatch.cli", command, "--help"], capture_output=True, text=True)
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
