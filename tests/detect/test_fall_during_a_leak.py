"""A fall while a leak runs (session 11).

A leak reported to maintenance runs for days until a plumber comes; while it ran, every interval drew water, so
the silence detector and the safety net saw a sign of life in each and a fall in that home was never found. What
a person draws is what rises above the leak's steady flow.
"""

from __future__ import annotations

from core.domain import COMMUNITY, MAINTENANCE, Finding, Interval
from detect import MeterMonitor

DAY, HALF = 86400.0, 1800.0
USES = (14, 24, 36, 43)  # 07:00, 12:00, 18:00, 21:30


def _feed(m: MeterMonitor, d: int, ks: range, leak_l: float = 0.0, uses: tuple[int, ...] = USES) -> list[Finding]:
    found: list[Finding] = []
    for k in ks:
        t = d * DAY + k * HALF
        found += m.update(Interval("m1", t, t + HALF, leak_l + (12.0 if k in uses else 0.0), "ok", 0))
    return found


def _trained() -> MeterMonitor:
    m = MeterMonitor("m1")
    for d in range(30):
        _feed(m, d, range(48))
    return m


def test_a_fall_while_a_reported_leak_runs_is_found() -> None:
    m = _trained()
    found = _feed(m, 30, range(48), leak_l=37.0)  # 74 L/h from midnight: a leak, reported within hours
    assert [(f.kind, f.route) for f in found if not f.resolved] == [("continuous_flow", MAINTENANCE)]
    # She uses water as every day on top of the leak, then falls after her 07:00 wash: the leak runs on.
    after = _feed(m, 31, range(48), leak_l=37.0, uses=(14,))
    calls = [f for f in after if f.route == COMMUNITY and not f.resolved]
    assert [f.kind for f in calls] == ["no_activity"]
    assert calls[0].since == 31 * DAY + 7.5 * 3600  # her last use, not the leak's last litre
    assert calls[0].ts - calls[0].since <= 12 * 3600


def test_her_use_on_top_of_the_leak_is_a_sign_of_life() -> None:
    m = _trained()
    _feed(m, 30, range(48), leak_l=37.0)
    after = _feed(m, 31, range(48), leak_l=37.0)  # her usual day on top of the leak
    assert [f for f in after if f.route == COMMUNITY] == []


def test_silences_seen_through_a_leak_teach_the_model_nothing() -> None:
    """A hand wash within the leak's own wobble is no use then: silences measured through it are too long."""
    m = _trained()
    _feed(m, 30, range(48), leak_l=37.0)
    learned = m.silence.n_learned
    _feed(m, 31, range(48), leak_l=37.0)  # her usual day on top of the leak
    assert m.silence.n_learned == learned
    _feed(m, 32, range(48))  # repaired: her day teaches again
    assert m.silence.n_learned > learned
