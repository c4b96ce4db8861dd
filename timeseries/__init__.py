"""Reading history: where the API reads raw readings and hourly/daily use from.

``sql`` declares the ``Timeseries`` protocol and serves it from the relational
store (the embedded default). Readings, findings and alert events are mirrored
to InfluxDB: ``lines`` encodes them, ``spool`` stages them with the readings
and drains the spool table to InfluxDB, ``influxql`` serves the same protocol
from InfluxDB; ``influx`` holds the connection settings they share.
"""
