"""The Makefile's targets do what they are named for: each phony target has a recipe.

A name in ``.PHONY`` without a rule is a target make accepts and does nothing for: ``make typecheck``
said "Nothing to be done" and exited 0, so a developer took mypy as passed without it having run.
"""

from __future__ import annotations

import re

from tests.conftest import REPO


def _makefile() -> str:
    return (REPO / "Makefile").read_text(encoding="utf-8")


def test_every_phony_target_has_a_rule() -> None:
    (phony,) = re.findall(r"^\.PHONY:(.*)$", _makefile(), re.M)
    ruled = set(re.findall(r"^([\w-]+):", _makefile(), re.M))
    assert set(phony.split()) - ruled == set(), "phony targets without a rule: make accepts them and does nothing"


def test_help_names_every_phony_target_people_run() -> None:
    """`make help` lists what a developer runs (the helpers the other targets call are left out)."""
    helpers = {"system-deps", "venv-deps", "help", "clean"}
    (phony,) = re.findall(r"^\.PHONY:(.*)$", _makefile(), re.M)
    helped = set(re.findall(r'@echo "make ([\w-]+)', _makefile()))
    assert set(phony.split()) - helpers - helped == set()
