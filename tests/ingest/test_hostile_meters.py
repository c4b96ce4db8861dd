"""Issue 20, ingest side: what a hostile or broken meter sends never stops the others.

Each test here failed before the fix it names. The stores are real (SQLite and
PostgreSQL through ``any_engine``); the end-to-end fuzz target through a real
broker into a PostgreSQL-backed monitor is tests/ingest/test_hostile_fuzz.py.
"""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select, text

from alerts.manager import AlertManager
from engine.budget import DeadLetterBudget
from engine.pipeline import Pipeline, RawMessage
from ingest.consumer import MqttConsumer
from ingest.mqttclient import BrokerConfig
from ingest.payload import PayloadError, parse_message, store_safe_text
from store.schema import dead_letters, meters, readings
from tests.api_fixtures import ELDER_A, api_env  # noqa: F401
from tests.conftest import REPO
from tests.helpers import NEWER_REVISION, message, migrate_as_a_newer_release, register
from tests.processes import Mosquitto, wait_until

NOW = time.time() // 1800 * 1800
TOPIC = "tapwatch/meters/M1/readings"


def _raw(payload: bytes, topic_meter: str | None = "M1", **kwargs: Any) -> RawMessage:
    return RawMessage(
        TOPIC if topic_meter == "M1" else f"tapwatch/meters/{topic_meter}/readings", payload, topic_meter, **kwargs
    )


def _good(k: int, meter: str = "M1") -> RawMessage:
    return _raw(message(meter, [(NOW - 7200 + 300 * k, 100.0 + k)]), meter)


def _rows(engine: Any, table: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(table)).all())


#: Payloads that once reached an INSERT as text PostgreSQL refuses, or nearly.
POISON = [
    b'{"meter_id": "WM\\u0000", "readings": []}',  # valid JSON, NUL in the claimed meter id
    b"\x00",  # a raw NUL byte
    b'{"meter_id": "M1", "readings": [{"ts": "\\u0000", "total_l": 1}]}',
    b'{"meter_id": "\\ud800", "readings": []}',  # a lone surrogate
    b"\xff\xfe\x00garbage \xc3\x28",  # invalid UTF-8 with a NUL
    b'{"meter_id": "' + "\u202e\u200b".encode() * 40 + b'"}',  # odd Unicode, too long an id
    b"[" * 5000 + b"]" * 5000,  # deeper than the JSON parser goes
]


