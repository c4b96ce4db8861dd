"""Detect: per-meter online models that turn intervals of use into findings.

Every detector follows river's conventions: small stateful objects with
``learn_one`` / ``score_one`` and docstring examples. ``MeterMonitor`` composes
them for one meter and is the only thing the pipeline talks to.
"""

from detect.monitor import MeterMonitor
from detect.thresholds import Thresholds

__all__ = ["MeterMonitor", "Thresholds"]
