"""The README stays true: every setting is documented, every command it names exists, the operator
walkthrough runs as written against a running demo; docs/api.md's user commands run as written at a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.demo_fixtures import RunningDemo
from tests.helpers import this_tree


def _readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    from core.settings import Settings

    table = _readme().split("<!-- settings-table", 1)[1].split("<!-- /settings-table -->", 1)[0]
    documented = set(re.findall(r"`TAPWATCH_([A-Z0-9_]+)`", table))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from the README table"
    assert documented - fields == set(), "README documents settings that do not exist"


#: TAPWATCH_* names the docs use that are not settings: the compose file's broker password of the monitor's
#: account (MQTT_TAPWATCH_PASSWORD) and the worker test's size (tests/app/test_workers.py).
NOT_SETTINGS = {"PASSWORD", "WORKERS_TEST_ELDERS"}
#: "`TAPWATCH_NAME` (default)" as the docs give a setting's default beside its name: 5, 300 s, 1 MiB, 256 KiB.
DEFAULT_BESIDE_NAME = re.compile(r"`TAPWATCH_([A-Z0-9_]+)` \((\d[\d,.]*)( s| MiB| KiB)?\)")


def _docs() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]}


def test_every_setting_the_docs_name_exists_with_the_default_they_give() -> None:
    """A TAPWATCH_* variable the docs tell a district to set is one tapwatch reads (Settings ignores the
    others without a word), and a default given beside it, "`TAPWATCH_SSE_STREAMS_PER_USER` (10)", is the
    code's."""
    from core.settings import Settings

    fields = Settings.model_fields
    unknown, wrong = [], []
    beside = sum(len(DEFAULT_BESIDE_NAME.findall(text)) for text in _docs().values())
    assert beside > 10, "the scan found too few defaults to be reading the docs"
    for name, text in _docs().items():
        for setting in set(re.findall(r"\bTAPWATCH_([A-Z0-9_]+)", text)) - NOT_SETTINGS:
            if setting.lower() not in fields:
                unknown.append(f"{name}: TAPWATCH_{setting}")
        for setting, value, unit in DEFAULT_BESIDE_NAME.findall(text):
            scale = {" MiB": 2**20, " KiB": 2**10}.get(unit, 1)
            default = fields[setting.lower()].default
            if float(value.replace(",", "")) * scale != default:
                wrong.append(f"{name}: TAPWATCH_{setting} ({value}{unit}), the default is {default}")
    assert unknown == [], "the docs name settings tapwatch does not read"
    assert wrong == [], "the docs give defaults the code does not have"


#: `tapwatch_...` in the docs that are not metrics: InfluxDB's status measurement, the restore drill's database.
NOT_METRICS = {"tapwatch_status", "tapwatch_drill"}
#: A metric as the docs name one: `tapwatch_delivery_attempts_total{notifier,result}`, `..._total{result="x"}`.
METRIC_IN_DOCS = re.compile(r"`(tapwatch_[a-z0-9_]+)(?:\{([^}]*)\})?`")


def test_every_metric_the_docs_name_is_exported_with_its_labels() -> None:
    """A metric a district is told to watch or graph, and each label it is told to split by, is one /metrics
    exports: a name changed in core/metrics.py leaves no dashboard silently empty."""
    from prometheus_client.metrics import MetricWrapperBase

    from core.metrics import Metrics

    exported = {
        metric._name: set(metric._labelnames)  # prometheus_client keeps them there; no public accessor
        for metric in vars(Metrics()).values()
        if isinstance(metric, MetricWrapperBase)
    }
    named, wrong = 0, []
    for name, text in _docs().items():
        for metric, labels in METRIC_IN_DOCS.findall(text):
            if metric in NOT_METRICS:
                continue
            named += 1
            family = metric.removesuffix("_total")
            label_names = {label.split("=")[0].strip() for label in labels.split(",") if label.strip()}
            if family not in exported or label_names - exported[family]:
                wrong.append(f"{name}: {metric}{{{labels}}}")
    assert named > 30, "the scan found too few metrics to be reading the docs"
    assert wrong == [], "the docs name metrics or labels /metrics does not export"


#: A module the docs name with what to read in it, `alerts/sender.py` (`lease_job`, `Sender.run`), or a name
#: with its module, `Pipeline.process` (`engine/pipeline.py`).
MODULE_THEN_NAMES = re.compile(r"`((?:\w+/)+\w+\.py)` \(((?:`[\w.]+`(?:, | and | or )?)+)")
NAME_THEN_MODULE = re.compile(r"`([A-Za-z_][\w.]*)` \(`((?:\w+/)+\w+\.py)`")


