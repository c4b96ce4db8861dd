"""Ground-truth labels (:class:`Label`) and their JSON form (ISO-8601 with the local offset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from core.jsonfile import load_json_file


@dataclass
class Label:
    """One labelled span: an incident, a life event or a meter fault.

    Times are epoch seconds (UTC). ``end`` is None only for ``death``. Instant faults
    (a duplicate, a glitch) have ``end == start``: the reading's true time.
    """

    meter_id: str
    kind: str
    category: str  # "incident" | "event" | "fault"
    start: float
    end: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def covers(self, ts: float) -> bool:
        """True when ``ts`` lies in [start, end) (or after start for an open end)."""
        return ts >= self.start and (self.end is None or ts < self.end)

    def to_json(self, offset_s: int) -> dict[str, Any]:
        return {
            "meter_id": self.meter_id,
            "kind": self.kind,
            "category": self.category,
            "start": iso(self.start, offset_s),
            "end": None if self.end is None else iso(self.end, offset_s),
            "details": self.details,
        }


def iso(ts: float, offset_s: int) -> str:
    """Epoch seconds as ISO-8601 with a fixed offset, to the second.

    >>> iso(1763857807, 8 * 3600)
    '2025-11-23T08:30:07+08:00'
    """
    zone = timezone(timedelta(seconds=offset_s))
    return datetime.fromtimestamp(round(ts), UTC).astimezone(zone).isoformat()


def parse_iso(text: str) -> float:
    """Epoch seconds of an ISO-8601 time with its UTC offset, as :meth:`Label.to_json` writes it.

    A time without an offset is refused, as ``tapwatch replay --outcomes`` and the API refuse it: read in
    this machine's zone, the same labels would mean other times on a server in UTC than on a laptop in Shanghai.

    >>> parse_iso("2025-11-23T08:30:07+08:00")
    1763857807.0
    >>> parse_iso("2025-11-23T08:30:07")
    Traceback (most recent call last):
    ValueError: '2025-11-23T08:30:07' has no UTC offset (write it as 2026-01-05T08:00:00+08:00)
    """
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (write it as 2026-01-05T08:00:00+08:00)")
    return when.timestamp()


def load_labels(path: str | Path) -> list[Label]:
    """Read a ``labels.json`` written by :meth:`SimResult.write` back into labels."""
    items = load_json_file(path)  # as Windows saves it too: UTF-16 (PowerShell's `>`), UTF-8 with BOM
    labels = []
    for k, item in enumerate(items):
        try:
            start, end = parse_iso(item["start"]), None if item["end"] is None else parse_iso(item["end"])
        except ValueError as exc:  # which label, in which file
            raise ValueError(f"{path}: label {k}: {exc}") from None
        labels.append(Label(item["meter_id"], item["kind"], item["category"], start, end, item.get("details", {})))
    return labels
