"""The import graph keeps to the floors: no upward or sideways import, no cycle (tools/check_layers.py).

``python tools/check_layers.py`` prints the same findings from the command line.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO
from tests.tools.scripts import load_script


def _checker() -> ModuleType:
    return load_script(REPO / "tools" / "check_layers.py")


check_layers = _checker()


def test_the_floors_hold_and_nothing_imports_in_a_circle() -> None:
    problems = check_layers.check(REPO)
    assert problems == [], "\n".join(problems)


def test_every_installed_package_stands_on_a_floor() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    installed = {name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    floors = {name for floor in check_layers.FLOORS for name in floor}
    assert installed == floors


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_checker_finds_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/records.py": "def f():\n    from api.routes import x\n",
            "api/__init__.py": "",
            "api/routes.py": "from core.records import f\nx = 1\n",
        },
    )
    problems = check_layers.check(root)
    assert any("core.records (floor 0) imports api.routes (floor 5)" in p for p in problems), problems
    assert any(p.startswith("cycle between modules api.routes, core.records") for p in problems), problems


def test_the_checker_finds_a_cycle_inside_one_package_and_reads_relative_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "tapwatch/__init__.py": "",
            "tapwatch/cli.py": "from . import demo\n",
            "tapwatch/demo.py": "def run():\n    from .cli import serve\n",
            "store/__init__.py": "",
            "store/schema.py": "from core import x\n",
            "core/__init__.py": "x = 1\n",
        },
    )
    problems = check_layers.check(root)
    assert len(problems) == 1, problems
    assert problems[0].startswith("cycle between modules tapwatch.cli, tapwatch.demo")
    assert "tapwatch/demo.py:2" in problems[0]


def test_the_checker_finds_an_import_between_siblings_on_one_floor(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "store/__init__.py": "",
            "store/registry.py": "from detect.thresholds import Thresholds\n",
            "detect/__init__.py": "",
            "detect/thresholds.py": "Thresholds = object\n",
        },
    )
    assert check_layers.check(root) == [
        "store/registry.py:1: store.registry imports detect.thresholds, a sibling on floor 1"
    ]


def test_a_module_sits_on_its_package_floor_without_exceptions(tmp_path: Path) -> None:
    """The engine's modules live in engine/: an app module (tapwatch.replay, the CLI) is on the top floor."""
    root = _tree(
        tmp_path,
        {
            "ingest/__init__.py": "",
            "ingest/consumer.py": "from engine.pipeline import RawMessage\n",
            "engine/__init__.py": "",
            "engine/pipeline.py": "RawMessage = object\n",
            "api/__init__.py": "",
            "api/backtest.py": "from tapwatch.replay import Replayer\n",
            "tapwatch/__init__.py": "",
            "tapwatch/replay.py": "Replayer = object\n",
        },
    )
    assert check_layers.check(root) == [
        "ingest/consumer.py:1: ingest.consumer (floor 1) imports engine.pipeline (floor 4)",
        "api/backtest.py:1: api.backtest (floor 5) imports tapwatch.replay (floor 6)",
    ]


def _is_test_module(dotted: str) -> bool:
    return dotted.rpartition(".")[2].startswith("test_")


def imports_of_test_modules(tests: Path) -> list[str]:
    """Every import of a test module (``test_*.py``) by a module under ``tests`` as ``path:line module``.

    Any name counts, public or private: what two test modules share lives in the support layer
    (tests/helpers.py, tests/alert_support.py, the fixtures modules), so a test module can be moved,
    renamed or run alone without breaking another.
    """
    found = []
    for path in sorted(tests.rglob("*.py")):
        where = path.relative_to(tests.parent)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [f"{where}:{node.lineno} {a.name}" for a in node.names if _is_test_module(a.name)]
            elif isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                if _is_test_module(module):
                    found.append(f"{where}:{node.lineno} {module}")
                else:  # from tests.alerts import test_alerts
                    found += [f"{where}:{node.lineno} {module}.{a.name}" for a in node.names if _is_test_module(a.name)]
    return found


def test_no_test_module_imports_anything_from_another() -> None:
    """Helpers shared between test modules live in the support layer (tests/README.md), never in a test module."""
    assert len(list((REPO / "tests").rglob("test_*.py"))) > 50, "the test modules were not found"
    found = imports_of_test_modules(REPO / "tests")
    assert found == [], "move what they share into the support layer:\n" + "\n".join(found)


def test_the_check_finds_every_way_of_importing_a_test_module(tmp_path: Path) -> None:
    A = "tests/alerts/"  # a throwaway tree: written so the docs-paths test does not take these for real files
    root = _tree(
        tmp_path,
        {
            "tests/__init__.py": "",
            "tests/helpers.py": "HOUR = 3600.0\n",
            "tests/alerts/__init__.py": "",
            A + "test_alerts.py": "from tests.helpers import HOUR\nT0 = 1.0\n",
            A + "test_public.py": "from tests.alerts.test_alerts import T0\n",
            A + "test_private.py": "def f():\n    from tests.alerts.test_alerts import _x\n",
            A + "test_package.py": "from tests.alerts import test_alerts\n",
            A + "test_relative.py": "from .test_alerts import T0\n",
            A + "test_plain.py": "import tests.alerts.test_alerts\n",
        },
    )
    assert imports_of_test_modules(root / "tests") == [
        A + "test_package.py:1 tests.alerts.test_alerts",
        A + "test_plain.py:1 tests.alerts.test_alerts",
        A + "test_private.py:2 tests.alerts.test_alerts",
        A + "test_public.py:1 tests.alerts.test_alerts",
        A + "test_relative.py:1 .test_alerts",
    ]


TEST_FOLDERS = {
    "ingest",
    "detect",
    "simulator",
    "store",
    "alerts",
    "timeseries",
    "engine",
    "api",
    "app",
    "deploy",
    "tools",
}


def test_every_test_file_sits_in_the_folder_of_what_it_covers() -> None:
    """tests/ holds the support layer only; test files sit in the folders tests/README.md lists, each a package."""
    tests = REPO / "tests"
    loose = sorted(p.name for p in tests.glob("test_*.py"))
    assert loose == [], f"move these into the folder of the package they cover (tests/README.md): {loose}"
    folders = {p.parent.relative_to(tests).as_posix() for p in tests.rglob("test_*.py")}
    assert folders == TEST_FOLDERS, "a folder is new or gone: update TEST_FOLDERS and the table in tests/README.md"
    readme = (tests / "README.md").read_text(encoding="utf-8")
    for folder in sorted(folders):
        assert (tests / folder / "__init__.py").is_file(), f"tests/{folder} is not a package"
        assert f"| `{folder}/` |" in readme, f"tests/README.md does not list tests/{folder}/"
