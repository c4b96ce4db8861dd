"""Ingest: meter readings in, clean intervals out.

``payload`` validates MQTT messages, ``register`` turns a meter's cumulative
readings into intervals of use (deduplicated, reset- and glitch-aware),
``consumer`` subscribes to the broker and feeds the pipeline, ``csvsource``
reads replay files. Anything that cannot be used is dead-lettered with a reason.
"""
