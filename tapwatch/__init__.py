"""tapwatch: the application on the top floor -- wiring, command line, demo and evaluation.

A reading flows ``ingest -> detect -> alerts`` through the engine's pipeline
(``engine/``); ``api`` reads and steers it. This package starts all of that and
nothing below imports it: :mod:`tapwatch.service` wires one monitor process,
:mod:`tapwatch.cli` is the ``tapwatch`` command, a table of subcommands each
defined in its own module (:mod:`tapwatch.serving` ``run`` and the API server,
:mod:`tapwatch.storecli` ``migrate``/``register``/``purge``,
:mod:`tapwatch.demo`, :mod:`tapwatch.replay`, :mod:`tapwatch.evaluate`,
:mod:`tapwatch.usercli`, :mod:`tapwatch.brokercreds`). The floors are listed in
the README ("Architecture").
"""

from core import __version__

__all__ = ["__version__"]
