"""The console script starts fast and shows progress on a terminal.

``tapwatch --help`` must not import the detectors (river pulls in scipy) or the
database stack; its speed itself is measured in bench/bench_cli.py, not here.
Long runs draw a progress line on stderr when it is a terminal (a real pty here)
and write nothing extra when it is not.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator import SimConfig, simulate
from tapwatch.cli import COMMANDS, build_parser
from tests.helpers import this_tree

HEAVY = ("scipy", "river", "numpy", "sqlalchemy", "pydantic", "detect", "simulator", "api")
SCRIPT = Path(sys.executable).with_name("tapwatch")


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import json, sys\n"
        "from tapwatch.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=this_tree())
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_imports_no_heavy_module() -> None:
    loaded = _modules_after(["--help"])
    assert loaded.isdisjoint(HEAVY), f"tapwatch --help imported {sorted(loaded & set(HEAVY))}"


def test_a_subcommand_loads_only_its_own_module() -> None:
    loaded = _modules_after(["purge", "--help"])
    assert loaded.isdisjoint({"scipy", "river", "detect", "simulator"}), sorted(loaded)


def test_replay_help_does_not_load_scipy() -> None:
    # The detectors are imported (the replay's own module needs them), their drift detectors only when a
    # day is judged: river.drift loads scipy for KSWIN, about 1 s before the help could print (session 8).
    loaded = _modules_after(["replay", "--help"])
    assert "detect" in loaded and loaded.isdisjoint({"scipy"}), sorted(loaded & {"scipy", "river"})


def test_the_command_table_matches_the_modules() -> None:
    """Each row's name and help are what its module registers (``--help`` lists the row, not the module)."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}  # type: ignore[attr-defined]
    assert helps == {c.name: c.help for c in COMMANDS}


def test_an_unknown_command_is_a_usage_error() -> None:
    done = subprocess.run([str(SCRIPT), "nope"], capture_output=True, text=True, env=this_tree())
    assert done.returncode == 2
    assert "invalid choice: 'nope'" in done.stderr


def _stderr_on_a_terminal(argv: list[str], cwd: Path) -> str:
    """Run ``argv`` with stderr on a pseudo-terminal; what it drew there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=follower, cwd=cwd, env=this_tree())
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    return out.decode()


@pytest.fixture(scope="module")
def readings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(SimConfig(elders=3, days=4, seed=5)).write(out)
    return out / "readings.csv"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["replay", "{csv}"], r"\rreplay: [\d,]+ rows  [\d,]+/s"),
        (["simulate", "--elders", "4", "--days", "3", "--out", "{tmp}"], r"\rsimulate: 4/4 elders 100%"),
        (["eval", "--elders", "3", "--days", "10"], r"\reval: tapwatch: 3/3 meters 100%"),
    ],
    ids=["replay", "simulate", "eval"],
)
def test_long_runs_show_progress_on_a_terminal_only(
    argv: list[str], expected: str, readings: Path, tmp_path: Path
) -> None:
    argv = [str(SCRIPT), *(a.format(csv=readings, tmp=tmp_path) for a in argv)]
    drawn = _stderr_on_a_terminal(argv, tmp_path)
    assert re.search(expected, drawn), drawn
    piped = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=True, env=this_tree())
    assert "\r" not in piped.stderr, piped.stderr
    assert not re.search(expected, piped.stderr)


def test_publishing_to_a_broker_shows_progress_on_a_terminal(mosquitto: Any, tmp_path: Path) -> None:
    argv = [str(SCRIPT), "simulate", "--elders", "2", "--days", "2", "--mqtt", mosquitto.url, "--speed", "0"]
    drawn = _stderr_on_a_terminal(argv, tmp_path)
    assert re.search(r"\rsimulate: publishing: [\d,]+/[\d,]+ messages 100%", drawn), drawn
