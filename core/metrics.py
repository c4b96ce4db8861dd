"""Prometheus metrics, one registry per running monitor (so tests can build several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.readings_in = Counter("tapwatch_readings_received", "Readings received", registry=self.registry)
        self.readings_stored = Counter("tapwatch_readings_stored", "New readings stored", registry=self.registry)
        self.dead_letters = Counter("tapwatch_dead_letters", "Messages dead-lettered", registry=self.registry)
        self.dead_letters_not_kept = Counter(
            "tapwatch_dead_letters_not_kept",
            "Dead letters counted but not stored: over their topic's budget (TAPWATCH_DEAD_LETTER_BURST)",
            registry=self.registry,
        )
        self.messages_set_aside = Counter(
            "tapwatch_messages_set_aside",
            "Messages the store refused, isolated by splitting their batch and dead-lettered",
            registry=self.registry,
        )
        self.qos0_messages = Counter(
            "tapwatch_qos0_messages",
            "Readings messages published at QoS 0 (lost while the monitor is down: meters must publish at QoS 1)",
            registry=self.registry,
        )
        self.readings_withheld = Counter(
            "tapwatch_readings_withheld",
            "Readings dropped unread: the elder has not consented to monitoring",
            registry=self.registry,
        )
        self.readings_thinned = Counter(
            "tapwatch_readings_thinned",
            "Readings not kept: less than a minute from another of the meter (its next reading counts the water)",
            registry=self.registry,
        )
        self.purged_rows = Counter(
            "tapwatch_purged_rows", "Rows deleted as past retention", ["table"], registry=self.registry
        )
        self.login_failures = Counter(
            "tapwatch_login_failures",
            "Logins refused: wrong password, unknown or disabled user, or limited (too many failures)",
            ["reason"],
            registry=self.registry,
        )
        self.request_bodies_refused = Counter(
            "tapwatch_request_bodies_refused",
            "Request bodies refused unread: too large, or sent without credentials",
            ["reason"],
            registry=self.registry,
        )
        self.batch_races = Counter(
            "tapwatch_batch_races", "Batches rerun after another worker moved their meters on", registry=self.registry
        )
        self.findings = Counter(
            "tapwatch_findings", "Detector findings by kind", ["kind", "resolved"], registry=self.registry
        )
        self.delivery_pending = Gauge(
            "tapwatch_delivery_pending", "Alert events waiting for delivery", registry=self.registry
        )
        self.delivery_parked = Gauge(
            "tapwatch_delivery_parked", "Alert events parked as undeliverable", registry=self.registry
        )
        self.delivery_lag = Gauge(
            "tapwatch_delivery_lag_seconds", "Age of the oldest pending alert event", registry=self.registry
        )
        self.broker_connected = Gauge("tapwatch_broker_connected", "1 when connected", registry=self.registry)
        self.delivery_attempts = Counter(
            "tapwatch_delivery_attempts",
            "Delivery attempts by notifier and result (sent, retry, parked, expired; dismissed: by an operator)",
            ["notifier", "result"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "tapwatch_delivery_latency_seconds",
            "From an alert event to its delivery, by notifier",
            ["notifier"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
            registry=self.registry,
        )
        self.circuit_state = Gauge(
            "tapwatch_notifier_circuit_state", "0 closed, 1 open, 2 half-open", ["notifier"], registry=self.registry
        )
        self.circuit_opened = Counter(
            "tapwatch_notifier_circuit_opened",
            "Times a notifier's circuit opened",
            ["notifier"],
            registry=self.registry,
        )
        self.escalations_fired = Counter(
            "tapwatch_escalations_fired", "Escalation levels fired", ["level"], registry=self.registry
        )
        self.influx_pending = Gauge(
            "tapwatch_influx_pending", "Spool rows waiting for InfluxDB", registry=self.registry
        )
        self.influx_lag = Gauge(
            "tapwatch_influx_lag_seconds", "Age of the oldest spool row not yet in InfluxDB", registry=self.registry
        )
        self.influx_connected = Gauge(
            "tapwatch_influx_connected", "1 when the last InfluxDB write succeeded", registry=self.registry
        )
        self.influx_points_written = Counter(
            "tapwatch_influx_points_written", "Points acknowledged by InfluxDB", registry=self.registry
        )
        self.influx_write_errors = Counter(
            "tapwatch_influx_write_errors", "Failed InfluxDB writes (retried)", registry=self.registry
        )
        self.alerts_open = Gauge(
            "tapwatch_alerts_open", "Alerts not yet resolved, by kind", ["kind"], registry=self.registry
        )
        self.alerts_total = Gauge(
            "tapwatch_alerts", "Alerts in the store, by kind and state", ["kind", "state"], registry=self.registry
        )