def test_poison_payloads_are_dead_lettered_and_the_batch_commits(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Item 1: one NUL used to roll back the whole batch on PostgreSQL, and the broker redelivered it forever."""
    register(any_engine, "E1", "M1")
    pipeline = Pipeline(any_engine, AlertManager())
    batch = [_good(0), *[_raw(p) for p in POISON], _good(1)]
    result = pipeline.process(batch)
    assert result.readings_stored == 2
    letters = _rows(any_engine, dead_letters)
    assert len(letters) == len(POISON)
    assert {row.meter_id for row in letters} == {"M1"}  # item 9: the topic's meter, not the payload's claim
    assert all("\x00" not in row.payload + row.reason + row.source for row in letters)
    assert result.set_aside == 0  # made safe up front: nothing needed bisecting


def test_dead_letters_are_filed_under_the_topics_meter_not_the_payloads_claim(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    register(engine, "E2", "M2", name="张伟")
    pipeline = Pipeline(engine, AlertManager())
    claims_m2 = message("M2", [(NOW - 600, 1.0)])
    broken_claiming_m2 = orjson.dumps({"meter_id": "M2", "readings": []})
    pipeline.process([_raw(claims_m2), _raw(broken_claiming_m2)])
    assert [row.meter_id for row in _rows(engine, dead_letters)] == ["M1", "M1"]


@pytest.mark.parametrize(
    "fields",
    [
        {"readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_l": False}]},
        {"readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_m3": True}]},
        {"readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_l": 5.0}], "battery_pct": True},
        {"readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_l": 5.0}], "battery_pct": False},
        {"readings": [{"ts": "2026-11-23T08:30:00+08:00", "total_l": 5.0}], "rssi": True},
    ],
)
def test_a_boolean_is_not_a_number(fields: dict[str, Any]) -> None:
    """A firmware's flag where a number belongs was read as 0 or 1: a register of 0 L (a meter "replaced"),
    a battery at 0 % or 1 % (a maintenance trip to a full battery)."""
    with pytest.raises(PayloadError, match="number"):
        parse_message(orjson.dumps({"meter_id": "M1", **fields}), "M1")


def test_a_topic_meter_id_that_is_not_a_meter_id_is_refused() -> None:
    with pytest.raises(PayloadError, match="topic's meter id") as caught:
        parse_message(message("M1", [(NOW, 1.0)]), "M1\u202e" + "x" * 70)
    assert caught.value.meter_id is None


def test_store_safe_text_never_holds_nul_or_lone_surrogates() -> None:
    for value in [b"\x00\xff\xfe", "\x00\udc80\ud800x", "\u202e\u200b" * 10, b"\xed\xa0\x80"]:
        safe = store_safe_text(value, 50)
        assert "\x00" not in safe and len(safe) <= 50
        safe.encode("utf-8")  # raises on a lone surrogate


def test_a_message_the_store_refuses_is_isolated_and_the_rest_commit(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Item 1's general mechanism: whatever makes one message's transaction fail, the batch is bisected."""
    register(any_engine, "E1", "M1")
    register(any_engine, "E2", "M2", name="张伟")
    _refuse_total(any_engine, 666.0)
    pipeline = Pipeline(any_engine, AlertManager())
    poison = _raw(message("M2", [(NOW - 3600, 666.0)]), "M2")
    batch = [_good(k) for k in range(5)] + [poison] + [_good(k) for k in range(5, 9)]
    result = pipeline.process(batch)
    assert result.set_aside == 1 and result.readings_stored == 9
    (letter,) = _rows(any_engine, dead_letters)
    assert letter.meter_id == "M2" and letter.source == "tapwatch/meters/M2/readings"
    assert letter.reason.startswith("the store refused this message (")
    assert "SQL" not in letter.reason and "666" not in letter.reason  # the error's class, never its text
    # Acknowledged and set aside: the same batch again (a redelivery) stores nothing new and raises nothing.
    assert pipeline.process(batch).readings_stored == 0


def _refuse_total(engine: Any, total: float) -> None:
    """A database that refuses one particular reading (as PostgreSQL refused a NUL): a trigger."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.total_l = {total} "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
            return
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.total_l = {total} THEN RAISE EXCEPTION 'refused' USING ERRCODE = '22023'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION refuse()"))


def test_an_unavailable_store_still_fails_the_whole_batch(engine) -> None:  # type: ignore[no-untyped-def]
    """Bisecting is for a message's fault only: a store that cannot work keeps the batch with the broker."""
    from sqlalchemy.exc import OperationalError

    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager())
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE dead_letters RENAME TO dead_letters_away")
        conn.exec_driver_sql("ALTER TABLE readings RENAME TO readings_away")
    with pytest.raises(OperationalError):
        pipeline.process([_good(0), _raw(b"\x00")])


def test_a_worker_older_than_its_stores_schema_keeps_its_batch_with_the_broker_and_says_why(any_engine) -> None:  # type: ignore[no-untyped-def]
    """A rolling upgrade: a newer release migrated the store (here it renamed a column this one writes) while a worker
    of this release still ran. On PostgreSQL every reading it took was dead-lettered as "the store refused this
    message (ProgrammingError)", acknowledged and gone from detection; on SQLite the batch failed on "no such
    column", which named no cause. The batch now stays with the broker and the error names the schema's revision."""
    register(any_engine, "E1", "M1")
    pipeline = Pipeline(any_engine, AlertManager())
    assert pipeline.process([_good(0)]).readings_stored == 1
    migrate_as_a_newer_release(any_engine, migrated=True)
    with pytest.raises(ValueError, match=rf"revision {NEWER_REVISION}, newer than this tapwatch knows"):
        pipeline.process([_good(1), _good(2)])
    assert _rows(any_engine, dead_letters) == []
    migrate_as_a_newer_release(any_engine, migrated=False)  # its backup restored: the same batch is stored whole
    assert pipeline.process([_good(1), _good(2)]).readings_stored == 2


def test_a_worker_older_than_its_stores_schema_dead_letters_nothing_when_a_new_column_is_required(
    postgres_server,  # type: ignore[no-untyped-def]
) -> None:
    """The newer release's migration added a column every reading must have (NOT NULL, no default): each INSERT of
    this worker broke the constraint, an IntegrityError blamed on the message, and every reading was dead-lettered.
    Before a failed batch is bisected the store's revision is read: one this release does not know keeps it whole."""
    from store import open_store

    engine = open_store(postgres_server.new_database())
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager())
    assert pipeline.process([_good(0)]).readings_stored == 1
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE readings ADD COLUMN source VARCHAR(16) NOT NULL DEFAULT 'mqtt'"))
        conn.execute(text("ALTER TABLE readings ALTER COLUMN source DROP DEFAULT"))
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": NEWER_REVISION})
    with pytest.raises(ValueError, match=rf"revision {NEWER_REVISION}, newer than this tapwatch knows"):
        pipeline.process([_good(1), _good(2)])
    assert _rows(engine, dead_letters) == []
    engine.dispose()


