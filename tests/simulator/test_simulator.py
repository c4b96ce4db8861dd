"""Simulator: labels sit where the data shows them, files parse like replays, MQTT reaches a real broker."""

from __future__ import annotations

import argparse
import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest

from ingest.csvsource import BadRow, CsvReading, iter_csv
from ingest.payload import PayloadError, parse_message
from simulator import (
    EVENT_KINDS,
    FAULT_KINDS,
    INCIDENT_KINDS,
    IncidentSpec,
    Label,
    SimConfig,
    SimResult,
    demo_config,
    load_labels,
    simulate,
)
from simulator.cli import add_parser
from simulator.cli import run as cli_run
from simulator.publisher import plan_messages, publish
from tests.conftest import wait_until

HALF_HOUR = 1800.0
DAY = 86400.0
UTC8 = timezone(timedelta(hours=8))
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")


# --- fixtures ---------------------------------------------------------------------------------------------


def _everything(**kw: object) -> SimConfig:
    """Rates turned up so that every incident, event and fault kind shows up in a small run."""
    base: dict[str, object] = dict(
        elders=16,
        days=45,
        seed=11,
        incident_rate_per_120d=8.0,
        incident_mix={k: 1.0 for k in INCIDENT_KINDS},
        event_rates={k: 1.5 for k in EVENT_KINDS},
        fault_rates={k: 3.0 for k in FAULT_KINDS},
    )
    base.update(kw)
    return SimConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def busy() -> SimResult:
    return simulate(_everything())


