"""docs/deploy.md's commands name things that exist: CLI commands and flags, services, profiles, files, timers.

The commands that need a Docker engine cannot run here; what they call can be
checked: each ``tapwatch ...`` run in the container parses with the real CLI,
each ``docker compose`` verb names a service of docker-compose.yml, each repo
path exists, each backup-script action is one the script knows, and the backup
timer's calendar is one systemd accepts. The pieces themselves run for real in
tests/deploy/test_deploy_broker.py, test_deploy_proxy.py, test_deploy_prometheus.py and
test_deploy_backup.py.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from tapwatch.cli import build_parser
from tests.conftest import REPO

DOC = REPO / "docs" / "deploy.md"
FLAGS_WITH_VALUE = {"-s", "--signal", "--tail", "-f", "-u", "--user", "-e", "--env"}
COMPOSE_VERBS_WITH_SERVICE = {"exec", "kill", "logs", "restart", "start", "stop", "cp", "run", "build", "pull", "ps"}


def _shell_lines() -> list[str]:
    """Lines of the doc's ``sh`` blocks, continuation lines joined, comments dropped."""
    text = DOC.read_text(encoding="utf-8")
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for raw in joined.splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                lines.append(re.sub(r"\s+#\s.*$", "", line))
    return lines


def _compose() -> dict[str, object]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def test_every_tapwatch_command_in_the_doc_parses() -> None:
    parser = build_parser()
    commands = []
    for line in _shell_lines():
        for match in re.finditer(r"docker compose (?:exec(?: -T)?|run --rm) tapwatch (tapwatch [^|;&<>]+)", line):
            commands.append(match.group(1).strip())
    assert any(c.startswith("tapwatch broker-credentials --out") for c in commands)
    assert any(c.startswith("tapwatch user create") for c in commands)
    assert any(c.startswith("tapwatch register") for c in commands)
    for command in commands:
        parser.parse_args(shlex.split(command)[1:])  # an unknown command or flag exits: the test fails


def test_docker_compose_commands_name_real_services_and_profiles() -> None:
    compose = _compose()
    services = compose["services"]  # type: ignore[index]
    assert isinstance(services, dict)
    profiles = {p for s in services.values() for p in s.get("profiles", [])}
    targets = set()
    for line in _shell_lines():
        tokens = shlex.split(line)
        starts = [i + 2 for i in range(len(tokens) - 1) if tokens[i : i + 2] == ["docker", "compose"]]
        for start in starts:
            words = []
            for token in tokens[start:]:
                if token in ("|", ">", "<", "&&", ";", "||"):
                    break
                words.append(token)
            while words and words[0] in ("-f", "--profile"):
                words = words[2:]
            verb, rest = words[0], words[1:]
            while rest and rest[0].startswith("-"):
                rest = rest[2:] if rest[0] in FLAGS_WITH_VALUE else rest[1:]
            if verb == "cp":  # SERVICE:PATH on one side
                rest = [w for w in rest if ":" in w]
            if verb in COMPOSE_VERBS_WITH_SERVICE and rest:
                service = rest[0].split(":")[0]
                assert service in services, f"{line!r}: no service {service}"
                targets.add(service)
    assert targets >= {"tapwatch", "mosquitto", "postgres", "prometheus"}, targets
    for line in _shell_lines():
        for match in re.finditer(r"COMPOSE_PROFILES=([\w,]+)", line):
            assert set(match.group(1).split(",")) <= profiles, line
        for match in re.finditer(r"--profile (\w+)", line):
            assert match.group(1) in profiles, line


def test_paths_the_doc_names_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    # files (with an extension): MQTT topics such as tapwatch/meters/M00001/readings look like paths too
    paths = set(re.findall(r"(?<![\w/.])((?:deploy|tests|docs|tapwatch|alerts)/[\w./-]*\.[a-z]+)\b", text))
    assert "deploy/backup/tapwatch-backup.sh" in paths
    # files the doc tells the operator to make (cp SOURCE TARGET)
    made = {shlex.split(line)[-1] for line in _shell_lines() if line.startswith("cp ")}
    for path in paths - made:
        assert (REPO / path).exists(), f"docs/deploy.md names {path}, which does not exist"


def test_backup_script_actions_in_the_doc_are_known() -> None:
    script = (REPO / "deploy" / "backup" / "tapwatch-backup.sh").read_text(encoding="utf-8")
    known = set(re.findall(r"^  (\w+)\)", script, flags=re.M))
    used = {m for line in _shell_lines() for m in re.findall(r"tapwatch-backup\.sh (\w+)", line)}
    assert used and used <= known, used - known
    service = (REPO / "deploy" / "backup" / "tapwatch-backup.service").read_text(encoding="utf-8")
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", service, flags=re.M)
    assert exec_start.split()[0] == "/opt/tapwatch/deploy/backup/tapwatch-backup.sh"
    assert exec_start.split()[1] in known


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze checks the timer's calendar")
def test_backup_timer_calendar_is_valid() -> None:
    timer = (REPO / "deploy" / "backup" / "tapwatch-backup.timer").read_text(encoding="utf-8")
    (calendar,) = re.findall(r"^OnCalendar=(.+)$", timer, flags=re.M)
    check = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "Asia/Shanghai" in check.stdout


def test_the_platform_user_is_made_without_a_password_prompt() -> None:
    """`user create` prompts for a password at a terminal (and refuses an empty one), and `docker compose exec`
    gives the command a terminal unless told `-T`: the grid platform, which acts only through its API key,
    was made with a password an administrator had to invent. Without a terminal it gets none."""
    lines = [line for line in _shell_lines() if re.search(r"tapwatch user create .*--role platform", line)]
    assert lines, "the doc no longer makes the grid platform's user"
    for line in lines:
        assert re.search(r"docker compose exec -T tapwatch .*< /dev/null", line), line


def test_every_broker_credentials_directory_named_is_the_stacks_volume() -> None:
    """The meters' accounts must land in the volume mosquitto reads: a `broker-credentials --out` path named in the
    deployment's files (mosquitto's entrypoint named /var/lib/tapwatch/broker, which the container lacks) is the
    tapwatch service's mount of the broker-accounts volume."""
    services = _compose()["services"]  # type: ignore[index]
    assert isinstance(services, dict)
    (mount,) = [v.split(":")[1] for v in services["tapwatch"]["volumes"] if v.startswith("broker-accounts:")]
    texts = [DOC, REPO / "docker-compose.yml", REPO / ".env.example", *(REPO / "deploy").rglob("*")]
    named = {
        (path.relative_to(REPO), match)
        for path in texts
        if path.is_file()
        for match in re.findall(r"broker-credentials --out (/[\w/.-]+)", path.read_text(encoding="utf-8"))
    }
    assert len(named) >= 3, named
    assert {where: out for where, out in named if out != mount} == {}, mount


def test_env_example_lists_every_optional_service() -> None:
    """`.env.example` is where an IT team learns which optional services COMPOSE_PROFILES can switch on: its
    list left out "monitoring" (Prometheus watching the monitor, docs/deploy.md "Watching the monitor")."""
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    line = text.split("# Optional services:", 1)[1].split("# COMPOSE_PROFILES=", 1)[0]  # the comment, all its lines
    services = _compose()["services"]  # type: ignore[index]
    assert isinstance(services, dict)
    profiles = {p for s in services.values() for p in s.get("profiles", [])}
    assert set(re.findall(r'"(\w+)"', line)) == profiles, line
