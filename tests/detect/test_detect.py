"""Behaviour of the per-meter monitor on synthetic homes: what it raises, when, and what it keeps quiet."""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator

import pytest

from core.domain import DEVICE_KINDS, Finding, Interval
from core.thresholds import THRESHOLD_SPECS
from detect import MeterMonitor, Thresholds
from detect.silence import SilenceModel

SLOT = 1800
DAY = 86400
OFF = 8 * 3600  # Shanghai: local = UTC + 8 h


def local(day: int, hour: float) -> float:
    """Epoch seconds of a local clock time."""
    return day * DAY + hour * 3600 - OFF


def elder(days: int, seed: int = 0, start_day: int = 0) -> Iterator[Interval]:
    """An elder who rises at 06:30 (+-30 min), uses water through the day and sleeps 21:30-06:30."""
    rng = random.Random(seed)
    for d in range(start_day, start_day + days):
        wake = 13 + rng.choice((0, 0, 1))
        busy = {wake, wake + 1, 16, 18, 20, 22, 23, 25, 27, 30, 32, 34, 35, 38, 40, 42}
        for k in range(48):
            t = local(d, k / 2)
            use = rng.uniform(4.0, 20.0) if k in busy and rng.random() < 0.97 else 0.0
            yield Interval("m1", t, t + SLOT, round(use, 1), "ok", OFF)


def silent(day: int, from_hour: float, hours: float, usage: float = 0.0) -> Iterator[Interval]:
    t = local(day, from_hour)
    for k in range(int(hours * 2)):
        yield Interval("m1", t + k * SLOT, t + (k + 1) * SLOT, usage, "ok", OFF)


def feed(m: MeterMonitor, xs: Iterator[Interval]) -> list[Finding]:
    return [f for x in xs for f in m.update(x)]


def alerts(fs: list[Finding], kind: str | None = None) -> list[Finding]:
    return [f for f in fs if not f.resolved and (kind is None or f.kind == kind)]


@pytest.fixture(scope="module")
def trained() -> bytes:
    """A monitor that has learned 60 days of the elder's routine (pickled, so each test gets a copy)."""
    m = MeterMonitor("m1")
    feed(m, elder(60))
    return pickle.dumps(m)


def test_learned_routine_is_quiet(trained: bytes) -> None:
    m = pickle.loads(trained)
    found = feed(m, elder(30, seed=9, start_day=60))
    assert alerts(found) == []


def test_morning_fall_is_caught_within_hours_with_learned_basis(trained: bytes) -> None:
    m = pickle.loads(trained)
    # Day 60: up and about until 09:30, then nothing.
    morning = [x for x in elder(1, seed=3, start_day=60) if x.end <= local(60, 9.5)]
    found = feed(m, iter(morning)) + feed(m, silent(60, 9.5, 24))
    na = alerts(found, "no_activity")
    assert len(na) == 1, "one alert per episode"
    assert na[0].basis == "learned"
    delay_h = (na[0].ts - local(60, 9.5)) / 3600
    assert delay_h <= 6.0
    assert "09:30" in na[0].message_en and "09:30" in na[0].message_zh
    # Use resumes: the episode closes.
    back = m.update(Interval("m1", local(61, 9.5), local(61, 10), 12.0, "ok", OFF))
    assert [(f.kind, f.resolved) for f in back] == [("no_activity", True)]


def test_night_silence_is_normal_but_a_missed_morning_is_not(trained: bytes) -> None:
    m = pickle.loads(trained)
    evening = [x for x in elder(1, seed=4, start_day=60) if x.end <= local(60, 21.5)]
    found = feed(m, iter(evening)) + feed(m, silent(60, 21.5, 9.0))  # until 06:30: sleep
    assert alerts(found, "no_activity") == []
    found = feed(m, silent(61, 6.5, 10.0))
    na = alerts(found, "no_activity")
    assert na and na[0].ts <= local(61, 14.0)


def test_away_mutes_no_activity(trained: bytes) -> None:
    m = pickle.loads(trained)
    m.set_away([(local(60, 9.5), local(63, 12))])
    morning = [x for x in elder(1, seed=3, start_day=60) if x.end <= local(60, 9.5)]
    found = feed(m, iter(morning)) + feed(m, silent(60, 9.5, 48))
    assert alerts(found, "no_activity") == []


