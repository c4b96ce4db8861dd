"""Settings: one typed object, read from ``TAPWATCH_*`` environment variables or a ``.env`` file.

Built by :func:`get_settings` (never at import time) so tests and the CLI can
override any field.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import ssl
from pathlib import Path
from typing import Literal, NamedTuple
from urllib.parse import ParseResult, unquote, urlparse
from zoneinfo import ZoneInfo, available_timezones

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: A password among a URL's query parameters (``password``, ``sslpassword``): libpq takes its parameters there too.
_QUERY_PASSWORD = re.compile(r"(?P<keep>[?&][^=&]*password=)[^&]*", re.IGNORECASE)


def shown_url(url: str) -> str:
    """``url`` as messages may show it: every password, of its user or among its parameters, replaced by ``***``.

    >>> shown_url("mqtt://tapwatch:s3cret@broker:1883")
    'mqtt://tapwatch:***@broker:1883'
    >>> shown_url("postgresql+psycopg://tapwatch:pw@db/tapwatch?password=pw&sslmode=require")
    'postgresql+psycopg://tapwatch:***@db/tapwatch?password=***&sslmode=require'
    """
    url = _QUERY_PASSWORD.sub(lambda found: f"{found['keep']}***", url)
    parts = urlparse(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}").geturl()


def url_login(url: str) -> tuple[str | None, str | None]:
    """The user and password a broker URL carries, percent-decoded (``/ # ? @ :`` can only be written so).

    >>> url_login("mqtt://simulator:p%2Fss%40@broker:1883"), url_login("mqtt://broker")
    (('simulator', 'p/ss@'), (None, None))
    """
    parts = urlparse(url)
    user = unquote(parts.username) if parts.username else None
    return user, (unquote(parts.password) if parts.password is not None else None)


def _usable_port(parts: ParseResult, setting: str) -> None:
    """ValueError unless a URL's port, if it gives one, is 1 to 65535 (urllib checks it only when it is read)."""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{setting}: the port must be a number from 1 to 65535")


def check_ca_bundle(path: str | Path) -> None:
    """Raise ValueError, naming the file, unless ``path`` holds CA certificates TLS can verify a broker with."""
    try:
        ssl.create_default_context(cafile=str(path))
    except OSError as exc:  # ssl.SSLError is one: a file that holds no certificate
        raise ValueError(f"cannot read a CA bundle from {path}: {exc.strerror or exc}") from None


class MqttLogin(NamedTuple):
    """What every MQTT client of this process (ingest, the alert channel) logs in with."""

    username: str | None
    password: str | None  # unwrapped from its SecretStr here, and only here
    ca_file: str | None


#: Names zoneinfo reads that are no place: this machine's own zone file and tzdata's placeholder. Like the
#: ``posix/`` and ``right/`` copies of every zone, a browser knows none of them (the dashboard shows times in
#: the elder's zone) and another machine may read them differently.
_NOT_PLACES = frozenset({"localtime", "Factory", "posixrules"})


@functools.cache
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())  # walks the tz database once (about 20 ms)


