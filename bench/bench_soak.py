"""Months of a live monitor in minutes: what grows with the age of a deployment, and what each batch costs then.

Simulated elders (``--elders``, ``--days``) go through the live :class:`engine.pipeline.Pipeline` on a store
(SQLite in a temporary directory, or ``--url``) on a clock the bench moves: each half-hour tick's readings are
one batch (one message per meter, received when read), the silent-meter check runs every hour, the retention
purge every 6 hours (``store.retention.purge`` with short retentions, ``--readings-days`` and
``--delivered-days``), and the outbox's pending jobs are marked sent each hour (a sender that always gets
through). A few junk messages a day come from a handful of topics (dead letters), and a cadre resolves each
open community case a day after it was raised.

Every ``--every`` simulated days it prints one line: rows per table, the process's RSS, the pipeline's in-memory
sizes (cached meters, daily-note days, dead-letter sources) and the mean and 95th percentile wall time of a
batch over those days. A table or a figure that keeps growing once retention has begun is a soak fault.

Run: ``.venv/bin/python bench/bench_soak.py --elders 200 --days 180``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, func, select, update

TABLES = (
    "readings",
    "dead_letters",
    "alerts",
    "alert_events",
    "outbox",
    "escalations",
    "daily_notes",
    "held_findings",
    "detector_state",
    "audit_log",
)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def table_rows(engine: Engine) -> dict[str, int]:
    from store.schema import metadata

    with engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one())
            for name in TABLES
        }


def register_all(engine: Engine, sim: Any) -> None:
    from store.registry import register_elder

    with engine.begin() as conn:
        for elder in sim.elders:
            contacts = [{**c, "daily_note": True} for c in elder.get("contacts", [])]
            register_elder(conn, {**elder, "contacts": contacts}, elder["meter_id"], 0.0)


def ticks(sim: Any) -> dict[float, list[tuple[str, float, float]]]:
    """The simulated readings grouped by half-hour tick: ``{tick: [(meter, ts, total_l)]}``."""
    import math

    out: dict[float, list[tuple[str, float, float]]] = {}
    for idx, ts, total in zip(sim.meter_idx, sim.ts, sim.total_l, strict=True):
        if math.isnan(total):
            continue
        out.setdefault(float(ts) // 1800 * 1800, []).append((sim.meter_ids[int(idx)], float(ts), float(total)))
    return dict(sorted(out.items()))


def deliver_all(engine: Engine, now: float) -> None:
    from store.schema import outbox

    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.status == "pending").values(status="sent", sent_at=now))


def resolve_day_old_cases(engine: Engine, now: float) -> None:
    from store.schema import alerts

    with engine.begin() as conn:
        conn.execute(
            update(alerts)
            .where(alerts.c.state != "resolved", alerts.c.raised_at < now - 86400, alerts.c.case_key == "community")
            .values(state="resolved", resolved_at=now, resolved_by="bench.cadre", outcome="false_alarm")
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elders", type=int, default=200)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--every", type=int, default=15, help="print a line every this many simulated days")
    parser.add_argument("--readings-days", type=float, default=30.0)
    parser.add_argument("--delivered-days", type=float, default=7.0)
    parser.add_argument("--dead-letter-days", type=float, default=14.0)
    parser.add_argument("--url", default="", help="store URL (default: SQLite in a temporary directory)")
    args = parser.parse_args()

    from alerts.manager import AlertManager
    from detect.monitor import SILENT_TICK_S
    from engine.pipeline import Pipeline
    from ingest.payload import RawMessage
    from simulator import SimConfig, simulate
    from store import open_store
    from store.retention import RetentionPolicy, purge
    from tests.helpers import message

    sim = simulate(SimConfig(elders=args.elders, days=args.days, seed=11))
    tmp = tempfile.TemporaryDirectory()
    engine = open_store(args.url or f"sqlite:///{tmp.name}/soak.db")
    register_all(engine, sim)
    clock = [sim.start_ts]
    pipeline = Pipeline(engine, AlertManager(("webhook", "sms")), clock=lambda: clock[0])
    policy = RetentionPolicy(
        readings_days=args.readings_days,
        dead_letter_days=args.dead_letter_days,
        delivered_days=args.delivered_days,
        personal_days=90.0,
    )
    header = ["day", "rss_mb", "cached", "notes_mem", "dl_sources", "batch_ms", "p95_ms", *TABLES]
    print(" ".join(f"{h:>10}" for h in header))
    batch_s: list[float] = []
    next_report = sim.start_ts + args.every * 86400
    for tick, rows in ticks(sim).items():
        clock[0] = tick + 1800
        batch = [RawMessage(f"tapwatch/meters/{m}/readings", message(m, [(ts, total)]), m, ts) for m, ts, total in rows]
        if int(tick // 1800) % 48 == 0:  # a junk message from a few topics a day
            batch += [RawMessage(f"tapwatch/meters/X{k}/readings", b"{not json", f"X{k}", tick) for k in range(5)]
        started = time.perf_counter()
        pipeline.process(batch)
        batch_s.append(time.perf_counter() - started)
        if int(tick // 1800) % 2 == 0:
            pipeline.tick(clock[0], offline_after_s=SILENT_TICK_S)
            deliver_all(engine, clock[0])
        if int(tick // 1800) % 12 == 0:
            resolve_day_old_cases(engine, clock[0])
            purge(engine, policy, clock[0])
        if clock[0] >= next_report:
            next_report += args.every * 86400
            figures = [
                round((clock[0] - sim.start_ts) / 86400),
                round(rss_mb()),
                len(pipeline.states),
                len(pipeline.daily._done),
                len(pipeline.dead_letter_budget),
                round(statistics.mean(batch_s) * 1000, 1),
                round(sorted(batch_s)[int(0.95 * (len(batch_s) - 1))] * 1000, 1),
                *table_rows(engine).values(),
            ]
            print(" ".join(f"{x:>10}" for x in figures), flush=True)
            batch_s = []
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
