"""Alerts: findings become alerts, alerts become delivered events.

``manager`` keeps one open alert per elder and kind and writes every state
change with its delivery jobs in the same transaction (the outbox);
``events`` builds and signs CloudEvents; ``sender`` works the outbox with
retries, per-elder order and parking, so nothing is lost or sent twice.
"""