def _names_with_modules(text: str) -> Iterator[tuple[str, str]]:
    for module, names in MODULE_THEN_NAMES.findall(text):
        yield from ((module, name) for name in re.findall(r"`([\w.]+)`", names))
    yield from ((module, name) for name, module in NAME_THEN_MODULE.findall(text))


def test_every_module_the_docs_name_defines_what_they_name_in_it() -> None:
    """A reader sent to `ingest/consumer.py` (`subscription`, `connect`) for the shared subscription found
    neither there: what the docs name beside a module is defined in that module (a function, class, method or
    module-level name), so a move leaves no pointer to nothing."""
    named, dangling = 0, []
    for doc, text in _docs().items():
        for module, name in _names_with_modules(text):
            named += 1
            path = REPO / module
            last = name.rsplit(".", 1)[-1]
            source = path.read_text(encoding="utf-8") if path.exists() else ""
            if not re.search(rf"^\s*(?:async def |def |class )?{last}\b", source, re.M):
                dangling.append(f"{doc}: {module} defines no {name}")
    assert named >= 8, "the scan found too few names to be reading the docs"
    assert dangling == [], "\n".join(dangling)


def test_every_threshold_is_in_the_thresholds_table_with_its_default_and_bounds() -> None:
    from core.thresholds import THRESHOLD_SPECS, Thresholds

    table = _readme().split("<!-- thresholds-table", 1)[1].split("<!-- /thresholds-table -->", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| `")
    ]
    documented: dict[str, tuple[str, str, str]] = {}
    for names, default, unit, bounds, _meaning in rows:
        found = re.findall(r"`(\w+)`", names)
        for name, value, limits in zip(found, default.split(" / "), bounds.split(" / "), strict=True):
            documented[name] = (value, unit, limits)
    assert set(documented) == set(THRESHOLD_SPECS), "the README's thresholds table and THRESHOLD_SPECS differ"
    for name, spec in THRESHOLD_SPECS.items():
        value, unit, limits = documented[name]
        low, high = (float(v) for v in limits.split(" .. "))
        assert (float(value), unit, low, high) == (getattr(Thresholds(), name), spec.unit, spec.low, spec.high), name


def test_every_command_in_the_readme_exists() -> None:
    from tapwatch.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    named = set(re.findall(r"`tapwatch (\w[\w-]*)", _readme()))
    assert named <= set(choices), f"README names commands that do not exist: {named - set(choices)}"


def test_the_quick_start_names_the_demos_communities() -> None:
    """The quick start lists the communities the demo's elders live in: a newcomer signs in as the cadre and
    looks for them (the README named three of the five, and the walkthrough's operator gets one of them)."""
    from simulator import demo_config, simulate
    from tapwatch.demo import DEMO_DAYS, HISTORY_DAYS

    quick_start = _readme().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    sentence = quick_start.split("simulated elders in", 1)[1].split("publishing", 1)[0]
    named = set(re.findall(r"\w+居委会", sentence))
    sim = simulate(demo_config(days=DEMO_DAYS, history_days=HISTORY_DAYS))
    assert named == {elder["community"] for elder in sim.elders}


def test_the_floors_table_names_the_module_of_every_command() -> None:
    """The architecture's top floor says where each `tapwatch` subcommand lives: one left out (`report`) sends a
    reader looking through the package for it."""
    from tapwatch.cli import COMMANDS

    (row,) = [line for line in _readme().splitlines() if line.startswith("| 7 (top) |")]
    for command in COMMANDS:
        module = command.module.replace(".", "/") + ".py"
        where = module.removeprefix("tapwatch/")
        assert f"`{where}`" in row, f"the floors table does not say where `tapwatch {command.name}` lives ({module})"


def _operator_block() -> str:
    section = _readme().split("## Operators:", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[RunningDemo]:
    running = RunningDemo(tmp_path).start()
    try:
        yield running
    finally:
        assert running.stop(), "the demo did not stop within STOP_WAIT_S of SIGTERM (a service manager would kill it)"


def test_the_operator_walkthrough_runs_verbatim_against_the_demo(demo: RunningDemo) -> None:
    """The README's operator block, run by bash in a directory where `make demo` runs (only the port differs).

    curl reports each answer's status on stderr so every request can be checked without changing the block.
    """
    script = _operator_block().replace("127.0.0.1:8000", f"127.0.0.1:{demo.port}")
    report = "curl() { command curl -w '%{stderr}HTTP %{http_code} %{url_effective}\\n' \"$@\"; }\n"
    env = this_tree({k: v for k, v in os.environ.items() if not k.startswith("TAPWATCH_")})
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", report + script],
        cwd=demo.workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    statuses = re.findall(r"^HTTP (\d{3}) (\S+)$", done.stderr, re.MULTILINE)
    assert len(statuses) == script.count("curl -s"), done.stderr
    assert all(code.startswith("2") for code, _url in statuses), statuses
    bodies = _json_documents(done.stdout)
    backtest = next(b for b in bodies if "readings" in b and "elders" in b)
    assert backtest["elders"] > 0 and backtest["readings"] > 0, backtest
    saved = next(b for b in bodies if b.get("scope") == "community")
    assert saved["values"] == {"sensitivity": 0.0001}, saved


def _json_documents(text: str) -> list[dict[str, object]]:
    """The JSON objects curl printed back to back (API answers end without a newline)."""
    decoder, out, at = json.JSONDecoder(), [], text.find("{")
    while at >= 0:
        doc, end = decoder.raw_decode(text, at)
        out.append(doc)
        at = text.find("{", end)
    return out


# A test file named in the docs or a comment, optionally with a glob star and a ``::test_name``.
_TEST_PATH = re.compile(r"\btests/((?:\w+/)*\w*\*?\w*\.py)(?:::(\w+))?")
_SCANNED = ("*.md", "*.py", "*.sh", "*.conf", "*.yml", "*.toml", "Makefile", "Dockerfile")


def _texts_naming_tests() -> Iterator[Path]:
    for pattern in _SCANNED:
        for path in REPO.rglob(pattern):
            parts = path.relative_to(REPO).parts
            if not any(p.startswith(".") or p.endswith(".egg-info") or p in {"build", "var"} for p in parts[:-1]):
                yield path


def _defines(path: Path, name: str) -> bool:
    """The module defines ``name`` at its top level: a test, a class or a table like ``EXPECTED``."""
    return re.search(rf"^(?:async def |def |class )?{name}\b", path.read_text(encoding="utf-8"), re.M) is not None


def test_every_test_file_the_docs_name_exists() -> None:
    """Docs, comments and configs point at test files (and tests in them) that exist: nothing dangles after a move."""
    named, dangling = 0, []
    for path in _texts_naming_tests():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in _TEST_PATH.finditer(text):
            named += 1
            where = f"{path.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1}"
            files = sorted((REPO / "tests").glob(match[1]))
            if not files:
                dangling.append(f"{where} names tests/{match[1]}, which does not exist")
            elif match[2] and not any(_defines(f, match[2]) for f in files):
                dangling.append(f"{where} names tests/{match[1]}::{match[2]}, which is not defined there")
    assert named > 50, "the scan found too few test paths to be reading the docs"
    assert dangling == [], "\n".join(dangling)


def _users_block() -> str:
    section = (REPO / "docs" / "api.md").read_text(encoding="utf-8").split("## Users and API keys", 1)[1]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0]


def _run_at_a_terminal(script: str, cwd: Path, env: dict[str, str], answer: str) -> tuple[int, str, int]:
    """bash running ``script`` on a pseudo-terminal, as an administrator types it: its exit status, what it
    printed, and how many password prompts it asked (each answered with ``answer``)."""
    pid, leader = pty.fork()  # the child's controlling terminal is the pty: getpass prompts there
    if pid == 0:  # pragma: no cover - the child
        os.chdir(cwd)
        os.execve("/bin/bash", ["bash", "-eu", "-c", script], env)
    out, prompts = b"", 0
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        while prompts < len(re.findall(rb"(?:^|\n)(?:password|again): ", out)):  # a prompt may arrive in pieces
            prompts += 1
            os.write(leader, answer.encode() + b"\n")
    os.close(leader)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace"), prompts


def test_the_api_docs_user_commands_run_as_written_at_a_terminal(tmp_path: Path) -> None:
    """docs/api.md's users block, typed at a terminal: it asks for a password where its comments say so, and
    only there. The grid platform's user was said to get "no password", but at a terminal `user create`
    prompts, and an empty answer is refused: the block stopped there (or the platform got a password)."""
    script = _users_block().replace("token revoke 17", "token revoke 1")  # the first key of a fresh store
    env = this_tree({k: v for k, v in os.environ.items() if not k.startswith("TAPWATCH_")})
    env |= {"TAPWATCH_DATA_DIR": str(tmp_path), "PATH": f"{Path(sys.prefix) / 'bin'}:{env.get('PATH', '')}"}
    subprocess.run(["tapwatch", "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True)
    status, out, prompts = _run_at_a_terminal(script, tmp_path, env, "a long passphrase")
    assert status == 0, out
    expected = 2 * sum(line.count("# prompts twice") for line in script.splitlines())
    assert prompts == expected, f"{prompts} password prompts, the comments announce {expected}:\n{out}"
    assert "created user grid (platform; communities: *) (no password" in out, out
