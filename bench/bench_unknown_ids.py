"""A flood of unknown meter ids through the real pipeline: memory growth, throughput, every one dead-lettered.

The flood itself (known meters interleaved, one leaking; a simulated clock;
RSS after a warm-up) is ``tests/unknown_flood.py``; ``tests/app/test_faults.py``
runs it with 200,000 messages in the suite, this runs the million of issue 10
against a SQLite store in a temporary directory and prints the figures
``docs/reliability.md`` quotes.

Run: ``.venv/bin/python bench/bench_unknown_ids.py`` (``--messages 1000000 --batch 500``;
``--log-info`` logs at INFO to /dev/null as ``tapwatch run`` does, one line per dead letter).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store import open_store
from tests.unknown_flood import flood, store_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500, help="messages per transaction (the consumer's batch_max)")
    parser.add_argument("--log-info", action="store_true", help="log at INFO (to /dev/null), as the service does")
    args = parser.parse_args()
    if args.log_info:
        logging.basicConfig(level=logging.INFO, filename="/dev/null")
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_store(f"sqlite:///{tmp}/bench.db")
        result, _pipeline = flood(engine, args.messages, args.batch)
        print(result.text())
        counts = store_counts(engine)
        print(f"dead letters by reason: {counts['dead_letters']}")
        print(f"readings per known meter: {counts['readings']}; alerts: {counts['alerts']}")
        engine.dispose()


if __name__ == "__main__":
    main()
