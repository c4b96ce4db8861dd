"""The daily "平安" note: opted-in family contacts get one text at the elder's first water use of the day.

End to end on real Mosquitto and SQLite (opt-in through the API, readings over MQTT, the text at a
local SMS gateway, a restart in between), and the day rules on the pipeline with a chosen clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select, update

from alerts.manager import AlertManager
from alerts.notifiers import SmsGatewayNotifier
from alerts.queries import delivery_summary, parked_jobs
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.settings import get_settings
from engine.pipeline import Pipeline, RawMessage
from store.schema import daily_notes, elders, outbox, readings
from tests.alert_support import apply, finding
from tests.api_fixtures import ELDER_A, Api, add_elder, api_env  # noqa: F401
from tests.conftest import Mosquitto
from tests.helpers import message
from tests.processes import wait_until

SHANGHAI = timezone(timedelta(hours=8))
OPTED_IN = {"name": "李强", "relation": "儿子", "phone": "13900000001", "daily_note": True}
NOT_OPTED = {"name": "李梅", "relation": "女儿", "phone": "13900000002"}


@pytest.fixture
def engine(any_engine: Engine) -> Engine:
    """The day rules on SQLite and on PostgreSQL: the marker's ON CONFLICT is SQL on both."""
    return any_engine


def _count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _sms_jobs(engine: Engine) -> int:
    return _count(engine, outbox, outbox.c.notifier == "sms")


def _notes(engine: Engine) -> list[dict[str, Any]]:
    """The daily notes queued (alert texts to contacts share the channel: left out)."""
    with engine.connect() as conn:
        jobs = conn.execute(select(outbox.c.payload).where(outbox.c.notifier == "sms").order_by(outbox.c.id))
        return [p["data"] for p in jobs.scalars() if p["type"] == "org.tapwatch.daily.ok"]


def _since_local_midnight(now: float) -> float:
    local = datetime.fromtimestamp(now, SHANGHAI)
    return now - local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class _Meter:
    """Publishes a meter's readings over MQTT (QoS 1), again until the monitor has stored them."""

    def __init__(self, broker: Mosquitto, engine: Engine, meter_id: str) -> None:
        self.engine = engine
        self.meter_id = meter_id
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"meter-{meter_id}")
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, ts: float, total_l: float) -> None:
        before = _count(self.engine, readings, readings.c.meter_id == self.meter_id)

        def stored() -> bool:
            # Until the monitor's subscription is in place a message can go unread: send again (a repeat is dropped).
            self.client.publish(
                f"tapwatch/meters/{self.meter_id}/readings", message(self.meter_id, [(ts, total_l)]), qos=1
            ).wait_for_publish(5)
            return wait_until(lambda: _count(self.engine, readings, readings.c.meter_id == self.meter_id) > before, 2)

        assert wait_until(stored, 30), "the reading never reached the store"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_an_opted_in_contact_gets_one_note_a_day_even_across_a_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    from tapwatch.service import Service

    now = time.time()
    if _since_local_midnight(now) < 300:
        pytest.skip("too close to local midnight for four readings of today")  # run again in five minutes
    # Four readings a minute apart (the register keeps at most one a minute), all today and none in the future.
    start = now - 240
    gateway = WebhookReceiver(secret=b"test-secret").start()
    settings = get_settings(
        data_dir=tmp_path, mqtt_url=mosquitto.url, sms_gateway_url=gateway.url, sms_gateway_secret="test-secret"
    )
    service = Service(settings)
    meter = None
    try:
        add_elder(service.engine, {**ELDER_A, "contacts": [NOT_OPTED]})
        api = Api(service.engine, settings)
        with api.client:  # the family opts in through the API contact model
            opt_in = {"contacts": [OPTED_IN, NOT_OPTED], "reason": "家属申请"}
            changed = api.patch("cadre_a", "/elders/EA1", json=opt_in)
            assert changed.status_code == 200, changed.text
            assert [c["daily_note"] for c in changed.json()["contacts"]] == [True, False]
        service.start()
        meter = _Meter(mosquitto, service.engine, "MA1")
        meter.send(start, 100.0)
        assert _notes(service.engine) == []  # a first reading shows no use yet
        meter.send(start + 60, 103.0)  # water used: the first use of the day
        assert wait_until(lambda: len(gateway.events) == 1, 15), gateway.events
        note = gateway.events[0]
        at = datetime.fromtimestamp(start + 60, SHANGHAI).strftime("%H:%M")
        assert note["to"] == OPTED_IN["phone"] and note["text"] == f"【平安】李桂芳今天 {at} 已用水。"
        meter.send(start + 120, 106.0)  # more use the same day: no second note
        assert len(_notes(service.engine)) == 1
    finally:
        service.stop()
    restarted = Service(settings)  # a fresh process: nothing in memory says the day is done
    try:
        restarted.start()
        assert meter is not None
        meter.send(start + 180, 110.0)
        assert len(_notes(restarted.engine)) == 1 and _sms_jobs(restarted.engine) == 1
        assert _count(restarted.engine, daily_notes) == 1
    finally:
        meter and meter.close()
        restarted.stop()
        gateway.stop()


