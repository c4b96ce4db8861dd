"""End-to-end throughput and alert latency over a real Mosquitto with the SQLite store.

A separate publisher process plays the meters. Three figures:

1. burst drain: N meters report every half hour; a burst of B readings (one
   reading per message, the worst case) is published as fast as possible and
   the time until every reading is committed (ingest -> store -> detect ->
   alert) is measured, with the sustained readings/s;
2. alert latency: under a steady background load of R readings/s, a few
   "trigger" meters go silent; from the publish of the reading that makes an
   alert fire to the webhook receiver's arrival, p50 and p99;
3. on-disk bytes per meter-day stored.

Run: ``.venv/bin/python bench/bench_e2e.py`` (defaults: 20,000 meters, a
1,000,000-reading burst, 5,000 readings/s for 30 s). ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mqtt_load import LeanPublisher

from tests.processes import Mosquitto, wait_until

TZ = timezone(timedelta(hours=8))
SLOT = 1800.0


def meter_id(k: int) -> str:
    return f"B{k:07d}"


def cpu_s(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of a process, from /proc; with ``children``, those it has waited for too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11 : 15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(TZ).isoformat()


def _payload(meter: str, stamp: str, total: float) -> bytes:
    return orjson.dumps({"meter_id": meter, "readings": [{"ts": stamp, "total_l": total}], "battery_pct": 90})


def _topic(meter: str) -> str:
    return f"tapwatch/meters/{meter}/readings"


def _usage(k: int, tick: int) -> float:
    # A cheap deterministic daytime pattern: use in most waking slots, none at night.
    hour = (tick // 2) % 24
    return 0.0 if hour < 6 or hour >= 22 else float((k * 7 + tick * 13) % 9)


def publish_burst(url: str, meters: int, ticks: int, start: float, out: Any, client_id: str = "bench-burst") -> None:
    """Publisher process: every meter, every tick, as fast as the broker takes them."""
    client = LeanPublisher(url, client_id)
    totals = [1000.0] * meters
    began = time.time()
    for tick in range(ticks):
        stamp = _stamp(start + tick * SLOT)
        for lo in range(0, meters, 1000):
            batch = []
            for k in range(lo, min(lo + 1000, meters)):
                totals[k] += _usage(k, tick)
                batch.append((_topic(meter_id(k)), _payload(meter_id(k), stamp, totals[k])))
            client.publish_many(batch)
    client.wait_all()
    cpu = time.process_time()
    out.put({"began": began, "published_s": time.time() - began, "totals": totals, "cpu_s": cpu})
    client.close()


def publish_steady(
    url: str,
    meters: int,
    first_tick: int,
    start: float,
    totals: list[float],
    rate: float,
    seconds: float,
    triggers: int,
    out: Any,
) -> None:
    """Background load at ``rate`` readings/s, plus trigger meters that fall silent, fast-forwarded."""
    client = LeanPublisher(url, "bench-steady")
    sent: dict[tuple[str, int], float] = {}
    began = time.monotonic()
    n = 0
    tick, k = first_tick, 0
    trigger_ts = [start + first_tick * SLOT] * triggers
    next_trigger = began
    while (now := time.monotonic()) - began < seconds:
        due = int((now - began) * rate) - n  # messages owed by now: sent in 10 ms slices
        batch = []
        for _ in range(due):
            totals[k] += _usage(k, tick)
            batch.append((_topic(meter_id(k)), _payload(meter_id(k), _stamp(start + tick * SLOT), totals[k])))
            k += 1
            if k == meters:
                k, tick = 0, tick + 1
        if batch:
            client.publish_many(batch)
            n += len(batch)
        if now >= next_trigger:  # each trigger meter advances half an hour of silence every 0.2 s
            next_trigger = now + 0.2
            for j in range(triggers):
                trigger_ts[j] += SLOT
                m = meter_id(meters + j)
                message = (_topic(m), _payload(m, _stamp(trigger_ts[j]), 500.0))
                sent[(m, round(trigger_ts[j]))] = client.publish_many([message])
        time.sleep(0.01)
    client.wait_all()
    out.put({"sent": sent, "background": n, "seconds": time.monotonic() - began})
    client.close()


def register_meters(engine: Any, count: int) -> None:
    from store.schema import elders, meters

    with engine.begin() as conn:
        conn.execute(
            elders.insert(),
            [
                {
                    "elder_id": f"E{meter_id(k)}",
                    "name": f"bench {k}",
                    "community": f"C{k % 50:02d}",
                    "created_at": 0.0,
                    "contacts": [],
                }
                for k in range(count)
            ],
        )
        conn.execute(
            meters.insert(),
            [{"meter_id": meter_id(k), "elder_id": f"E{meter_id(k)}", "installed_at": 0.0} for k in range(count)],
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=1_000_000, help="readings in the burst")
    parser.add_argument("--rate", type=float, default=5_000.0, help="steady background readings/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the steady phase")
    parser.add_argument("--triggers", type=int, default=20, help="meters that fall silent in the steady phase")
    parser.add_argument(
        "--checkpoint-s",
        type=float,
        default=21600.0,
        help="TAPWATCH_CHECKPOINT_INTERVAL_S (data time, 6 h by default); 0 saves every meter's state with"
        " every reading",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run (2,000 meters, 20,000 readings)")
    args = parser.parse_args()
    if args.quick:
        args.meters, args.burst, args.rate, args.seconds, args.triggers = 2_000, 20_000, 1_000.0, 12.0, 5

    from alerts.receiver import WebhookReceiver
    from core.settings import get_settings
    from tapwatch.service import Service

    workdir = Path(tempfile.mkdtemp(prefix="tapwatch-bench-"))
    (workdir / "mqtt").mkdir()
    # As deployed (deploy/mosquitto/mosquitto.conf), not as the tests run it: the test broker saves its
    # whole store every second, which with a backlog of a burst costs it more CPU than the monitor's work.
    broker = Mosquitto(workdir / "mqtt", extra_config="autosave_interval 60\nmax_inflight_messages 10000\n")
    broker.start()
    arrivals: dict[tuple[str, int], float] = {}

    def arrived(event: dict[str, Any]) -> None:
        data = event["data"]
        if event["type"].endswith(".raised"):
            ts = datetime.fromisoformat(data["data_time"].replace("Z", "+00:00")).timestamp()
            arrivals[(data["meter_id"], round(ts))] = time.time()

    receiver = WebhookReceiver(on_event=arrived).start()
    settings = get_settings(
        data_dir=workdir,
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        mqtt_url=broker.url,
        mqtt_client_id="bench-ingest",
        webhook_url=receiver.url,
        late_window_hours=24 * 365,
        offline_check_s=1e6,
        batch_max=2000,
        checkpoint_interval_s=args.checkpoint_s,
    )
    service = Service(settings)
    register_meters(service.engine, args.meters + args.triggers)
    service.start()
    wait_until(service.consumer.connected.is_set, 10)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    ticks = max(1, args.burst // args.meters)
    start = (time.time() - 300 * 86400) // 86400 * 86400 - 8 * 3600  # local midnight, 300 days ago
    pids = {"pipeline": os.getpid(), "MQTT client": service.consumer._child.pid, "Mosquitto": broker.proc.pid}
    cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
    burst = ctx.Process(target=publish_burst, args=(broker.url, args.meters, ticks, start, out))
    burst.start()
    result = out.get(timeout=3600)
    burst.join()
    expected = ticks * args.meters
    wait_until(lambda: service.pipeline.totals.readings_stored >= expected, 3600, interval=0.2)
    drained = time.time() - result["began"]
    stored = service.pipeline.totals.readings_stored
    cpu_used = {name: cpu_s(pid) - cpu_before[name] for name, pid in pids.items()} | {"publisher": result["cpu_s"]}

    steady = ctx.Process(
        target=publish_steady,
        args=(broker.url, args.meters, ticks, start, result["totals"], args.rate, args.seconds, args.triggers, out),
    )
    steady.start()
    steady_result = out.get(timeout=args.seconds + 600)
    steady.join()
    wait_until(lambda: len(arrivals) >= args.triggers, 60)
    latencies = [arrivals[key] - sent for key, sent in steady_result["sent"].items() if key in arrivals]
    with service.engine.connect() as conn:  # fold the write-ahead log into the database file first
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db_bytes = sum(p.stat().st_size for p in workdir.glob("bench.db*"))
    meter_days = stored / 48.0
    service.stop()
    receiver.stop()
    broker.stop()

    print(
        f"machine: {mp.cpu_count()} cores; Mosquitto {broker.url}; SQLite (WAL) store;"
        f" checkpoint interval {args.checkpoint_s:.0f} s"
    )
    print(
        f"burst: {expected:,} readings from {args.meters:,} meters ({ticks} half-hour ticks, one reading per message)"
    )
    print(f"  publisher finished in {result['published_s']:.1f} s ({expected / result['published_s']:,.0f} msg/s)")
    print(
        f"  drained (all committed) in {drained:.1f} s: {stored / drained:,.0f} readings/s sustained;"
        f" stored {stored:,} of {expected:,}"
    )
    shares = ", ".join(f"{name} {seconds / stored * 1e6:.0f}" for name, seconds in cpu_used.items())
    monitor_us = (cpu_used["pipeline"] + cpu_used["MQTT client"]) / stored * 1e6
    print(f"  CPU per reading (us): {shares}; the monitor's two processes {monitor_us:.0f}")
    bg_rate = steady_result["background"] / steady_result["seconds"]
    print(
        f"steady load: {bg_rate:,.0f} readings/s for {steady_result['seconds']:.0f} s; "
        f"{len(latencies)} of {args.triggers} trigger alerts arrived"
    )
    if latencies:
        print(
            f"  alert latency publish -> webhook: p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        )
    print(
        f"disk: {db_bytes / 1e6:.1f} MB for {meter_days:,.0f} meter-days = {db_bytes / meter_days:,.0f} bytes/meter-day"
        f" (with one checkpoint per meter, which a short run does not amortise; bench_memory.py for the steady state)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
