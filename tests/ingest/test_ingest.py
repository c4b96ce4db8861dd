"""Ingest: every payload is either stored or dead-lettered with a reason; the stream never stops."""

from __future__ import annotations

import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import OperationalError

from alerts.manager import AlertManager
from engine.pipeline import Pipeline
from ingest.payload import PayloadError, RawMessage, parse_message
from store.schema import dead_letters, detector_state, meters, readings
from tests.conftest import wait_until
from tests.helpers import message, register

NOW = time.time() // 1800 * 1800

MALFORMED = {
    b"not json at all": "invalid JSON",
    b"[1, 2, 3]": "not a JSON object",
    b'{"meter_id": "M1"}': "readings: Field required",
    b'{"meter_id": "M1", "readings": []}': "at least 1 item",
    b'{"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:00:00", "total_l": 1}]}': "no UTC offset",
    b'{"meter_id": "M1", "readings": [{"ts": "yesterday", "total_l": 1}]}': "readings.0.ts",
    b'{"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:00:00+08:00", "total_l": -5}]}': "out of range",
    b'{"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:00:00+08:00"}]}': "exactly one of total_l or total_m3",
    b'{"meter_id": "M 1!", "readings": [{"ts": "2026-11-23T08:00:00+08:00", "total_l": 1}]}': "meter_id",
    b'{"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:00:00+08:00", "total_l": 1}], "battery_pct": 300}': (
        "battery_pct"
    ),
    b"\xff\xfe\x00garbage": "invalid JSON",
}


@pytest.mark.parametrize(("payload", "reason"), list(MALFORMED.items()))
def test_parser_names_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_message(payload)
    assert reason in info.value.reason


def test_topic_and_payload_must_agree() -> None:
    with pytest.raises(PayloadError, match="does not match topic"):
        parse_message(message("M1", [(NOW, 1.0)]), topic_meter_id="M2")


def test_m3_registers_are_converted() -> None:
    payload = orjson.dumps({"meter_id": "M1", "readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_m3": 12.345}]})
    assert parse_message(payload).readings[0].total_l == pytest.approx(12345.0)