def test_the_note_is_for_today_only_and_once_per_day_across_workers(engine: Engine) -> None:
    add_elder(engine, {**ELDER_A, "contacts": [OPTED_IN, {**OPTED_IN, "name": "李强(重复)"}]})  # same phone twice
    midnight = datetime(2026, 12, 1, tzinfo=SHANGHAI).timestamp()
    clock = [midnight + 8 * 3600]  # 08:00 local on Dec 1st
    workers = [Pipeline(engine, AlertManager(["sms"]), clock=lambda: clock[0]) for _ in range(2)]

    def send(worker: Pipeline, points: list[tuple[float, float]]) -> None:
        worker.process([RawMessage("test", message("MA1", points))])

    # Yesterday's readings arriving late this morning: use, but not today's.
    send(workers[0], [(midnight - 7200, 10.0), (midnight - 5400, 14.0)])
    assert _sms_jobs(engine) == 0
    send(workers[0], [(midnight + 6 * 3600, 20.0), (midnight + 6.5 * 3600, 20.0)])  # today, but no use
    assert _sms_jobs(engine) == 0
    send(workers[1], [(midnight + 7 * 3600, 23.0)])  # 07:00: first use of the day, seen by worker 2
    send(workers[0], [(midnight + 7.5 * 3600, 25.0)])  # worker 1 sees later use: its memory knows nothing
    assert _notes(engine) == [{"to": OPTED_IN["phone"], "text": "【平安】李桂芳今天 07:00 已用水。"}]
    day2 = midnight + 86400
    clock[0] = day2 + 8 * 3600  # the next day
    # A reading after a day's silence closes a gap (use known, time not): the first timed use is 07:00.
    send(workers[0], [(day2 + 6.5 * 3600, 30.0), (day2 + 7 * 3600, 32.0)])
    assert [n["text"] for n in _notes(engine)] == ["【平安】李桂芳今天 07:00 已用水。"] * 2
    # Without a contact channel nothing is queued, and no marker is written.
    day3 = day2 + 86400
    quiet = Pipeline(engine, AlertManager(["webhook"]), clock=lambda: day3 + 8 * 3600)
    quiet.process([RawMessage("test", message("MA1", [(day3 + 6.5 * 3600, 40.0), (day3 + 7 * 3600, 42.0)]))])
    assert len(_notes(engine)) == 2 and _count(engine, daily_notes) == 2


def test_last_nights_use_is_not_todays_note_on_the_night_clocks_go_forward(engine: Engine) -> None:
    """Madrid, 29 March 2026: 02:00 CET became 03:00 CEST. A meter that uploads its night in one batch at 04:30
    showed use at 22:30-23:00 the evening before: no "today 23:00" note, and the morning's use still gets one."""
    add_elder(engine, {**ELDER_A, "tz": "Europe/Madrid", "contacts": [OPTED_IN]})
    change = datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()  # 02:00 CET -> 03:00 CEST
    clock = [change + 1.5 * 3600 + 60]  # 04:31 CEST
    worker = Pipeline(engine, AlertManager(["sms"]), clock=lambda: clock[0])
    night = [(change - 3.5 * 3600 + k * 1800, 10.0 + (4.0 if k >= 1 else 0.0)) for k in range(11)]
    assert night[1][0] == change - 3 * 3600  # 22:30-23:00 CET on the 28th: the evening's last use
    worker.process([RawMessage("test", message("MA1", night))])
    assert _notes(engine) == []
    clock[0] = change + 5 * 3600 + 60  # 08:01 CEST
    worker.process([RawMessage("test", message("MA1", [(change + 4.5 * 3600, 14.0), (change + 5 * 3600, 17.0)]))])
    assert [n["text"] for n in _notes(engine)] == ["【平安】李桂芳今天 08:00 已用水。"]


