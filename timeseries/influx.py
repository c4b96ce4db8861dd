"""InfluxDB time series: where the parts live, and the connection settings they share.

Readings, findings, alert events and dead letters are mirrored to InfluxDB and
the API reads history back from it:

- :mod:`timeseries.lines`: line protocol encoding of each measurement;
- :mod:`timeseries.spool`: :class:`~timeseries.spool.InfluxStager` spools points
  inside the readings transaction, :class:`~timeseries.spool.InfluxWriter` (a
  thread) drains the spool to ``/api/v2/write`` and deletes rows only once
  InfluxDB acknowledged them, so InfluxDB being down or slow never stops
  ingestion and loses nothing;
- :mod:`timeseries.influxql`: :class:`~timeseries.influxql.InfluxTimeseries`
  answers the API's history queries with InfluxQL over ``/query``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.settings import Settings


@dataclass(slots=True, frozen=True)
class InfluxConfig:
    url: str
    token: str = field(default="", repr=False)  # never in logs or tracebacks
    org: str = "tapwatch"
    bucket: str = "tapwatch"
    database: str = ""  # InfluxQL database; default: the bucket
    timeout_s: float = 10.0
    hourly_bucket: str = ""  # the downsampling tasks' buckets (deploy/influxdb/init); default: <bucket>_hourly
    daily_bucket: str = ""  # default: <bucket>_daily

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxConfig:
        if not settings.influx_url:
            raise ValueError("influx_url is not set")
        token = settings.influx_token.get_secret_value() if settings.influx_token else ""
        return cls(
            url=settings.influx_url.rstrip("/"),
            token=token,
            org=settings.influx_org,
            bucket=settings.influx_bucket,
            database=settings.influx_database or settings.influx_bucket,
            hourly_bucket=settings.influx_hourly_bucket,
            daily_bucket=settings.influx_daily_bucket,
        )

    @property
    def db(self) -> str:
        return self.database or self.bucket

    @property
    def buckets(self) -> tuple[str, str, str]:
        """Every bucket tapwatch writes or the deployment downsamples into: raw, hourly, daily."""
        return (
            self.bucket,
            self.hourly_bucket or f"{self.bucket}_hourly",
            self.daily_bucket or f"{self.bucket}_daily",
        )