def _count(engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_pipeline_dead_letters_bad_messages_and_keeps_the_good(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager())
    batch = [RawMessage("tapwatch/meters/M1/readings", p, "M1") for p in MALFORMED]
    batch.append(
        RawMessage("tapwatch/meters/M1/readings", message("M1", [(NOW - 3600, 100.0), (NOW - 1800, 104.0)]), "M1")
    )
    batch.append(RawMessage("tapwatch/meters/UNKNOWN/readings", message("UNKNOWN", [(NOW, 1.0)]), "UNKNOWN"))
    batch.append(RawMessage("tapwatch/meters/M1/readings", message("M1", [(NOW + 6 * 3600, 110.0)]), "M1"))
    batch.append(RawMessage("tapwatch/meters/M1/readings", message("M1", [(NOW - 10 * 86400, 90.0)]), "M1"))
    result = pipeline.process(batch)
    assert result.dead_letters == len(MALFORMED) + 3
    assert _count(engine, readings) == 2
    with engine.connect() as conn:
        reasons = [r.reason for r in conn.execute(select(dead_letters)).all()]
        payloads = [r.payload for r in conn.execute(select(dead_letters)).all()]
        stored = conn.execute(select(readings.c.usage_l).order_by(readings.c.ts)).scalars().all()
    assert any("unknown meter" in r for r in reasons)
    assert any("in the future" in r for r in reasons)
    assert any("late window" in r for r in reasons)
    assert any("not json at all" in p for p in payloads)  # the payload is kept for inspection
    assert stored == [None, 4.0]


def test_redelivered_batch_is_not_counted_twice(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    batch = [RawMessage("t", message("M1", [(NOW - 3600 + k * 600, 100.0 + k)]), "M1") for k in range(6)]
    Pipeline(engine, AlertManager()).process(batch)
    # A new worker (after a crash: no checkpoint was written) gets the same messages again.
    again = Pipeline(engine, AlertManager()).process(batch)
    assert again.readings_stored == 0
    assert _count(engine, readings) == 6


def test_state_is_caught_up_from_stored_readings_after_a_crash(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    first = Pipeline(engine, AlertManager(), checkpoint_interval_s=0)
    first.process([RawMessage("t", message("M1", [(NOW - 7200, 100.0)]), "M1")])  # checkpointed
    first_no_cp = Pipeline(engine, AlertManager(), checkpoint_interval_s=1e9)
    first_no_cp.process([RawMessage("t", message("M1", [(NOW - 5400, 104.0), (NOW - 3600, 110.0)]), "M1")])
    # A fresh worker loads the old checkpoint, replays the two stored readings, and goes on from there.
    fresh = Pipeline(engine, AlertManager())
    fresh.process([RawMessage("t", message("M1", [(NOW - 1800, 113.0)]), "M1")])
    assert fresh.states.replayed == 2
    with engine.connect() as conn:
        usage = conn.execute(select(readings.c.usage_l).order_by(readings.c.ts)).scalars().all()
    assert usage == [None, 4.0, 6.0, 3.0]


def test_readings_stored_under_a_minute_apart_before_the_spacing_rule_are_caught_up_as_stored(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    Pipeline(engine, AlertManager(), checkpoint_interval_s=0).process(
        [RawMessage("t", message("M1", [(NOW - 5400, 100.0)]), "M1")]
    )  # checkpointed
    # A version from before readings under a minute apart were thinned stored two 30 s apart, the newest last.
    old = [(NOW - 3600, 104.0, 4.0), (NOW - 3570, 109.0, 5.0)]
    with engine.begin() as conn:
        conn.execute(
            insert(readings),
            [
                {"meter_id": "M1", "ts": ts, "total_l": total, "usage_l": used, "status": "ok", "received_at": ts}
                for ts, total, used in old
            ],
        )
        conn.execute(update(meters).where(meters.c.meter_id == "M1").values(last_reading_ts=NOW - 3570))
    # After the upgrade a worker loads the checkpoint, catches up on the stored readings, and takes the next one.
    fresh = Pipeline(engine, AlertManager())
    fresh.process([RawMessage("t", message("M1", [(NOW - 1800, 112.0)]), "M1")])
    state = fresh.states.get("M1")
    assert state is not None and state.tracker.newest == NOW - 1800
    with engine.connect() as conn:
        usage = conn.execute(select(readings.c.usage_l).order_by(readings.c.ts)).scalars().all()
    # Was 8.0: the 5 L stored with the reading before were counted again (in the charts, the routine's sums).
    assert usage == [None, 4.0, 5.0, 3.0] and sum(u for u in usage if u) == 112.0 - 100.0


@pytest.mark.parametrize(
    ("held_total", "then_total", "held_row"),
    [
        (1312.0, 2408.0, (1200.0, "ok")),  # 1,200 L in half an hour, and the register went on: a pipe burst
        (248_112.0, 115.0, (None, "glitch")),  # one reading off, back down at the next
        (248_112.0, 900_000.0, (None, "reset")),  # and the next one off too: unknown across both, not 'first'
    ],
)
def test_a_held_reading_is_stored_as_the_register_settled_it(engine, held_total, then_total, held_row) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager())
    # Each reading in a message (and batch) of its own, as a meter sends them: the held one is stored first.
    for ts, total in [(NOW - 5400, 100.0), (NOW - 3600, 112.0), (NOW - 1800, held_total), (NOW, then_total)]:
        pipeline.process([RawMessage("t", message("M1", [(ts, total)]), "M1")])
    with engine.connect() as conn:
        rows = conn.execute(select(readings.c.usage_l, readings.c.status).order_by(readings.c.ts)).all()
    # The usage charts and the routine sum these rows: the burst's first half hour must be in them.
    assert [tuple(r) for r in rows][2] == held_row


def test_checkpoints_are_written_when_due_and_at_shutdown(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager(), checkpoint_interval_s=1e9)

    def stored() -> tuple[int, bytes]:
        with engine.connect() as conn:
            query = select(meters.c.state_version, detector_state.c.state).join(
                detector_state, detector_state.c.meter_id == meters.c.meter_id
            )
            return tuple(conn.execute(query).one())  # type: ignore[return-value]

    pipeline.process([RawMessage("t", message("M1", [(NOW - 3600, 100.0)]), "M1")])
    first_version, first_state = stored()
    assert first_version == 1  # a meter's first commit carries its state
    pipeline.process([RawMessage("t", message("M1", [(NOW - 1800, 104.0)]), "M1")])
    # Not due: only the version moves on (other workers reload); readings alone are enough to rebuild.
    assert stored() == (2, first_state)
    assert pipeline.flush_checkpoints() == 1
    version, state = stored()
    assert version == 3 and state != first_state
    assert pipeline.flush_checkpoints() == 0  # nothing changed since


def test_a_checkpoint_is_due_after_its_interval_of_data_time_whatever_the_wall_clock(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager(), checkpoint_interval_s=3 * 3600)

    def state() -> bytes:
        with engine.connect() as conn:
            return bytes(conn.execute(select(detector_state.c.state)).scalar_one())

    start = NOW - 24 * 3600
    pipeline.process([RawMessage("t", message("M1", [(start, 100.0)]), "M1")])  # the first commit saves
    saved = [state()]
    for k in range(1, 13):  # six hours of readings, committed back to back (a backlog)
        pipeline.process([RawMessage("t", message("M1", [(start + k * 1800, 100.0 + k)]), "M1")])
        if state() != saved[-1]:
            saved.append(state())
    assert len(saved) == 3  # at 3 h and 6 h of data time, not with every batch


def test_failed_commit_keeps_nothing_and_state_reloads(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager())
    pipeline.process([RawMessage("t", message("M1", [(NOW - 3600, 100.0)]), "M1")])
    # A store that cannot work (here: a table gone) fails the whole batch, which stays with the broker.
    # (A failure particular to one message is bisected and set aside instead: tests/ingest/test_hostile_meters.py.)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE readings RENAME TO readings_away")
    with pytest.raises(OperationalError, match="no such table"):
        pipeline.process([RawMessage("t", message("M1", [(NOW - 1800, 103.0)]), "M1")])
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE readings_away RENAME TO readings")
    result = pipeline.process([RawMessage("t", message("M1", [(NOW - 1800, 103.0)]), "M1")])
    assert result.readings_stored == 1
    with engine.connect() as conn:
        assert conn.execute(select(readings.c.usage_l).where(readings.c.ts == NOW - 1800)).scalar_one() == 3.0


def test_malformed_messages_over_mqtt_never_stop_the_stream(mosquitto, tmp_path, db_url) -> None:  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from tapwatch.service import Service

    service = Service(
        get_settings(data_dir=tmp_path, database_url=db_url, mqtt_url=mosquitto.url, mqtt_client_id="t-malformed")
    )
    register(service.engine, "E1", "M1")
    service.start()
    try:
        assert wait_until(service.consumer.connected.is_set, 10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-malformed")
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        infos = []
        for k, bad in enumerate(MALFORMED):
            infos.append(pub.publish("tapwatch/meters/M1/readings", bad, qos=1))
            infos.append(
                pub.publish("tapwatch/meters/M1/readings", message("M1", [(NOW - 7200 + k * 300, 10.0 + k)]), qos=1)
            )
        for info in infos:
            info.wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        assert wait_until(lambda: _count(service.engine, readings) == len(MALFORMED), 15)
        assert wait_until(lambda: _count(service.engine, dead_letters) == len(MALFORMED), 5)
        assert service.readiness()["ready"] is True
    finally:
        service.stop()


def test_meter_battery_signal_and_newest_reading_are_tracked(engine) -> None:  # type: ignore[no-untyped-def]
    from store.schema import meters

    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager())
    pipeline.process(
        [
            RawMessage("t", message("M1", [(NOW - 1800, 100.0)], battery_pct=81, rssi=-97), "M1"),
            RawMessage("t", message("M1", [(NOW - 5400, 99.0)]), "M1"),  # late: must not move the clock back
        ]
    )
    pipeline.process([RawMessage("t", message("M1", [(NOW - 900, 101.0)]), "M1")])  # no battery: keep the last
    with engine.connect() as conn:
        row = conn.execute(select(meters.c.battery_pct, meters.c.rssi, meters.c.last_reading_ts)).one()
    assert (row.battery_pct, row.rssi, row.last_reading_ts) == (81, -97, NOW - 900)


def test_last_seen_is_not_moved_back_by_a_message_received_earlier_and_committed_later(any_engine) -> None:  # type: ignore[no-untyped-def]
    # Two workers of a shared subscription: the one that got the earlier message commits it last.
    register(any_engine, "E1", "M1")
    first, second = Pipeline(any_engine, AlertManager()), Pipeline(any_engine, AlertManager())
    second.process([RawMessage("t", message("M1", [(NOW - 900, 101.0)]), "M1", received_at=NOW - 60)])
    first.process([RawMessage("t", message("M1", [(NOW - 1800, 100.0)]), "M1", received_at=NOW - 120)])
    with any_engine.connect() as conn:
        row = conn.execute(select(meters.c.last_seen_at, meters.c.last_reading_ts)).one()
    assert (row.last_seen_at, row.last_reading_ts) == (NOW - 60, NOW - 900)


def test_battery_and_signal_are_not_set_back_by_a_message_received_earlier_and_committed_later(any_engine) -> None:  # type: ignore[no-untyped-def]
    register(any_engine, "E1", "M1")
    first, second = Pipeline(any_engine, AlertManager()), Pipeline(any_engine, AlertManager())
    later = message("M1", [(NOW - 900, 101.0)], battery_pct=12, rssi=-110)  # the battery runs low
    second.process([RawMessage("t", later, "M1", received_at=NOW - 60)])
    earlier = message("M1", [(NOW - 1800, 100.0)], battery_pct=80, rssi=-90)
    first.process([RawMessage("t", earlier, "M1", received_at=NOW - 120)])
    with any_engine.connect() as conn:
        row = conn.execute(select(meters.c.battery_pct, meters.c.rssi)).one()
    assert (row.battery_pct, row.rssi) == (12, -110)  # the devices page still shows the battery low


def test_an_unreadable_checkpoint_restarts_the_meter_cold_without_stopping_ingest(engine, caplog) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    register(engine, "E1", "M1")
    Pipeline(engine, AlertManager()).process([RawMessage("t", message("M1", [(NOW - 3600, 100.0)]), "M1")])
    with engine.begin() as conn:  # a checkpoint an older tapwatch wrote, or a damaged one
        conn.execute(update(detector_state).values(state=b"not a checkpoint"))
    result = Pipeline(engine, AlertManager()).process([RawMessage("t", message("M1", [(NOW - 1800, 107.0)]), "M1")])
    assert result.readings_stored == 1
    assert "unreadable" in caplog.text
    with engine.connect() as conn:  # the register carried on from the newest stored reading
        assert conn.execute(select(readings.c.usage_l).where(readings.c.ts == NOW - 1800)).scalar_one() == 7.0


def test_a_checkpoint_naming_a_module_this_tapwatch_has_not_restarts_the_meter_cold(engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    register(engine, "E1", "M1")
    Pipeline(engine, AlertManager()).process([RawMessage("t", message("M1", [(NOW - 3600, 100.0)]), "M1")])
    with engine.begin() as conn:  # an older tapwatch pickled its monitor from a module since moved or renamed
        conn.execute(update(detector_state).values(state=b"ctapwatch_old_detect\nMeterMonitor\n."))
    result = Pipeline(engine, AlertManager()).process([RawMessage("t", message("M1", [(NOW - 1800, 107.0)]), "M1")])
    # Not set aside as a message the store refused: every later reading of the meter would be too.
    assert (result.readings_stored, result.dead_letters) == (1, 0)
    with engine.connect() as conn:
        assert conn.execute(select(readings.c.usage_l).where(readings.c.ts == NOW - 1800)).scalar_one() == 7.0


def test_an_unreadable_checkpoint_is_replaced_at_the_meters_next_commit(engine) -> None:  # type: ignore[no-untyped-def]
    import pickle

    from sqlalchemy import update

    register(engine, "E1", "M1")
    Pipeline(engine, AlertManager()).process([RawMessage("t", message("M1", [(NOW - 3600, 100.0)]), "M1")])
    with engine.begin() as conn:
        conn.execute(update(detector_state).values(state=b"not a checkpoint"))
    # The checkpoint is not due for hours of data time; until it is, every reload (a restart, another
    # worker) would find the unreadable one again and start the meter cold again, forgetting what it learned.
    Pipeline(engine, AlertManager()).process([RawMessage("t", message("M1", [(NOW - 1800, 107.0)]), "M1")])
    with engine.connect() as conn:
        blob = conn.execute(select(detector_state.c.state)).scalar_one()
    tracker_state, _monitor, _zone = pickle.loads(blob)
    assert tracker_state[:2] == (NOW - 1800, 107.0)


def _misshapen(kind: str, tracker_state: tuple, monitor: Any, zone: str) -> tuple:  # type: ignore[type-arg]
    """A checkpoint that unpickles but does not hold what this release writes: damaged, or from a newer layout (as
    many slots, other meanings)."""
    if kind == "not a monitor":
        return tracker_state, "MeterMonitor", zone
    if kind == "register of another kind":
        return ("yesterday", "100 L", None, 0.0), monitor, zone
    if kind == "monitor slot":
        monitor.day = "2026-12-07"
    elif kind == "model missing":
        monitor.silence = None
    elif kind == "model slot":
        monitor.silence.counts = None
    return tracker_state, monitor, zone


@pytest.mark.parametrize(
    "kind", ["not a monitor", "register of another kind", "monitor slot", "model missing", "model slot"]
)
def test_a_checkpoint_that_loads_but_holds_other_kinds_restarts_the_meter_cold(engine, caplog, kind: str) -> None:  # type: ignore[no-untyped-def]
    import pickle

    register(engine, "E1", "M1")
    day = [(NOW - 30 * 3600 + k * 1800, 100.0 + k) for k in range(48)]  # a day of use: a learned state to damage
    Pipeline(engine, AlertManager(), late_window_s=90 * 86400).process([RawMessage("t", message("M1", day), "M1")])
    with engine.begin() as conn:
        tracker_state, monitor, zone = pickle.loads(conn.execute(select(detector_state.c.state)).scalar_one())
        damaged = pickle.dumps(_misshapen(kind, tracker_state, monitor, zone))
        conn.execute(update(detector_state).values(state=damaged))
    pipeline = Pipeline(engine, AlertManager(), late_window_s=90 * 86400)
    # Never a dead letter: the failure would be the meter's, and every later reading of it would be set aside too.
    later = [(NOW - 6 * 3600 + k * 1800, 150.0 + k) for k in range(4)]
    assert (pipeline.process([RawMessage("t", message("M1", later), "M1")]).readings_stored, kind) == (4, kind)
    pipeline.states.evict()  # the silent-meter check loads it afresh too
    assert pipeline.tick(NOW, 3600).dead_letters == 0
    result = pipeline.process([RawMessage("t", message("M1", [(NOW - 1800, 160.0)]), "M1")])
    assert (result.readings_stored, result.dead_letters) == (1, 0)
    assert [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()] != []


class _Touches:
    """Unpickled, it creates ``path``: what a row written by anyone with access to the store could make it do."""

    def __init__(self, path: Any) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self.path).touch, (self.path,))


def test_a_checkpoint_cannot_run_code_in_the_worker_that_loads_it(engine, caplog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pickle

    register(engine, "E1", "M1")
    Pipeline(engine, AlertManager()).process([RawMessage("t", message("M1", [(NOW - 3600, 100.0)]), "M1")])
    planted = tmp_path / "ran"
    with engine.begin() as conn:
        conn.execute(update(detector_state).values(state=pickle.dumps((_Touches(planted), None, "Asia/Shanghai"))))
    result = Pipeline(engine, AlertManager()).process([RawMessage("t", message("M1", [(NOW - 1800, 107.0)]), "M1")])
    assert not planted.exists()
    assert (result.readings_stored, result.dead_letters) == (1, 0)
    assert "pathlib" in caplog.text  # the log line names what the checkpoint asked for


def test_a_checkpoint_with_a_bit_flipped_anywhere_is_never_loaded_as_another_state(engine) -> None:  # type: ignore[no-untyped-def]
    """A flipped bit in a float unpickled as another learned value, silently; one in an opcode could make the
    unpickler grow its memo to gigabytes (a BUILD turned LONG_BINPUT: 8.5 GB resident, a worker killed for memory at
    every load of the meter). Every flip is refused now, or the state loads exactly as written."""
    import pickle

    from engine.meterstate import load_checkpoint

    register(engine, "E1", "M1")
    day = [(NOW - 30 * 3600 + k * 1800, 100.0 + k) for k in range(48)]
    Pipeline(engine, AlertManager(), late_window_s=90 * 86400).process([RawMessage("t", message("M1", day), "M1")])
    with engine.connect() as conn:
        blob = conn.execute(select(detector_state.c.state)).scalar_one()
    written = pickle.dumps(load_checkpoint(blob))
    loaded_otherwise = []
    for at in range(len(blob)):
        flipped = bytearray(blob)
        flipped[at] ^= 1 << (at % 8)
        try:
            state = load_checkpoint(bytes(flipped))
        except Exception:
            continue
        if pickle.dumps(state) != written:
            loaded_otherwise.append(at)
    assert loaded_otherwise == []
