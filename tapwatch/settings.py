"""Settings: one typed object, read from ``TAPWATCH_*`` environment variables or a ``.env`` file.

Built by :func:`get_settings` (never at import time) so tests and the CLI can
override any field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can configure. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="TAPWATCH_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Where the embedded store and spools live.")
    database_url: str = Field("", description="SQLAlchemy URL; default: SQLite in data_dir.")
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL (mqtt:// or mqtts://).")
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: Path | None = Field(None, description="CA bundle for mqtts:// brokers.")
    mqtt_client_id: str = Field("tapwatch-ingest", description="Stable id: the broker keeps its session.")
    mqtt_topic_prefix: str = "tapwatch/meters"
    mqtt_alert_prefix: str = "tapwatch/alerts"
    embedded_broker: bool = Field(False, description="Run an in-process MQTT broker (demo).")
    timezone: str = Field("Asia/Shanghai", description="Local time for elders registered without a time zone.")
    language: Literal["zh", "en"] = Field("zh", description="Language of console and default UI text.")
    late_window_hours: float = Field(72.0, gt=0, description="Older readings are dead-lettered.")
    future_tolerance_minutes: float = Field(15.0, ge=0, description="Readings further ahead: clock fault.")
    webhook_url: str | None = Field(None, description="Grid platform endpoint for alert events.")
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for webhook signatures.")
    webhook_timeout_s: float = 10.0
    delivery_give_up_hours: float = Field(24.0, gt=0, description="Park an undeliverable event after this.")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    batch_max: int = Field(500, ge=1, description="Readings messages committed per store transaction.")
    batch_wait_ms: int = Field(50, ge=0)
    offline_check_s: float = Field(60.0, gt=0, description="How often to look for silent meters.")
    offline_clock: Literal["wall", "data"] = Field(
        "wall",
        description="Clock for silent-meter checks: wall time, or newest data time (accelerated demo).",
    )

    @field_validator("mqtt_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if urlparse(value).scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
            raise ValueError("mqtt_url must start with mqtt:// or mqtts://")
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tapwatch.db').as_posix()}"


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