def test_a_future_reading_moves_neither_last_reading_time_nor_last_seen(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Item 3: one reading dated 2100 meant the meter was never checked for silence again."""
    register(any_engine, "E1", "M1")
    pipeline = Pipeline(any_engine, AlertManager(), clock=lambda: NOW)
    pipeline.process([_raw(message("M1", [(NOW - 600, 10.0)]), received_at=NOW)])
    before = _rows(any_engine, meters)[0]
    later = NOW + 60
    dated_2099 = 4_070_908_800.0
    pipeline.process([_raw(message("M1", [(dated_2099, 11.0)]), received_at=later)])
    pipeline.process([_raw(message("M1", [(NOW - 30 * 86400, 9.0)]), received_at=later)])  # past the late window
    after = _rows(any_engine, meters)[0]
    assert (
        (after.last_reading_ts, after.last_seen_at)
        == (before.last_reading_ts, before.last_seen_at)
        == (
            NOW - 600,
            NOW,
        )
    )
    assert len(_rows(any_engine, dead_letters)) == 2
    assert pipeline.watermark == NOW - 600


@pytest.mark.parametrize(
    "stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z"]
)
def test_times_outside_2000_to_2099_are_refused_at_parse(stamp: str) -> None:
    payload = orjson.dumps({"meter_id": "M1", "readings": [{"ts": stamp, "total_l": 1.0}]})
    with pytest.raises(PayloadError, match="outside the years 2000-2099"):
        parse_message(payload, "M1")


def test_year_9999_never_reaches_the_store_and_the_pages_answer(api) -> None:  # type: ignore[no-untyped-def]
    """Item 3: a reading dated 9999-12-31T23:59:59-14:00 made GET /devices and the elder's page answer 500."""
    meter = ELDER_A["meter_id"]
    pipeline = Pipeline(api.engine, AlertManager(), future_tolerance_s=1e12)  # even with no future check at all
    payload = orjson.dumps({"meter_id": meter, "readings": [{"ts": "9999-12-31T23:59:59-14:00", "total_l": 5.0}]})
    pipeline.process([RawMessage(f"tapwatch/meters/{meter}/readings", payload, meter)])
    with api.engine.connect() as conn:
        assert conn.execute(select(meters.c.last_reading_ts).where(meters.c.meter_id == meter)).scalar_one() is None
        assert conn.execute(select(readings)).all() == []
    for path in ["/devices", f"/elders/{ELDER_A['elder_id']}", f"/meters/{meter}/readings", "/dead-letters"]:
        assert api.get("admin", path).status_code == 200, path


def test_an_oversized_message_is_dead_lettered_unparsed(engine) -> None:  # type: ignore[no-untyped-def]
    """Item 2: past the limit a message is set aside from its excerpt, whatever the excerpt holds."""
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager(), max_message_bytes=1024)
    whole_and_valid = message("M1", [(NOW - 600, 1.0)], pad="x" * 2000)
    excerpt_of_100_mb = b'{"meter_id": "M1", "readings": [' + b"9" * 1000
    pipeline.process([_raw(whole_and_valid), _raw(excerpt_of_100_mb, size=100 * 2**20), _good(1)])
    reasons = [row.reason for row in _rows(engine, dead_letters)]
    assert reasons == [
        f"too large: {len(whole_and_valid)} bytes (limit 1024)",
        "too large: 104857600 bytes (limit 1024)",
    ]
    assert len(_rows(engine, readings)) == 1


