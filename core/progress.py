"""Progress of long command-line runs (``eval``, ``replay``, ``simulate``) on a terminal.

One line on stderr, rewritten in place a few times a second: what runs, how far
(``1,200/3,000 meters  40%``, or a count and a rate when the total is unknown),
the time spent and, with a total, the time left. Nothing is written unless the
stream is a terminal, so pipes, files, logs and tests read exactly what they did
before. Standard library only: a bar this simple does not justify a dependency.
It lives in ``core`` (the ground floor) because the simulator, below the application, draws it too.

>>> import io
>>> with Progress("replay", stream=io.StringIO()) as p:  # not a terminal: silent
...     p.advance(10)
>>> p.done
10
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")

#: Seconds between two redraws: often enough to look alive, rarely enough to cost nothing.
REDRAW_S = 0.2


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """A counter that draws itself on ``stream`` (stderr by default) when that is a terminal."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "",
        stream: IO[str] | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream) if enabled is None else enabled
        self.done = 0
        self.note = ""
        self.began = time.monotonic()
        self._drawn_at = 0.0
        self._width = 0

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """Count ``n`` more done; redraw at most every :data:`REDRAW_S` seconds."""
        self.done += n
        if note is not None:
            self.note = note
        if self.enabled:
            now = time.monotonic()
            if now - self._drawn_at >= REDRAW_S:
                self._drawn_at = now
                self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The text of the progress line (without the carriage return)."""
        elapsed = (time.monotonic() if now is None else now) - self.began
        unit = f" {self.unit}" if self.unit else ""
        parts = []
        if self.total:
            share = min(self.done / self.total, 1.0)
            parts.append(f"{self.done:,}/{self.total:,}{unit} {100 * share:3.0f}%  {_duration(elapsed)}")
            if 0 < share < 1:
                parts.append(f"~{_duration(elapsed * (1 - share) / share)} left")
        else:
            rate = self.done / elapsed if elapsed > 0 else 0.0
            parts.append(f"{self.done:,}{unit}  {rate:,.0f}/s  {_duration(elapsed)}")
        head = f"{self.label}{f' {self.note}' if self.note else ''}:"
        return f"{head} " + "  ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        pad = " " * max(self._width - len(text), 0)  # wipe what a longer previous line left
        self._width = len(text)
        self.stream.write(f"\r{text}{pad}")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final count and end the line, so later output starts on a fresh one."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def track(items: Iterable[T], progress: Progress) -> Iterator[T]:
    """Yield ``items``, counting each one on ``progress`` (closed when the items run out)."""
    with progress:
        for item in items:
            yield item
            progress.advance()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: stay quiet
        return False
