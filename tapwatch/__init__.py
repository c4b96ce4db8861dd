"""tapwatch: the application on the top floor -- wiring, command line, demo and evaluation.

A reading flows ``ingest -> detect -> alerts`` through the engine's pipeline;
``api`` reads and steers it. This package starts all of that and nothing
below imports it: :mod:`tapwatch.service` wires one monitor process,
:mod:`tapwatch.cli` is the ``tapwatch`` command (with :mod:`tapwatch.demo`,
:mod:`tapwatch.usercli`, :mod:`tapwatch.evaluate`), :mod:`tapwatch.serving`
runs the API server. The per-meter step, the live pipeline and replay
(``meterstate``, ``pipeline``, ``replay``) still live here until they move to
``engine/``. The floors are listed in the README ("Architecture").
"""

from core import __version__

__all__ = ["__version__"]