def test_retained_junk_is_dead_lettered_once_not_after_every_restart(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Item 11: the broker replays a retained message on every (re)subscription."""
    register(any_engine, "E1", "M1")
    for _restart in range(3):
        pipeline = Pipeline(any_engine, AlertManager())  # a fresh monitor each time
        pipeline.process([_raw(b"junk \x00", retained=True), _raw(b"live junk")])
    reasons = [(row.payload, row.source) for row in _rows(any_engine, dead_letters)]
    assert reasons.count(("junk \\x00", TOPIC)) == 1
    assert reasons.count(("live junk", TOPIC)) == 3  # a meter that keeps sending junk is seen every time


def test_a_retained_message_delivered_twice_in_one_batch_is_dead_lettered_once(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Two subscriptions that both match a topic (or a reconnect while a batch fills) bring its retained message
    twice in one batch: neither copy was stored before the batch, and both were kept."""
    register(any_engine, "E1", "M1")
    pipeline = Pipeline(any_engine, AlertManager())
    result = pipeline.process(
        [_raw(b"junk \x00", retained=True), _raw(b"live junk"), _raw(b"junk \x00", retained=True)]
    )
    assert result.dead_letters == 2
    assert [row.payload for row in _rows(any_engine, dead_letters)].count("junk \\x00") == 1


def test_a_retained_letter_kept_before_takes_none_of_its_topics_dead_letter_budget(engine) -> None:  # type: ignore[no-untyped-def]
    """The broker replays a retained message after each reconnect: once it is kept, its replays are dropped
    unkept, and took a token of the topic's budget each (and, the budget spent, were counted as not kept)."""
    register(engine, "E1", "M1")
    budget = DeadLetterBudget(burst=2, per_hour=1)
    pipeline = Pipeline(engine, AlertManager(), clock=lambda: NOW, dead_letter_budget=budget)
    assert pipeline.process([_raw(b"junk \x00", retained=True)]).dead_letters == 1
    for _reconnect in range(3):
        replay = pipeline.process([_raw(b"junk \x00", retained=True)])
        assert (replay.dead_letters, replay.dead_letters_not_kept) == (0, 0)
    live = pipeline.process([_raw(b"live junk")])  # the topic's second letter: the burst holds it
    assert (live.dead_letters, live.dead_letters_not_kept) == (1, 0)
    assert "not kept" not in [row.reason for row in _rows(engine, dead_letters)][-1]  # nothing was skipped


def test_a_retained_letter_kept_with_a_count_of_letters_not_kept_is_recognised_when_replayed(any_engine) -> None:  # type: ignore[no-untyped-def]
    """A letter kept just after its topic went over budget says how many before it were not kept (in its reason):
    the broker's replays of it after each reconnect were not recognised, and were stored, and charged, again."""
    register(any_engine, "E1", "M1")
    now = [NOW]
    budget = DeadLetterBudget(burst=1, per_hour=60)
    pipeline = Pipeline(any_engine, AlertManager(), clock=lambda: now[0], dead_letter_budget=budget)
    assert pipeline.process([_raw(b"live junk 1"), _raw(b"live junk 2")]).dead_letters_not_kept == 1
    now[0] += 60  # one letter back: the retained one takes it and says one before it was not kept
    assert pipeline.process([_raw(b"junk \x00", retained=True)]).dead_letters == 1
    for _reconnect in range(3):
        now[0] += 3600  # the budget full again: nothing but the check keeps a replay out
        replay = pipeline.process([_raw(b"junk \x00", retained=True)])
        assert (replay.dead_letters, replay.dead_letters_not_kept) == (0, 0)
    kept = [row.reason for row in _rows(any_engine, dead_letters) if row.payload == "junk \\x00"]
    assert len(kept) == 1
    assert kept[0].endswith("(and 1 earlier from this source not kept: over its dead-letter budget)")


def test_a_retained_letter_kept_plain_is_recognised_when_replayed_over_budget(any_engine) -> None:  # type: ignore[no-untyped-def]
    """The other way round: kept plain, replayed while its topic is over budget: dropped, and not counted as a
    letter not kept (the next letter kept says only the live ones)."""
    register(any_engine, "E1", "M1")
    now = [NOW]
    budget = DeadLetterBudget(burst=2, per_hour=60)
    pipeline = Pipeline(any_engine, AlertManager(), clock=lambda: now[0], dead_letter_budget=budget)
    assert pipeline.process([_raw(b"junk \x00", retained=True)]).dead_letters == 1
    over = pipeline.process([_raw(b"live junk 1"), _raw(b"live junk 2"), _raw(b"junk \x00", retained=True)])
    assert (over.dead_letters, over.dead_letters_not_kept) == (1, 1)
    now[0] += 60
    assert pipeline.process([_raw(b"live junk 3")]).dead_letters == 1
    reasons = [(row.payload, row.reason) for row in _rows(any_engine, dead_letters)]
    assert [payload for payload, _ in reasons].count("junk \\x00") == 1
    assert reasons[-1][1].endswith("(and 1 earlier from this source not kept: over its dead-letter budget)")


def test_qos0_messages_are_counted(engine) -> None:  # type: ignore[no-untyped-def]
    register(engine, "E1", "M1")
    pipeline = Pipeline(engine, AlertManager())
    result = pipeline.process([_good(0), RawMessage(TOPIC, message("M1", [(NOW - 60, 200.0)]), "M1", qos=0)])
    assert result.qos0_messages == 1 and pipeline.totals.qos0_messages == 1


def test_a_failed_batch_tells_readiness_the_error_class_only() -> None:
    """Item 1: /readyz (public) showed the SQL text of the failed INSERT to anyone."""

    def handle(_batch: list[RawMessage]) -> None:
        raise RuntimeError("INSERT INTO dead_letters (payload) VALUES ('secret elder data')")

    consumer = MqttConsumer(BrokerConfig(), handle)
    consumer._batch(0, [])
    assert consumer.store_ok is False
    assert consumer.last_error == "RuntimeError"


def _shipped_limits() -> dict[str, int]:
    conf = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
    pairs = (line.split() for line in conf.read_text().splitlines() if line and not line.startswith("#"))
    return {p[0]: int(p[1]) for p in pairs if p[0] in ("message_size_limit", "max_packet_size")}


def _publish_once(port: int, client_id: str, payloads: list[bytes], wait: bool, retain: bool = False) -> None:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    assert wait_until(pub.is_connected, 10)  # publishing before the CONNACK fails
    for payload in payloads:
        info = pub.publish(TOPIC, payload, qos=1, retain=retain)
        if wait:
            info.wait_for_publish(10)
        else:  # published, or the connection dropped by the broker
            assert wait_until(lambda info=info: info.is_published() or not pub.is_connected(), 10)  # type: ignore[misc]
    pub.loop_stop()
    pub.disconnect()


def test_the_shipped_broker_limits_and_tapwatchs_own_hold_together(tmp_path: Path) -> None:
    """Item 2 in the deployment: the shipped broker drops what is absurd; tapwatch dead-letters what is too large."""
    from core.settings import Settings, get_settings
    from tapwatch.service import Service

    limits = _shipped_limits()
    assert limits["message_size_limit"] > Settings.model_fields["mqtt_max_message_bytes"].default
    assert limits["max_packet_size"] > limits["message_size_limit"]
    broker = Mosquitto(tmp_path, "".join(f"{k} {v}\n" for k, v in limits.items()))
    broker.start()
    service = Service(
        get_settings(
            data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db'}", mqtt_url=broker.url, mqtt_client_id="lim"
        )
    )
    register(service.engine, "E1", "M1")
    service.start()
    try:
        assert wait_until(service.consumer.connected.is_set, 10)
        # Mosquitto 2.0 answers an MQTT 3.1.1 client's message over the limit by dropping it and then the
        # connection (its PUBACK carries an MQTT 5 reason code): the absurd one goes from a client of its own.
        absurd = b"x" * (limits["message_size_limit"] + 1)
        _publish_once(broker.port, "pub-absurd", [absurd], wait=False)
        _publish_once(broker.port, "pub-limits", [b"y" * 300_000, message("M1", [(NOW - 60, 1.0)])], wait=True)
        assert wait_until(lambda: len(_rows(service.engine, readings)) == 1, 15)
        (letter,) = _rows(service.engine, dead_letters)  # the 1 MiB one never left the broker
        assert letter.reason == "too large: 300000 bytes (limit 262144)" and letter.payload == "y" * 1024
        assert service.readiness()["ready"] is True
    finally:
        service.stop()
        broker.stop()


def test_replay_files_obey_the_same_meter_id_and_time_bounds(tmp_path: Path) -> None:
    """Replay (CSV) is the other way meter data comes in: the same bounds as live messages."""
    from ingest.csvsource import BadRow, iter_csv

    path = tmp_path / "r.csv"
    path.write_text(
        "meter_id,ts,total_l\n"
        "M1,2016-03-01T00:57:10+01:00,1\n"
        "M1,9999-12-31T23:59:59-14:00,2\n"
        "M1,1999-12-31T23:00:00+00:00,3\n"
        "WM\u202e,2016-03-01T00:58:10+01:00,4\n"
        "M1,2016-03-01T00:59:10+01:00,5\n"
    )
    rows = list(iter_csv(path))
    assert [type(r).__name__ for r in rows] == ["CsvReading", "BadRow", "BadRow", "BadRow", "CsvReading"]
    assert [r.reason for r in rows if isinstance(r, BadRow)] == [
        "timestamp outside the years 2000-2099",
        "timestamp outside the years 2000-2099",
        "missing or invalid meter id",
    ]


def test_large_messages_are_batched_and_held_by_bytes_not_only_by_count() -> None:
    """Item 2: 8,000 messages of 256 KiB each would have been 2 GB in the MQTT process and in one batch's pipe."""
    from multiprocessing import Pipe

    from ingest.mqttclient import BATCH_BYTES_LIMIT, INBOX_BYTES_LIMIT, ReceiverOptions, _Receiver

    ours, theirs = Pipe()
    receiver = _Receiver(BrokerConfig(), ReceiverOptions(batch_max=2000), theirs)
    payload = b"x" * (1 << 20)
    count = INBOX_BYTES_LIMIT // len(payload)
    for mid in range(1, count + 1):
        assert receiver._reading()
        receiver._on_publish_received(TOPIC, payload, mid, 1, False)
    assert not receiver._reading()  # the broker keeps the rest until the pipeline catches up
    assert receiver._batch_due()
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(ours.recv()))  # the parent's end, as in the service
    reader.start()
    receiver._send_batch()
    reader.join(30)
    ((_kind, _number, items),) = got
    assert len(items) == BATCH_BYTES_LIMIT // len(payload)
    assert receiver._reading()
    ours.close()
    theirs.close()


