"""The engine (floor 5): one reading through one meter, live and in replay.

* :mod:`engine.localtime` -- the one rule for a meter's local time (its elder's
  zone, else ``Settings.timezone``; zoneinfo, so DST-correct).
* :mod:`engine.meter` -- :class:`MeterStep`, the per-meter step: a reading in;
  its register status, the intervals it closed and the findings out. The live
  pipeline (``tapwatch.meterstate``), replay, the backtest route and eval all
  push readings through it.
* :mod:`engine.alerting` -- which findings open or close an alert, the live
  alert manager's rule (one open alert per elder and kind; snooze and away
  windows mute) kept in memory for replays.
* :mod:`engine.replay` -- the replay loop (CSV files, stored readings) and the
  threshold backtest built on it.

It imports the floors below (records and settings, ``ingest``, ``detect``,
``alerts``, the store), never ``api`` or the application modules.
"""

from engine.alerting import OpenAlerts, muted_by
from engine.localtime import local_offset, meter_zone, offsets
from engine.meter import MeterStep, Step
from engine.replay import Home, Replayer

__all__ = [
    "Home",
    "MeterStep",
    "OpenAlerts",
    "Replayer",
    "Step",
    "local_offset",
    "meter_zone",
    "muted_by",
    "offsets",
]