@pytest.fixture(scope="module")
def busy_files(busy: SimResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busy.write(tmp_path_factory.mktemp("busy"))


@pytest.fixture(scope="module")
def busy_csv(busy_files: Path) -> list[CsvReading | BadRow]:
    return list(iter_csv(busy_files / "readings.csv"))


@pytest.fixture(scope="module")
def explicit() -> SimResult:
    """One explicit incident per elder on a clean background (no random events or faults)."""
    specs = [
        IncidentSpec(elder=0, kind="fall", start_day=3.4, duration_h=30),
        IncidentSpec(elder=1, kind="fall_tap_running", start_day=3.3, duration_h=5, flow_lpm=4.0),
        IncidentSpec(elder=2, kind="leak", start_day=2.0, duration_h=72, flow_lpm=0.8),
        IncidentSpec(elder=3, kind="tap_running", start_day=3.45, duration_h=3, flow_lpm=9.0),
        IncidentSpec(elder=4, kind="death", start_day=4.6),
    ]
    return simulate(
        SimConfig(
            elders=6,
            days=7,
            seed=3,
            random_incidents=False,
            random_events=False,
            faults=False,
            incidents=specs,
        )
    )


def _inside(res: SimResult, lab: Label) -> np.ndarray:
    """Grid intervals lying wholly inside a label."""
    g = res.grid_ts()
    end = res.end_ts if lab.end is None else lab.end
    return (g >= lab.start) & (g + HALF_HOUR <= end)


def _flow_labels(res: SimResult, meter_id: str, start: float, end: float) -> list[Label]:
    return [
        lab
        for lab in res.labels_for(meter_id)
        if "flow_lpm" in lab.details and lab.start < end and (lab.end is None or lab.end > start)
    ]


def _rows(csv_rows: list[CsvReading | BadRow], meter_id: str) -> list[CsvReading]:
    return [r for r in csv_rows if isinstance(r, CsvReading) and r.meter_id == meter_id]


# --- every kind appears ------------------------------------------------------------------------------------


def test_every_incident_event_and_fault_kind_appears(busy: SimResult) -> None:
    kinds = Counter((lab.category, lab.kind) for lab in busy.labels)
    for category, names in (("incident", INCIDENT_KINDS), ("event", EVENT_KINDS), ("fault", FAULT_KINDS)):
        missing = [k for k in names if kinds[(category, k)] == 0]
        assert not missing, f"{category} kinds never generated: {missing}"
    for lab in busy.labels:
        assert lab.meter_id in busy.meter_ids
        assert lab.end is None if lab.kind == "death" else lab.end is not None and lab.end >= lab.start


def test_default_rates_are_plausible() -> None:
    res = simulate(SimConfig(elders=60, days=120, seed=2))
    incidents = [lab for lab in res.labels if lab.category == "incident"]
    away = [lab for lab in res.labels if lab.kind == "away"]
    assert 10 <= len(incidents) <= 55  # ~0.5 per elder per 120 days
    assert 100 <= len(away) <= 240  # ~0.7 per elder-month


# --- incidents: the true use shows them -------------------------------------------------------------------


def test_fall_stops_all_use_until_found(explicit: SimResult) -> None:
    (fall,) = explicit.labels_for("WM000001", "fall")
    assert fall.end == pytest.approx(fall.start + 30 * 3600)
    use = explicit.usage_l("WM000001")
    assert use[_inside(explicit, fall)].sum() == 0
    before = (explicit.grid_ts() < fall.start) & (explicit.grid_ts() >= fall.start - DAY)
    assert use[before].sum() > 30  # a normal day before it


def test_fall_with_tap_running_is_exactly_the_steady_flow(explicit: SimResult) -> None:
    (lab,) = explicit.labels_for("WM000002", "fall_tap_running")
    inside = _inside(explicit, lab)
    assert inside.sum() >= 9
    np.testing.assert_allclose(explicit.usage_l("WM000002")[inside], 4.0 * 30, rtol=1e-4)


def test_leak_is_a_constant_floor(explicit: SimResult) -> None:
    (lab,) = explicit.labels_for("WM000003", "leak")
    use = explicit.usage_l("WM000003")
    inside = _inside(explicit, lab)
    assert use[inside].min() == pytest.approx(0.8 * 30, rel=1e-4)  # quiet night hours show the bare leak
    outside = ~inside & (explicit.grid_ts() + HALF_HOUR <= lab.start)
    assert use[outside].min() == 0


def test_tap_running_adds_its_flow(explicit: SimResult) -> None:
    (lab,) = explicit.labels_for("WM000004", "tap_running")
    use = explicit.usage_l("WM000004")[_inside(explicit, lab)]
    assert len(use) >= 5 and use.min() >= 9.0 * 30 * (1 - 1e-4)


def test_death_stops_use_for_good(explicit: SimResult) -> None:
    (lab,) = explicit.labels_for("WM000005", "death")
    assert lab.end is None
    use = explicit.usage_l("WM000005")
    assert use[_inside(explicit, lab)].sum() == 0
    rows = explicit.meter_idx == 4  # the meter keeps reporting an unchanged register
    after = rows & (explicit.ts > lab.start + HALF_HOUR)
    assert after.sum() > 40 and np.ptp(explicit.total_l[after]) == 0


def test_random_absences_have_no_use_except_running_water(busy: SimResult) -> None:
    checked = 0
    for lab in busy.labels:
        if lab.kind not in ("fall", "death", "away", "hospital"):
            continue
        end = busy.end_ts if lab.end is None else lab.end
        if _flow_labels(busy, lab.meter_id, lab.start, end):
            continue  # a leak runs whether anyone is home or not
        inside = _inside(busy, lab)
        assert busy.usage_l(lab.meter_id)[inside].sum() == 0, lab
        checked += int(inside.any())
    assert checked >= 10


def test_random_running_water_is_at_least_its_flow(busy: SimResult) -> None:
    checked = 0
    for lab in busy.labels:
        if lab.kind in ("leak", "tap_running", "fall_tap_running"):
            inside = _inside(busy, lab)
            use = busy.usage_l(lab.meter_id)[inside]
            assert (use >= lab.details["flow_lpm"] * 30 * (1 - 2e-3)).all(), lab  # details round to 3 decimals
            checked += int(inside.any())
    assert checked >= 5


def test_incidents_happen_at_any_time_of_day() -> None:
    cfg = SimConfig(
        elders=100,
        days=60,
        seed=5,
        random_events=False,
        faults=False,
        incident_rate_per_120d=4.0,
        incident_mix={"fall": 1.0},
    )
    res = simulate(cfg)
    hours = [((lab.start + 8 * 3600) % DAY) / 3600 for lab in res.labels if lab.kind == "fall"]
    assert len(hours) > 80
    assert min(hours) < 4 and max(hours) > 20 and np.histogram(hours, bins=4, range=(0, 24))[0].min() > 5


# --- life events ------------------------------------------------------------------------------------------


def _first_use_hour(res: SimResult, meter: str, days: np.ndarray) -> float:
    use = res.usage_l(meter).reshape(-1, 48)
    hours = [np.argmax(use[d, 8:] > 0) / 2 + 4 for d in days if use[d, 8:].any()]
    return float(np.mean(hours))


def test_family_visit_and_illness_change_the_day() -> None:
    res = simulate(
        SimConfig(
            elders=40,
            days=60,
            seed=9,
            random_incidents=False,
            faults=False,
            event_rates={"family_visit": 1.0, "illness": 0.6},
        )
    )
    more, later = [], []
    for lab in res.labels:
        assert lab.end is not None
        use = res.usage_l(lab.meter_id).reshape(-1, 48)
        first, last = int((lab.start - res.start_ts) // DAY) + 1, int((lab.end - res.start_ts) // DAY)
        days = np.arange(first, last)
        other = np.setdiff1d(np.arange(res.config.days), np.arange(first - 1, last + 1))
        if len(days) == 0 or len(other) < 10:
            continue
        if lab.kind == "family_visit":
            more.append(use[days].sum(1).mean() / np.median(use[other].sum(1)))
        elif lab.kind == "illness":
            later.append(_first_use_hour(res, lab.meter_id, days) - _first_use_hour(res, lab.meter_id, other))
    assert len(more) > 10 and np.median(more) > 1.4
    assert len(later) > 5 and np.median(later) > 0.5


def test_frailty_is_a_slow_lasting_decline() -> None:
    res = simulate(
        SimConfig(elders=30, days=150, seed=4, random_incidents=False, faults=False, event_rates={"frailty": 0.25})
    )
    shifts = []
    for lab in (lab for lab in res.labels if lab.kind == "frailty"):
        assert lab.end is not None
        d0, d1 = int((lab.start - res.start_ts) // DAY), int((lab.end - res.start_ts) // DAY)
        if d0 < 14 or d1 > res.config.days - 14:
            continue
        before = _first_use_hour(res, lab.meter_id, np.arange(d0 - 14, d0))
        after = _first_use_hour(res, lab.meter_id, np.arange(d1, d1 + 14))
        shifts.append(after - before)
    assert len(shifts) >= 3 and np.median(shifts) > 0.7


def test_demo_config_has_one_fall_in_the_live_part() -> None:
    cfg = demo_config(start="2026-11-20")
    res = simulate(cfg)
    assert 15 <= len(res.elders) <= 25
    (fall,) = [lab for lab in res.labels if lab.category == "incident"]
    assert fall.kind == "fall" and res.start_ts + DAY < fall.start < res.start_ts + 2 * DAY
    assert not [lab for lab in res.labels if lab.category != "incident"]


# --- faults: the delivered data shows them ----------------------------------------------------------------


def test_duplicate_reading_appears_twice(busy: SimResult, busy_csv: list[CsvReading | BadRow]) -> None:
    labels = [lab for lab in busy.labels if lab.kind == "duplicate"]
    for lab in labels:
        same = [r for r in _rows(busy_csv, lab.meter_id) if abs(r.ts - lab.start) < 0.5]
        assert len(same) == 2 and same[0].total_l == same[1].total_l, lab
    assert labels


def test_glitch_jumps_and_comes_back(busy: SimResult, busy_csv: list[CsvReading | BadRow]) -> None:
    labels = [lab for lab in busy.labels if lab.kind == "glitch"]
    for lab in labels:
        rows = sorted(_rows(busy_csv, lab.meter_id), key=lambda r: r.ts)
        i = next(i for i, r in enumerate(rows) if abs(r.ts - lab.start) < 0.5)
        jump = rows[i].total_l - rows[i - 1].total_l
        back = rows[i + 1].total_l - rows[i - 1].total_l
        assert jump == pytest.approx(lab.details["offset_l"], abs=1000), lab
        assert 0 <= back < 1000, lab
    assert labels


def test_negative_step_and_register_reset(busy: SimResult, busy_csv: list[CsvReading | BadRow]) -> None:
    for kind in ("negative_step", "register_reset"):
        labels = [lab for lab in busy.labels if lab.kind == kind]
        assert labels, kind
        for lab in labels:
            rows = sorted(_rows(busy_csv, lab.meter_id), key=lambda r: r.ts)
            i = next(i for i, r in enumerate(rows) if abs(r.ts - lab.start) < 0.5)
            assert rows[i].total_l < rows[i - 1].total_l, lab
            if kind == "register_reset":
                assert rows[i].total_l == lab.details["new_total_l"] < 200  # a new meter starts near zero
                assert rows[i - 1].total_l == lab.details["old_total_l"]
            else:
                assert rows[i].total_l - rows[i - 1].total_l == lab.details["below_previous_l"] <= -5


def test_offline_means_no_readings(busy: SimResult, busy_csv: list[CsvReading | BadRow]) -> None:
    labels = [lab for lab in busy.labels if lab.kind == "offline"]
    for lab in labels[:200]:
        assert lab.end is not None
        assert not [r for r in _rows(busy_csv, lab.meter_id) if lab.start - 0.5 <= r.ts < lab.end - 0.5], lab
    assert labels


def test_late_and_out_of_order_delivery(busy: SimResult, busy_csv: list[CsvReading | BadRow]) -> None:
    for kind in ("late", "out_of_order"):
        labels = [lab for lab in busy.labels if lab.kind == kind]
        assert labels, kind
        for lab in labels:
            rows = _rows(busy_csv, lab.meter_id)  # file order is delivery order
            pos = next(i for i, r in enumerate(rows) if abs(r.ts - lab.start) < 0.5)
            assert any(r.ts > lab.start + 60 for r in rows[:pos]), lab  # a newer reading came first
            if kind == "late":
                m = busy.meter_ids.index(lab.meter_id)
                rows_ = (busy.meter_idx == m) & (busy.ts >= lab.start) & (busy.ts <= lab.end)
                assert (busy.delivered_at[rows_] - busy.ts[rows_] >= 2 * 3600).all()


def test_clock_drift_shifts_timestamps() -> None:
    # A regular schedule (no re-phasing) so that any step off the half-hour grid is the drift.
    cfg = SimConfig(elders=6, days=30, seed=5, rephase_per_30d=0.0, fault_rates={"clock_drift": 2.0})
    res = simulate(cfg)
    labels = [lab for lab in res.labels if lab.kind == "clock_drift"]
    for lab in labels:
        assert lab.end is not None
        m = res.meter_ids.index(lab.meter_id)
        ts = np.sort(res.ts[(res.meter_idx == m) & ~np.isnan(res.total_l)])
        grid = ts[ts < lab.start][-1] % HALF_HOUR  # the meter's own minute before the drift
        inside = ts[(ts >= lab.start) & (ts < lab.end)]
        signed = np.copysign(lab.details["max_drift_s"], lab.details["drift_s_per_day"])
        miss = (inside[-1] - grid - signed + HALF_HOUR / 2) % HALF_HOUR - HALF_HOUR / 2  # modulo the grid
        assert abs(miss) < 30, lab
        outside = ts[ts >= lab.end + lab.details["max_drift_s"] + 60]
        if len(outside):  # the clock is set right again
            assert abs((outside[0] - grid + HALF_HOUR / 2) % HALF_HOUR - HALF_HOUR / 2) < 30
    assert len(labels) >= 3


def test_low_battery_loses_readings_and_reports_low(busy: SimResult) -> None:
    labels = [lab for lab in busy.labels if lab.kind == "low_battery"]
    for lab in labels:
        assert lab.end is not None
        m = busy.meter_ids.index(lab.meter_id)
        rows = (busy.meter_idx == m) & (busy.ts >= lab.start) & (busy.ts < lab.end)
        assert (busy.battery_pct[rows] <= 15).all()
        expected = (lab.end - lab.start) / HALF_HOUR
        assert rows.sum() < expected - lab.details["readings_lost"] * 0.5
    assert labels


def test_malformed_rows_are_dead_lettered(busy: SimResult, busy_csv: list[CsvReading | BadRow]) -> None:
    bad = [r for r in busy_csv if isinstance(r, BadRow)]
    labels = [lab for lab in busy.labels if lab.kind == "malformed"]
    assert len(bad) == len(labels) == int((busy.malformed > 0).sum()) > 0
    assert {lab.details["variant"] for lab in labels} == {
        "no_offset",
        "empty_total",
        "negative_total",
        "bad_ts",
        "truncated",
    }


# --- files --------------------------------------------------------------------------------------------------


def test_csv_matches_the_arrays(busy: SimResult, busy_files: Path, busy_csv: list[CsvReading | BadRow]) -> None:
    lines = (busy_files / "readings.csv").read_text().splitlines()
    assert lines[0] == "meter_id,ts,total_l" and len(lines) == len(busy.ts) + 1
    valid = [line for line, bad in zip(lines[1:], busy.malformed, strict=True) if not bad]
    assert all(ISO.match(line.split(",")[1]) for line in valid)
    good = [r for r in busy_csv if isinstance(r, CsvReading)]
    ok = ~np.isnan(busy.total_l)
    np.testing.assert_array_equal([r.ts for r in good], busy.ts[ok])
    np.testing.assert_array_equal([r.total_l for r in good], busy.total_l[ok])
    assert [r.meter_id for r in good] == [busy.meter_ids[i] for i in busy.meter_idx[ok]]
    assert {r.utc_offset_s for r in good} == {8 * 3600}


def test_labels_and_elders_json(busy: SimResult, busy_files: Path) -> None:
    raw = orjson.loads((busy_files / "labels.json").read_bytes())
    assert {tuple(sorted(item)) for item in raw} == {("category", "details", "end", "kind", "meter_id", "start")}
    assert all(ISO.match(item["start"]) for item in raw)
    back = load_labels(busy_files / "labels.json")
    assert len(back) == len(busy.labels)
    for a, b in zip(back, busy.labels, strict=True):
        assert (a.meter_id, a.kind, a.category) == (b.meter_id, b.kind, b.category)
        assert a.start == pytest.approx(b.start, abs=0.5)
    elders = orjson.loads((busy_files / "elders.json").read_bytes())
    assert [e["meter_id"] for e in elders] == busy.meter_ids
    keys = {
        "elder_id",
        "name",
        "meter_id",
        "community",
        "street",
        "district",
        "grid",
        "building",
        "room",
        "tz",
        "contacts",
    }
    assert all(keys <= set(e) for e in elders)
    assert all(e["contacts"] and {"name", "relation", "phone"} <= set(e["contacts"][0]) for e in elders)
    assert 2 <= len({e["community"] for e in elders}) <= 8


def test_a_label_time_without_a_utc_offset_is_refused_naming_the_label(tmp_path: Path) -> None:
    # Read in this machine's zone, the same file meant other times on a server in UTC than in Shanghai.
    path = tmp_path / "labels.json"
    labels = [{"meter_id": "WM1", "kind": "fall", "category": "incident", "details": {}}]
    labels[0] |= {"start": "2026-01-05T08:00:00+08:00", "end": "2026-01-06T08:00:00"}
    path.write_bytes(orjson.dumps(labels))
    with pytest.raises(ValueError, match=r"label 0: '2026-01-06T08:00:00' has no UTC offset"):
        load_labels(path)


def test_eval_reads_a_half_hour_offset_in_the_zone_the_simulator_registers(tmp_path: Path) -> None:
    from tapwatch import evaluate as ev

    res = simulate(SimConfig(elders=1, days=2, seed=4, tz_offset_h=5.5, faults=False))
    res.write(tmp_path)
    zone = ev.simulated_zone(res.config.tz_offset_h)  # refused before: 'no IANA zone for a fixed offset of 5.5 h'
    assert zone == orjson.loads((tmp_path / "elders.json").read_bytes())[0]["tz"] == "Asia/Kolkata"
    rows = zip(res.meter_idx.tolist(), res.ts.tolist(), res.total_l.tolist(), strict=True)
    intervals, _ = ev.intervals_from_readings(res.meter_ids, rows, zone)
    assert {x.utc_offset_s for x in intervals[res.meter_ids[0]]} == {res.config.tz_offset_s}


def test_m3_unit_and_daily_batches(tmp_path: Path) -> None:
    res = simulate(SimConfig(elders=3, days=4, seed=8, unit="m3", daily_batches=True, faults=False))
    res.write(tmp_path)
    lines = (tmp_path / "readings.csv").read_text().splitlines()
    assert lines[0] == "meter_id,ts,total_m3"
    assert re.match(r"^WM000001,[^,]+,\d+\.\d{3}$", lines[1])
    rows = [r for r in iter_csv(tmp_path / "readings.csv") if isinstance(r, CsvReading)]
    np.testing.assert_allclose([r.total_l for r in rows], res.total_l, atol=1e-6)
    # Batch mode: a day's 48 readings travel together, after that local day ends.
    _, live = plan_messages(res, history_days=0.0)
    sizes = Counter(len(m.rows) for m in live)
    assert sizes[48] >= 3 * 3
    for msg in live:
        assert msg.due >= max(res.ts[msg.rows]) and msg.due - min(res.ts[msg.rows]) > DAY - 1


def test_deterministic_and_independent_per_elder() -> None:
    a = simulate(_everything(elders=5, days=20))
    b = simulate(_everything(elders=5, days=20))
    for name in ("meter_idx", "ts", "total_l", "delivered_at", "battery_pct", "malformed"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.labels == b.labels and a.elders == b.elders
    c = simulate(_everything(elders=5, days=20, seed=12))
    assert not np.array_equal(a.usage, c.usage)
    bigger = simulate(_everything(elders=8, days=20))  # elder 0's life does not depend on the others
    np.testing.assert_array_equal(a.usage[0], bigger.usage[0])
    clean = simulate(_everything(elders=5, days=20, faults=False))  # meter faults do not change the use
    np.testing.assert_array_equal(a.usage, clean.usage)


def test_daily_totals_of_an_elder_alone() -> None:
    res = simulate(SimConfig(elders=100, days=28, seed=6, random_incidents=False, random_events=False, faults=False))
    daily = res.usage.reshape(100, 28, 48).sum(axis=2)
    medians = np.median(daily, axis=1)
    assert 80 <= np.median(medians) <= 250
    assert np.mean((medians >= 60) & (medians <= 300)) > 0.9
    hours = res.usage.reshape(100, 28, 24, 2).sum(axis=(0, 1, 3))
    assert hours[2:4].sum() < 0.03 * hours.sum()  # night silence


def test_cli_writes_files(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_parser(sub)
    args = parser.parse_args(["simulate", "--elders", "3", "--days", "2", "--seed", "4", "--out", str(tmp_path)])
    assert cli_run(args) == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"readings.csv", "labels.json", "elders.json"}
    assert parser.parse_args(["simulate", "--out", "x", "--no-faults", "--unit", "m3", "--batches"]).no_faults


# --- MQTT ---------------------------------------------------------------------------------------------------


class _Collector:
    def __init__(self, url: str, persistent: bool = False) -> None:
        port = int(url.rsplit(":", 1)[1])
        self.messages: list[tuple[str, bytes, float]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="sim-test-collector", clean_session=not persistent
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)  # SUBACK: the broker routes readings to us from here

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe("tapwatch/meters/+/readings", qos=1)

    def _on_subscribe(self, *_: object) -> None:
        self.ready.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        self.messages.append((message.topic, bytes(message.payload), time.monotonic()))

    def wait_for(self, count: int, timeout: float, distinct: bool = False) -> None:
        """Wait for ``count`` messages; ``distinct``: different ones (QoS 1 may hand one over twice)."""
        deadline = time.monotonic() + timeout
        while self._count(distinct) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def _count(self, distinct: bool) -> int:
        return len({(topic, body) for topic, body, _ in list(self.messages)}) if distinct else len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_publishes_every_reading_in_the_real_format(mosquitto: object) -> None:
    url = mosquitto.url  # type: ignore[attr-defined]
    faults = {"malformed": 30.0, "duplicate": 10.0, "late": 5.0, "out_of_order": 5.0, "offline": 5.0}
    res = simulate(_everything(elders=4, days=3, seed=21, fault_rates=faults))
    collector = _Collector(url)
    try:
        stats = publish(res, url=url, speed=None, history_days=1.0)
        collector.wait_for(stats.messages, 20)
    finally:
        collector.close()
    assert len(collector.messages) == stats.messages > stats.history_messages > 0
    readings, bad = 0, 0
    for topic, body, _ in collector.messages:
        meter = topic.split("/")[2]
        try:
            msg = parse_message(body, meter)
        except PayloadError:
            bad += 1
            continue
        readings += len(msg.readings)
        assert msg.battery_pct is not None and msg.rssi is not None
    assert bad == int((res.malformed > 0).sum()) == stats.malformed > 0
    assert readings == len(res.ts) - bad


def test_mqtt_live_part_runs_in_accelerated_time(mosquitto: object) -> None:
    url = mosquitto.url  # type: ignore[attr-defined]
    res = simulate(SimConfig(elders=3, days=2, seed=2, random_incidents=False, random_events=False, faults=False))
    collector = _Collector(url)
    try:
        began = time.monotonic()
        stats = publish(res, url=url, speed=3 * 3600.0, history_days=1.5)  # the last 12 h in ~4 s
        took = time.monotonic() - began
        collector.wait_for(stats.messages, 10)
    finally:
        collector.close()
    assert 2.5 < took < 15  # paced by the wall clock (upper bound generous for loaded machines)
    live = [t for _, _, t in collector.messages[stats.history_messages :]]
    assert len(live) == 3 * 24 and live[-1] - live[0] > 2.5
    history = [parse_message(b).readings for _, b, _ in collector.messages[: stats.history_messages]]
    assert max(len(r) for r in history) == 48  # history goes out packed


def test_mqtt_stop_event_ends_publishing(mosquitto: object) -> None:
    url = mosquitto.url  # type: ignore[attr-defined]
    res = simulate(SimConfig(elders=2, days=2, seed=2, random_incidents=False, random_events=False, faults=False))
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    began = time.monotonic()
    stats = publish(res, url=url, speed=600.0, history_days=0.0, stop_event=stop)
    assert time.monotonic() - began < 3 and stats.messages < len(res.ts)


def test_mqtt_publishing_survives_a_broker_restart(mosquitto: object) -> None:
    broker = mosquitto
    url = broker.url  # type: ignore[attr-defined]
    res = simulate(SimConfig(elders=3, days=2, seed=4, random_incidents=False, random_events=False, faults=False))
    collector = _Collector(url, persistent=True)  # the broker keeps its queue across the restart
    stop_restart = threading.Timer(1.0, broker.restart, kwargs={"down_s": 0.5})  # type: ignore[attr-defined]
    try:
        stop_restart.start()
        stats = publish(res, url=url, speed=2 * 86400 / 3.0, history_days=0.0)  # two days in ~3 s
        stop_restart.join()
        # A message handed over twice around the restart must not end the wait before the last one came.
        collector.wait_for(stats.messages, 15, distinct=True)
        unique = {(topic, body) for topic, body, _ in collector.messages}  # QoS 1 may repeat a message
    finally:
        collector.close()
    assert stats.connects == 2  # it did lose the broker mid-stream
    assert stats.messages == len(res.ts) and len(unique) == stats.messages


def test_cli_never_prints_the_broker_password(mosquitto: object, capsys: pytest.CaptureFixture[str]) -> None:
    """docker-compose's demo passes the simulator account's password in --mqtt's URL; the closing line printed
    that URL whole into `docker compose logs`."""
    url = mosquitto.url.replace("mqtt://", "mqtt://simulator:s3cr3t-pass@")  # type: ignore[attr-defined]
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--elders", "1", "--days", "1", "--speed", "0", "--mqtt", url])
    assert cli_run(args) == 0
    out = capsys.readouterr()
    assert "published" in out.out
    assert "s3cr3t-pass" not in out.out + out.err


def test_cli_logs_in_with_a_percent_encoded_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A password with / # ? @ can only be written into --mqtt's URL percent-encoded, but the simulator sent the
    encoded text as the password: the broker refused it, and such a password could not be used at all. The
    monitor decodes TAPWATCH_MQTT_URL's password; the simulator now does the same, with the same code."""
    import shutil
    import subprocess
    from urllib.parse import quote

    from tests.conftest import MOSQUITTO, Mosquitto

    if MOSQUITTO is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs Debian's mosquitto (with mosquitto_passwd)")
    password = "p/s#w?d@1:x%"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "simulator", password], check=True)
    (tmp_path / "passwd").chmod(0o644)
    broker = Mosquitto(tmp_path, extra_config=f"password_file {tmp_path / 'passwd'}\n")
    broker.config.write_text(broker.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    broker.start()
    try:
        url = broker.url.replace("mqtt://", f"mqtt://simulator:{quote(password, safe='')}@")
        parser = argparse.ArgumentParser()
        add_parser(parser.add_subparsers())
        args = parser.parse_args(["simulate", "--elders", "1", "--days", "1", "--speed", "0", "--mqtt", url])
        assert cli_run(args) == 0
    finally:
        broker.stop()
    assert "published" in capsys.readouterr().out


@pytest.mark.parametrize("offset_h", [8.0, -5.0, 1.0, 0.0, 5.5])
def test_elders_of_any_offset_are_registered_in_a_zone_the_engine_reads_at_that_offset(offset_h: float) -> None:
    """``elders.json`` gave ``tz: "UTC-05:00"`` for a population 5 h west of UTC: ``tapwatch register`` refused
    every elder, and a store that took it read them on Shanghai's clock (engine.localtime: an unknown zone)."""
    from api.models import ElderCreate
    from engine.localtime import local_offset, meter_zone

    res = simulate(SimConfig(elders=1, days=2, seed=1, tz_offset_h=offset_h, faults=False))
    tz = res.elders[0]["tz"]
    assert ElderCreate.model_validate(res.elders[0]).tz == tz
    assert meter_zone(tz, "Asia/Shanghai") == tz
    assert {local_offset(tz, float(t)) for t in res.ts} == {res.tz_offset_s}


def test_an_offset_no_zone_keeps_all_year_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no IANA zone keeps a UTC offset of 3\.25 h"):
        SimConfig(tz_offset_h=3.25)


@pytest.mark.parametrize(
    "option",
    [
        ["--speed", "60"],
        ["--history-days", "2"],
        ["--prefix", "district/meters"],
        ["--speed", "0"],
        ["--history-days", "0"],
    ],
)
def test_cli_refuses_mqtt_options_without_mqtt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str]
) -> None:
    """--speed, --history-days and --prefix shape what goes over MQTT; with --out alone they were accepted and
    ignored (exit 0), so a file run meant to be paced or prefixed looked like it was. A value of 0 (docs/simulator.md's
    `--speed 0`, as fast as possible) was taken for an option not given, and accepted with --out alone."""
    from tapwatch.cli import main

    out = tmp_path / "sim"
    assert main(["simulate", "--elders", "1", "--days", "1", "--out", str(out), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert option[0] in err and "--mqtt" in err and len(err.splitlines()) == 1
    assert not out.exists()  # refused before simulating
    # one option is named in the singular ("--speed only shape what is published ... leave them out" was not)
    assert f"{option[0]} only shapes what is published: give --mqtt URL too, or leave it out" in err, err


def test_cli_names_several_mqtt_options_without_mqtt_in_the_plural(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tapwatch.cli import main

    options = ["--speed", "60", "--prefix", "district/meters"]
    assert main(["simulate", "--elders", "1", "--days", "1", "--out", str(tmp_path / "sim"), *options]) == 2
    err = capsys.readouterr().err
    assert "--speed and --prefix only shape what is published: give --mqtt URL too, or leave them out" in err, err


def test_cli_publishes_over_tls_to_a_broker_with_the_districts_own_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`simulate --mqtts://...` trusted only the system's CAs and had no CA option: a district's broker with its
    own CA (docs/deploy.md, "TLS for MQTT") could not be reached. --ca takes the CA bundle, as the monitor's
    TAPWATCH_MQTT_CA_FILE does."""
    import shutil

    from tapwatch.cli import main
    from tests.conftest import MOSQUITTO, Mosquitto, free_port
    from tests.helpers import certificates

    if MOSQUITTO is None or shutil.which("openssl") is None:
        pytest.skip("needs Debian's mosquitto and openssl")
    certificates(tmp_path)
    plain = free_port()  # the collector listens in clear beside the TLS listener the simulator uses
    broker = Mosquitto(
        tmp_path,
        extra_config=f"cafile {tmp_path}/ca.crt\ncertfile {tmp_path}/server.crt\nkeyfile {tmp_path}/server.key\n"
        f"listener {plain} 127.0.0.1\n",
    )
    broker.start()
    collector = _Collector(f"mqtt://127.0.0.1:{plain}")
    try:
        tls_url = f"mqtts://127.0.0.1:{broker.port}"
        base = ["simulate", "--elders", "2", "--days", "1", "--speed", "0", "--history-days", "0", "--mqtt", tls_url]
        assert main([*base, "--ca", str(tmp_path / "ca.crt")]) == 0
        published = int(re.search(r"published (\d+) messages", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
        assert published > 0
        assert wait_until(lambda: len(collector.messages) >= published, 15)
    finally:
        collector.close()
        broker.stop()


def test_cli_refuses_a_ca_it_would_not_use_or_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from tapwatch.cli import main
    from tests.helpers import certificates

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    with pytest.raises(SystemExit) as exc:  # argparse: the option names what is wrong with the file
        main(["simulate", "--mqtt", "mqtts://127.0.0.1:8883", "--ca", str(tmp_path / "not-a-ca.pem")])
    assert exc.value.code == 2 and "cannot read a CA bundle" in capsys.readouterr().err
    certificates(tmp_path)
    ca = str(tmp_path / "ca.crt")
    # Refused before simulating or connecting: a plain broker would never see the CA.
    assert main(["simulate", "--elders", "1", "--days", "1", "--mqtt", "mqtt://127.0.0.1:1", "--ca", ca]) == 2
    err = capsys.readouterr().err.strip()
    assert "--ca" in err and "mqtts://" in err and len(err.splitlines()) == 1


# --- --follow: history up to now, then real time ----------------------------------------------------------


class _TestClock:
    """A clock the test moves: the follower waits on it as on the wall clock, without real half-hours."""

    def __init__(self, now: float) -> None:
        self._now = now
        self._moved = threading.Condition()

    def now(self) -> float:
        with self._moved:
            return self._now

    def wait_until(self, when: float, stop: threading.Event) -> None:
        with self._moved:
            self._moved.wait_for(lambda: self._now >= when or stop.is_set(), timeout=5.0)

    def move_to(self, when: float) -> None:
        with self._moved:
            self._now = when
            self._moved.notify_all()

    def stop(self, stop: threading.Event) -> None:
        with self._moved:
            stop.set()
            self._moved.notify_all()


def _readings_by_meter(collector: _Collector) -> dict[str, list[tuple[float, float]]]:
    """(epoch, litres) of every distinct reading received, per meter, in time order."""
    from datetime import datetime

    seen: dict[str, set[tuple[float, float]]] = {}
    for _topic, body, _ in list(collector.messages):
        msg = orjson.loads(body)
        for r in msg["readings"]:
            seen.setdefault(msg["meter_id"], set()).add((datetime.fromisoformat(r["ts"]).timestamp(), r["total_l"]))
    return {meter: sorted(rows) for meter, rows in seen.items()}


@contextlib.contextmanager
def _following(cfg: SimConfig, url: str, clock: _TestClock, collector: _Collector) -> Iterator[list[Any]]:
    """``simulator.follow.follow`` of ``cfg`` on ``clock`` in a thread, its history sent; yields the list its counts
    go into once it stops. On leaving, the clock stops it and the collector is closed."""
    from simulator.follow import follow

    stop, history = threading.Event(), threading.Event()
    sent: list[Any] = []
    follower = threading.Thread(
        target=lambda: sent.append(follow(cfg, url, clock=clock, stop_event=stop, on_history=lambda s: history.set()))
    )
    try:
        follower.start()
        assert history.wait(30), "the history was not sent"
        yield sent
    finally:
        clock.stop(stop)
        follower.join(30)
        collector.close()
    assert not follower.is_alive() and sent, "the follower did not stop"


def test_follow_sends_history_until_now_then_each_reading_when_the_clock_reaches_it(mosquitto: object) -> None:
    """The compose demo sent two Beijing dates that ended at today's midnight: six hours into today the monitor
    reported every simulated meter offline. --follow sends what the meters delivered until now, then each reading
    as its meter sends it, on and on (across the simulation's weekly stretches, registers going on)."""
    from datetime import datetime, timedelta

    from simulator.follow import STRETCH_DAYS

    url = mosquitto.url  # type: ignore[attr-defined]
    now = datetime(2026, 12, 7, 10, 17, tzinfo=UTC8).timestamp()
    start = (datetime.fromtimestamp(now, UTC8).date() - timedelta(days=2)).isoformat()
    cfg = SimConfig(elders=3, days=1, seed=2, start=start, random_incidents=False, random_events=False, faults=False)
    clock, collector = _TestClock(now), _Collector(url)
    with _following(cfg, url, clock, collector):
        assert wait_until(lambda: len(_readings_by_meter(collector)) == 3, 15)
        first = _readings_by_meter(collector)
        for rows in first.values():  # two dates and today's morning, up to the last half hour
            assert rows[0][0] < now - 2 * DAY + HALF_HOUR and now - HALF_HOUR - 60 < rows[-1][0] < now

        clock.move_to(now + 2 * 3600)  # two hours on: each meter's next four readings, none beyond
        assert wait_until(
            lambda: all(len(r) == len(first[m]) + 4 for m, r in _readings_by_meter(collector).items()), 15
        )
        assert max(ts for rows in _readings_by_meter(collector).values() for ts, _ in rows) <= now + 2 * 3600

        end_of_first_stretch = datetime.fromisoformat(start).replace(tzinfo=UTC8).timestamp() + STRETCH_DAYS * DAY
        clock.move_to(end_of_first_stretch + DAY)  # into the next stretch of the simulation
        assert wait_until(
            lambda: all(
                r[-1][0] > end_of_first_stretch + DAY - HALF_HOUR - 60 for r in _readings_by_meter(collector).values()
            ),
            30,
        )
    for rows in _readings_by_meter(collector).values():
        steps = np.diff([litres for _, litres in rows])
        assert steps.min() >= 0 and steps.max() < 1000  # one register throughout: no jump at the stretch's end
        gaps = np.diff([ts for ts, _ in rows])
        assert gaps.max() < 2 * HALF_HOUR  # a reading every half hour, the boundary included


def test_follow_refuses_what_it_would_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    from tapwatch.cli import main

    # a 0 is given too (it was taken for an option left out): --follow would ignore it as any other value
    ignored = (["--days", "3"], ["--speed", "60"], ["--history-days", "2"], ["--out", "x"], ["--speed", "0"])
    for extra in ignored:
        assert main(["simulate", "--follow", "--mqtt", "mqtt://127.0.0.1:1", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert extra[0] in err and len(err.splitlines()) == 1
    assert main(["simulate", "--follow", "--out", "x"]) == 2
    assert "--mqtt" in capsys.readouterr().err


def test_cli_follow_runs_until_sigterm(mosquitto: object, tmp_path: Path) -> None:
    """The compose demo runs `tapwatch simulate --follow` as its container's process: it publishes the history up
    to now on the wall clock, follows, and stops on SIGTERM (docker compose stop) with its closing line."""
    import os
    import signal
    import subprocess
    import sys
    from datetime import datetime

    url = mosquitto.url  # type: ignore[attr-defined]
    collector = _Collector(url)
    code = "import sys; from tapwatch.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["simulate", "--elders", "2", "--follow", "--no-faults", "--mqtt", url]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        assert wait_until(
            lambda: any("following in real time" in line for line in lines) or proc.poll() is not None, 60
        )
        assert proc.poll() is None, "".join(lines)
        began = time.time()
        assert wait_until(lambda: len(_readings_by_meter(collector)) == 2, 15)
        for rows in _readings_by_meter(collector).values():
            assert began - 2 * HALF_HOUR < rows[-1][0] <= began  # up to now, nothing ahead of the wall clock
            local = datetime.fromtimestamp(rows[0][0], UTC8)
            assert (local.hour, local.minute < 30) == (0, True)  # from local midnight two dates back
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(10)
        collector.close()
    assert "stopped" in lines[-1]


def test_follow_rides_out_a_broker_restart(mosquitto: object) -> None:
    from datetime import datetime, timedelta

    broker = mosquitto
    url = broker.url  # type: ignore[attr-defined]
    now = datetime(2026, 12, 7, 21, 40, tzinfo=UTC8).timestamp()
    start = (datetime.fromtimestamp(now, UTC8).date() - timedelta(days=1)).isoformat()
    cfg = SimConfig(elders=2, days=1, seed=5, start=start, random_incidents=False, random_events=False, faults=False)
    clock = _TestClock(now)
    collector = _Collector(url, persistent=True)  # the broker keeps its queue across the restart
    with _following(cfg, url, clock, collector) as sent:
        assert wait_until(lambda: len(_readings_by_meter(collector)) == 2, 15)
        before = {meter: len(rows) for meter, rows in _readings_by_meter(collector).items()}
        broker.restart()  # type: ignore[attr-defined]
        clock.move_to(now + 3 * 3600)
        assert wait_until(
            lambda: all(len(rows) == before[m] + 6 for m, rows in _readings_by_meter(collector).items()), 30
        )
    assert sent and sent[0].connects == 2  # it did lose the broker, and went on
