"""``tapwatch demo``: the whole monitor on embedded defaults, fed by simulated elders.

An in-process MQTT broker, SQLite under var/demo, ~20 simulated elders (one
of whom falls), a stand-in grid platform and a stand-in SMS gateway for the
emergency contacts that print what they receive, and the API and dashboard on
127.0.0.1:8000.

The monitor starts as if it had been watching for a week: the simulated week
before is loaded through the same pipeline with alerts held back (it is the
learning period, which a real deployment has long left behind), so the
routines are learned when the rest arrives over MQTT. Without it the fixed
12-hour rule of the learning period would ring for healthy elders in the
first minute.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from alerts.daily import DailyNotes
from alerts.manager import AlertManager
from alerts.receiver import WebhookReceiver
from core.argtypes import number
from core.settings import get_settings
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from simulator import demo_config, simulate
from simulator.publisher import payload, plan_messages, publish
from store.registry import RegistryError, register_elder
from store.schema import users
from store.users import create_user, hash_password
from tapwatch.broker import free_port, port_in_use
from tapwatch.service import Service
from tapwatch.serving import bind_api, serve

log = logging.getLogger(__name__)

# The first week is the learning period (detect.Thresholds.cold_start_days), loaded straight into the
# store without alerts; the next day is sent over MQTT at once, so routines are learned when the live
# part begins; the live two days then take about 100 s at the default speed.
LEARNING_DAYS = 7.0
HISTORY_DAYS = 8.0
DEMO_DAYS = 10
LEARNING_BATCH = 200  # messages per pipeline batch while loading the learning week
SUBSCRIBE_TIMEOUT_S = 60.0
#: Left in the directory the demo made: only such a directory (or an empty one) is reset on the next run.
DEMO_MARK = ".tapwatch-demo"
#: The demo's own directory (``make demo``): reset even without the mark, which demos before session 15 did not leave.
DEMO_DIR = "var/demo"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="Run the whole monitor on embedded defaults with simulated elders (one falls).",
        description="Start an in-process MQTT broker, SQLite, simulated meters in accelerated time, a stand-in "
        "grid platform, and the API and dashboard; print what to open.",
    )
    p.add_argument("--port", type=int, default=8000, help="API and dashboard port (default 8000)")
    p.add_argument("--mqtt-port", type=int, default=1883, help="embedded broker port (default 1883)")
    p.add_argument(
        "--speed",
        type=number(0.0, above=True),
        default=1800.0,
        help="simulated seconds per real second (default 1800: an hour every 2 s)",
    )
    p.add_argument("--data-dir", default=DEMO_DIR, help="where the demo database lives (reset each run)")
    p.add_argument("--keep", action="store_true", help="keep the previous demo database")
    p.add_argument(
        "--exit-after", type=number(0.0), default=0.0, help="stop after this many seconds (0: run until Ctrl-C)"
    )
    p.set_defaults(func=run)


#: Settings the demo takes from no .env: run in a deployment's checkout, it read the district's robots,
#: InfluxDB and broker setup from its .env, and posted simulated elders' falls into real workers' groups.
STAND_ALONE: dict[str, Any] = {
    "alert_notifiers": None,  # every stand-in configured below: the platform and the SMS gateway
    "wecom_robot_url": None,
    "wecom_community_robots": {},
    "dingtalk_robot_url": None,
    "dingtalk_robot_secret": None,
    "dingtalk_community_robots": {},
    "sms_gateway_token": None,
    "influx_url": None,
    "influx_token": None,
    "mqtt_username": None,
    "mqtt_password": None,
    "mqtt_ca_file": None,
    "mqtt_protocol": "3.1.1",  # what the embedded broker speaks
    "mqtt_shared_group": None,
}


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if not args.keep:
        _reset(data_dir)
    # Bound before anything starts, the banner printed once it serves: a port taken stops the demo in one line.
    listener = bind_api("127.0.0.1", args.port, port_named_by="--port", language=get_settings().language)
    mqtt_port = args.mqtt_port if not port_in_use("127.0.0.1", args.mqtt_port) else free_port()
    # A fresh secret per run, shared with the stand-in platform: the demo signs its events like production.
    webhook_secret = secrets.token_hex(32)
    platform = WebhookReceiver(secret=webhook_secret.encode(), on_event=_print_event).start()
    # Emergency contacts are texted first (level 1); without a reachable channel every alert would go
    # straight to a work order.
    sms_secret = secrets.token_hex(32)  # its own: the platform's would let the gateway sign events to the platform
    sms = WebhookReceiver(secret=sms_secret.encode(), on_event=_print_text).start()
    settings = get_settings(
        data_dir=data_dir,
        database_url="",
        embedded_broker=True,
        mqtt_url=f"mqtt://127.0.0.1:{mqtt_port}",
        api_host="127.0.0.1",
        api_port=args.port,
        webhook_url=platform.url,
        webhook_secret=webhook_secret,
        sms_gateway_url=sms.url,
        sms_gateway_secret=sms_secret,
        offline_clock="data",
        offline_check_s=2.0,
        late_window_hours=24 * (DEMO_DAYS + 2),
        **STAND_ALONE,
    ).model_copy(update=STAND_ALONE)  # again: a dict given above is merged with .env's, not put in its place
    args.store_url = settings.effective_database_url  # not the .env's: what tapwatch.cli names if it fails
    # Simulated days end at today's local midnight, so accelerated time never runs into the future.
    cfg = demo_config(start=_demo_start(days=DEMO_DAYS), days=DEMO_DAYS, history_days=HISTORY_DAYS)
    sim = simulate(cfg)
    service = Service(settings)
    with service.engine.begin() as conn:
        for elder in sim.elders:
            with contextlib.suppress(RegistryError):
                register_elder(conn, elder, elder["meter_id"], time.time())
        accounts = demo_users(conn, sorted({e["community"] for e in sim.elders}))
    learned = load_learning_period(service.engine, sim, settings, LEARNING_DAYS)
    service.start()
    # Meters publish only once the monitor's subscription stands: the broker drops whatever is published
    # before it (at demo start the consumer's child process takes seconds; the history burst takes one).
    if not service.consumer.connected.wait(SUBSCRIBE_TIMEOUT_S):
        service.stop()
        platform.stop()
        sms.stop()
        listener.close()
        log.error("the monitor did not subscribe to the embedded broker within %.0f s", SUBSCRIBE_TIMEOUT_S)
        return 1
    feeder = threading.Thread(
        target=_feed, args=(sim, settings.mqtt_url, args.speed), name="demo-simulator", daemon=True
    )
    feeder.start()
    fallen = [lab for lab in sim.labels if lab.category == "incident"]
    banner = _banner(settings, sim, fallen, args.speed, accounts, learned)
    deadline = threading.Timer(args.exit_after, _interrupt)
    # A daemon, cancelled on the way out: the interpreter joins every other thread at exit, so a stop
    # (Ctrl-C, SIGTERM) would otherwise wait out the whole --exit-after.
    deadline.daemon = True
    if args.exit_after:
        deadline.start()
    try:
        serve(settings, service, listener, lambda: print(banner, flush=True))
    finally:
        deadline.cancel()
        service.stop()
        platform.stop()
        sms.stop()
    return 0


def _demo_start(days: int) -> str:
    shanghai_midnight = (datetime.now(UTC) + timedelta(hours=8)).date()
    return (shanghai_midnight - timedelta(days=days)).isoformat()


def _reset(data_dir: Path) -> None:
    """Empty the demo's directory; one it did not make may be a real store (``--data-dir var``): refused."""
    if data_dir.exists():
        ours = (data_dir / DEMO_MARK).exists() or data_dir.resolve() == Path(DEMO_DIR).resolve()
        if any(data_dir.iterdir()) and not ours:
            raise ValueError(
                f"--data-dir {data_dir} is not a directory the demo made, and the demo empties its directory "
                "on each run: give a new or empty one, or --keep to run on what is there"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / DEMO_MARK).touch()


