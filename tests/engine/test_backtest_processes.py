"""A backtest prepared and judged in two processes (a forked child takes half the elders) raises what one raises.

Simulated elders with incidents and register faults are prepared
(:func:`engine.backtest.prepare_all`) in one process and in two; each proposal
is then judged by :func:`engine.backtest.propose_all` in one process and in two,
and each elder's alerts are compared with the full replay of
:func:`engine.backtest.backtest` (warm-up, period and proposal replayed from the
readings, nothing kept).
"""

from __future__ import annotations

import gc
import math
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest

from detect import Thresholds
from engine import backtest as bt
from engine.backtest import backtest, prepare_all, propose_all
from engine.replay import Home
from simulator import IncidentSpec, SimConfig, simulate

DAYS = 24
PERIOD_DAYS = 10
PROPOSALS = [Thresholds(), Thresholds().replace(sensitivity=1e-3), Thresholds().replace(learned_ceiling_hours=2)]


def _community() -> tuple[list[Home], dict[str, list[tuple[str, float, float]]], float]:
    first = (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=DAYS)
    res = simulate(
        SimConfig(
            elders=7,
            days=DAYS,
            seed=5,
            start=first.isoformat(),
            incidents=[
                IncidentSpec(elder=0, kind="fall", start_day=18.4),
                IncidentSpec(elder=1, kind="leak", start_day=17.5, duration_h=48, flow_lpm=1.5),
            ],
        )
    )
    rows: dict[str, list[tuple[str, float, float]]] = {m: [] for m in res.meter_ids}
    for idx, ts, total in zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True):
        if math.isfinite(total):
            rows[res.meter_ids[idx]].append((res.meter_ids[idx], float(ts), float(total)))
    for meter_rows in rows.values():
        meter_rows.sort(key=lambda r: r[1])
    homes = [Home(f"E{m}", "America/New_York" if k == 3 else None) for k, m in enumerate(res.meter_ids)]
    end = max(r[1] for meter_rows in rows.values() for r in meter_rows)
    return homes, {h.elder_id: rows[h.elder_id[1:]] for h in homes}, end - PERIOD_DAYS * 86400


@pytest.mark.parametrize("proposal", PROPOSALS, ids=["same", "sensitive", "strict-ceiling"])
def test_two_processes_raise_what_one_process_and_the_full_replay_raise(proposal: Thresholds) -> None:
    homes, readings, start = _community()
    elders = [(home, readings[home.elder_id]) for home in homes]
    prepared = prepare_all(elders, start, "Asia/Shanghai", processes=1)
    forked = prepare_all(elders, start, "Asia/Shanghai", processes=2)  # half of them made in a child, sent back
    trials = [proposal] * len(homes)

    alone = propose_all(prepared, trials, processes=1)
    split = propose_all(prepared, trials, processes=2)
    both = propose_all(forked, trials, processes=2)
    full = [backtest(home, proposal, rows, start, "Asia/Shanghai") for home, rows in elders]

    assert split == alone == both == [outcome.proposed for outcome in full]
    assert [p.current for p in forked] == [p.current for p in prepared] == [outcome.current for outcome in full]
    assert sum(map(len, split)) > 0 and sum(len(p.current) for p in forked) > 0  # something was raised to compare
    assert [p.open_at_start for p in forked] == [p.open_at_start for p in prepared]


def test_a_stuck_child_is_killed_and_its_half_done_here(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A forked half that never answers (a lock held at the fork) must not hang the preview."""
    parent = os.getpid()

    def work(jobs: list[int]) -> list[int]:
        if os.getpid() != parent:
            threading.Event().wait()  # the child blocks forever
        return [j * 2 for j in jobs]

    monkeypatch.setattr(bt, "CHILD_TIMEOUT_S", 1.0)
    assert bt.in_halves([1, 2, 3, 4], work, processes=2) == [2, 4, 6, 8]


def test_the_collector_comes_back_as_it_was_when_the_last_pause_ends() -> None:
    """Previews pause the cyclic collector while they work (threads may overlap); it must not stay off."""
    assert gc.isenabled()
    first, second = bt.collection_paused(), bt.collection_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the other preview still works
    second.__exit__(None, None, None)
    assert gc.isenabled()
    with pytest.raises(ValueError), bt.collection_paused():
        raise ValueError("a preview that fails")
    assert gc.isenabled()
    gc.disable()  # off before (someone else's choice): stays off
    try:
        with bt.collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert prepare_all([], 0.0, "Asia/Shanghai", processes=2) == [] and gc.isenabled()
