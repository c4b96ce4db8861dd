"""Ingest: meter messages in, clean intervals of use out.

``payload`` holds the message as it came off the wire (``RawMessage``) and
validates it (``parse_message``; anything unusable raises ``PayloadError``
with a reason and is dead-lettered by the pipeline); ``register`` turns a
meter's cumulative readings into intervals (deduplicated, reset- and
glitch-aware); ``mqttclient`` receives from the broker in a child process
(reading the socket through ``pahofast``) and ``consumer`` hands its batches
to whatever ``handle`` it is given (the engine's pipeline) and acknowledges
them once committed; ``csvsource`` reads replay files. Nothing here imports
the engine above it.
"""
