"""Tests of alerts/: case lifecycle, escalation, messages, channels, delivery to the grid platform, daily note."""
