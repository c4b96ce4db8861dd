"""Argument types for the command line, shared by ``tapwatch`` and the simulator below it.

``float`` as an argparse type takes ``nan``, ``inf`` and negatives: a speed of ``nan`` or a
delay of ``-1`` then runs quietly as something else (as fast as possible, no outcome taught).
:func:`number` refuses them as argparse refuses any bad value (exit 2, naming the option).

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="x")
>>> _ = parser.add_argument("--speed", type=number(0.0, above=True))
>>> parser.parse_args(["--speed", "1800"]).speed
1800.0
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(minimum: float = 0.0, *, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number, at least ``minimum`` (more than it when ``above``)."""
    bound = f"more than {minimum:g}" if above else f"at least {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
        return value

    return parse
