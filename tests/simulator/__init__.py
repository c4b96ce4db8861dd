"""Tests of simulator/: simulated homes, their labels, publishing to MQTT, calibration against real meters."""
