"""Tests of timeseries/: the InfluxDB backend against a real influxd."""
