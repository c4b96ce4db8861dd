"""Wiring of a running monitor: broker connection, pipeline, outbox sender, silent-meter checks.

``Service`` is what ``tapwatch run`` and ``tapwatch demo`` start, and what the
API asks for readiness. Every part is built here, never at import time.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine, func, select, text

from alerts.escalation import EscalationRunner
from alerts.manager import AlertManager
from alerts.notifiers import Notifier, build_notifiers
from alerts.sender import OutboxSender
from core.metrics import Metrics
from core.settings import Settings, shown_url
from detect.monitor import SILENT_TICK_S
from engine.budget import DeadLetterBudget
from engine.pipeline import BatchResult, Pipeline, repair_future_reading_times
from ingest.consumer import MqttConsumer
from ingest.mqttclient import BrokerConfig
from ingest.payload import RawMessage
from store import clock_offset_s, end_idle_transactions, leases, open_store, shown_store_url
from store.retention import Purged, RetentionPolicy, purge
from store.schema import outbox
from tapwatch.broker import EmbeddedBroker
from timeseries.influx import InfluxConfig
from timeseries.influxql import InfluxTimeseries
from timeseries.spool import InfluxStager, InfluxWriter
from timeseries.sql import SqlTimeseries, Timeseries

log = logging.getLogger(__name__)

#: Seconds after start before the first retention purge.
RETENTION_FIRST_PASS_S = 300.0

#: Said at start and on /readyz when no alert channel is configured. Not a refusal: the dashboard
#: still shows every alert, and a district may start with cadres watching it before a channel exists.
NO_DELIVERY_CHANNEL = {
    "zh": "未配置任何告警发送渠道（webhook、mqtt、sms、wecom、dingtalk）：告警只显示在看板上，不会发给平台、"
    "社区或家属。请设置 TAPWATCH_WEBHOOK_URL、TAPWATCH_WECOM_ROBOT_URL 等，见 docs/alerts.md。",
    "en": "No alert delivery channel is configured (webhook, mqtt, sms, wecom, dingtalk): alerts show on the "
    "dashboard only and reach no platform, cadre or family. Set TAPWATCH_WEBHOOK_URL, TAPWATCH_WECOM_ROBOT_URL "
    "or another channel; see docs/alerts.md.",
}

#: Said when this host's clock is too far from PostgreSQL's: a worker of a shared group refuses to start (exit 2),
#: a lone monitor warns. Which of the two clocks is wrong cannot be told from here.
CLOCK_SKEW = {
    "zh": "本机时钟比 PostgreSQL 服务器的时钟{way} {offset:.0f} 秒（允许 {allowed:.0f} 秒）。"
    "各工作进程按自己的时钟判断读数是否“来自未来”、投递任务的租约和升级计时器："
    "时钟不准的进程会把正常读数当作表计时钟故障丢弃、重复发送告警、提前触发升级。"
    "请校准本机或数据库主机的 NTP 时间同步；TAPWATCH_MAX_CLOCK_SKEW_S=0 可关闭此检查。",
    "en": "This host's clock is {offset:.0f} s {way_en} the PostgreSQL server's (allowed: {allowed:.0f} s). "
    "Each worker judges readings 'from the future', delivery leases and escalation timers by its own clock: a "
    "worker whose clock is off dead-letters good readings as meter clock faults, sends alerts twice and fires "
    "escalations early. Fix NTP on this host or on the database's; TAPWATCH_MAX_CLOCK_SKEW_S=0 turns this check off.",
}


class ClockSkewError(ValueError):
    """This worker's clock and the store's disagree too much for it to work beside the others."""


def check_clock(engine: Engine, settings: Settings) -> float | None:
    """This host's clock offset from PostgreSQL's (None on SQLite); :class:`ClockSkewError` for a worker of a
    shared group beyond ``max_clock_skew_s``, a warning for a lone monitor (its own clock is the only one used)."""
    offset = clock_offset_s(engine)
    allowed = settings.max_clock_skew_s
    if offset is None or allowed <= 0 or abs(offset) <= allowed:
        return offset
    said = CLOCK_SKEW[settings.language].format(
        offset=abs(offset),
        allowed=allowed,
        way="快" if offset > 0 else "慢",
        way_en="ahead of" if offset > 0 else "behind",
    )
    if settings.mqtt_shared_group:
        raise ClockSkewError(said)
    log.warning(said)
    return offset


class Service:
    """A monitor's moving parts; :meth:`start` and :meth:`stop` them together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Stable across restarts, like the MQTT session: a restarted worker takes its own leases straight back.
        self.worker_id = settings.mqtt_client_id[:64]
        self.metrics = Metrics()
        self.engine = open_store(settings.effective_database_url)
        try:
            check_clock(self.engine, settings)  # before this worker takes any reading, lease or timer
        except ClockSkewError:
            self.engine.dispose()
            raise
        end_idle_transactions(self.engine, settings.database_idle_in_transaction_s)  # a paused worker stalls no other
        self.notifiers = self._notifiers()
        self.alert_manager = AlertManager.from_settings(settings, metrics=self.metrics)
        self.influx_writer: InfluxWriter | None = None
        self.timeseries: Timeseries = SqlTimeseries(self.engine)
        if settings.influx_url:  # InfluxDB holds the time series; the relational store answers while it is down
            influx = InfluxConfig.from_settings(settings)
            self.influx_writer = InfluxWriter(
                self.engine,
                influx,
                batch_size=settings.influx_batch_size,
                flush_s=settings.influx_flush_s,
                metrics=self.metrics,
            )
            self.timeseries = InfluxTimeseries(influx, fallback=self.timeseries)
        self.pipeline = Pipeline(
            self.engine,
            self.alert_manager,
            late_window_s=settings.late_window_hours * 3600,
            future_tolerance_s=settings.future_tolerance_minutes * 60,
            stagers=[InfluxStager()] if self.influx_writer is not None else [],
            default_tz=settings.timezone,
            checkpoint_interval_s=settings.checkpoint_interval_s,
            max_message_bytes=settings.mqtt_max_message_bytes,
            dead_letter_budget=DeadLetterBudget(settings.dead_letter_burst, settings.dead_letters_per_hour),
        )
        self.broker: EmbeddedBroker | None = None
        if settings.embedded_broker:
            host, port, _tls = BrokerConfig(url=settings.mqtt_url).host_port_tls
            self.broker = EmbeddedBroker(host, port, language=settings.language)
        login = settings.mqtt_login
        self.consumer = MqttConsumer(
            BrokerConfig(
                url=settings.mqtt_url,
                client_id=settings.mqtt_client_id,
                username=login.username,
                password=login.password,
                ca_file=login.ca_file,
                protocol=settings.mqtt_protocol,
                shared_group=settings.mqtt_shared_group,
                session_expiry_s=settings.mqtt_session_expiry_s,
            ),
            handle=self.handle_batch,
            prefix=settings.mqtt_topic_prefix,
            batch_max=settings.batch_max,
            batch_wait_s=settings.batch_wait_ms / 1000,
            max_message_bytes=settings.mqtt_max_message_bytes,
        )
        self.sender = OutboxSender(
            self.engine,
            self.notifiers,
            give_up_s=settings.delivery_give_up_hours * 3600,
            breaker_threshold=settings.circuit_failures,
            breaker_cooldown_s=settings.circuit_cooldown_s,
            concurrency=settings.delivery_concurrency,
            max_backoff_s=settings.delivery_max_backoff_s,
            metrics=self.metrics,
            owner=self.worker_id,
        )
        self.escalator = EscalationRunner(
            self.engine, self.alert_manager, owner=self.worker_id, on_fired=self.sender.wake
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_at = time.time()

    def _notifiers(self) -> dict[str, Notifier]:
        return build_notifiers(self.settings)  # which channels run is configuration (alerts.notifiers)

    # -- data path -----------------------------------------------------------------

    def handle_batch(self, batch: list[RawMessage]) -> BatchResult:
        races = self.pipeline.races
        result = self.pipeline.process(batch)
        self.metrics.batch_races.inc(self.pipeline.races - races)
        self._count(result)
        if result.alerts_touched:
            self.sender.wake()
        return result

    def _count(self, result: BatchResult) -> None:
        self.metrics.readings_in.inc(result.readings_in)
        self.metrics.readings_stored.inc(result.readings_stored)
        self.metrics.dead_letters.inc(result.dead_letters)
        self.metrics.dead_letters_not_kept.inc(result.dead_letters_not_kept)
        self.metrics.messages_set_aside.inc(result.set_aside)
        self.metrics.qos0_messages.inc(result.qos0_messages)
        self.metrics.readings_withheld.inc(result.readings_withheld)
        self.metrics.readings_thinned.inc(result.readings_thinned)
        for f in result.findings:
            self.metrics.findings.labels(kind=f.kind, resolved=str(f.resolved).lower()).inc()

    def check_silent_meters(self) -> BatchResult:
        now = self.pipeline.watermark if self.settings.offline_clock == "data" else time.time()
        result = self.pipeline.tick(now, offline_after_s=SILENT_TICK_S)
        self._count(result)
        if result.alerts_touched:
            self.sender.wake()
        return result

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        tolerance_s = self.settings.future_tolerance_minutes * 60
        repair_future_reading_times(self.engine, time.time(), tolerance_s)  # left by versions before issue 20
        if self.broker is not None:
            self.broker.start()
        self.consumer.start()
        self._spawn("outbox-sender", self.sender.serve)
        self._spawn("escalation", lambda: self.escalator.serve(self.settings.escalation_check_s))
        self._spawn("silent-meters", self._silent_meter_loop)
        self._spawn("retention", self._retention_loop)
        if self.influx_writer is not None:
            self._spawn("influx-writer", self.influx_writer.serve)
        log.info(
            "tapwatch started: broker %s, store %s, alert channels %s",
            shown_url(self.settings.mqtt_url),
            shown_store_url(self.engine.url),
            ", ".join(self.notifiers) or "none",
        )
        if not self.notifiers:
            log.warning(NO_DELIVERY_CHANNEL[self.settings.language])

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _silent_meter_loop(self) -> None:
        while not self._stop.wait(self.settings.offline_check_s):
            try:
                if self._hold_lease("silent-meters", ttl_s=3 * self.settings.offline_check_s):
                    self.check_silent_meters()
            except Exception:  # a failed pass must not end the checks; the next one retries
                log.exception("silent-meter check failed")

    def purge_expired(self) -> Purged:
        """Delete what is past retention (store.retention); counted in ``tapwatch_purged_rows``."""
        purged = purge(self.engine, RetentionPolicy.from_settings(self.settings), time.time())
        for table in ("readings", "dead_letters", "delivered", "elders", "daily_notes", "tokens", "checkpoints"):
            self.metrics.purged_rows.labels(table=table).inc(getattr(purged, table))
        if purged.total:
            log.info(
                "purged past retention: %d readings, %d dead letters, %d delivered alert jobs, "
                "personal data of %d elders, %d daily-note markers, %d expired login tokens, "
                "%d checkpoints of replaced meters",
                purged.readings,
                purged.dead_letters,
                purged.delivered,
                purged.elders,
                purged.daily_notes,
                purged.tokens,
                purged.checkpoints,
            )
        return purged

    def _retention_loop(self) -> None:
        every_s = self.settings.retention_check_hours * 3600
        # The first pass soon after start: a monitor restarted more often than every_s still purges.
        delay = min(every_s, RETENTION_FIRST_PASS_S)
        while not self._stop.wait(delay):
            delay = every_s
            try:
                if self._hold_lease("retention", ttl_s=2 * every_s):
                    self.purge_expired()
                # Every worker: each caches the meters it saw, the retired ones too until told.
                self.pipeline.forget_moved()
            except Exception:  # the next pass retries; nothing is lost by purging late
                log.exception("retention purge failed")

    def _hold_lease(self, name: str, ttl_s: float) -> bool:
        """With several workers, one sweeps the silent meters; another takes over if it dies."""
        with self.engine.begin() as conn:
            return leases.claim(conn, name, self.worker_id, time.time(), ttl_s)

    def stop(self) -> None:
        """Graceful: finish the batch in hand, leave undelivered events in the outbox."""
        self._stop.set()
        self.consumer.stop()
        totals = self.pipeline.totals
        log.info(
            "ingest totals: readings_in=%d stored=%d withheld=%d thinned=%d dead_letters=%d races=%d",
            totals.readings_in,
            totals.readings_stored,
            totals.readings_withheld,
            totals.readings_thinned,
            totals.dead_letters,
            self.pipeline.races,
        )
        try:
            self.pipeline.flush_checkpoints()  # a clean restart then needs no catch-up replay
        except Exception:  # the store may be the reason we stop; readings are safe either way
            log.exception("could not write detector checkpoints at shutdown")
        self.sender.stop()
        self.escalator.stop()
        if self.influx_writer is not None:
            self.influx_writer.stop()  # unsent points stay in the spool for the next start
        for thread in self._threads:
            thread.join(10)
        if self.broker is not None:
            self.broker.stop()
        if self.influx_writer is not None:
            self.influx_writer.close()
        if isinstance(self.timeseries, InfluxTimeseries):
            self.timeseries.close()
        self.engine.dispose()

    # -- health ------------------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {
            "broker": self.consumer.connected.is_set(),
            "ingest_store": self.consumer.store_ok,
        }
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                pending, oldest = conn.execute(
                    select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.status == "pending")
                ).one()
                parked = conn.execute(select(func.count()).where(outbox.c.status == "parked")).scalar_one()
            checks["store"] = True
            lag = time.time() - oldest if oldest is not None else 0.0
            self.metrics.delivery_pending.set(pending)
            self.metrics.delivery_parked.set(parked)
            self.metrics.delivery_lag.set(lag)
            checks["delivery"] = {
                "pending": pending,
                "parked": parked,
                "lag_s": round(lag, 1),
                "channels": sorted(self.notifiers),
                # A receiver down or refusing our credentials: its jobs wait, and the operator should know why.
                "circuits_open": self.sender.open_circuits(),
            }
            if not self.notifiers:
                checks["delivery"]["warning"] = NO_DELIVERY_CHANNEL[self.settings.language]
        except Exception as exc:  # readiness reports failure, it does not raise it
            checks["store"] = False
            checks["store_error"] = type(exc).__name__
        self.metrics.broker_connected.set(1 if checks["broker"] else 0)
        if not self.consumer.store_ok:
            # The error's class only: its text (SQL, parameters) is for the log, and /readyz is public.
            checks["ingest_error"] = self.consumer.last_error
        if self.influx_writer is not None:  # informational: ingestion goes on while InfluxDB is down
            try:
                checks["influx"] = self.influx_writer.status()
            except Exception as exc:
                checks["influx"] = {"connected": self.influx_writer.connected, "error": type(exc).__name__}
        checks["ready"] = bool(checks["broker"] and checks["store"] and checks["ingest_store"])
        return checks
