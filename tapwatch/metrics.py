"""Prometheus metrics, one registry per running monitor (so tests can build several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.readings_in = Counter("tapwatch_readings_received", "Readings received", registry=self.registry)
        self.readings_stored = Counter("tapwatch_readings_stored", "New readings stored", registry=self.registry)
        self.dead_letters = Counter("tapwatch_dead_letters", "Messages dead-lettered", registry=self.registry)
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
