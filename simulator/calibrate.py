"""Compare simulated meters with real ones (the DAIAD hourly data): figures, a table and a plot.

Run from the repository root::

    python -m simulator.calibrate --real ../shared/data/real-water/dev.csv.gz --out docs

Both sides go through the same code: readings -> hourly intervals (intervals of
0.9-1.1 h with a plausible, non-negative difference count as usage, anything else
is unknown) -> statistics. Simulated half-hourly readings are resampled to the
first reading of each hour first. Volumes differ (the real homes are families),
so daily totals are also compared relative to each household's median.
"""

from __future__ import annotations

import argparse
import csv
import gzip
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from simulator.config import IncidentSpec, SimConfig
from simulator.core import simulate
from simulator.result import SimResult

HUGE_LPH = 5000.0  # the README's "huge spike" threshold


@dataclass
class Readings:
    """Readings of many meters sorted by (meter, ts); ``local`` is ts plus the UTC offset."""

    meter: np.ndarray
    ts: np.ndarray
    total: np.ndarray
    local: np.ndarray


@dataclass
class Hourly:
    """Hourly intervals: meter, local start hour, usage (NaN when unknown), day key."""

    meter: np.ndarray
    hour: np.ndarray
    usage: np.ndarray
    day: np.ndarray
    faults: dict[str, float]


def load_real(path: str | Path) -> Readings:
    """Parse the real CSV (meter_id,ts,total_l with offsets)."""
    meters: dict[str, int] = {}
    m, ts, total, off = [], [], [], []
    offsets: dict[str, float] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for meter_id, stamp, value in reader:
            moment = datetime.fromisoformat(stamp)
            m.append(meters.setdefault(meter_id, len(meters)))
            ts.append(moment.timestamp())
            suffix = stamp[-6:]
            if suffix not in offsets:
                offsets[suffix] = moment.utcoffset().total_seconds()  # type: ignore[union-attr]
            off.append(offsets[suffix])
            total.append(float(value))
    return _sorted(np.array(m), np.array(ts), np.array(total), np.array(ts) + np.array(off))


def sim_readings(res: SimResult) -> Readings:
    """Simulated deliveries as a meter would be read off a database: valid rows, by time, hourly."""
    ok = ~np.isnan(res.total_l)
    r = _sorted(res.meter_idx[ok], res.ts[ok], res.total_l[ok], res.ts[ok] + res.tz_offset_s)
    # Resample to hourly: keep the first reading in each clock hour of each meter (real cadence).
    bucket = np.floor(r.ts / 3600.0)
    first = np.ones(len(bucket), dtype=bool)
    first[1:] = (bucket[1:] != bucket[:-1]) | (r.meter[1:] != r.meter[:-1])
    return Readings(r.meter[first], r.ts[first], r.total[first], r.local[first])


def _sorted(meter: np.ndarray, ts: np.ndarray, total: np.ndarray, local: np.ndarray) -> Readings:
    order = np.lexsort((ts, meter))
    return Readings(meter[order], ts[order], total[order], local[order])


def hourly(r: Readings) -> Hourly:
    """Intervals between consecutive readings of a meter; usage is NaN where not a clean hour."""
    same = r.meter[1:] == r.meter[:-1]
    dt = np.diff(r.ts)[same]
    dv = np.diff(r.total)[same]
    n = len(dt)
    faults = {
        "gaps > 3 h per 1,000 intervals": 1000 * float(np.mean(dt > 3 * 3600)),
        "gaps > 24 h per 1,000 intervals": 1000 * float(np.mean(dt > 24 * 3600)),
        "negative steps per 1,000 intervals": 1000 * float(np.mean(dv < 0)),
        "jumps > 5,000 L/h per 100,000 intervals": 1e5 * float(np.mean(dv > HUGE_LPH * np.maximum(dt, 1) / 3600)),
        "intervals 0.9-1.1 h (%)": 100 * float(np.mean((dt > 0.9 * 3600) & (dt < 1.1 * 3600))),
    }
    clean = (dt > 0.9 * 3600) & (dt < 1.1 * 3600) & (dv >= 0) & (dv < HUGE_LPH)
    mid = r.local[:-1][same] + dt / 2
    usage = np.where(clean, dv, np.nan)
    day = r.meter[:-1][same].astype(np.int64) * 100000 + np.floor(mid / 86400).astype(np.int64)
    return Hourly(r.meter[:-1][same], (np.floor(mid / 3600) % 24).astype(int), usage, day, faults | {"n": n})