def known_zone(name: str) -> str:
    """``name`` if it is an IANA zone; else ValueError (the settings, the API, ``--tz``: one check for all).

    >>> known_zone("Europe/Madrid")
    'Europe/Madrid'
    >>> known_zone("posix/Asia/Shanghai")
    Traceback (most recent call last):
    ValueError: unknown time zone 'posix/Asia/Shanghai': use an IANA name such as Asia/Shanghai
    """
    try:
        ZoneInfo(name)
        zones = _iana_zones()
        if name in _NOT_PLACES or (zones and name not in zones):  # no list at all: zoneinfo's word is all there is
            raise ValueError(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys, ...
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Asia/Shanghai") from None
    return name


class Settings(BaseSettings):
    """Everything an operator can configure. See the README's configuration table."""

    # allow_inf_nan off: nan or inf in a timeout or an interval broke the part that reads it, after start.
    model_config = SettingsConfigDict(env_prefix="TAPWATCH_", env_file=".env", extra="ignore", allow_inf_nan=False)

    data_dir: Path = Field(Path("var"), description="Where the embedded SQLite store lives (tapwatch.db).")
    database_url: str = Field("", description="SQLAlchemy URL; default: SQLite in data_dir.")
    max_clock_skew_s: float = Field(
        60.0,
        ge=0,
        description="A worker of a shared group whose clock is further than this from PostgreSQL's refuses to start "
        "(the workers time leases, timers and readings by their own clocks); 0: not checked.",
    )
    database_idle_in_transaction_s: float = Field(
        60.0,
        ge=0,
        # PostgreSQL takes idle_in_transaction_session_timeout up to 2^31 - 1 ms: a longer limit, set on each new
        # connection, was refused there, and the monitor could open none.
        le=2_147_483,
        description="PostgreSQL: a transaction of the monitor left idle this long (its process paused, frozen or cut "
        "off) is ended and its locks freed for the other workers; 0: never; at most 2147483 (24.8 days, "
        "PostgreSQL's longest).",
    )
    mqtt_url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="Broker URL (mqtt:// or mqtts://), optionally with user:password@ (mqtt_username and "
        "mqtt_password win over them); logged without its password.",
    )
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: Path | None = Field(None, description="CA bundle for mqtts:// brokers.")
    mqtt_client_id: str = Field(
        "tapwatch-ingest", min_length=1, description="Stable id: the broker keeps its session (none: refused)."
    )
    mqtt_topic_prefix: str = "tapwatch/meters"
    mqtt_protocol: Literal["3.1.1", "5"] = Field(
        "3.1.1", description='MQTT version to speak; "5" is needed for mqtt_shared_group (several workers).'
    )
    mqtt_shared_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Share the readings among workers: each subscribes to $share/<group>/...; every worker "
        "needs its own mqtt_client_id (see docs/scaling.md).",
    )
    mqtt_session_expiry_s: int = Field(
        7 * 86400, ge=0, description="MQTT 5: how long the broker keeps a worker's session while it is down."
    )
    mqtt_alert_prefix: str = "tapwatch/alerts"
    embedded_broker: bool = Field(False, description="Run an in-process MQTT broker (demo).")
    timezone: str = Field("Asia/Shanghai", description="Local time for elders registered without a time zone.")
    language: Literal["zh", "en"] = Field("zh", description="Language of console and default UI text.")
    late_window_hours: float = Field(72.0, gt=0, description="Older readings are dead-lettered.")
    future_tolerance_minutes: float = Field(15.0, ge=0, description="Readings further ahead: clock fault.")
    # -- hostile meters (issue 20): limits on what one meter's message may cost the others
    mqtt_max_message_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest readings payload parsed; larger ones are dead-lettered as 'too large' from a 1 KiB "
        "excerpt, never held whole (keep the broker's max_packet_size a little above it).",
    )
    dead_letter_burst: int = Field(
        100,
        ge=1,
        description="Dead letters one topic (one meter's account) may leave at once; beyond its budget "
        "they are counted (tapwatch_dead_letters_not_kept) and the next one kept says how many were not.",
    )
    dead_letters_per_hour: float = Field(
        60.0, gt=0, description="How fast a topic's dead-letter budget refills; every topic together: 20 x this."
    )
    webhook_url: str | None = Field(None, description="Grid platform endpoint for alert events.")
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for webhook signatures.")
    allow_unsigned_webhook: bool = Field(
        False, description="Start webhook delivery without webhook_secret (events go out unsigned); off: refuse."
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Timeout of each HTTP alert delivery.")
    delivery_give_up_hours: float = Field(24.0, gt=0, description="Park an undeliverable event after this.")
    alert_notifiers: list[Literal["webhook", "mqtt", "sms", "wecom", "dingtalk"]] | None = Field(
        None,
        description='Alert channels to run, e.g. ["webhook","mqtt","sms"]; unset: every channel whose '
        "endpoint is configured (webhook_url, sms_gateway_url, wecom_robot_url, dingtalk_robot_url). "
        "mqtt publishes on mqtt_alert_prefix/{community}.",
    )
    # Robot URLs carry their access key: SecretStr keeps them out of reprs and logs.
    wecom_robot_url: SecretStr | None = Field(
        None, description="WeCom (企业微信) group robot webhook URL, with its key=...; a secret."
    )
    dingtalk_robot_url: SecretStr | None = Field(
        None, description="DingTalk (钉钉) custom robot webhook URL, with its access_token=...; a secret."
    )
    dingtalk_robot_secret: SecretStr | None = Field(
        None, description="DingTalk robot signing secret (SEC...): requests then carry timestamp and sign."
    )
    robots_maintenance: bool = Field(
        False,
        description="The group robots (WeCom, DingTalk) also get maintenance cases (a meter offline or faulty, a "
        "slow leak): off, as their groups are the cadres' and street offices'; the platform gets every case.",
    )
    wecom_community_robots: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="JSON {community: WeCom robot URL}: each community's group reads only its own elders' alerts "
        "(communities not listed go to wecom_robot_url, or to no group); secrets.",
    )
    dingtalk_community_robots: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="JSON {community: DingTalk robot URL, or 'URL SEC...' with the robot's own signing secret}: "
        "each community's group reads only its own elders' alerts (others go to dingtalk_robot_url, or no group).",
    )
    sms_gateway_url: str | None = Field(
        None, description="SMS/phone gateway for emergency contacts (level 1): POST JSON {to, text}."
    )
    sms_gateway_token: SecretStr | None = Field(None, description="Bearer token for the SMS gateway.")
    sms_gateway_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key for the SMS gateway's signatures (unsigned without it). Its own, never "
        "webhook_secret: the gateway is another party, and the platform's key would let it sign events to the "
        "platform as tapwatch.",
    )
    escalation_policy: dict[str, dict[str, float | bool | None]] = Field(
        default_factory=dict,
        description="Overrides of the escalation defaults per severity (see docs/alerts.md), e.g. "
        '{"high": {"work_order_after_min": 10, "supervisor_after_min": 30}}; validated at start.',
    )
    escalation_check_s: float = Field(15.0, gt=0, description="How often the escalation runner looks for due timers.")
    flap_hold_down_hours: float = Field(
        6.0,
        ge=0,
        description="A community condition back within this time (data time) of the data closing its case "
        "reopens that case (one work order, one visit) instead of raising a new one.",
    )
    outcome_window_days: float = Field(
        14.0,
        ge=0,
        description="A person may record what they found on a case the data closed for this long after it closed.",
    )
    maintenance_hold_down_days: float = Field(
        7.0,
        ge=0,
        description="A meter's maintenance finding within this time (data time) of the data closing its "
        "maintenance case reopens that case and counts one more occurrence, instead of a new case.",
    )
    delivery_concurrency: int = Field(4, ge=1, le=64, description="Elder lanes worked in parallel per channel.")
    delivery_max_backoff_s: float = Field(600.0, gt=0, description="Longest wait between two delivery attempts.")
    circuit_failures: int = Field(5, ge=1, description="Consecutive failures that open a notifier's circuit.")
    circuit_cooldown_s: float = Field(60.0, ge=0, description="How long an open circuit waits before one probe.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    token_ttl_hours: float = Field(12.0, gt=0, description="Lifetime of a login token from POST /auth/token.")
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins of one username (within login_window_s) before each try waits longer."
    )
    login_window_s: float = Field(300.0, gt=0, description="Window in which failed logins are counted.")
    # -- API hardening (issue 20): login limits, proxies, body size, personal-data retention --
    login_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest wait between two tries of one username: a pause, never a lock-out."
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one client address (any usernames) per login_window_s."
    )
    login_max_failures_global: int = Field(
        200, ge=1, description="Failed logins from all unfamiliar addresses together per login_window_s."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDR blocks of reverse proxies whose X-Forwarded-For is believed; none by default.",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body the API reads; larger ones answer 413 unread."
    )
    personal_data_retention_days: float = Field(
        90.0,
        ge=1,
        description="Name, address, contacts, away windows and undelivered alert jobs of an elder retired or "
        "without consent this long are purged.",
    )
    low_battery_pct: float = Field(20.0, ge=0, le=100, description="Battery level under which a meter is listed.")
    dashboard_undo_s: float = Field(
        5.0,
        ge=0,
        le=60,
        description="How long the dashboard holds an outcome a cadre tapped, with an undo, before it sends it "
        "(0: at once, no undo).",
    )
    sse_poll_s: float = Field(1.0, gt=0, description="How often /alerts/stream polls the store for changes.")
    sse_streams_per_user: int = Field(
        10, ge=1, description="Alert streams one user may hold open at once in one API process (each polls the store)."
    )
    batch_max: int = Field(2000, ge=1, description="Readings messages committed per store transaction.")
    batch_wait_ms: int = Field(50, ge=0)
    offline_check_s: float = Field(60.0, gt=0, description="How often to look for silent meters.")
    readings_retention_days: float = Field(
        400.0,
        ge=7,
        description="Readings older than this leave the relational store (InfluxDB keeps history by its own policies).",
    )
    dead_letter_retention_days: float = Field(90.0, ge=1, description="Dead-lettered messages are kept this long.")
    delivered_retention_days: float = Field(30.0, ge=1, description="Delivered alert jobs are kept this long.")
    retention_check_hours: float = Field(6.0, gt=0, description="How often the monitor purges what is past retention.")
    checkpoint_interval_s: float = Field(
        21600.0,
        ge=0,
        description="Data time between a meter's detector state saves; stored readings replay the rest on reload.",
    )
    offline_clock: Literal["wall", "data"] = Field(
        "wall",
        description="Clock for silent-meter checks: wall time, or newest data time (accelerated demo).",
    )
    influx_url: str | None = Field(None, description="InfluxDB base URL; unset: history from the relational store.")
    influx_token: SecretStr | None = Field(None, description="API token (2.x, 3.x), or user:password for 1.x.")
    influx_org: str = "tapwatch"
    influx_bucket: str = Field("tapwatch", description="Bucket written through /api/v2/write.")
    influx_database: str = Field("", description="InfluxQL database for /query; default: the bucket name.")
    influx_hourly_bucket: str = Field(
        "",
        description="Bucket of the hourly aggregates (a purged elder is deleted there too); default <bucket>_hourly.",
    )
    influx_daily_bucket: str = Field(
        "", description="Bucket of the daily aggregates (a purged elder is deleted there too); <bucket>_daily."
    )
    influx_batch_size: int = Field(5000, ge=1, description="Points per InfluxDB write.")
    influx_flush_s: float = Field(1.0, gt=0, description="How often an idle writer looks at the spool.")

    @field_validator("mqtt_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        parts = urlparse(value)
        if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
            raise ValueError("mqtt_url must start with mqtt:// or mqtts://")
        # Checked here, not when the MQTT process first connects: it died there and was restarted forever.
        _usable_port(parts, "mqtt_url")
        if not parts.hostname:  # never quoted: the URL may carry the password
            raise ValueError("mqtt_url needs a host, as in mqtt://broker:1883")
        return value

    @field_validator("influx_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Checked here: a URL without http(s):// or a host was only warned about at every write, for ever.
        if not value:
            return None
        parts = urlparse(value)
        _usable_port(parts, "influx_url")
        if parts.scheme not in {"http", "https"} or not parts.hostname:  # never quoted: it may carry a password
            raise ValueError("influx_url must be http(s)://host[:port], as in http://influxdb:8086")
        return value

    @field_validator("data_dir")
    @classmethod
    def _home_expanded(cls, value: Path) -> Path:
        return value.expanduser()  # "~/tapwatch" in .env: a shell would expand it; a directory named "~" is no one's

    @field_validator("mqtt_ca_file", mode="before")
    @classmethod
    def _blank_ca_is_none(cls, value: object) -> object:
        # "TAPWATCH_MQTT_CA_FILE=" left blank in a .env means no CA file, as a shell reads it, not the path ".".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("mqtt_ca_file")
    @classmethod
    def _readable_ca(cls, value: Path | None) -> Path | None:
        # Checked here, not when the MQTT process first connects: it died there and was restarted forever.
        if value is not None:
            check_ca_bundle(value)
        return value

    @field_validator("mqtt_topic_prefix", "mqtt_alert_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        # One form for every user of it: ingest dropped a trailing slash, the broker ACL kept it, and so
        # denied every meter's readings ("tapwatch/meters//M1/readings").
        prefix = value.rstrip("/")
        if not prefix or "+" in prefix or "#" in prefix:
            raise ValueError("an MQTT topic prefix is a topic such as tapwatch/meters, without + or #")
        return prefix

    @field_validator("database_url")
    @classmethod
    def _usable_store(cls, value: str) -> str:
        # Checked here: a URL SQLAlchemy cannot parse or load ended every command in its traceback.
        if not value:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        hint = "write postgresql+psycopg://user:password@host:5432/tapwatch, or sqlite:///path/tapwatch.db"
        try:
            url = make_url(value)
            dialect = url.get_dialect()
        except (ArgumentError, NoSuchModuleError):
            raise ValueError(f"not a database URL tapwatch can use: {hint}") from None  # never quoted: a secret
        if url.get_backend_name() not in ("postgresql", "sqlite"):
            raise ValueError(f"tapwatch stores in PostgreSQL or SQLite, not {url.get_backend_name()}: {hint}")
        try:
            # The driver is imported only when the engine is made: postgresql+psycopg2:// (or postgresql:// on
            # SQLAlchemy 2.0, whose default that is) ended every command in "No module named 'psycopg2'".
            dialect.import_dbapi()
        except ImportError:
            raise ValueError(f"the {url.get_driver_name()} driver is not installed with tapwatch: {hint}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # Checked here: the detectors would read the elders' days in Shanghai time instead, and say nothing.
        return known_zone(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            ipaddress.ip_network(address, strict=False)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _shared_needs_mqtt5(self) -> Settings:
        if self.mqtt_shared_group and self.mqtt_protocol != "5":
            raise ValueError("mqtt_shared_group needs mqtt_protocol 5 (shared subscriptions are an MQTT 5 feature)")
        if self.embedded_broker and self.mqtt_protocol == "5":
            raise ValueError("the embedded broker speaks MQTT 3.1.1 only: use mqtt_protocol 3.1.1 or an MQTT 5 broker")
        return self

    @property
    def mqtt_login(self) -> MqttLogin:
        """The broker credentials and CA file, unpacked once for every MQTT client.

        ``mqtt_username`` and ``mqtt_password`` win over the user and password ``mqtt_url`` may carry
        (``mqtt://user:password@host``, percent-encoded), each over its own part.
        """
        url_user, url_password = url_login(self.mqtt_url)
        password = self.mqtt_password.get_secret_value() if self.mqtt_password else None
        return MqttLogin(
            self.mqtt_username or url_user,
            password if password is not None else url_password,
            str(self.mqtt_ca_file) if self.mqtt_ca_file else None,
        )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        from sqlalchemy.engine import URL

        # Rendered, not pasted into the URL: SQLAlchemy reads "?" as the query and "%41" as "A", so a data dir
        # named with them put the store elsewhere (".../q?x" stored in ".../q") or could not open it.
        path = (self.data_dir / "tapwatch.db").as_posix()
        return URL.create("sqlite", database=path).render_as_string(hide_password=False)


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
