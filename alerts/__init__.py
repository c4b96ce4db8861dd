"""Alerts: findings become alerts, alerts become delivered events and followed-up cases.

``manager`` keeps one open alert per elder and kind and writes every state
change with its delivery jobs in the same transaction (the outbox);
``policy`` and ``escalation`` chase an unacknowledged alert (contact, work
order, supervisor) with stored timers that fire once; ``sender`` works the
outbox through ``notifiers`` (webhook, MQTT, SMS gateway) with retries,
per-elder order, circuit breakers (``breaker``) and parking; ``events``
builds and signs CloudEvents; ``messages`` writes the texts; ``queries`` is
the operators' read side; ``receiver`` is a reference platform endpoint.
See docs/alerts.md.
"""
