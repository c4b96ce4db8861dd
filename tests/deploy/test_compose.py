"""The production stack's files agree with each other and with tapwatch's settings.

No Docker engine runs here, so this reads docker-compose.yml, the Dockerfile and
the files they mount, the way ``docker compose config`` would, and checks what
would otherwise only fail at ``docker compose up``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse docker-compose.yml")

from core.settings import Settings  # noqa: E402
from tests.conftest import REPO  # noqa: E402

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
LONG_RUNNING = {"mosquitto", "postgres", "influxdb", "tapwatch", "grafana"}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
SECRET_HINT = re.compile(r"PASSWORD|TOKEN|SECRET")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _env_example() -> dict[str, str]:
    out = {}
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR} and ${VAR:-default}; "$$" is a literal "$"."""
    escaped = value.replace("$$", "\0")
    resolved = VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), escaped)
    return resolved.replace("\0", "$")


def _environment(service: dict[str, Any], dotenv: dict[str, str] | None = None) -> dict[str, str]:
    """The container's environment as compose builds it: ``env_file`` lines as they are, then
    ``environment`` (interpolated from .env) on top; ``dotenv`` stands for .env (default: .env.example)."""
    dotenv = _env_example() if dotenv is None else dotenv
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    files = service.get("env_file") or []
    out = dict(dotenv) if ".env" in ([files] if isinstance(files, str) else files) else {}
    out.update({k: _interpolate(str(v), dotenv) for k, v in env.items()})
    return out


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for vol in service.get("volumes") or []:
        source, target = (vol.split(":")[:2]) if isinstance(vol, str) else (vol["source"], vol["target"])
        out.append((source, target))
    return out


def _host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a container path comes from, through the service's bind mounts."""
    for source, target in _mounts(service):
        if source.startswith(".") and (container_path == target or container_path.startswith(target + "/")):
            return REPO / source / container_path[len(target) :].lstrip("/")
    return None


def _listeners(config: str) -> dict[int, list[str]]:
    """A mosquitto configuration's listeners by port, each with the directives that follow it (its own options)."""
    out: dict[int, list[str]] = {}
    current: list[str] | None = None
    for raw in config.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("listener "):
            current = out.setdefault(int(line.split()[1]), [])
        elif current is not None:
            current.append(line)
    return out