def _feed(sim: Any, url: str, speed: float) -> None:
    try:
        publish(sim, url=url, speed=speed, history_days=HISTORY_DAYS, skip_days=LEARNING_DAYS)
        log.info("simulated meters finished publishing")
    except Exception:  # the demo goes on serving what arrived
        log.exception("simulator stopped")


class _LearningPeriod(AlertManager):
    """The alert manager while the learning week loads: findings are learned from, not raised."""

    def apply(self, conn: Any, elder: Any, finding: Any, now: float) -> str | None:
        return None


def load_learning_period(engine: Any, sim: Any, settings: Any, days: float) -> int:
    """Store the readings of the simulated first ``days`` through the pipeline and checkpoint the learned
    routines, raising no alert; returns the readings stored.

    The monitor's own pipeline then loads these checkpoints, as after a restart.
    """
    pipeline = Pipeline(
        engine,
        _LearningPeriod(),
        late_window_s=settings.late_window_hours * 3600,
        default_tz=settings.timezone,
        checkpoint_interval_s=settings.checkpoint_interval_s,
        daily=DailyNotes(channels=()),  # no family note for a simulated past week
    )
    week, _rest = plan_messages(sim, history_days=days)
    now = time.time()
    stored = 0
    for lo in range(0, len(week), LEARNING_BATCH):
        batch = [
            RawMessage("demo-learning-period", payload(sim, msg), sim.meter_ids[msg.meter_idx], now)
            for msg in week[lo : lo + LEARNING_BATCH]
        ]
        stored += pipeline.process(batch).readings_stored
    pipeline.flush_checkpoints()
    return stored


