"""Alerts: findings become cases, cases become delivered events and followed-up work.

The flow, one stage per module, all around one case store (``cases``)::

    Finding --> lifecycle --> cases          (raise / reopen / resolve; acknowledge, resolve by people)
                   |  \\--> events.emit --> alert_events + outbox   (one transaction with the change)
                   v
                escalation (Escalator: contact -> work order -> supervisor, timers in ``escalations``;
                   |        EscalationRunner fires them once)
                   v
                fanout   (platform channels get every event; ``sms`` gets level 1, one job per contact)

    outbox --> sender --> notifiers (webhook, MQTT, SMS gateway, robots); breaker; parking
           \\--> lifecycle.mark_notified on the first delivery (open -> notified)

``manager.AlertManager`` is the facade the pipeline, the runner and the API
call; it wires the stages and holds no rules. ``policy`` says the escalation
levels and routes; ``muting`` which windows mute a finding; ``messages`` the
texts; ``events`` also builds and signs CloudEvents; ``daily`` the daily note
to families; ``queries`` the operators' read side (the functions the routes
call); ``receiver`` a reference platform endpoint. Audit entries go through
``store.audit``. See docs/alerts.md.
"""
