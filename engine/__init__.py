"""The engine (floor 5): one reading through one meter, live and in replay.

* :mod:`engine.localtime` -- the one rule for a meter's local time (its elder's
  zone, else ``Settings.timezone``; zoneinfo, so DST-correct).
* :mod:`engine.meter` -- :class:`MeterStep`, the per-meter step: a reading in;
  its register status, the intervals it closed and the findings out. The live
  pipeline, replay, the backtest route and eval all push readings through it.
* :mod:`engine.meterstate` -- the live meters' steps: loaded in bulk from the
  store, checkpointed, caught up from stored readings, safe across workers.
* :mod:`engine.pipeline` -- the live pipeline: a batch of MQTT messages in, one
  store transaction (readings, findings as alerts, delivery jobs) out.
* :mod:`engine.alerting` -- which findings open, join or close a case, the live
  alert manager's rule (one community case per elder, one maintenance case per
  meter, :mod:`alerts.grouping`; snooze and away windows mute, by
  :func:`alerts.muting.muted_by`) kept in memory for replays.
* :mod:`engine.replay` -- the replay loop (CSV files, stored readings);
  :mod:`engine.backtest` the threshold backtest built on it.

It imports the floors below (``core``, ``ingest``, ``detect``, ``store``,
``alerts``, ``timeseries``), never ``api`` or the application (``tapwatch/``,
where ``tapwatch replay`` is the command line over :mod:`engine.replay`).
"""

from engine.alerting import OpenAlerts
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
    "offsets",
]
