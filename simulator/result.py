""":class:`SimResult`: delivered readings as numpy arrays, labels, the registry, and fast file output.

``readings.csv`` is formatted without a Python loop per row: each chunk of rows
becomes a byte matrix (meter id, date and clock from lookup tables, register
digits), written in runs of equal line length, which does millions of rows a second.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from simulator.config import SimConfig
from simulator.labels import Label, iso
from simulator.meter import MALFORMED_VARIANTS

CHUNK = 1 << 18  # rows per formatting pass: temporaries stay under glibc's mmap threshold (fewer page faults)
POW10 = 10 ** np.arange(1, 13, dtype=np.int64)


@dataclass
class SimResult:
    """Output of :func:`simulator.simulate`.

    Arrays have one row per delivered reading, grouped by meter (``meter_idx``
    ascending) and in delivery order within a meter. ``total_l`` is NaN where the
    delivery is malformed (see ``malformed``, the variant code).
    """

    config: SimConfig
    start_ts: float  # epoch of local midnight of config.start
    meter_ids: list[str]
    elders: list[dict[str, Any]]
    labels: list[Label]
    meter_idx: np.ndarray
    ts: np.ndarray
    total_l: np.ndarray
    delivered_at: np.ndarray
    battery_pct: np.ndarray
    rssi: np.ndarray
    malformed: np.ndarray
    message: np.ndarray  # rows of one meter with equal ids travel in one MQTT message
    usage: np.ndarray = field(repr=False)  # (meters, intervals) float32 true use
    end_registers_l: list[float] = field(repr=False)  # each register at end_ts, where a next stretch goes on

    @property
    def end_ts(self) -> float:
        return self.start_ts + self.config.days * 86400.0

    @property
    def tz_offset_s(self) -> int:
        return self.config.tz_offset_s

    def grid_ts(self) -> np.ndarray:
        """Start times (epoch) of the intervals of :meth:`usage_l`."""
        return self.start_ts + np.arange(self.usage.shape[1]) * float(self.config.interval_s)

    def usage_l(self, meter_id: str) -> np.ndarray:
        """True litres used in each interval [grid_ts[k], grid_ts[k] + interval) of one meter."""
        return self.usage[self.meter_ids.index(meter_id)].astype(float)

    def labels_for(self, meter_id: str, kind: str | None = None) -> list[Label]:
        return [lab for lab in self.labels if lab.meter_id == meter_id and (kind is None or lab.kind == kind)]

    def write(self, out_dir: str | Path) -> Path:
        """Write readings.csv, labels.json, elders.json and simulation.json into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "readings.csv").open("wb") as handle:
            write_csv(self, handle)
        offset = self.tz_offset_s
        (out / "labels.json").write_bytes(orjson.dumps(labels_json(self.labels, offset), option=orjson.OPT_INDENT_2))
        (out / "elders.json").write_bytes(orjson.dumps(self.elders, option=orjson.OPT_INDENT_2))
        meta = {
            "config": {k: v for k, v in vars(self.config).items() if k != "incidents"},
            "incidents": [vars(s) for s in self.config.incidents],
            "start": iso(self.start_ts, offset),
            "end": iso(self.end_ts, offset),
            "meters": len(self.meter_ids),
            "readings": len(self.ts),
        }
        (out / "simulation.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        return out


def iso_many(ts: np.ndarray, offset_s: int) -> list[str]:
    """Vectorised :func:`simulator.labels.iso`.

    >>> iso_many(np.array([1763857807.0]), 8 * 3600)
    ['2025-11-23T08:30:07+08:00']
    """
    local = (np.round(ts).astype(np.int64) + offset_s).astype("datetime64[s]")
    suffix = offset_text(offset_s)
    return [text + suffix for text in np.datetime_as_string(local).tolist()]


def labels_json(labels: list[Label], offset_s: int) -> list[dict[str, Any]]:
    """Labels as JSON objects, times as ISO-8601 with the local offset."""
    starts = iso_many(np.array([lab.start for lab in labels], dtype=float), offset_s)
    ends = iso_many(np.array([lab.start if lab.end is None else lab.end for lab in labels], dtype=float), offset_s)
    return [
        {
            "meter_id": lab.meter_id,
            "kind": lab.kind,
            "category": lab.category,
            "start": start,
            "end": None if lab.end is None else end,
            "details": lab.details,
        }
        for lab, start, end in zip(labels, starts, ends, strict=True)
    ]


def offset_text(offset_s: int) -> str:
    """'+08:00' style suffix.

    >>> offset_text(8 * 3600), offset_text(-5 * 3600 - 1800)
    ('+08:00', '-05:30')
    """
    sign = "-" if offset_s < 0 else "+"
    minutes = abs(offset_s) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def write_csv(res: SimResult, handle: Any) -> None:
    m3 = res.config.unit == "m3"
    handle.write(b"meter_id,ts,total_m3\n" if m3 else b"meter_id,ts,total_l\n")
    width = max(len(m) for m in res.meter_ids)
    ids = np.array([m.encode().ljust(width) for m in res.meter_ids], dtype=f"S{width}")
    suffix = offset_text(res.tz_offset_s).encode()
    for lo in range(0, len(res.ts), CHUNK):
        hi = min(lo + CHUNK, len(res.ts))
        handle.writelines(_chunk(res, lo, hi, ids, suffix, m3))


@lru_cache(maxsize=1)
def _clock_table() -> np.ndarray:
    """'HH:MM:SS' for every second of a day: one gather formats the clock."""
    return np.array([b"%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)], dtype="S8")


@lru_cache(maxsize=1)
def _triplets() -> np.ndarray:
    return np.array([b"%03d" % i for i in range(1000)], dtype="S3")


def _value_digits(total: np.ndarray, m3: bool) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned text of the register, (n, 13) bytes, and how many trailing bytes each row uses.

    >>> mat, used = _value_digits(np.array([0, 7, 123456]), False)
    >>> [mat[i, 13 - used[i]:].tobytes() for i in range(3)]
    [b'0', b'7', b'123456']
    >>> mat, used = _value_digits(np.array([5, 123456]), True)
    >>> [mat[i, 13 - used[i]:].tobytes() for i in range(2)]
    [b'0.005', b'123.456']
    """
    table = _triplets()
    n = len(total)
    whole = total // 1000 if m3 else total
    rec = np.empty(n, dtype=[("g3", "S3"), ("g2", "S3"), ("g1", "S3"), ("g0", "S3")])
    rest, low = np.divmod(whole, 1000)
    rec["g0"] = table[low]
    rest, low = np.divmod(rest, 1000)
    rec["g1"] = table[low]
    rest, low = np.divmod(rest, 1000)
    rec["g2"] = table[low]
    rec["g3"] = table[np.minimum(rest, 999)]  # registers stay below 1e12 L (MAX_REGISTER_L is 1e10)
    digits = rec.view(np.uint8).reshape(n, 12)
    used = np.searchsorted(POW10, whole, side="right") + 1
    if not m3:
        return np.concatenate([np.full((n, 1), 48, np.uint8), digits], axis=1), used
    frac = table[total % 1000].view(np.uint8).reshape(n, 3)
    dot = np.full((n, 1), ord("."), np.uint8)
    return np.concatenate([digits[:, 3:], dot, frac], axis=1), used + 4


def _chunk(res: SimResult, lo: int, hi: int, ids: np.ndarray, suffix: bytes, m3: bool) -> list[bytes]:
    n = hi - lo
    local = res.ts[lo:hi].astype(np.int64) + res.tz_offset_s
    day, sod = np.divmod(local, 86400)
    first = int(day.min())
    inv = day - first
    days = np.arange(first, int(day.max()) + 1).astype("datetime64[D]")
    dates = np.array(np.datetime_as_string(days).tolist(), dtype="S10")
    rec = np.empty(
        n,
        dtype=[
            ("id", ids.dtype),
            ("c1", "S1"),
            ("date", "S10"),
            ("t", "S1"),
            ("clock", "S8"),
            ("sfx", f"S{len(suffix)}"),
            ("c2", "S1"),
        ],
    )
    rec["id"], rec["c1"], rec["date"], rec["t"] = ids[res.meter_idx[lo:hi]], b",", dates[inv], b"T"
    rec["clock"], rec["sfx"], rec["c2"] = _clock_table()[sod], suffix, b","
    prefix = rec.view(np.uint8).reshape(n, -1)
    value, used = _value_digits(np.nan_to_num(res.total_l[lo:hi], nan=0.0).astype(np.int64), m3)
    newline = np.full((n, 1), 10, np.uint8)
    # Rows of equal register width (long runs: one meter, months) share one fixed-width slice.
    bad = res.malformed[lo:hi] > 0
    cuts = np.flatnonzero((used[1:] != used[:-1]) | bad[1:] | bad[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    pieces: list[bytes] = []
    for a, b in itertools.pairwise(bounds):
        if bad[a]:
            pieces.append(malformed_line(res, lo + a).encode() + b"\n")
            continue
        w = int(used[a])
        pieces.append(np.concatenate([prefix[a:b], value[a:b, value.shape[1] - w :], newline[a:b]], axis=1).tobytes())
    return pieces


def malformed_line(res: SimResult, row: int) -> str:
    """The CSV text of a malformed delivery: each variant breaks the row differently."""
    meter = res.meter_ids[int(res.meter_idx[row])]
    stamp = iso(float(res.ts[row]), res.tz_offset_s)
    variant = MALFORMED_VARIANTS[int(res.malformed[row]) - 1]
    if variant == "no_offset":
        return f"{meter},{stamp[:-6]},{_guess_total(res, row)}"
    if variant == "empty_total":
        return f"{meter},{stamp},"
    if variant == "negative_total":
        return f"{meter},{stamp},-1"
    if variant == "bad_ts":
        return f"{meter},{stamp[:10]}T25:61:00{stamp[-6:]},{_guess_total(res, row)}"
    return f"{meter},{stamp[:13]}"  # truncated: missing the register column


def _guess_total(res: SimResult, row: int) -> str:
    """A plausible register value for a malformed row (the previous valid one of the meter)."""
    m = res.meter_idx[row]
    j = row - 1
    while j >= 0 and res.meter_idx[j] == m and np.isnan(res.total_l[j]):
        j -= 1
    value = res.total_l[j] if j >= 0 and res.meter_idx[j] == m else 0.0
    return f"{value / 1000:.3f}" if res.config.unit == "m3" else f"{value:.0f}"