def _healthcheck(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test") or []
    return " ".join(test) if isinstance(test, list) else str(test)


def test_every_service_has_an_image_or_a_build_with_a_dockerfile() -> None:
    services = _compose()["services"]
    assert set(services) >= LONG_RUNNING | {"simulator"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            build = service["build"]
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (REPO / context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no healthcheck"


def test_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for source, target in _mounts(service):
            assert target.startswith("/"), f"{name}: {target}"
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {declared - used}"


def test_ports_are_well_formed() -> None:
    pattern = re.compile(r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?:(?P<host>\d+):)?(?P<container>\d+)(?:/(tcp|udp))?$")
    seen: set[str] = set()
    for name, service in _compose()["services"].items():
        for port in service.get("ports") or []:
            match = pattern.match(str(port))
            assert match, f"{name}: malformed port {port!r}"
            for part in ("host", "container"):
                if match[part]:
                    assert 0 < int(match[part]) < 65536, f"{name}: {port}"
            host = f"{match['ip'] or '0.0.0.0'}:{match['host'] or match['container']}"
            assert host not in seen, f"{name}: host port {host} used twice"
            seen.add(host)


def test_long_running_services_have_healthchecks() -> None:
    services = _compose()["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
    assert "influx ping" in _healthcheck(services["influxdb"])
    assert "mosquitto_sub" in _healthcheck(services["mosquitto"])


def test_no_healthcheck_puts_a_secret_on_its_command_line() -> None:
    """The broker's healthcheck ran ``mosquitto_sub -P "$MQTT_TAPWATCH_PASSWORD"``: every 15 s the monitor's
    broker password was in an argv any user of the host reads with ``ps``. A login is read from a file instead."""
    for name, service in _compose()["services"].items():
        check = _healthcheck(service)
        assert not re.search(r"(^|\s)(-P|--pw|--password)(\s|=|$)", check), (name, check)
        assert not SECRET_HINT.search(check), (name, check)


def test_tapwatch_environment_is_valid_settings() -> None:
    services = _compose()["services"]
    fields = {name.upper() for name in Settings.model_fields}
    for name, service in services.items():
        for key in service.get("environment") or {}:
            if key.startswith("TAPWATCH_"):
                assert key[len("TAPWATCH_") :] in fields, f"{name}: {key} is not a tapwatch setting"
    for key in _env_example():
        if key.startswith("TAPWATCH_"):
            assert key[len("TAPWATCH_") :] in fields, f".env.example: {key} is not a tapwatch setting"
    env = _environment(services["tapwatch"])
    fields_set = {k[len("TAPWATCH_") :].lower(): v for k, v in env.items() if k.startswith("TAPWATCH_")}
    # pydantic-settings reads list settings from the environment as JSON; keyword arguments are not decoded
    fields_set = {k: json.loads(v) if v.startswith("[") else v for k, v in fields_set.items()}
    settings = Settings(_env_file=None, **fields_set)  # type: ignore[call-arg, arg-type]
    assert settings.influx_url == "http://influxdb:8086"
    assert settings.api_host == "0.0.0.0"
    assert settings.mqtt_password is not None and settings.influx_token is not None


def test_tapwatch_trusts_forwarded_addresses_from_the_proxy_only() -> None:
    compose = _compose()
    services = compose["services"]
    trusted = json.loads(_environment(services["tapwatch"])["TAPWATCH_TRUSTED_PROXIES"])
    proxy_address = services["nginx"]["networks"]["default"]["ipv4_address"]
    assert trusted == [proxy_address]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy_address) in ipaddress.ip_network(subnet)
    # Docker hands the other containers the next free address of the subnet, on and on as they are recreated
    # (an upgrade, a changed .env): with the proxy's among them, another container (or tapwatch itself) was
    # given it while nginx was down or not run, and was believed on whatever client address it claimed.
    dynamic = compose["networks"]["default"]["ipam"]["config"][0].get("ip_range")
    assert dynamic is not None, "the containers' addresses are not kept off the proxy's (ipam ip_range)"
    assert ipaddress.ip_network(dynamic).subnet_of(ipaddress.ip_network(subnet))  # type: ignore[arg-type]
    assert ipaddress.ip_address(proxy_address) not in ipaddress.ip_network(dynamic)
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in (REPO / "deploy/nginx/tapwatch.conf").read_text()


def test_tapwatch_healthcheck_hits_readyz_on_the_api_port() -> None:
    service = _compose()["services"]["tapwatch"]
    port = int(_environment(service).get("TAPWATCH_API_PORT", Settings.model_fields["api_port"].default))
    assert f"127.0.0.1:{port}/readyz" in _healthcheck(service)
    assert any(str(p).endswith(f":{port}") for p in service["ports"]), "the API port is not published"
    assert "python" in _healthcheck(service), "python:3.11-slim has no curl: the healthcheck must use python"


def test_mosquitto_listens_where_tapwatch_connects_with_auth_acl_and_persistence() -> None:
    services = _compose()["services"]
    mosquitto = services["mosquitto"]
    env = _environment(services["tapwatch"])
    url = urlparse(env["TAPWATCH_MQTT_URL"])
    assert url.hostname == "mosquitto"
    config_path = _host_path(mosquitto, "/mosquitto/config/mosquitto.conf")
    assert config_path is not None and config_path.is_file()
    config = config_path.read_text(encoding="utf-8")
    directives: dict[str, str] = {}
    for raw in config.splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            key, _, value = raw.strip().partition(" ")
            directives[key] = value.strip()
    listeners = _listeners(config)
    tls = _host_path(mosquitto, "/mosquitto/config/conf.d")
    assert tls is not None
    listeners |= _listeners((tls / "tls.conf.example").read_text(encoding="utf-8"))
    published = {int(str(p).split(":")[-1]) for p in mosquitto["ports"]}
    assert published <= set(listeners), "a published port has no listener"
    # Where meters connect, a client's id is its username: a meter account cannot take the monitor's session over.
    assert all("use_username_as_clientid true" in listeners[port] for port in published)
    monitor_port = url.port or 1883
    assert monitor_port in listeners and monitor_port not in published, "the monitor's listener is open to meters"
    assert "use_username_as_clientid true" not in listeners[monitor_port], "its connections need their own ids"
    assert directives["allow_anonymous"] == "false"
    assert directives["persistence"] == "true"
    volume_targets = [t for s, t in _mounts(mosquitto) if not s.startswith(".")]
    assert any(directives["persistence_location"].startswith(t) for t in volume_targets), "persistence not on a volume"
    assert any(directives["password_file"].startswith(t) for t in volume_targets), "password file not on a volume"
    # the entrypoint builds the ACL on the auth volume from the shipped one (or the generated one)
    assert any(directives["acl_file"].startswith(t) for t in volume_targets), "ACL not on a volume"
    acl = _host_path(mosquitto, "/mosquitto/config/acl")
    assert acl is not None and acl.is_file()
    acl_text = acl.read_text(encoding="utf-8")
    assert "user simulator" not in acl_text, "the shipped ACL lets the demo's simulator write every meter's topic"
    assert f"user {env['TAPWATCH_MQTT_USERNAME']}" in acl_text
    prefix = env["TAPWATCH_MQTT_TOPIC_PREFIX"]
    assert f"pattern write {prefix}/%u/readings" in acl_text, "meters must publish only their own readings topic"
    # What a client of a public listener subscribes to lies under its mount point, so a meter account cannot join
    # the monitor's shared group ($share/... would be public/$share/...); the monitor reads the meters there.
    mounts = {port: [o.split()[1] for o in listeners[port] if o.startswith("mount_point ")] for port in published}
    assert all(len(mount) == 1 for mount in mounts.values()), f"a public listener without its mount point: {mounts}"
    mount_points = {mount[0] for mount in mounts.values()}
    for mount in mount_points:
        assert prefix.startswith(mount) and env["TAPWATCH_MQTT_ALERT_PREFIX"].startswith(mount)
    assert not any(o.startswith("mount_point ") for o in listeners[monitor_port])
    entrypoint = mosquitto["entrypoint"][-1]
    script = _host_path(mosquitto, entrypoint)
    assert script is not None and script.is_file()
    script_text = script.read_text(encoding="utf-8")
    # the demo's simulator publishes as meters do (public listener), so its grant names the topics as filed
    simulated = Settings.model_fields["mqtt_topic_prefix"].default
    assert all(f"topic write {mount}{simulated}/#" in script_text for mount in mount_points)
    for path in (directives["password_file"], directives["acl_file"]):
        directory, name = path.rsplit("/", 1)
        assert f"AUTH_DIR:-{directory}}}" in script_text and f"$AUTH_DIR/{name}" in script_text, (
            f"entrypoint misses {path}"
        )
    assert "/mosquitto/config/acl" in script_text


# Settings the stack fixes for the tapwatch container (they win over .env), and why.
STACK_FIXED = {
    "TAPWATCH_DATA_DIR": "the tapwatch-data volume",
    "TAPWATCH_DATABASE_URL": "the postgres service",
    "TAPWATCH_MQTT_URL": "the mosquitto service",
    "TAPWATCH_MQTT_USERNAME": "the broker's service account (deploy/mosquitto/entrypoint.sh)",
    "TAPWATCH_MQTT_PASSWORD": "MQTT_TAPWATCH_PASSWORD, which the broker's entrypoint reads too",
    "TAPWATCH_MQTT_TOPIC_PREFIX": "the broker's public listeners file their clients' topics under public/",
    "TAPWATCH_MQTT_ALERT_PREFIX": "the broker's public listeners file their clients' topics under public/",
    "TAPWATCH_INFLUX_URL": "the influxdb service",
    "TAPWATCH_API_HOST": "reachable from the published port",
    "TAPWATCH_API_PORT": "the published port and the healthcheck",
}


def test_every_setting_set_in_env_reaches_the_tapwatch_container() -> None:
    """A TAPWATCH_* line in .env arrives (issue 19: SMS gateway, notifiers, escalation never did)."""
    tapwatch = _compose()["services"]["tapwatch"]
    example = _env_example()
    for name in Settings.model_fields:
        key = f"TAPWATCH_{name.upper()}"
        if key in STACK_FIXED:
            assert key in (tapwatch.get("environment") or {}), f"{key} is listed as fixed but the stack does not set it"
            assert key not in example, f".env.example sets {key}, which the stack overrides"
            continue
        sentinel = f"sentinel-{name}"
        assert _environment(tapwatch, {**example, key: sentinel}).get(key) == sentinel, f"{key} in .env never arrives"


def test_shipped_env_holds_no_simulator_account() -> None:
    """Issue 20 item 11: a production broker from .env.example has no account that may write every meter."""
    example = _env_example()
    assert example.get("MQTT_SIMULATOR_PASSWORD", "") == ""
    assert example.get("ALLOW_SIMULATOR_ACCOUNT", "no") == "no"
    mosquitto = _environment(_compose()["services"]["mosquitto"])
    assert mosquitto["ALLOW_SIMULATOR_ACCOUNT"] == "no"
    assert (
        _environment(_compose()["services"]["mosquitto"], {**example, "ALLOW_SIMULATOR_ACCOUNT": ""})[
            "ALLOW_SIMULATOR_ACCOUNT"
        ]
        == "no"
    ), "unset must mean not allowed"


def test_grafana_reads_the_bucket_tapwatch_writes() -> None:
    services = _compose()["services"]
    grafana, influxdb = services["grafana"], services["influxdb"]
    tapwatch_env, grafana_env, influx_env = (_environment(services[s]) for s in ("tapwatch", "grafana", "influxdb"))
    source = _host_path(grafana, "/etc/grafana/provisioning/datasources/influxdb.yaml")
    assert source is not None and source.is_file()
    (datasource,) = yaml.safe_load(source.read_text(encoding="utf-8"))["datasources"]
    url = urlparse(datasource["url"])
    assert url.hostname == "influxdb" and url.hostname in services
    assert urlparse(tapwatch_env["TAPWATCH_INFLUX_URL"]).port == url.port == 8086
    bucket = grafana_env[datasource["database"].removeprefix("$")]  # Grafana expands $VAR from its environment
    assert bucket == tapwatch_env["TAPWATCH_INFLUX_BUCKET"] == influx_env["DOCKER_INFLUXDB_INIT_BUCKET"]
    header = datasource["secureJsonData"]["httpHeaderValue1"]
    token = grafana_env[header.split("$", 1)[1]]
    assert token == tapwatch_env["TAPWATCH_INFLUX_TOKEN"] == influx_env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert tapwatch_env["TAPWATCH_INFLUX_ORG"] == influx_env["DOCKER_INFLUXDB_INIT_ORG"]
    assert any(t == "/var/lib/influxdb2" for _, t in _mounts(influxdb)), "InfluxDB data is not on a volume"

    provider_file = _host_path(grafana, "/etc/grafana/provisioning/dashboards/tapwatch.yaml")
    assert provider_file is not None and provider_file.is_file()
    (provider,) = yaml.safe_load(provider_file.read_text(encoding="utf-8"))["providers"]
    folder = _host_path(grafana, provider["options"]["path"])
    assert folder is not None
    dashboards = list(folder.glob("*.json"))
    assert dashboards, "no dashboard to provision"
    for path in dashboards:
        dash = json.loads(path.read_text(encoding="utf-8"))
        uids = {p["datasource"]["uid"] for p in dash["panels"]} | {
            a["datasource"]["uid"] for a in dash["annotations"]["list"]
        }
        assert uids == {datasource["uid"]}, path.name
        titles = " ".join(p["title"].lower() for p in dash["panels"])
        for needed in ("per elder", "dead letters", "delivery lag"):
            assert needed in titles, f"{path.name}: no {needed} panel"
        assert any("alert_events" in a["query"] for a in dash["annotations"]["list"]), "alerts are not annotations"


def test_influxdb_init_scripts_and_tasks_exist() -> None:
    influxdb = _compose()["services"]["influxdb"]
    init = _host_path(influxdb, "/docker-entrypoint-initdb.d")
    assert init is not None and list(init.glob("*.sh"))
    for script in init.glob("*.sh"):
        for ref in re.findall(r"/tapwatch/tasks/[\w.]+", script.read_text(encoding="utf-8")):
            task = _host_path(influxdb, ref)
            assert task is not None and task.is_file(), ref


def test_every_variable_an_influxdb_init_script_reads_reaches_the_container() -> None:
    """10-downsampling.sh takes the daily aggregates' day start from INFLUXDB_DAY_OFFSET (16 h: midnight at UTC+8),
    but compose never passed it to the influxdb container: a district elsewhere could not set it from .env, and
    its "daily" use was cut at another hour than the API's days."""
    influxdb = _compose()["services"]["influxdb"]
    init = _host_path(influxdb, "/docker-entrypoint-initdb.d")
    assert init is not None
    env = _environment(influxdb)
    for script in init.glob("*.sh"):
        text = script.read_text(encoding="utf-8")
        assigned = set(re.findall(r"^\s*([A-Z_][A-Z0-9_]*)=", text, re.M))
        read = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", text)) - assigned
        assert read - set(env) == set(), f"{script.name} reads these, which compose does not pass to influxdb"


def test_env_example_covers_every_variable_and_holds_no_secrets() -> None:
    text = COMPOSE.read_text(encoding="utf-8").replace("$$", "")
    needed = {m.group(1) for m in VAR.finditer(text) if m.group(2) is None}
    example = _env_example()
    assert needed - set(example) == set(), "variables the compose file uses without a default"
    for key, value in example.items():
        if SECRET_HINT.search(key):
            assert value in ("", "change-me"), f".env.example must not hold a real secret: {key}"
    assert ".env" in (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in (REPO / ".gitignore").read_text(encoding="utf-8").split()


def test_dockerfile_runs_tapwatch_as_a_non_root_user_with_a_postgres_driver() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    final_stage = dockerfile.rsplit("\nFROM ", 1)[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, flags=re.M)
    assert users and users[-1] not in ("root", "0", "0:0"), "the image must not run as root"
    assert 'CMD ["tapwatch", "run"]' in final_stage
    assert "python:3.11-slim" in dockerfile
    for source in re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies missing {path}"
    url = _environment(_compose()["services"]["tapwatch"])["TAPWATCH_DATABASE_URL"]
    if url.startswith("postgresql+psycopg"):
        pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
        assert "psycopg" in dockerfile or "psycopg" in pyproject, "no PostgreSQL driver in the image"


def test_every_tapwatch_command_in_the_stack_parses() -> None:
    from tapwatch.cli import build_parser

    commands = []
    for service in _compose()["services"].values():
        command = service.get("command")
        text = " ".join(command) if isinstance(command, list) else str(command or "")
        commands += [c.strip() for c in re.findall(r"tapwatch\s+[^&]+", text)]
    commands.append(" ".join(json.loads(re.findall(r"^CMD\s+(\[.*\])", (REPO / "Dockerfile").read_text(), re.M)[-1])))
    assert any(c.startswith("tapwatch simulate") and "--mqtt" in c for c in commands)
    parser = build_parser()
    for command in commands:
        argv = [a.strip("\"'") for a in command.replace("$$", "$").split()[1:]]
        parser.parse_args(argv)  # exits (fails the test) on an unknown command or flag


def test_the_demo_simulator_registers_its_elders_with_the_district_s_settings() -> None:
    """The simulator had no env_file: the elders it registers (``tapwatch register``) took Asia/Shanghai and
    every other default whatever .env said (TAPWATCH_TIMEZONE Asia/Urumqi for a district in Xinjiang)."""
    services = _compose()["services"]
    example = _env_example()
    district = {**example, "TAPWATCH_TIMEZONE": "Asia/Urumqi"}
    simulator = _environment(services["simulator"], district)
    assert simulator.get("TAPWATCH_TIMEZONE") == "Asia/Urumqi"
    # the same store as the monitor's
    assert simulator["TAPWATCH_DATABASE_URL"] == _environment(services["tapwatch"], district)["TAPWATCH_DATABASE_URL"]


# ``date`` with the clock at $FAKE_NOW (epoch seconds): a relative ``-d`` is taken from that instant.
FAKE_DATE = """#!{python}
import os, subprocess, sys
real, now, args = "{real}", os.environ["FAKE_NOW"], sys.argv[1:]
base = subprocess.run([real, "-u", "-d", "@" + now, "+%Y-%m-%d %H:%M:%S UTC"], capture_output=True, text=True)
if "-d" in args:
    args[args.index("-d") + 1] = base.stdout.strip() + " " + args[args.index("-d") + 1]
else:
    args = ["-d", "@" + now, *args]
os.execv(real, [real, *args])
"""


def test_the_demo_simulator_sends_no_reading_the_monitor_refuses_at_any_hour(tmp_path: Path) -> None:
    """The demo's simulator takes its first day from ``date -u``: the UTC date two days back, which the simulator
    reads as a local date (UTC+8). From 16:00 to 24:00 UTC (00:00 to 08:00 in Beijing) that day began more than
    72 h before, and its first hours were dead-lettered as older than the late window (a meter clock fault).
    Its data then ended at today's midnight: six hours into today the monitor reported every simulated meter
    offline. It follows now (--follow): what it sends at once reaches the present."""
    from simulator.cli import config_from_args
    from simulator.follow import stretches
    from tapwatch.cli import build_parser

    real = shutil.which("date")
    assert real is not None
    (tmp_path / "date").write_text(FAKE_DATE.format(python=sys.executable, real=real), encoding="utf-8")
    (tmp_path / "date").chmod(0o755)
    script = " ".join(_compose()["services"]["simulator"]["command"]).replace("$$", "$")
    start = re.search(r"START=\$\((.+?)\) &&", script)
    assert start is not None, "the simulator no longer computes START"
    (publish,) = [c for c in re.findall(r"tapwatch simulate [^&]+", script) if "--mqtt" in c]
    assert "--follow" in publish.split(), "the demo's readings end and its meters go offline"
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    oldest_s, ahead_s = defaults.late_window_hours * 3600, defaults.future_tolerance_minutes * 60
    starting_up_s = 600  # simulating and registering the elders before the first message goes out
    day = datetime(2026, 12, 7, tzinfo=UTC).timestamp()
    for hour in range(24):
        now = day + hour * 3600 + 1800
        env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "FAKE_NOW": str(int(now))}
        first = subprocess.run(["sh", "-c", start.group(1)], capture_output=True, text=True, env=env, check=True)
        argv = publish.replace("$START", first.stdout.strip()).split()[1:]
        # --follow sends at once what the meters delivered until now, then each reading when it is due
        res = next(stretches(config_from_args(build_parser().parse_args(argv), now=now)))
        sent = res.ts[np.isfinite(res.total_l) & (res.delivered_at < now)]
        at = datetime.fromtimestamp(now, UTC).strftime("%H:%M UTC")
        assert sent.min() >= now + starting_up_s - oldest_s, f"at {at} the first readings are past the late window"
        assert sent.max() <= now + ahead_s, f"at {at} readings lie in the future"
        # live: readings up to now, which the monitor (wall clock) does not take for offline meters
        assert sent.max() >= now - 2 * 1800, f"at {at} the readings sent end before now"
