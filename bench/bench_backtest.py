"""How long the operator waits for a backtest preview: ``POST /backtest`` over a community on SQLite.

Builds (once per day, kept in ``--cache``) a SQLite store with one community of
``--elders`` simulated elders and their half-hourly readings for the backtest's
period plus its warm-up (``api.routes.backtest.WARMUP_DAYS``), ending now; then
times ``POST /backtest`` through the HTTP app (FastAPI's TestClient: routing,
auth, validation, the route and the JSON answer) as an operator uses it: the
thresholds page opens (``POST /backtest/prepare``, as the dashboard sends it; the
time until the preparation is ready is printed), the operator chooses values,
then a first preview and ``--runs`` - 1 further proposals for the same community
and period; prints each, the first and the median of the others (wall and CPU
of the process and its forked children, background preparation included). ``--cold`` skips the
page's request: the first preview then prepares itself.

    .venv/bin/python bench/bench_backtest.py                      # 1,000 elders x 30 days
    .venv/bin/python bench/bench_backtest.py --cold               # the first preview prepares itself
    .venv/bin/python bench/bench_backtest.py --elders 100 --days 7 --runs 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COMMUNITY = "基准社区"


def build_store(path: Path, elders: int, days: int, seed: int) -> int:
    """A migrated SQLite store at ``path`` with ``elders`` simulated elders of one community; returns readings."""
    from api.routes.backtest import WARMUP_DAYS
    from simulator import SimConfig, simulate
    from store import create_store_engine, migrate

    engine = create_store_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    span = days + WARMUP_DAYS + 1  # a day more than the route reads: its window ends at "now"
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).date() - dt.timedelta(days=span - 1)
    res = simulate(SimConfig(elders=elders, days=span, seed=seed, start=start.isoformat()))
    now = time.time()
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO elders (elder_id, name, community, tz, consent, contacts, created_at)"
            " VALUES (?, ?, ?, 'Asia/Shanghai', 1, '[]', 0)",
            [(f"E{m}", f"bench {k}", COMMUNITY) for k, m in enumerate(res.meter_ids)],
        )
        db.executemany(
            "INSERT INTO meters (meter_id, elder_id, installed_at, state_version) VALUES (?, ?, 0, 0)",
            [(m, f"E{m}") for m in res.meter_ids],
        )
        ids = res.meter_ids
        rows = (
            (ids[i], ts, total, "ok", ts)
            for i, ts, total in zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True)
            if total == total and ts <= now  # NaN totals are deliveries the pipeline dead-letters
        )
        db.executemany(
            "INSERT OR IGNORE INTO readings (meter_id, ts, total_l, status, received_at) VALUES (?, ?, ?, ?, ?)", rows
        )
    count = db.execute("SELECT count(*) FROM readings").fetchone()[0]
    db.close()
    return int(count)


def _cpu() -> float:
    """CPU seconds of this process and its ended children (a preview may judge half the elders in a forked child)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elders", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=4, help="previews in a row (the first is cold)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="no POST /backtest/prepare before the first preview")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tapwatch-bench-backtest")
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from api.main import create_app
    from core.settings import get_settings
    from store import create_store_engine
    from store.schema import users
    from store.users import issue_token

    args.cache.mkdir(parents=True, exist_ok=True)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    path = args.cache / f"backtest-{args.elders}x{args.days}-s{args.seed}-{today}.db"
    if not path.exists():
        began = time.perf_counter()
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        count = build_store(partial, args.elders, args.days, args.seed)
        partial.rename(path)
        print(f"built {path.name}: {count:,} readings in {time.perf_counter() - began:.0f} s")
    settings = get_settings(data_dir=args.cache, database_url=f"sqlite:///{path}")
    engine = create_store_engine(settings.database_url)
    with engine.begin() as conn:
        user_id = conn.execute(select(users.c.user_id).where(users.c.username == "bench")).scalar()
        if user_id is None:  # a store built earlier today has the operator already
            user_id = conn.execute(
                users.insert().values(
                    username="bench",
                    password_hash="-",
                    role="operator",
                    communities=[COMMUNITY],
                    created_at=time.time(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        token, _ = issue_token(conn, int(user_id), "bench", time.time(), 3600)
    # The operator's session: a first preview, then further proposals for the same community and period.
    proposals = [{"sensitivity": 1e-5}, {"sensitivity": 1e-4}, {"learned_ceiling_hours": 18}, {"sensitivity": 3e-3}]
    times: list[float] = []
    cpu: list[float] = []  # the server's work alone, on a machine shared with other jobs
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, engine)) as client:
        if not args.cold:  # the thresholds page opens; the operator takes longer than this to choose values
            page = {"community": COMMUNITY, "days": args.days}
            began, began_cpu = time.perf_counter(), _cpu()
            while client.post("/backtest/prepare", json=page, headers=auth).json()["state"] != "ready":
                time.sleep(0.1)
            print(
                f"  page opened: prepared in {time.perf_counter() - began:.2f} s "
                f"(CPU {_cpu() - began_cpu:.2f} s) in the background",
                flush=True,
            )
        for k in range(args.runs):
            body = {"community": COMMUNITY, "days": args.days, "thresholds": proposals[k % len(proposals)]}
            began, began_cpu = time.perf_counter(), _cpu()
            answer = client.post("/backtest", json=body, headers=auth)
            times.append(time.perf_counter() - began)
            cpu.append(_cpu() - began_cpu)
            answer.raise_for_status()
            result = answer.json()
            print(
                f"  preview {k + 1} {body['thresholds']}: {times[-1]:.2f} s (CPU {cpu[-1]:.2f} s); "
                f"alerts current {result['current']['total']}, proposed {result['proposed']['total']}",
                flush=True,
            )
    print(
        f"POST /backtest, {result['elders']:,} elders x {args.days} days ({result['readings']:,} readings in the "
        f"period, {args.days + 14} days read): first preview {'(cold)' if args.cold else 'after the page opened'} "
        f"{times[0]:.2f} s (CPU {cpu[0]:.2f} s)"
        + (
            f", further previews median {statistics.median(times[1:]):.2f} s (CPU {statistics.median(cpu[1:]):.2f} s)"
            if len(times) > 1
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
