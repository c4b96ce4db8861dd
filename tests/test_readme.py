"""The README stays true: every setting is documented, every command it names exists."""

from __future__ import annotations

import re

from tests.conftest import REPO


def _readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    from core.settings import Settings

    table = _readme().split("<!-- settings-table", 1)[1].split("<!-- /settings-table -->", 1)[0]
    documented = set(re.findall(r"`TAPWATCH_([A-Z0-9_]+)`", table))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from the README table"
    assert documented - fields == set(), "README documents settings that do not exist"


def test_every_command_in_the_readme_exists() -> None:
    from tapwatch.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    named = set(re.findall(r"`tapwatch (\w[\w-]*)", _readme()))
    assert named <= set(choices), f"README names commands that do not exist: {named - set(choices)}"
