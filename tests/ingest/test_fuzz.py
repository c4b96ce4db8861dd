"""Hostile and broken input: 100,000 random and mutated payloads, each accepted or dead-lettered, no crash."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from alerts.manager import AlertManager
from engine.budget import DeadLetterBudget
from engine.pipeline import Pipeline
from ingest.payload import PayloadError, RawMessage, _fast_path, _validated, parse_message
from store.schema import dead_letters, readings
from tests.conftest import REPO
from tests.helpers import FUZZ_SEEDS, iso, message, register, this_tree

NOW = time.time() // 1800 * 1800
JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
READING = st.fixed_dictionaries(
    {
        "ts": st.one_of(st.text(max_size=30), st.datetimes().map(lambda d: d.isoformat()), st.integers()),
        "total_l": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=5)),
    }
)
MESSAGE = st.fixed_dictionaries(
    {"meter_id": st.one_of(st.just("M1"), st.text(max_size=70)), "readings": st.lists(READING, max_size=5)},
    optional={"battery_pct": JSON, "rssi": JSON},
)


def _accepted_or_reason(payload: bytes) -> None:
    try:
        parsed = parse_message(payload)
    except PayloadError as exc:
        assert exc.reason and len(exc.reason) < 600
        return
    assert parsed.readings and all(r.total_l >= 0 for r in parsed.readings)


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_any_json_value(value: object) -> None:
    _accepted_or_reason(json.dumps(value).encode())


@settings(max_examples=400, deadline=None)
@given(MESSAGE)
def test_message_shaped_values(value: dict[str, object]) -> None:
    _accepted_or_reason(json.dumps(value).encode())


def _stamps(fractions: list[str], offsets: list[str], years: tuple[int, int] = (1971, 9999)) -> st.SearchStrategy[str]:
    return st.builds(
        lambda d, frac, off: d.replace(microsecond=0).isoformat() + frac + off,
        st.datetimes(min_value=datetime(years[0], 1, 2), max_value=datetime(years[1], 12, 30)),
        st.sampled_from(fractions),
        st.sampled_from(offsets),
    )


# Valid: within the years a meter's clock may show (ingest.payload.TS_MIN..TS_MAX).
VALID_TS = _stamps(["", ".5", ".123456"], ["Z", "+08:00", "-03:30", "+05:45"], years=(2000, 2099))
CANONICAL_TS = _stamps(["", ".5", ".123456", ".1234567"], ["Z", "+08:00", "-03:30", "+24:00", "", "+0800"])
NUMBER = st.one_of(
    st.floats(0, 1e7),
    st.integers(0, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63),
    st.booleans(),
    st.none(),
    st.just("12"),
)
READING_SHAPED = st.one_of(
    st.fixed_dictionaries({"ts": CANONICAL_TS, "total_l": NUMBER}),
    st.fixed_dictionaries({"ts": CANONICAL_TS, "total_m3": NUMBER}),
    st.fixed_dictionaries(
        {"ts": st.one_of(CANONICAL_TS, st.just("2026-02-30T08:00:00+08:00"))},
        optional={"total_l": NUMBER, "total_m3": NUMBER, "x": NUMBER},
    ),
)
COMMON_SHAPED = st.fixed_dictionaries(
    {
        "meter_id": st.one_of(st.just("M1"), st.just("M1\n"), st.from_regex(r"[A-Za-z0-9_.:\-]{0,66}", fullmatch=True)),
        "readings": st.lists(READING_SHAPED, max_size=4),
    },
    optional={"battery_pct": NUMBER, "rssi": NUMBER, "fw": st.text(max_size=3)},
)


VALID_COMMON = st.fixed_dictionaries(
    {
        "meter_id": st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True),
        "readings": st.lists(
            st.one_of(
                st.fixed_dictionaries({"ts": VALID_TS, "total_l": st.floats(0, 1e9)}),
                st.fixed_dictionaries({"ts": VALID_TS, "total_m3": st.integers(0, 10**6)}),
            ),
            min_size=1,
            max_size=4,
        ),
    },
    optional={"battery_pct": st.floats(0, 100), "rssi": st.integers(-200, 50), "fw": st.text(max_size=3)},
)


@settings(max_examples=800, deadline=None)
@given(COMMON_SHAPED)
def test_fast_path_agrees_with_full_validation(value: dict[str, object]) -> None:
    """Whatever the hand-written fast path accepts, pydantic accepts with the very same result."""
    raw = orjson.loads(json.dumps(value))
    fast = _fast_path(raw)
    if fast is not None:
        assert fast == _validated(raw)


@settings(max_examples=800, deadline=None)
@given(VALID_COMMON)
def test_fast_path_takes_every_valid_common_message(value: dict[str, object]) -> None:
    """The common shape never pays for pydantic (the speed of ingest depends on it), with the same result."""
    raw = orjson.loads(json.dumps(value))
    fast = _fast_path(raw)
    assert fast is not None
    assert fast == _validated(raw)


def _mutations(rng: random.Random, n: int) -> list[bytes]:
    base = [message("M1", [(NOW - 3600 * k, 1000.0 + k)]) for k in range(1, 40)]
    base.append(orjson.dumps({"meter_id": "M1", "readings": [{"ts": iso(NOW - 7200), "total_m3": 2.5}]}))
    out = []
    for _ in range(n):
        data = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 4)):
            if not data:
                break
            op, pos = rng.random(), rng.randrange(len(data))
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.6:
                del data[pos : pos + rng.randint(1, 8)]
            elif op < 0.8:
                data[pos:pos] = rng.choice([b"{", b"}", b'"', b",", b"-1e999", b"\x00", b"null", "漏".encode()])
            else:
                data = data[:pos]
        out.append(bytes(data))
    return out


@pytest.mark.slow
def test_hundred_thousand_mutated_payloads_through_the_pipeline(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    # Every letter kept, to check each one's reason: one topic's junk is otherwise kept to its budget (engine.budget).
    budget = DeadLetterBudget(burst=10**6, total_burst=10**6)
    pipeline = Pipeline(engine, AlertManager(), late_window_s=10 * 86400, dead_letter_budget=budget)
    payloads = _mutations(random.Random(2026), 100_000)
    for start in range(0, len(payloads), 2_000):
        batch = [RawMessage("tapwatch/meters/M1/readings", p, "M1") for p in payloads[start : start + 2_000]]
        pipeline.process(batch)  # must never raise on bad input
    with engine.connect() as conn:
        reasons = conn.execute(select(dead_letters.c.reason)).scalars().all()
        stored = conn.execute(select(func.count()).select_from(readings)).scalar_one()
    assert all(reasons) and len(reasons) > 50_000  # most mutations break the message
    assert stored > 0 and pipeline.totals.readings_in > 0
    # Every payload that does not parse is dead-lettered with its parse error; those that
    # parse may still lose readings to the time checks, which say so.
    time_checks = ("late window", "in the future")
    unparsable = sum(1 for p in payloads if not _parses(p))
    assert sum(1 for r in reasons if not any(t in r for t in time_checks)) == unparsable


def _parses(payload: bytes) -> bool:
    try:
        parse_message(payload, "M1")
    except PayloadError:
        return False
    return True


@pytest.mark.slow
def test_atheris_fuzzer_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed for this Python")
    fuzzer = REPO / "tests" / "fuzz_payload.py"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for k, seed in enumerate(FUZZ_SEEDS):
        (corpus / f"seed{k}").write_bytes(seed)
    done = subprocess.run(
        [
            sys.executable,
            str(fuzzer),
            str(corpus),
            "-atheris_runs=100000",
            "-max_len=512",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=this_tree(),  # the fuzzer's own directory is first on its path, not the repository
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"Done 100000 (runs )?in", done.stderr), done.stderr[-2000:]