def event_line(event: dict[str, Any]) -> str:
    """One platform event as the demo prints it; later events of a case carry no address (the first did)."""
    data = event.get("data", {})
    who = data.get("who", {})
    place = f"{who.get('community', '')}{who.get('building', '')}{who.get('room', '')}"
    elder = " ".join(part for part in (str(who.get("name", data.get("elder_id", ""))), place) if part)
    return (
        f"[网格平台/grid platform] {event.get('type', '').rsplit('.', 1)[-1]}: "
        f"{data.get('kind_label', {}).get('zh', data.get('kind'))} · {elder} — {data.get('message', {}).get('zh', '')}"
    )


def _print_event(event: dict[str, Any]) -> None:
    print(event_line(event), flush=True)


def _print_text(message: dict[str, Any]) -> None:
    phone = str(message.get("to", ""))
    print(f"[短信/SMS 紧急联系人 {phone[:3]}****{phone[-4:]}] {message.get('text', '')}", flush=True)


def _interrupt() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


#: Demo accounts: (username, role); the cadre and the operator get the simulated elders' communities.
DEMO_USERS = (("demo.cadre", "cadre"), ("demo.operator", "operator"), ("demo.admin", "admin"))


def demo_users(conn: Any, communities: list[str]) -> list[tuple[str, str, str]]:
    """Create (or, with --keep, reset) the demo accounts with fresh passwords; returns (username, role, password)."""
    accounts = []
    for username, role in DEMO_USERS:
        password = "demo-" + secrets.token_hex(4)
        scope = ["*"] if role == "admin" else communities
        try:
            create_user(conn, username=username, password=password, role=role, communities=scope, now=time.time())
        except ValueError:  # kept from an earlier run: same account, new password
            conn.execute(
                update(users)
                .where(users.c.username == username)
                .values(password_hash=hash_password(password), communities=scope, disabled=False)
            )
        accounts.append((username, role, password))
    return accounts


def _banner(
    settings: Any,
    sim: Any,
    incidents: list[Any],
    speed: float,
    accounts: Sequence[tuple[str, str, str]] = (),
    learned: int = 0,
) -> str:
    names = {e["meter_id"]: e["name"] for e in sim.elders}
    lines = [
        "",
        "tapwatch demo is running",
        f"  dashboard:  http://{settings.api_host}:{settings.api_port}/  (sign in with a demo account below)",
        f"  API docs:   http://{settings.api_host}:{settings.api_port}/docs",
        f"  broker:     {settings.mqtt_url} (in-process)",
        f"  store:      {settings.effective_database_url}",
        f"  {len(sim.elders)} simulated elders publish readings in accelerated time (1 s = {speed / 60:g} "
        "simulated minutes); alerts sent to the stand-in grid platform and texts to emergency contacts "
        "are printed below.",
        f"  learning period: {learned} readings of the first {LEARNING_DAYS:g} simulated days were loaded "
        "without alerts, so every routine is learned.",
    ]
    for lab in incidents:
        when = datetime.fromtimestamp(lab.start, UTC) + timedelta(hours=8)
        lines.append(
            f"  scripted incident: {lab.kind} for {names.get(lab.meter_id, lab.meter_id)} "
            f"({lab.meter_id}) at {when:%m-%d %H:%M} (Asia/Shanghai)"
        )
    for username, role, password in accounts:
        lines.append(f"  demo account: {username:<14} password {password}  ({role})")
    lines.append(f"  commands on this demo's store: export TAPWATCH_DATA_DIR={settings.data_dir}")
    lines.append("  Ctrl-C to stop.")
    return "\n".join(lines)