def test_a_use_in_the_half_hour_before_midnight_is_not_the_next_days_first_use(engine: Engine) -> None:
    """A flush at 23:45 before bed is yesterday's: no "today 00:00" note at midnight, the morning's use gets it."""
    add_elder(engine, {**ELDER_A, "contacts": [OPTED_IN]})
    midnight = datetime(2026, 12, 2, tzinfo=SHANGHAI).timestamp()
    clock = [midnight + 60]  # 00:01 local
    worker = Pipeline(engine, AlertManager(["sms"]), clock=lambda: clock[0])
    worker.process([RawMessage("test", message("MA1", [(midnight - 1800, 10.0), (midnight, 12.0)]))])
    assert _notes(engine) == []
    clock[0] = midnight + 7 * 3600 + 60
    worker.process([RawMessage("test", message("MA1", [(midnight + 6.5 * 3600, 12.0), (midnight + 7 * 3600, 15.0)]))])
    assert [n["text"] for n in _notes(engine)] == ["【平安】李桂芳今天 07:00 已用水。"]


def test_a_note_the_gateway_could_not_take_before_midnight_is_not_sent_as_the_next_days(engine: Engine) -> None:
    """The SMS gateway is down from the morning's use until after midnight: the family must not get "today 07:00"
    on the next day, before the elder has used any water that day. The note expires, not sent; it is not parked
    either: nobody can pass on a day's "平安" after the day, and a parked job raises the operators' alarm."""
    add_elder(engine, {**ELDER_A, "contacts": [OPTED_IN]})
    midnight = datetime(2026, 12, 3, tzinfo=SHANGHAI).timestamp()
    clock = [midnight + 7 * 3600 + 60]
    worker = Pipeline(engine, AlertManager(["sms"]), clock=lambda: clock[0])
    worker.process([RawMessage("test", message("MA1", [(midnight + 6.5 * 3600, 12.0), (midnight + 7 * 3600, 15.0)]))])
    assert [n["text"] for n in _notes(engine)] == ["【平安】李桂芳今天 07:00 已用水。"]
    gateway_up = [False]
    gateway = WebhookReceiver(respond=lambda _body: (200, {}) if gateway_up[0] else (503, {})).start()
    try:
        sender = OutboxSender(engine, {"sms": SmsGatewayNotifier(gateway.url)}, clock=lambda: clock[0], seed=3)
        while clock[0] < midnight + 86400 + 1800:  # down all day, a pass every 10 minutes
            sender.run_once()
            clock[0] += 600
        gateway_up[0] = True  # back at 00:30 on the 4th
        for _ in range(3):
            sender.run_once()
            clock[0] += 600
        assert gateway.events == []  # no "today 07:00" on a day the elder has not been seen using water
        with engine.connect() as conn:
            assert parked_jobs(conn) == []  # (the alarm TapwatchEventsParked counts these)
            assert delivery_summary(conn, clock[0])["sms"]["expired"] == 1
            job = conn.execute(select(outbox.c.status, outbox.c.last_error)).one()
        assert job.status == "expired" and "day" in job.last_error
    finally:
        gateway.stop()


