"""Reading history: where the API reads raw readings and hourly/daily use from.

``sql`` declares the ``Timeseries`` protocol and serves it from the relational
store (the embedded default); ``influx`` mirrors readings, findings and alert
events to InfluxDB through a spool table and serves the same protocol from it.
"""