def test_future_reading_times_left_by_older_versions_are_set_back(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Item 3: rows written before the fix said 2100 or 9999 until fixed by hand; the monitor repairs them at start."""
    from engine.pipeline import repair_future_reading_times

    register(any_engine, "E1", "M1")
    register(any_engine, "E2", "M2", name="张伟")
    register(any_engine, "E3", "M3", name="赵敏")
    Pipeline(any_engine, AlertManager(), clock=lambda: NOW).process([_good(0), _good(1, "M3")])
    with any_engine.begin() as conn:
        conn.execute(meters.update().where(meters.c.meter_id.in_(["M1", "M2"])).values(last_reading_ts=253402300799.0))
    assert repair_future_reading_times(any_engine, NOW, 900) == 2
    with any_engine.connect() as conn:
        times = dict(conn.execute(select(meters.c.meter_id, meters.c.last_reading_ts)).all())
    assert times == {"M1": NOW - 7200, "M2": None, "M3": NOW - 7200 + 300}


def test_a_retained_message_replayed_on_resubscribe_moves_neither_last_seen_nor_battery(any_engine, mosquitto) -> None:  # type: ignore[no-untyped-def]
    """The broker replays a retained message on every subscription: old news, not the meter heard again.

    The replay set last_seen_at to its own arrival (a silent meter looked heard from at each reconnect),
    and the battery and signal back to the old message's (a battery changed since showed low again).
    """
    register(any_engine, "E1", "M1")
    pipeline = Pipeline(any_engine, AlertManager())

    def meter_row() -> Any:
        with any_engine.connect() as conn:
            return conn.execute(select(meters.c.last_seen_at, meters.c.battery_pct, meters.c.rssi)).one()

    # A relay published retained while tapwatch was down: the replay is the only copy, and is stored.
    _publish_once(mosquitto.port, "pub-retained", [message("M1", [(NOW - 3600, 100.0)], battery_pct=10)], True, True)
    consumer = MqttConsumer(BrokerConfig(url=mosquitto.url, client_id="t-retained"), pipeline.process)
    consumer.start()
    try:
        assert wait_until(lambda: pipeline.totals.readings_stored == 1, 20)
        # The meter goes on, not retained: a new battery.
        _publish_once(mosquitto.port, "pub-live", [message("M1", [(NOW - 1800, 101.0)], battery_pct=95)], True)
        assert wait_until(lambda: pipeline.totals.readings_stored == 2, 20)
    finally:
        consumer.stop()
    heard = meter_row()
    assert heard.battery_pct == 95
    consumer = MqttConsumer(BrokerConfig(url=mosquitto.url, client_id="t-retained"), pipeline.process)
    consumer.start()  # subscribes again: the broker replays the retained message
    try:
        assert wait_until(lambda: pipeline.totals.readings_in == 3, 20)
    finally:
        consumer.stop()
    assert meter_row() == heard


def test_one_meters_late_reading_does_not_make_the_batch_read_every_other_meters_days(any_engine) -> None:  # type: ignore[no-untyped-def]
    """The batch's stored keys were looked up over one time range for all its meters: one meter sending a
    reading 60 h late (or catching up days it batched) made every meter's last 60 h be read, each batch
    (on 1,000 meters with 3 days of half-hourly readings, 6-8 times as long; ``_stored_keys``).

    Checked on the queries themselves: no key lookup that names another meter spans the late meter's hours.
    """
    from sqlalchemy import event

    from store.registry import register_elder

    count = 20
    with any_engine.begin() as conn:
        for k in range(count):
            elder = {"elder_id": f"E{k}", "name": "王秀兰", "community": "大宁社区", "building": "3", "room": "5"}
            register_elder(conn, elder, f"M{k}", NOW - 72 * 3600)
    pipeline = Pipeline(any_engine, AlertManager(), clock=lambda: NOW)
    pipeline.process([_raw(message(f"M{k}", [(NOW - 1800, 300.0)]), f"M{k}", received_at=NOW) for k in range(count)])
    lookups: list[tuple[int, float]] = []  # per key lookup of readings: meters named, hours spanned

    def note(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT") and "readings" in statement and "BETWEEN" in statement:
            values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
            times = [v for v in values if isinstance(v, int | float)]
            names = {v for v in values if isinstance(v, str)}  # the list is padded to a few fixed lengths
            lookups.append((len(names), (max(times) - min(times)) / 3600.0 if times else 0.0))

    batch = [_raw(message(f"M{k}", [(NOW, 301.0)]), f"M{k}", received_at=NOW) for k in range(count)]
    # Within the late window: stored for history.
    batch[0] = _raw(message("M0", [(NOW - 60 * 3600, 150.5), (NOW, 301.0)]), "M0", received_at=NOW)
    event.listen(any_engine, "before_cursor_execute", note)
    try:
        result = pipeline.process(batch)
    finally:
        event.remove(any_engine, "before_cursor_execute", note)
    assert result.readings_stored == count + 1 and result.dead_letters == 0
    assert lookups, "no key lookup seen: the test no longer watches the query it is about"
    assert all(hours < 2.0 or names == 1 for names, hours in lookups), lookups


def _stored(engine: Any, meter_id: str) -> list[Any]:
    with engine.connect() as conn:
        query = select(readings.c.ts, readings.c.total_l, readings.c.usage_l).where(readings.c.meter_id == meter_id)
        return list(conn.execute(query.order_by(readings.c.ts)).all())


def test_a_meter_sending_readings_a_second_apart_keeps_one_a_minute_and_all_its_water(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Broken firmware read every second stored 86,400 readings a day (a disk full stops the whole city's intake)."""
    register(any_engine, "E1", "M1")
    register(any_engine, "E2", "M2", name="张伟")
    pipeline = Pipeline(any_engine, AlertManager())
    start = NOW - 6 * 3600
    thinned = 0
    for part in range(5):  # 5 messages of 1,000 readings a second apart: 0.01 L a second
        seconds = range(1000 * part, 1000 * (part + 1))
        flood = _raw(message("M1", [(start + s, 100.0 + 0.01 * s) for s in seconds]))
        quiet = _raw(message("M2", [(start + 1800 * part, 5.0 + part)]), "M2")
        result = pipeline.process([flood, quiet])
        assert result.readings_in == 1001
        thinned += result.readings_thinned
    kept = _stored(any_engine, "M1")
    assert [row.ts - start for row in kept] == [60.0 * k for k in range(84)]  # one a minute: 0 s ... 4,980 s
    assert thinned == 5000 - 84
    # Nothing of the water is lost: the intervals between the kept readings hold all of it.
    assert sum(row.usage_l for row in kept[1:]) == pytest.approx(kept[-1].total_l - 100.0)
    assert kept[-1].total_l == pytest.approx(100.0 + 0.01 * 4980)
    assert len(_stored(any_engine, "M2")) == 5  # the other meter is unaffected
    with any_engine.connect() as conn:  # the meter's last reading time is that of a reading stored
        last = conn.execute(select(meters.c.last_reading_ts).where(meters.c.meter_id == "M1")).scalar_one()
    assert last == kept[-1].ts


def test_late_readings_a_millisecond_apart_are_kept_one_a_minute(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Older than the meter's newest reading, inside the late window: each distinct time was stored."""
    register(any_engine, "E1", "M1")
    pipeline = Pipeline(any_engine, AlertManager())
    pipeline.process([_raw(message("M1", [(NOW - 3600, 500.0), (NOW - 1800, 501.0)]))])
    burst = NOW - 20 * 3600  # 1,000 readings a millisecond apart, 20 h back
    result = pipeline.process([_raw(message("M1", [(burst + k / 1000, 400.0) for k in range(1000)]))])
    assert (result.readings_stored, result.readings_thinned) == (1, 999)
    spread = NOW - 30 * 3600  # 999 readings a second apart, and one 30 s from a stored reading
    late = [(spread + k, 300.0) for k in range(999)] + [(NOW - 1830, 500.5)]
    result = pipeline.process([_raw(message("M1", late))])
    assert (result.readings_stored, result.readings_thinned) == (17, 983)
    again = pipeline.process([_raw(message("M1", late))])  # a redelivery: the kept ones are not new
    assert (again.readings_stored, again.readings_thinned) == (0, 983)
    times = [row.ts for row in _stored(any_engine, "M1")]
    assert len(times) == 2 + 1 + 17
    assert min(b - a for a, b in pairwise(times)) >= 60


def test_one_topic_sending_junk_at_full_speed_keeps_its_budget_of_dead_letters(any_engine) -> None:  # type: ignore[no-untyped-def]
    """Each dead letter keeps 8 KiB for 90 days: one account's junk at full speed filled the disk in days."""
    register(any_engine, "E1", "M1")
    register(any_engine, "E2", "M2", name="张伟")
    now = [NOW]
    budget = DeadLetterBudget(burst=100, per_hour=60)
    pipeline = Pipeline(any_engine, AlertManager(), clock=lambda: now[0], dead_letter_budget=budget)
    junk = [_raw(b"\x00junk %d" % k) for k in range(1000)]
    results = [pipeline.process([*junk[start : start + 250], _good(start // 250)]) for start in range(0, 1000, 250)]
    assert sum(r.dead_letters for r in results) == 100  # the topic's burst
    assert sum(r.dead_letters_not_kept for r in results) == 900
    assert sum(r.readings_stored for r in results) == 4  # its good readings are taken all the same
    other = pipeline.process([_raw(b"\x00other", "M2")])  # another meter's junk has its own budget
    assert (other.dead_letters, other.dead_letters_not_kept) == (1, 0)
    now[0] += 60  # a minute refills one letter: it says how many were not kept before it
    later = pipeline.process([_raw(b"\x00junk again")])
    assert later.dead_letters == 1
    with any_engine.connect() as conn:
        newest = conn.execute(select(dead_letters.c.reason).order_by(dead_letters.c.id.desc()).limit(1)).scalar_one()
    assert newest.endswith("(and 900 earlier from this source not kept: over its dead-letter budget)")


def test_a_batch_run_again_is_not_charged_twice_to_the_dead_letter_budget(engine) -> None:  # type: ignore[no-untyped-def]
    """A batch split to isolate a message the store refused runs its dead letters again: charged once."""
    register(engine, "E1", "M1")
    budget = DeadLetterBudget(burst=10, per_hour=1)
    pipeline = Pipeline(engine, AlertManager(), clock=lambda: NOW, dead_letter_budget=budget)
    _refuse_total(engine, 666.0)
    batch = [_raw(b"\x00junk %d" % k) for k in range(6)] + [_raw(message("M1", [(NOW - 600, 666.0)]))]
    result = pipeline.process(batch)  # fails whole, then in halves: 6 letters kept, and the refused message
    assert (result.set_aside, result.dead_letters, result.dead_letters_not_kept) == (1, 7, 0)
    assert (pipeline.totals.set_aside, pipeline.totals.dead_letters) == (1, 7)  # the totals count each part once
    assert pipeline.process([_raw(b"\x00more %d" % k) for k in range(5)]).dead_letters == 3  # 10 - 7 left


def test_a_meter_whose_state_another_worker_keeps_moving_does_not_hold_up_the_other_meters(postgres_server) -> None:  # type: ignore[no-untyped-def]
    """Shared-subscription workers each get some of one meter's flood of new reading times: the worker whose
    batch held it lost the race for its state on every try (the rival committed the meter again meanwhile), and
    after 8 tries the whole batch failed, the other meters' readings with it (the consumer then dropped its
    connection and waited, up to 30 s, reporting the store not ready). Now the meters that keep moving are
    set apart and the other meters' readings commit; the racing meter's go back to the broker as before."""
    from store import open_store

    engine = open_store(postgres_server.new_database())
    try:
        for k in range(4):
            register(engine, f"E{k}", f"M{k}", name=f"王秀兰{k}")
        worker, rival = Pipeline(engine, AlertManager()), Pipeline(engine, AlertManager())
        rival.process([_good(0)])
        sent = [1]
        load = worker.states.load

        def load_while_the_rival_commits(conn, meter_ids, on_findings):  # type: ignore[no-untyped-def]
            loaded = load(conn, meter_ids, on_findings)
            if "M1" in meter_ids:  # the rival commits the next of M1's readings before this batch can
                rival.process([_good(sent[0])])
                sent[0] += 1
            return loaded

        worker.states.load = load_while_the_rival_commits  # type: ignore[method-assign]
        batch = [_good(k, f"M{k}") for k in (2, 3)] + [_raw(message("M1", [(NOW - 60, 999.0)]))] + [_good(4, "M2")]
        with pytest.raises(Exception) as raised:
            worker.process(batch)
        assert _lost_a_race_error(raised.value), raised.value  # M1's message stays with the broker
        assert [len(_stored(engine, m)) for m in ("M2", "M3")] == [2, 1]  # the other meters' readings are stored
        assert worker.process(batch[:2] + batch[3:]).readings_stored == 0  # redelivered: nothing twice
    finally:
        engine.dispose()


def _lost_a_race_error(exc: BaseException) -> bool:
    from engine.pipeline import _lost_a_race

    return _lost_a_race(exc)