def test_a_note_of_the_night_clocks_go_forward_is_not_sent_after_that_days_midnight(engine: Engine) -> None:
    """Madrid, 29 March 2026, a day of 23 hours: she used water at 00:30 CET, before the change; the gateway is down
    until 00:30 CEST on the 30th. Her day was taken as 24 hours at the offset of its morning (+1): the note stayed
    good until 01:00 CEST on the 30th and told her family "today 00:30" a day late, before she was seen that day."""
    add_elder(engine, {**ELDER_A, "tz": "Europe/Madrid", "contacts": [OPTED_IN]})
    midnight = datetime(2026, 3, 28, 23, tzinfo=UTC).timestamp()  # 00:00 CET on the 29th
    clock = [midnight + 1800 + 60]  # 00:31 CET
    worker = Pipeline(engine, AlertManager(["sms"]), clock=lambda: clock[0])
    worker.process([RawMessage("test", message("MA1", [(midnight, 12.0), (midnight + 1800, 15.0)]))])
    assert [n["text"] for n in _notes(engine)] == ["【平安】李桂芳今天 00:30 已用水。"]
    gateway = WebhookReceiver().start()
    try:
        clock[0] = datetime(2026, 3, 29, 22, 30, tzinfo=UTC).timestamp()  # 00:30 CEST on the 30th
        OutboxSender(engine, {"sms": SmsGatewayNotifier(gateway.url)}, clock=lambda: clock[0], seed=3).run_once()
        assert gateway.events == []  # not "today 00:30" on the 30th
        with engine.connect() as conn:
            assert conn.execute(select(outbox.c.status)).scalar_one() == "expired"
    finally:
        gateway.stop()


def test_a_note_still_queued_when_her_zone_changes_tells_the_time_in_her_new_zone(engine: Engine) -> None:
    """She moved to her daughter's in Urumqi while her morning's note waited for the SMS gateway: it told her family
    07:00, Shanghai's hour, and would be sent until Shanghai's midnight (Urumqi's 22:00, "today" still)."""
    add_elder(engine, {**ELDER_A, "contacts": [OPTED_IN]})  # Asia/Shanghai
    midnight = datetime(2026, 12, 3, tzinfo=SHANGHAI).timestamp()
    now = midnight + 7 * 3600 + 60
    manager = AlertManager(["sms"])
    worker = Pipeline(engine, manager, clock=lambda: now)
    worker.process([RawMessage("test", message("MA1", [(midnight + 6.5 * 3600, 12.0), (midnight + 7 * 3600, 15.0)]))])
    assert [n["text"] for n in _notes(engine)] == ["【平安】李桂芳今天 07:00 已用水。"]
    with engine.begin() as conn:
        conn.execute(update(elders).where(elders.c.elder_id == "EA1").values(tz="Asia/Urumqi"))
        manager.elder_changed(
            conn, "EA1", {"name": "李桂芳", "tz": "Asia/Shanghai"}, {"tz": "Asia/Urumqi"}, "admin", now + 60
        )
    assert [n["text"] for n in _notes(engine)] == ["【平安】李桂芳今天 05:00 已用水。"]
    with engine.connect() as conn:
        payload = conn.execute(select(outbox.c.payload).where(outbox.c.notifier == "sms")).scalar_one()
    assert payload["validuntil"] == midnight + 86400 + 2 * 3600  # Urumqi's midnight


def test_a_name_put_right_is_the_name_her_familys_queued_texts_give(engine: Engine, api: Api) -> None:
    """Her name registered wrong (李桂芳 for 李桂英) and put right while her family's texts waited for the SMS
    gateway: the level-1 text and the daily note still named her wrongly to her own son. They name her by the
    name put right, and still carry no address (her family knows where she lives)."""
    with engine.begin() as conn:
        conn.execute(update(elders).where(elders.c.elder_id == "EA1").values(contacts=[OPTED_IN]))
    midnight = datetime(2026, 12, 3, tzinfo=SHANGHAI).timestamp()
    now = midnight + 7 * 3600 + 60
    manager = AlertManager(["sms"])
    worker = Pipeline(engine, manager, clock=lambda: now)
    worker.process([RawMessage("test", message("MA1", [(midnight + 6.5 * 3600, 12.0), (midnight + 7 * 3600, 15.0)]))])
    assert apply(engine, manager, finding("MA1", ts=now, since=now - 12 * 3600), now) is not None
    texts = _family_texts(engine)
    assert len(texts) == 2 and all(t.startswith(("【平安】李桂芳今天", "【长时间未用水】李桂芳：")) for t in texts), (
        texts
    )
    renamed = api.patch("admin", "/elders/EA1", json={"name": "李桂英", "reason": "登记时名字写错"})
    assert renamed.status_code == 200, renamed.text
    texts = _family_texts(engine)
    assert texts[0] == "【平安】李桂英今天 07:00 已用水。"
    assert texts[1].startswith("【长时间未用水】李桂英：12 小时未用水。"), texts
    assert not any(word in text for text in texts for word in ("李桂芳", "7号楼", "201", ELDER_A["community"]))


