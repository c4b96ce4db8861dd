"""Tests of ingest/: payloads, registers, CSV replay files, the MQTT client and consumer, hostile meters and fuzzing."""
