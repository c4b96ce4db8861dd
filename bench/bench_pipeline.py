"""The monitor's own cost per reading, without a broker: ``Pipeline.process`` on the SQLite store.

Feeds the pipeline the same messages ``bench_e2e`` publishes (N meters, one
reading per message, every half hour) in batches of ``--batch`` messages, as
the MQTT consumer hands them over, and reports readings/s and the CPU
microseconds per reading. ``--profile`` prints where the time goes (cProfile).
Together with ``bench_e2e`` it separates the pipeline's cost from the MQTT
client's and the broker's.

    .venv/bin/python bench/bench_pipeline.py                     # 5,000 meters x 20 ticks
    .venv/bin/python bench/bench_pipeline.py --profile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import SLOT, _payload, _stamp, _topic, _usage, meter_id, register_meters


def messages(meters: int, ticks: int, start: float) -> list[object]:
    from ingest.payload import RawMessage

    totals = [1000.0] * meters
    out = []
    for tick in range(ticks):
        stamp = _stamp(start + tick * SLOT)
        for k in range(meters):
            totals[k] += _usage(k, tick)
            m = meter_id(k)
            out.append(RawMessage(_topic(m), _payload(m, stamp, totals[k]), m, 0.0))
    return out


def pipeline_service(workdir: Path, meters: int) -> tuple[Any, float]:
    """A Service on a new SQLite store in ``workdir`` with ``meters`` registered (not started: only its
    pipeline is driven), and the first tick's time: a local midnight (UTC+8) 300 days ago."""
    from core.settings import get_settings
    from tapwatch.service import Service

    settings = get_settings(
        data_dir=workdir,
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        late_window_hours=24 * 365,
        offline_check_s=1e6,
    )
    service = Service(settings)
    register_meters(service.engine, meters)
    return service, (time.time() - 300 * 86400) // 86400 * 86400 - 8 * 3600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=5_000)
    parser.add_argument("--ticks", type=int, default=20, help="half-hour ticks (every meter reports in each)")
    parser.add_argument("--batch", type=int, default=2_000, help="messages per batch (TAPWATCH_BATCH_MAX)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    service, start = pipeline_service(Path(tempfile.mkdtemp(prefix="tapwatch-bench-")), args.meters)
    batch = messages(args.meters, args.ticks, start)
    profiler = cProfile.Profile() if args.profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    for lo in range(0, len(batch), args.batch):
        for m in batch[lo : lo + args.batch]:
            m.received_at = time.time()  # type: ignore[attr-defined]
        service.pipeline.process(batch[lo : lo + args.batch])  # type: ignore[arg-type]
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = service.pipeline.totals.readings_stored
    print(f"pipeline alone (SQLite, batches of {args.batch:,}): {args.meters:,} meters x {args.ticks} ticks")
    rate, cost = stored / wall, cpu / stored * 1e6
    print(f"  {stored:,} readings in {wall:.1f} s: {rate:,.0f} readings/s; {cost:.0f} us CPU each")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