def _family_texts(engine: Engine) -> list[str]:
    """The texts queued to her family (the daily note and the alert's level-1 text), oldest first."""
    with engine.connect() as conn:
        jobs = conn.execute(select(outbox.c.payload).where(outbox.c.notifier == "sms").order_by(outbox.c.id))
        return [str(p["data"]["text"]) for p in jobs.scalars()]


def _note_jobs(engine: Engine) -> list[tuple[str, str]]:
    """Each daily note queued (one contact here): its text and its job's status, oldest first."""
    with engine.connect() as conn:
        jobs = conn.execute(
            select(outbox.c.payload, outbox.c.status).where(outbox.c.notifier == "sms").order_by(outbox.c.id)
        )
        return [(p["data"]["text"], status) for p, status in jobs if p["type"] == "org.tapwatch.daily.ok"]


def test_a_queued_note_whose_day_changes_with_her_zone_takes_its_day_marker_along(engine: Engine, api: Api) -> None:
    """She moved to Urumqi (two hours behind Shanghai) while the SMS gateway was down: her note of 4 December 00:30
    (Shanghai), re-timed, told her family "today 22:30", a second note for her 3 December there, and its day marker
    stayed on 4 December, so her first use of 4 December in Urumqi sent her family nothing. The marker follows the
    note: the note is not sent (her 3 December had its note), and her 4 December in Urumqi has its own."""
    with engine.begin() as conn:
        conn.execute(update(elders).where(elders.c.elder_id == "EA1").values(contacts=[OPTED_IN]))
    midnight = datetime(2026, 12, 3, tzinfo=SHANGHAI).timestamp()
    clock = [midnight + 7 * 3600 + 60]
    worker = Pipeline(engine, AlertManager(["sms"]), clock=lambda: clock[0])

    def send(points: list[tuple[float, float]]) -> None:
        worker.process([RawMessage("test", message("MA1", points))])

    send([(midnight + 6.5 * 3600, 12.0), (midnight + 7 * 3600, 15.0)])
    clock[0] = midnight + 86400 + 1800 + 60  # 4 December 00:31 in Shanghai: up at night
    send([(midnight + 86400, 15.0), (midnight + 86400 + 1800, 18.0)])
    assert _note_jobs(engine) == [
        ("【平安】李桂芳今天 07:00 已用水。", "pending"),
        ("【平安】李桂芳今天 00:30 已用水。", "pending"),
    ]
    moved = api.patch("admin", "/elders/EA1", json={"tz": "Asia/Urumqi", "reason": "搬到女儿家"})
    assert moved.status_code == 200, moved.text
    clock[0] = midnight + 86400 + 9 * 3600 + 60  # 4 December 07:01 in Urumqi
    send([(midnight + 86400 + 8.5 * 3600, 18.0), (midnight + 86400 + 9 * 3600, 21.0)])
    assert _note_jobs(engine) == [
        ("【平安】李桂芳今天 05:00 已用水。", "pending"),
        ("【平安】李桂芳今天 22:30 已用水。", "expired"),  # her 3 December in Urumqi had its note
        ("【平安】李桂芳今天 07:00 已用水。", "pending"),  # her 4 December in Urumqi
    ]