def stats(h: Hourly) -> dict[str, object]:
    """The comparison figures of one data set."""
    ok = ~np.isnan(h.usage)
    use, hour = h.usage[ok], h.hour[ok]
    profile = np.bincount(hour, weights=use, minlength=24)
    profile = profile / profile.sum()
    zero_by_hour = np.bincount(hour, weights=use == 0, minlength=24) / np.maximum(np.bincount(hour, minlength=24), 1)
    # Daily totals: only days with 24 clean hours.
    days, inv, counts = np.unique(h.day[ok], return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=use)
    full = counts == 24
    totals, owners = sums[full], (days[full] // 100000)
    rel = (
        np.concatenate([totals[owners == m] / max(np.median(totals[owners == m]), 1.0) for m in np.unique(owners)])
        if len(totals)
        else np.array([np.nan])
    )
    cv = [
        np.std(totals[owners == m]) / np.mean(totals[owners == m])
        for m in np.unique(owners)
        if (owners == m).sum() >= 7 and np.mean(totals[owners == m]) > 0
    ]
    runs = zero_runs(h)
    return {
        "profile": profile,
        "zero_by_hour": zero_by_hour,
        "rel_daily": rel,
        "runs": runs,
        "zero share (%)": 100 * float(np.mean(use == 0)),
        "zero share 01-05 h (%)": 100 * float(np.mean(use[(hour >= 1) & (hour < 5)] == 0)),
        "zero share 07-22 h (%)": 100 * float(np.mean(use[(hour >= 7) & (hour < 22)] == 0)),
        "use 00-06 h (% of day)": 100 * float(profile[:6].sum()),
        "morning peak hour": int(np.argmax(profile[5:12]) + 5),
        "evening peak hour": int(np.argmax(profile[16:24]) + 16),
        "daily total median (L)": float(np.median(totals)) if len(totals) else float("nan"),
        "daily total p10 / median": float(np.quantile(rel, 0.1)),
        "daily total p90 / median": float(np.quantile(rel, 0.9)),
        "daily total CV within home": float(np.median(cv)) if cv else float("nan"),
        "no-use run median (h)": float(np.median(runs)),
        "no-use run p90 (h)": float(np.quantile(runs, 0.9)),
        "no-use runs >= 8 h (%)": 100 * float(np.mean(runs >= 8)),
        "longest no-use run p99 (h)": float(np.quantile(runs, 0.99)),
    }


def zero_runs(h: Hourly) -> np.ndarray:
    """Lengths (hours) of consecutive clean zero-use hours, cut at unknown hours and meter changes."""
    zero = (h.usage == 0).astype(np.int8)
    brk = np.ones(len(zero) + 1, dtype=bool)
    brk[1:-1] = (zero[1:] != zero[:-1]) | (h.meter[1:] != h.meter[:-1])
    edges = np.flatnonzero(brk)
    starts, lengths = edges[:-1], np.diff(edges)
    return lengths[zero[starts] == 1].astype(float)


def compare(
    real: dict[str, object],
    sim: dict[str, object],
    real_faults: dict[str, float],
    sim_faults: dict[str, float],
) -> str:
    """Markdown table of the scalar figures."""
    corr = float(np.corrcoef(np.asarray(real["profile"]), np.asarray(sim["profile"]))[0, 1])
    zcorr = float(np.corrcoef(np.asarray(real["zero_by_hour"]), np.asarray(sim["zero_by_hour"]))[0, 1])
    lines = ["| figure | real (DAIAD, 46 family homes) | simulated (elders alone) |", "|---|---:|---:|"]
    lines.append(f"| hour-of-day profile: correlation real vs sim | | {corr:.2f} |")
    lines.append(f"| no-use share by hour: correlation real vs sim | | {zcorr:.2f} |")
    for key, value in real.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            lines.append(f"| {key} | {_fmt(value)} | {_fmt(sim[key])} |")  # type: ignore[arg-type]
    for key, value in real_faults.items():
        if key != "n":
            lines.append(f"| {key} | {_fmt(value)} | {_fmt(sim_faults[key])} |")
    lines.append(f"| hourly intervals compared | {int(real_faults['n']):,} | {int(sim_faults['n']):,} |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def plot(real: dict[str, object], sim: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    hours = np.arange(24) + 0.5
    for data, name, style in ((real, "real (DAIAD families)", "-"), (sim, "simulated elders", "--")):
        ax[0, 0].plot(hours, 100 * np.asarray(data["profile"]), style, label=name)
        ax[0, 1].plot(hours, 100 * np.asarray(data["zero_by_hour"]), style, label=name)
        rel = np.asarray(data["rel_daily"])
        ax[1, 0].hist(np.clip(rel, 0, 3), bins=60, range=(0, 3), density=True, histtype="step", label=name)
        runs = np.sort(np.asarray(data["runs"]))
        ax[1, 1].step(runs, 1 - np.arange(len(runs)) / len(runs), where="post", label=name)
    ax[0, 0].set(title="Share of daily use by local hour", xlabel="hour", ylabel="% of volume", xlim=(0, 24))
    ax[0, 1].set(title="Hours with no use", xlabel="hour", ylabel="% of hours", xlim=(0, 24), ylim=(0, 100))
    ax[1, 0].set(title="Daily total / household median", xlabel="ratio", ylabel="density")
    ax[1, 1].set(
        title="No-use stretches (survival)",
        xlabel="length (h)",
        ylabel="P(length >= x)",
        xscale="log",
        yscale="log",
    )
    for a in ax.ravel():
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_week(path: Path, seed: int = 3) -> None:
    """Two weeks of one simulated elder's true half-hourly use around a fall, with the labels shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = SimConfig(
        elders=1,
        days=14,
        seed=seed,
        start="2026-03-02",
        random_incidents=False,
        faults=False,
        event_rates={"away": 0.0, "family_visit": 2.0},
        incidents=[
            IncidentSpec(elder=0, kind="fall", start_day=9.4, duration_h=30),
            IncidentSpec(elder=0, kind="leak", start_day=4.2, duration_h=40, flow_lpm=0.6),
        ],
    )
    res = simulate(cfg)
    use = res.usage_l(res.meter_ids[0])
    days = (res.grid_ts() - res.start_ts) / 86400.0
    fig, ax = plt.subplots(figsize=(12, 3.6))
    ax.bar(days, use, width=1 / 48, align="edge", color="tab:blue")
    colours = {"fall": "tab:red", "leak": "tab:orange", "family_visit": "tab:green", "hospital": "tab:purple"}
    for lab in res.labels:
        end = res.end_ts if lab.end is None else lab.end
        a, b = (lab.start - res.start_ts) / 86400.0, (end - res.start_ts) / 86400.0
        ax.axvspan(a, b, color=colours.get(lab.kind, "grey"), alpha=0.2, label=lab.kind)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper right")
    ax.set(
        xlabel="day",
        ylabel="litres per half hour",
        xlim=(0, cfg.days),
        title=f"One simulated elder, true half-hourly use with labels (seed {seed})",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(real_path: str, out: str, elders: int, days: int, seed: int) -> str:
    real_h = hourly(load_real(real_path))
    # The real homes have no known incidents: compare with random incidents off (events and faults on).
    res = simulate(SimConfig(elders=elders, days=days, seed=seed, start="2026-03-01", random_incidents=False))
    sim_h = hourly(sim_readings(res))
    real_s, sim_s = stats(real_h), stats(sim_h)
    table = compare(real_s, sim_s, real_h.faults, sim_h.faults)
    plot(real_s, sim_s, Path(out) / "img" / "simulator-calibration.png")
    plot_week(Path(out) / "img" / "simulator-week.png")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", default="../shared/data/real-water/dev.csv.gz", help="real hourly readings")
    parser.add_argument("--out", default="docs", help="docs directory; the plot goes to OUT/img/")
    parser.add_argument("--elders", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(run(args.real, args.out, args.elders, args.days, args.seed))
    print(f"\nplots: {Path(args.out) / 'img' / 'simulator-calibration.png'}, simulator-week.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
