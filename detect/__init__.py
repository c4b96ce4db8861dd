"""Detect: per-meter online models that turn intervals of use into findings.

Every model follows river's conventions: small stateful objects that score
before they learn, constructor arguments kept under their own names, runnable
docstring examples, and a shared contract (``tests/detect/test_detect_contract.py``:
pickling, bounded memory, scoring before learning, no aliasing).

- :mod:`detect.silence`: how long this elder's silences last, by start hour (``no_activity``).
- :mod:`detect.flow`: runs of uninterrupted flow and single huge draws (``continuous_flow``).
- :mod:`detect.daily`: a day's total and slow drift of the routine (``high_usage``,
  ``low_usage``, ``routine_change``).
- :mod:`detect.rules`: the deployments' fixed rules, as baselines and as the safety net.
- :mod:`detect.oracle`: the reference line that knows each home's history in advance.
- :mod:`detect.monitor`: ``MeterMonitor`` composes them for one meter and is the only
  thing the pipeline talks to. The operator thresholds it reads live in :mod:`core.thresholds`.
"""

from core.thresholds import THRESHOLD_SPECS, Thresholds
from detect.monitor import MeterMonitor

__all__ = ["THRESHOLD_SPECS", "MeterMonitor", "Thresholds"]
