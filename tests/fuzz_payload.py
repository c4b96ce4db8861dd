"""Coverage-guided fuzzing of the payload parser with atheris.

Run: ``.venv/bin/python tests/fuzz_payload.py -atheris_runs=100000``. Every input
must either parse or raise :class:`PayloadError`; anything else is a crash.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from ingest.payload import PayloadError, parse_message


def test_one(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        parse_message(data, "M1")


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
