"""Benchmark alert delivery: outbox throughput (events/s) and latency from alert to platform (p50/p99).

Real parts only: a migrated SQLite store in a temp dir, the outbox sender,
signed CloudEvents over HTTP to the reference receiver on 127.0.0.1.

* throughput: a backlog (every elder has a leak raised and cleared: raised,
  work order, resolved, plus "notified" once delivered) drained by
  ``OutboxSender.run_once`` passes; events/s = deliveries / wall time;
* latency: alerts raised at a steady rate while the sender serves (woken
  after each commit, as the service does); latency = first arrival at the
  receiver minus the commit of the alert, for the ``raised`` event.

The receiver runs in its own process by default (as the platform would), so
it does not share the sender's interpreter lock; ``--inproc`` keeps it in.

Usage: ``.venv/bin/python bench/bench_delivery.py [--elders 500] [--rate 10] [--seconds 10] [--concurrency 4]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from alerts.manager import AlertManager
from alerts.notifiers import WebhookNotifier
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.domain import Finding
from store import open_store
from store.registry import meter_context, register_elder
from store.schema import outbox

SECRET = b"bench-secret"
REPO = Path(__file__).resolve().parent.parent

# The stand-in platform in its own process: logs "<id> <first arrival time>" per new event.
RECEIVER = """
import signal, sys, threading
from alerts.receiver import WebhookReceiver
log = open(sys.argv[2], "a", buffering=1)
rec = WebhookReceiver(secret=b"bench-secret", port=int(sys.argv[1]),
                      on_event=lambda e: log.write(f"{e['id']} {rec.first_seen[e['id']]}\\n")).start()
print("ready", flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
rec.stop()
log.write(f"# bad_signatures {rec.bad_signatures}\\n")
"""


class RemoteReceiver:
    """The reference receiver in a subprocess; ``first_seen`` is read back from its log."""

    def __init__(self, tmp: str) -> None:
        from tapwatch.broker import free_port

        self.port = free_port()
        self.log = Path(tmp) / "arrivals.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(self.port), str(self.log)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == b"ready"
        self.url = f"http://127.0.0.1:{self.port}/events"
        self.bad_signatures = 0

    @property
    def first_seen(self) -> dict[str, float]:
        out = {}
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            if not line.startswith("#"):
                key, at = line.split()
                out[key] = float(at)
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        for line in self.log.read_text().splitlines():
            if line.startswith("# bad_signatures"):
                self.bad_signatures = int(line.split()[-1])


def _register(engine: Any, n: int, prefix: str) -> None:
    with engine.begin() as conn:
        for k in range(n):
            elder = {"elder_id": f"{prefix}{k}", "name": "王秀兰", "community": f"社区{k % 20}", "room": "502"}
            register_elder(conn, elder, f"{prefix}M{k}", time.time())


def _finding(meter: str, resolved: bool = False) -> Finding:
    return Finding(
        meter, "continuous_flow", "high", time.time(), "持续用水 3 小时。", "Flow for 3 h.", resolved=resolved
    )


def _raise(engine: Any, manager: AlertManager, meter: str, resolved: bool = False) -> str | None:
    with engine.begin() as conn:
        ctx = meter_context(conn, meter)
        assert ctx is not None
        return manager.apply(conn, ctx, _finding(meter, resolved), time.time())


def _pending(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(outbox.c.status == "pending")).scalar_one())


def throughput(engine: Any, url: str, elders: int, concurrency: int) -> dict[str, Any]:
    manager = AlertManager(["webhook"])
    _register(engine, elders, "T")
    for k in range(elders):
        _raise(engine, manager, f"TM{k}")
        _raise(engine, manager, f"TM{k}", resolved=True)
    backlog = _pending(engine)
    sender = OutboxSender(engine, {"webhook": WebhookNotifier(url, SECRET)}, concurrency=concurrency)
    start = time.perf_counter()
    while sender.run_once(limit=500) or _pending(engine):
        pass
    elapsed = time.perf_counter() - start
    sender.stop()
    return {
        "backlog_events": backlog,
        "delivered": sender.delivered,
        "seconds": round(elapsed, 3),
        "events_per_s": round(sender.delivered / elapsed, 1),
        "concurrency": concurrency,
    }


def latency(engine: Any, receiver: Any, rate: float, seconds: float, concurrency: int) -> dict[str, Any]:
    manager = AlertManager(["webhook"])
    n = max(1, int(rate * seconds))
    _register(engine, n, "L")
    sender = OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}, concurrency=concurrency)
    thread = threading.Thread(target=sender.serve, kwargs={"poll_s": 1.0}, daemon=True)
    thread.start()
    committed: dict[str, float] = {}
    start = time.perf_counter()
    for k in range(n):
        alert_id = _raise(engine, manager, f"LM{k}")
        committed[f"{alert_id}:1"] = time.time()
        sender.wake()
        time.sleep(max(0.0, start + (k + 1) / rate - time.perf_counter()))
    deadline = time.time() + 60
    while any(i not in receiver.first_seen for i in committed) and time.time() < deadline:
        time.sleep(0.05)
    sender.stop()
    thread.join(10)
    seen = receiver.first_seen
    lat = sorted((seen[i] - t) * 1000 for i, t in committed.items() if i in seen)
    return {
        "alerts": n,
        "rate_per_s": rate,
        "delivered": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        "max_ms": round(lat[-1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--elders", type=int, default=500, help="elders in the throughput backlog (4 events each)")
    p.add_argument("--rate", type=float, default=10.0, help="alerts raised per second in the latency run")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    p.add_argument("--concurrency", type=int, default=4, help="lanes the sender works in parallel")
    p.add_argument("--inproc", action="store_true", help="run the receiver in this process (shares the GIL)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        receiver: Any = WebhookReceiver(secret=SECRET).start() if args.inproc else RemoteReceiver(tmp)
        engine = open_store(f"sqlite:///{tmp}/bench.db")
        try:
            result: dict[str, Any] = {
                "throughput": throughput(engine, receiver.url, args.elders, args.concurrency),
                "latency": latency(engine, receiver, args.rate, args.seconds, args.concurrency),
            }
        finally:
            receiver.stop()
            engine.dispose()
        result["bad_signatures"] = receiver.bad_signatures
        result["receiver"] = "in-process" if args.inproc else "separate process"
        result["store"] = "sqlite (WAL)"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