def test_unknown_data_is_not_silence(trained: bytes) -> None:
    m = pickle.loads(trained)
    t = local(60, 9.5)
    found: list[Finding] = []
    for k in range(48):  # a day of register glitches: usage unknown
        found += m.update(Interval("m1", t + k * SLOT, t + (k + 1) * SLOT, None, "glitch", OFF))
    assert alerts(found, "no_activity") == []
    assert [f.kind for f in alerts(found)] == ["meter_fault"]
    assert all(f.kind in DEVICE_KINDS for f in alerts(found))


def test_offline_meter_is_a_device_alert_not_no_activity(trained: bytes) -> None:
    m = pickle.loads(trained)
    last = local(60, 0)
    assert m.tick(now=last + 3 * 3600) == []
    found = m.tick(now=last + 7 * 3600)
    assert [(f.kind, f.severity) for f in found] == [("meter_offline", "low")]
    assert m.tick(now=last + 9 * 3600) == [], "once per episode"
    back = m.update(Interval("m1", last + 12 * 3600, last + 12.5 * 3600, 5.0, "gap", OFF))
    assert ("meter_offline", True) in [(f.kind, f.resolved) for f in back]


def test_night_leak_is_caught_quickly(trained: bytes) -> None:
    m = pickle.loads(trained)
    found = feed(
        m, (Interval(x.meter_id, x.start, x.end, (x.usage_l or 0) + 15.0, x.status, OFF) for x in silent(60, 1.0, 12))
    )  # 0.5 L/min from 01:00
    cf = alerts(found, "continuous_flow")
    assert len(cf) == 1
    assert (cf[0].ts - local(60, 1.0)) / 3600 <= 2.5


def test_tap_left_running_is_caught_within_an_hour(trained: bytes) -> None:
    m = pickle.loads(trained)
    before = [x for x in elder(1, seed=5, start_day=60) if x.end <= local(60, 14.0)]
    feed(m, iter(before))
    found = feed(m, silent(60, 14.0, 3, usage=240.0))  # 8 L/min
    cf = alerts(found, "continuous_flow")
    assert cf and (cf[0].ts - local(60, 14.0)) / 3600 <= 1.0
    assert cf[0].severity == "critical"


def test_cold_start_says_it_uses_the_prior_or_the_rule() -> None:
    m = MeterMonitor("m1")
    found = feed(m, elder(2)) + feed(m, silent(2, 9.0, 30))
    na = alerts(found, "no_activity")
    assert na and na[0].basis in ("prior", "rule")


def test_sensitivity_moves_the_alert(trained: bytes) -> None:
    delays = []
    for sensitivity in (1e-2, 1e-6):
        m = pickle.loads(trained)
        m.set_thresholds(Thresholds(sensitivity=sensitivity))
        morning = [x for x in elder(1, seed=3, start_day=60) if x.end <= local(60, 9.5)]
        found = feed(m, iter(morning)) + feed(m, silent(60, 9.5, 30))
        delays.append(alerts(found, "no_activity")[0].ts)
    assert delays[0] < delays[1]


def test_thresholds_validate_and_describe_every_field() -> None:
    Thresholds().validate()
    assert set(THRESHOLD_SPECS) == {f for f in Thresholds.__dataclass_fields__}
    for spec in THRESHOLD_SPECS.values():
        assert spec.zh and spec.en and spec.low < spec.high
    with pytest.raises(ValueError, match="sensitivity"):
        Thresholds(sensitivity=0.5).validate()
    with pytest.raises(ValueError, match="daily_min_l"):
        Thresholds(daily_min_l=500, daily_max_l=400).validate()
    with pytest.raises(ValueError, match="unknown"):
        Thresholds().replace(nonsense=1)
    with pytest.raises(ValueError):
        MeterMonitor("m1").set_thresholds(Thresholds(leak_flow_lpm=-1))


def test_silence_model_forgets() -> None:
    model = SilenceModel(half_life_days=10)
    for d in range(20):
        model.learn_one(d * DAY + 9 * 3600, 6.0, 0)
    model.refresh(1e-3)
    long_before = model.alert_hours(9)
    model.decay(60)
    for d in range(20):
        model.learn_one(d * DAY + 9 * 3600, 1.0, 0)
    model.refresh(1e-3)
    assert model.alert_hours(9) < long_before
