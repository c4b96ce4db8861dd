"""The shipped broker, run for real: deploy/mosquitto's entrypoint, config, TLS listener and generated accounts.

`tapwatch broker-credentials` writes the password file and ACL from a real
registry; deploy/mosquitto/entrypoint.sh (the compose service's entrypoint)
builds the broker's files from them and runs Debian's mosquitto with
deploy/mosquitto/mosquitto.conf and conf.d/tls.conf.example, their container
paths rewritten to a temp dir and the ports to free loopback ports. Meters then
publish over TLS (a throwaway CA) and the monitor's account reads them.
"""

from __future__ import annotations

import base64
import csv
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine

from core.settings import Settings
from store.registry import retire_elder
from tapwatch.brokercreds import hash_password, read_password_file, write_credentials
from tapwatch.cli import main
from tests.conftest import MOSQUITTO, REPO, Mosquitto, free_port, wait_until
from tests.helpers import certificates, register

DEPLOY = REPO / "deploy" / "mosquitto"
SERVICE_PASSWORD = "monitor-secret"

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or shutil.which("mosquitto_passwd") is None or shutil.which("openssl") is None,
    reason="needs Debian's mosquitto (with mosquitto_passwd) and openssl",
)


@dataclass
class Broker:
    """The entrypoint process and where it keeps things."""

    root: Path
    port: int
    tls_port: int
    env: dict[str, str]
    #: The loopback port of each listener of the shipped configuration, by its port in the container.
    listeners: dict[int, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def generated(self) -> Path:
        return Path(self.env["BROKER_ACCOUNTS_DIR"])

    def run(self) -> subprocess.Popen[bytes]:
        # A container's first process starts with SIGHUP at its default. A test run under nohup (or a CI runner that
        # ignores it) would hand the entrypoint an ignored SIGHUP, which a shell can then never trap.
        previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
        try:
            self.proc = subprocess.Popen(
                ["/bin/sh", str(DEPLOY / "entrypoint.sh")],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        finally:
            signal.signal(signal.SIGHUP, previous)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        return self.proc

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line.decode(errors="replace"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def _config(root: Path, listeners: dict[int, int], tls_port: int) -> Path:
    """deploy/mosquitto's files with their container paths moved into ``root`` and each plain listener's port to
    its loopback port in ``listeners`` (the container's port -> the test's), the TLS listener's to ``tls_port``."""
    conf_d = root / "conf.d"
    conf_d.mkdir()
    tls = (DEPLOY / "conf.d" / "tls.conf.example").read_text(encoding="utf-8")
    tls = tls.replace("listener 8883", f"listener {tls_port} 127.0.0.1").replace(
        "/mosquitto/certs", str(root / "certs")
    )
    (conf_d / "tls.conf").write_text(tls, encoding="utf-8")
    text = (DEPLOY / "mosquitto.conf").read_text(encoding="utf-8")
    assert "listener 1883\n" in text and "include_dir /mosquitto/config/conf.d" in text
    for container_port in _plain_listeners(text):
        local = listeners.setdefault(container_port, free_port())
        text = text.replace(f"listener {container_port}\n", f"listener {local} 127.0.0.1\n")
    text = (
        text.replace("/mosquitto/config/conf.d", str(conf_d))
        .replace("/mosquitto/auth", str(root / "auth"))
        .replace("/mosquitto/data/", f"{root / 'data'}/")
    )
    # As root, mosquitto would drop to its own user, which cannot read pytest's private tmp dirs.
    text += "user root\n" if os.geteuid() == 0 else ""
    config = root / "mosquitto.conf"
    config.write_text(text, encoding="utf-8")
    return config


def _plain_listeners(config: str) -> list[int]:
    """The ports of the listeners a mosquitto.conf opens (``listener PORT`` lines)."""
    return [int(port) for port in re.findall(r"^listener (\d+)$", config, re.MULTILINE)]


class MonitorSettings(NamedTuple):
    """What the shipped docker-compose.yml gives the monitor (its defaults): where and how it reads the meters."""

    port: int  # the broker's port in the container
    client_id: str
    shared_group: str
    topic_prefix: str
    alert_prefix: str


def _monitor_settings() -> MonitorSettings:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse docker-compose.yml")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    env = {name: _default(value) for name, value in compose["services"]["tapwatch"]["environment"].items()}
    url = re.fullmatch(r"mqtt://mosquitto:(\d+)", env["TAPWATCH_MQTT_URL"])
    assert url is not None, "the monitor's broker URL changed shape"
    return MonitorSettings(
        int(url.group(1)),
        env["TAPWATCH_MQTT_CLIENT_ID"],
        env["TAPWATCH_MQTT_SHARED_GROUP"],
        env.get("TAPWATCH_MQTT_TOPIC_PREFIX", Settings.model_fields["mqtt_topic_prefix"].default),
        env.get("TAPWATCH_MQTT_ALERT_PREFIX", Settings.model_fields["mqtt_alert_prefix"].default),
    )


def _default(value: object) -> str:
    """A compose value as it is when .env does not set it: ``${NAME:-default}`` is its default."""
    found = re.fullmatch(r"\$\{[A-Z0-9_]+:-([^}]*)\}", str(value))
    return found.group(1) if found else str(value)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    root = tmp_path / "broker"
    for sub in ("auth", "data", "certs", "generated"):
        (root / sub).mkdir(parents=True)
    certificates(root / "certs")
    shutil.copy(root / "certs" / "server.crt", root / "certs" / "mqtt.crt")
    shutil.copy(root / "certs" / "server.key", root / "certs" / "mqtt.key")
    port, tls_port = free_port(), free_port()
    listeners = {1883: port}
    env = {
        "PATH": os.environ["PATH"],
        "MQTT_TAPWATCH_PASSWORD": SERVICE_PASSWORD,
        "MOSQUITTO_AUTH_DIR": str(root / "auth"),
        "MOSQUITTO_DATA_DIR": str(root / "data"),
        "MOSQUITTO_CONFIG": str(_config(root, listeners, tls_port)),
        "MOSQUITTO_BASE_ACL": str(DEPLOY / "acl"),
        "BROKER_ACCOUNTS_DIR": str(root / "generated"),
        "MOSQUITTO_BIN": str(MOSQUITTO),
    }
    b = Broker(root, port, tls_port, env, listeners)
    yield b
    b.stop()


def _wait_listening(broker: Broker) -> None:
    """Until the broker listens on its TLS port; at once if it exited. 30 s: a loaded CI machine is slow to start it."""
    proc = broker.proc
    assert proc is not None
    wait_until(lambda: _listening(broker.tls_port) or proc.poll() is not None, 30)
    assert _listening(broker.tls_port), f"exit code {proc.poll()}: " + "".join(broker.output)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Client:
    """A paho client over TLS (or plain, on ``port``) that records its CONNACK, disconnections and messages.

    ``client_id`` and ``clean_session=False`` make it take (or resume) a broker session as the monitor does."""

    def __init__(
        self,
        broker: Broker,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        clean_session: bool = True,
        port: int | None = None,
        mqtt5: bool = False,
    ) -> None:
        self.connack: mqtt.ReasonCode | None = None
        self.disconnects = 0
        self.received: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{username}-{time.monotonic_ns()}",
            # MQTT 5 has no clean_session (its clean start is the connect's): the monitor's shared group needs it.
            **({"protocol": mqtt.MQTTv5} if mqtt5 else {"clean_session": clean_session}),
        )
        self.client.username_pw_set(username, password)
        if port is None:
            self.client.tls_set(ca_certs=str(broker.root / "certs" / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = lambda c, u, f, rc, p: setattr(self, "connack", rc)
        self.client.on_disconnect = lambda c, u, f, rc, p: setattr(self, "disconnects", self.disconnects + 1)
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.connect("127.0.0.1", broker.tls_port if port is None else port)
        self.client.loop_start()
        assert wait_until(lambda: self.connack is not None, 10), "no CONNACK"

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _can_login(broker: Broker, username: str, password: str) -> bool:
    client = Client(broker, username, password)
    client.close()
    return client.accepted


def _credentials(out: Path) -> dict[str, str]:
    passwords: dict[str, str] = {}
    for path in sorted(out.glob("new-credentials-*.csv")):
        with path.open(encoding="utf-8") as f:
            passwords.update({row["meter_id"]: row["password"] for row in csv.DictReader(f)})
    return passwords


def test_two_runs_in_one_second_keep_the_new_passwords_of_both(tmp_path: Path) -> None:
    """The CSV of new passwords was named by the second: a second run within it (a script registering meters
    in steps, or rotating them one by one) replaced the first's CSV, whose meters kept accounts in passwd whose
    passwords nobody had any more; each run's passwords are kept, in a file of their own."""
    settings = Settings(data_dir=tmp_path, mqtt_password=SERVICE_PASSWORD)
    out = tmp_path / "broker"
    same_second = 1_800_000_000.0
    write_credentials(out, ["WM1"], settings, now=same_second)
    write_credentials(out, ["WM1", "WM2"], settings, now=same_second)
    write_credentials(out, ["WM1", "WM2"], settings, rotate=["WM2"], now=same_second)
    handed = {}
    for path in sorted(out.glob("new-credentials-*.csv")):
        with path.open(encoding="utf-8") as f:
            handed.update({row["meter_id"]: row["password"] for row in csv.DictReader(f)})  # later runs win
    stored = read_password_file(out / "passwd")
    assert set(handed) == {"WM1", "WM2"}
    for meter_id, password in handed.items():
        _, _, iterations, salt, _ = stored[meter_id].split("$")
        assert stored[meter_id] == hash_password(password, salt=base64.b64decode(salt), iterations=int(iterations))


@pytest.fixture
def registry(tmp_path: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """Three meters in a real store; the CLI finds it through TAPWATCH_DATABASE_URL."""
    for n in (1, 2, 3):
        register(engine, f"E{n}", f"WM{n}")
    monkeypatch.setenv("TAPWATCH_DATABASE_URL", db_url)
    monkeypatch.setenv("TAPWATCH_MQTT_USERNAME", "tapwatch")
    monkeypatch.setenv("TAPWATCH_MQTT_PASSWORD", SERVICE_PASSWORD)
    # As the monitor's container runs it (docs/deploy.md: `docker compose exec tapwatch tapwatch broker-credentials`).
    monitor = _monitor_settings()
    monkeypatch.setenv("TAPWATCH_MQTT_TOPIC_PREFIX", monitor.topic_prefix)
    monkeypatch.setenv("TAPWATCH_MQTT_ALERT_PREFIX", monitor.alert_prefix)
    return engine


def test_generated_accounts_publish_only_their_own_topic_over_tls(broker: Broker, registry: Engine) -> None:
    with registry.begin() as conn:
        retire_elder(conn, "E3", time.time())
    assert main(["broker-credentials", "--out", str(broker.generated)]) == 0
    passwords = _credentials(broker.generated)
    assert set(passwords) == {"WM1", "WM2"}, "a retired meter must get no account"
    assert (broker.generated / "passwd").stat().st_mode & 0o077 == 0, "the password file is readable by others"

    broker.run()
    _wait_listening(broker)
    settings = _monitor_settings()
    monitor = Client(broker, "tapwatch", SERVICE_PASSWORD, port=broker.listeners[settings.port])
    meter = Client(broker, "WM1", passwords["WM1"])
    try:
        assert monitor.accepted and meter.accepted
        monitor.client.subscribe(f"{settings.topic_prefix}/#", qos=1)
        assert monitor.subscribed.wait(10)
        meter.publish("tapwatch/meters/WM2/readings", b"forged")  # another meter's topic: dropped by the ACL
        meter.publish("tapwatch/meters/WM1/readings", b"own")
        assert wait_until(lambda: monitor.received, 10)
        # the broker keeps one client's messages in order: the forged one would have arrived first
        assert monitor.received == [(f"{settings.topic_prefix}/WM1/readings", b"own")]
        for username, password in (("WM1", "wrong"), ("WM3", "anything"), ("WM2", passwords["WM1"])):
            assert not _can_login(broker, username, password), f"{username} logged in"
    finally:
        monitor.close()
        meter.close()


def test_rerun_keeps_passwords_adds_meters_and_hup_reloads(broker: Broker, registry: Engine) -> None:
    assert main(["broker-credentials", "--out", str(broker.generated)]) == 0
    first = _credentials(broker.generated)
    broker.run()
    _wait_listening(broker)

    register(registry, "E4", "WM4")
    with registry.begin() as conn:
        retire_elder(conn, "E2", time.time())
    for path in broker.generated.glob("new-credentials-*.csv"):
        path.unlink()  # handed over: the next run's file holds only what it made
    assert main(["broker-credentials", "--out", str(broker.generated), "--rotate", "WM3"]) == 0
    second = _credentials(broker.generated)
    assert set(second) == {"WM3", "WM4"} and second["WM3"] != first["WM3"]
    assert broker.proc is not None
    builds = sum("entrypoint:" in line for line in broker.output)
    broker.proc.send_signal(signal.SIGHUP)  # what `docker compose kill -s HUP mosquitto` sends
    status = Path(f"/proc/{broker.proc.pid}/status").read_text()
    masks = " ".join(line for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigPnd")))
    rebuilt = wait_until(lambda: sum("entrypoint:" in line for line in broker.output) > builds, 30)
    assert rebuilt, f"the entrypoint did not rebuild the accounts on SIGHUP ({masks}): " + "".join(broker.output)
    assert wait_until(lambda: _can_login(broker, "WM4", second["WM4"]), 30), "".join(broker.output)
    assert _can_login(broker, "WM1", first["WM1"]), "an existing meter lost its password"
    assert not _can_login(broker, "WM2", first["WM2"]), "a retired meter kept its account"
    assert not _can_login(broker, "WM3", first["WM3"]), "a rotated password still works"
    assert broker.proc.poll() is None, "SIGHUP stopped the broker"


def test_a_rebuild_that_fails_on_sighup_leaves_the_accounts_in_place_and_says_so(
    broker: Broker, registry: Engine
) -> None:
    """On SIGHUP the entrypoint rebuilt the accounts under `build && kill -HUP`, where the shell ignores `set -e`:
    a step that failed (mosquitto_passwd unable to write, a full disk) went unnoticed, and the file it had left
    half made, without the monitor's account, was moved into place and loaded: every meter's readings stopped.
    mosquitto_passwd is made to fail for real: its backup file's name is taken by a directory."""
    assert main(["broker-credentials", "--out", str(broker.generated)]) == 0
    meters = _credentials(broker.generated)
    broker.run()
    _wait_listening(broker)
    auth = broker.root / "auth"
    before = (auth / "passwd").read_bytes(), (auth / "acl").read_bytes()
    (auth / "passwd.new.tmp").mkdir()  # "Error creating backup password file", exit 1
    assert broker.proc is not None
    builds = sum("entrypoint:" in line for line in broker.output)
    broker.proc.send_signal(signal.SIGHUP)
    answered = lambda: sum("entrypoint:" in line for line in broker.output) > builds  # noqa: E731
    assert wait_until(answered, 30), "".join(broker.output)
    said = "".join(broker.output)
    assert "entrypoint: rebuilding the broker accounts failed" in said, said
    assert ((auth / "passwd").read_bytes(), (auth / "acl").read_bytes()) == before
    assert not (auth / "passwd.new").exists() and not (auth / "acl.new").exists()
    assert _can_login(broker, "tapwatch", SERVICE_PASSWORD) and _can_login(broker, "WM1", meters["WM1"])
    (auth / "passwd.new.tmp").rmdir()
    broker.proc.send_signal(signal.SIGHUP)  # the cause gone, the next rebuild goes through
    assert wait_until(lambda: sum("broker accounts, simulator" in line for line in broker.output) == 2, 30), "".join(
        broker.output
    )
    assert broker.proc.poll() is None


def test_accounts_added_by_hand_are_kept_by_a_rerun(
    broker: Broker, registry: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun rewrote passwd and acl whole from the registry: an account a district's IT had added by hand (a
    monitoring probe, the demo's simulator line) and its ACL block were dropped, named only among the "removed"
    as if they were retired meters, and the probe was locked out at the next SIGHUP. An account that is neither
    the monitor's nor a meter of the registry is kept as it stands, with its ACL block; retired meters still go."""
    generated = broker.generated
    assert main(["broker-credentials", "--out", str(generated)]) == 0
    meters = _credentials(generated)
    with (generated / "passwd").open("a") as passwd:
        passwd.write(f"it-probe:{hash_password('probe-secret')}\nsimulator:{hash_password('sim-secret')}\n")
    probe_block = "# the district's probe\nuser it-probe\ntopic read $SYS/#\n"
    with (generated / "acl").open("a") as acl:
        acl.write(f"\n{probe_block}")
    register(registry, "E4", "WM4")
    with registry.begin() as conn:
        retire_elder(conn, "E2", time.time())
    capsys.readouterr()
    acls = []
    for _ in range(2):  # the second over what the first wrote
        assert main(["broker-credentials", "--out", str(generated)]) == 0
        said = capsys.readouterr().out
        assert "kept as they stand, not meters of the registry (added by hand): it-probe, simulator" in said, said
        acls.append((generated / "acl").read_text())
    assert "removed (none)" in said and acls[0] == acls[1], acls
    accounts = read_password_file(generated / "passwd")
    assert set(accounts) == {"tapwatch", "WM1", "WM3", "WM4", "it-probe", "simulator"}, accounts
    acl = (generated / "acl").read_text()
    assert acl.count(probe_block) == 1 and "user WM2\n" not in acl and "user WM4\n" in acl, acl
    new = _credentials(generated)
    broker.run()
    _wait_listening(broker)
    assert _can_login(broker, "it-probe", "probe-secret"), "".join(broker.output)
    assert _can_login(broker, "WM1", meters["WM1"]) and _can_login(broker, "WM4", new["WM4"])
    assert not _can_login(broker, "WM2", meters["WM2"]), "a retired meter kept its account"
    assert not _can_login(broker, "simulator", "sim-secret"), "the entrypoint lets it in only when allowed"


def test_simulator_account_is_refused_unless_allowed(broker: Broker) -> None:
    broker.env["MQTT_SIMULATOR_PASSWORD"] = "sim-secret"
    proc = broker.run()
    assert proc.wait(10) != 0, "the broker started with a simulator account nobody allowed"
    assert wait_until(lambda: "ALLOW_SIMULATOR_ACCOUNT" in "".join(broker.output), 5)

    # a password file left on the volume by an earlier demo run: its simulator line must not survive
    (broker.root / "auth" / "passwd").write_text(f"simulator:{hash_password('sim-secret')}\n")
    broker.env["MQTT_SIMULATOR_PASSWORD"] = ""
    broker.output.clear()
    broker.run()
    _wait_listening(broker)
    assert not _can_login(broker, "simulator", "sim-secret")
    broker.stop()

    broker.env.update(MQTT_SIMULATOR_PASSWORD="sim-secret", ALLOW_SIMULATOR_ACCOUNT="yes")
    broker.run()
    _wait_listening(broker)
    assert _can_login(broker, "simulator", "sim-secret"), "the demo's simulator cannot log in though allowed"


def test_the_healthcheck_logs_in_with_the_options_file_the_entrypoint_writes(broker: Broker) -> None:
    """The compose healthcheck's mosquitto_sub takes its login from $XDG_CONFIG_HOME/mosquitto_sub (never its
    command line, which ``ps`` shows to the host's users): the entrypoint writes it, private, and it logs in."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse docker-compose.yml")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    check = " ".join(compose["services"]["mosquitto"]["healthcheck"]["test"])
    where = re.search(r"XDG_CONFIG_HOME=/mosquitto/auth/(\S+)", check)
    port = re.search(r"-p (\d+)", check)
    assert where is not None and port is not None, check
    broker.run()
    _wait_listening(broker)
    options = broker.root / "auth" / where.group(1) / "mosquitto_sub"
    assert options.stat().st_mode & 0o077 == 0, oct(options.stat().st_mode)
    login = dict(line.split(" ", 1) for line in options.read_text(encoding="utf-8").splitlines())
    assert login == {"-u": "tapwatch", "-P": SERVICE_PASSWORD}
    client = Client(broker, login["-u"], login["-P"], port=broker.listeners[int(port.group(1))])
    client.close()
    assert client.accepted


def test_broker_credentials_refuses_meter_ids_the_broker_cannot_hold(
    broker: Broker, registry: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    register(registry, "E5", "WM:5")  # a valid meter id, but ":" ends a username in the password file
    assert main(["broker-credentials", "--out", str(broker.generated)]) == 1
    assert "WM:5" in capsys.readouterr().err
    assert set(_credentials(broker.generated)) == {"WM1", "WM2", "WM3"}
    assert main(["broker-credentials", "--out", str(broker.generated), "--rotate", "WM9"]) == 2


def test_broker_credentials_refuses_meter_ids_that_are_the_monitors_client_ids(
    broker: Broker, registry: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the public listeners a client's id is its username: a meter registered as ``tapwatch-1`` (the compose
    file's worker) would log in with the monitor's client id and drop it, on whichever listener it is."""
    register(registry, "E6", "tapwatch-1")
    register(registry, "E7", "tapwatch-ingest-alerts")  # the alert channel's id of the default worker
    register(registry, "E8", "TapWatch-2")  # (no case: a worker may be named so, and it is no meter's name)
    assert main(["broker-credentials", "--out", str(broker.generated)]) == 1
    err = capsys.readouterr().err
    assert all(meter_id in err for meter_id in ("tapwatch-1", "tapwatch-ingest-alerts", "TapWatch-2")), err
    assert "client id" in err
    assert set(_credentials(broker.generated)) == {"WM1", "WM2", "WM3"}


def test_the_monitors_account_comes_from_the_broker_url_when_it_carries_it(
    tmp_path: Path, registry: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the monitor's login in TAPWATCH_MQTT_URL (mqtt://tapwatch:PASSWORD@...), which the monitor logs in
    with, broker-credentials left its account out of the password file and said TAPWATCH_MQTT_PASSWORD was not
    set: a broker run on that file (without the compose entrypoint) refused the monitor."""
    monkeypatch.delenv("TAPWATCH_MQTT_USERNAME")
    monkeypatch.delenv("TAPWATCH_MQTT_PASSWORD")
    out = tmp_path / "accounts"
    monkeypatch.setenv("TAPWATCH_MQTT_URL", f"mqtt://tapwatch:{SERVICE_PASSWORD}@127.0.0.1:1883")
    assert main(["broker-credentials", "--out", str(out)]) == 0
    assert "not set" not in capsys.readouterr().out
    (out / "passwd").chmod(0o644)  # mosquitto as root reads it as its own user otherwise
    plain = Mosquitto(tmp_path, extra_config=f"password_file {out / 'passwd'}\n")
    plain.config.write_text(plain.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    plain.start()
    try:
        monitor = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tapwatch-login")
        monitor.username_pw_set("tapwatch", SERVICE_PASSWORD)
        assert monitor.connect("127.0.0.1", plain.port) == 0
        reason = []
        monitor.on_connect = lambda _c, _u, _f, code, _p: reason.append(code)
        monitor.loop_start()
        assert wait_until(lambda: reason, 10)
        monitor.loop_stop()
        monitor.disconnect()
        assert not reason[0].is_failure, reason[0]
    finally:
        plain.stop()


def test_a_topic_prefix_with_a_trailing_slash_still_lets_meters_publish(
    broker: Broker, registry: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TAPWATCH_MQTT_TOPIC_PREFIX=tapwatch/meters/ : ingest subscribed to tapwatch/meters/+/readings (it drops the
    slash), but broker-credentials wrote the ACL with 'tapwatch/meters//WM1/readings', so the broker silently
    dropped every reading of every meter. The prefix is taken without its trailing slash everywhere."""
    settings = _monitor_settings()
    monkeypatch.setenv("TAPWATCH_MQTT_TOPIC_PREFIX", f"{settings.topic_prefix}/")
    assert main(["broker-credentials", "--out", str(broker.generated)]) == 0
    passwords = _credentials(broker.generated)
    broker.run()
    _wait_listening(broker)
    monitor = Client(broker, "tapwatch", SERVICE_PASSWORD, port=broker.listeners[settings.port])
    meter = Client(broker, "WM1", passwords["WM1"])
    try:
        monitor.client.subscribe(f"{settings.topic_prefix}/+/readings", qos=1)  # what ingest subscribes to
        assert monitor.subscribed.wait(10)
        meter.publish("tapwatch/meters/WM1/readings", b"own")
        assert wait_until(lambda: monitor.received, 10), "the meter's reading was dropped by the ACL"
    finally:
        monitor.close()
        meter.close()


def test_a_meter_account_using_the_monitors_client_id_neither_drops_it_nor_loses_the_readings_it_was_keeping(
    broker: Broker, registry: Engine
) -> None:
    """The monitor's client id is no secret (docker-compose.yml, docs/scaling.md). A meter account that connected
    with it took the monitor's persistent session over: the broker disconnected the monitor (and each side's
    reconnect dropped the other, ingest stalled for every meter), and the readings the session held or received
    meanwhile were dropped, as the meter's account may not read them: every meter's, lost."""
    assert main(["broker-credentials", "--out", str(broker.generated)]) == 0
    passwords = _credentials(broker.generated)
    broker.run()
    _wait_listening(broker)
    settings = _monitor_settings()
    port = broker.listeners[settings.port]
    topic = "tapwatch/meters/WM1/readings"

    def monitor_session() -> Client:
        return Client(
            broker, "tapwatch", SERVICE_PASSWORD, client_id=settings.client_id, clean_session=False, port=port
        )

    monitor = monitor_session()
    monitor.client.subscribe(f"{settings.topic_prefix}/+/readings", qos=1)
    assert monitor.subscribed.wait(10)
    monitor.close()  # the monitor stopped for an upgrade: its session keeps the readings that come meanwhile
    meter = Client(broker, "WM1", passwords["WM1"])
    hostile: list[Client] = []
    try:
        meter.publish(topic, b"while the monitor was down")
        hostile.append(Client(broker, "WM2", passwords["WM2"], client_id=settings.client_id, clean_session=False))
        meter.publish(topic, b"while the meter account held the id")
        monitor = monitor_session()
        assert wait_until(lambda: len(monitor.received) == 2, 10), f"readings lost: {monitor.received}"
        # again, on the plain listener the meters may use too
        hostile.append(
            Client(broker, "WM2", passwords["WM2"], client_id=settings.client_id, clean_session=False, port=broker.port)
        )
        meter.publish(topic, b"after the meter account came back")
        assert wait_until(lambda: len(monitor.received) == 3, 10), f"readings lost: {monitor.received}"
        assert monitor.disconnects == 0, "a meter account's connection dropped the monitor's"
    finally:
        for client in (monitor, meter, *hostile):
            client.close()


def test_a_meter_account_joining_the_monitors_shared_group_takes_none_of_the_readings(
    broker: Broker, registry: Engine
) -> None:
    """The broker's ACL file never checks a subscription, only each delivery. A meter account that subscribed to
    the monitor's shared group ($share/tapwatch/..., the compose default) was given every other reading of every
    meter in turn, which the ACL then refused to send it: those readings reached nobody (5 of 10 with one worker)."""
    assert main(["broker-credentials", "--out", str(broker.generated)]) == 0
    passwords = _credentials(broker.generated)
    broker.run()
    _wait_listening(broker)
    settings = _monitor_settings()
    monitor = Client(broker, "tapwatch", SERVICE_PASSWORD, port=broker.listeners[settings.port], mqtt5=True)
    meter = Client(broker, "WM1", passwords["WM1"])
    hostile = [
        Client(broker, "WM2", passwords["WM2"], mqtt5=True),
        Client(broker, "WM3", passwords["WM3"], port=broker.port, mqtt5=True),
    ]
    try:
        group = settings.shared_group
        monitor.client.subscribe(f"$share/{group}/{settings.topic_prefix}/+/readings", qos=1)
        assert monitor.subscribed.wait(10)
        for client in hostile:  # what a meter can know: the topic it publishes to, the prefix the monitor reads
            for prefix in {"tapwatch/meters", settings.topic_prefix}:
                client.client.subscribe(f"$share/{group}/{prefix}/+/readings", qos=1)
            assert client.subscribed.wait(10)
        for k in range(10):
            meter.publish("tapwatch/meters/WM1/readings", b"%d" % k)
        assert wait_until(lambda: len(monitor.received) == 10, 10), f"{len(monitor.received)} of 10 readings arrived"
        assert all(client.received == [] for client in hostile)
    finally:
        for client in (monitor, meter, *hostile):
            client.close()


def test_the_csv_of_new_passwords_says_its_time_is_utc(tmp_path: Path) -> None:
    """The CSV was named by the UTC time without saying so (`new-credentials-20261207T193642.csv` for a run at
    03:36 in Shanghai), where the backups beside it say theirs (`tapwatch-20261206T183000Z.pgdump.age`)."""
    settings = Settings(data_dir=tmp_path, mqtt_password=SERVICE_PASSWORD)
    result = write_credentials(tmp_path / "broker", ["WM1"], settings, now=1_800_000_000.0)
    assert result.credentials_file is not None
    assert result.credentials_file.name == "new-credentials-20270115T080000Z.csv"