def test_a_queued_note_that_moves_into_the_next_day_with_her_zone_is_that_days_only_note(engine: Engine) -> None:
    """The other way: she lived by Urumqi's clock and first used water at 23:00 on 3 December (home late); her
    note waited for the SMS gateway when her zone became Shanghai's: re-timed to "today 01:00" of 4 December, it
    left its marker on 3 December, and her first use at 07:00 on 4 December queued a second note for that day."""
    add_elder(engine, {**ELDER_A, "contacts": [OPTED_IN], "tz": "Asia/Urumqi"})
    urumqi = timezone(timedelta(hours=6))
    midnight = datetime(2026, 12, 3, tzinfo=urumqi).timestamp()
    clock = [midnight + 23 * 3600 + 60]
    manager = AlertManager(["sms"])
    worker = Pipeline(engine, manager, clock=lambda: clock[0])
    worker.process([RawMessage("test", message("MA1", [(midnight + 22.5 * 3600, 12.0), (midnight + 23 * 3600, 15.0)]))])
    assert _note_jobs(engine) == [("【平安】李桂芳今天 23:00 已用水。", "pending")]
    with engine.begin() as conn:
        conn.execute(update(elders).where(elders.c.elder_id == "EA1").values(tz="Asia/Shanghai"))
        was = {"name": "李桂芳", "tz": "Asia/Urumqi"}
        manager.elder_changed(conn, "EA1", was, {"tz": "Asia/Shanghai"}, "admin", clock[0] + 60)
    later = Pipeline(engine, manager, clock=lambda: midnight + 86400 + 5 * 3600 + 60)  # 07:01 in Shanghai
    later.process(
        [
            RawMessage(
                "test", message("MA1", [(midnight + 86400 + 4.5 * 3600, 15.0), (midnight + 86400 + 5 * 3600, 19.0)])
            )
        ]
    )
    assert _note_jobs(engine) == [("【平安】李桂芳今天 01:00 已用水。", "pending")]


def test_a_note_that_expired_unsent_keeps_its_day_when_her_zone_changes(engine: Engine) -> None:
    """Her note of 3 December (23:00 in Urumqi) expired unsent at her midnight (the SMS gateway was down). Then her
    zone became Shanghai's, where 23:00 in Urumqi is 01:00 on 4 December: re-timed like a note still to be sent, the
    expired note took 4 December's marker, and her first use that morning sent her family nothing. A note no one
    will send is left as it is."""
    add_elder(engine, {**ELDER_A, "contacts": [OPTED_IN], "tz": "Asia/Urumqi"})
    midnight = datetime(2026, 12, 3, tzinfo=timezone(timedelta(hours=6))).timestamp()
    clock = [midnight + 23 * 3600 + 60]
    manager = AlertManager(["sms"])
    worker = Pipeline(engine, manager, clock=lambda: clock[0])
    worker.process([RawMessage("test", message("MA1", [(midnight + 22.5 * 3600, 12.0), (midnight + 23 * 3600, 15.0)]))])
    gateway = WebhookReceiver(respond=lambda _body: (503, {})).start()
    try:
        sender = OutboxSender(engine, {"sms": SmsGatewayNotifier(gateway.url)}, clock=lambda: clock[0], seed=3)
        while clock[0] < midnight + 86400 + 1200:  # down until past her midnight, a pass every 10 minutes
            sender.run_once()
            clock[0] += 600
    finally:
        gateway.stop()
    assert _note_jobs(engine) == [("【平安】李桂芳今天 23:00 已用水。", "expired")]
    with engine.begin() as conn:
        conn.execute(update(elders).where(elders.c.elder_id == "EA1").values(tz="Asia/Shanghai"))
        manager.elder_changed(
            conn, "EA1", {"name": "李桂芳", "tz": "Asia/Urumqi"}, {"tz": "Asia/Shanghai"}, "admin", clock[0]
        )
    shanghai_7 = midnight + 86400 + 5 * 3600  # 4 December 07:00 in Shanghai
    later = Pipeline(engine, manager, clock=lambda: shanghai_7 + 60)
    later.process([RawMessage("test", message("MA1", [(shanghai_7 - 1800, 15.0), (shanghai_7, 19.0)]))])
    assert _note_jobs(engine) == [
        ("【平安】李桂芳今天 23:00 已用水。", "expired"),
        ("【平安】李桂芳今天 07:00 已用水。", "pending"),
    ]
