"""A purged elder leaves nothing personal in any table of the store: the class, not one instance.

Her data reaches the store through the real code paths (the API as a cadre and an operator would use it, the
pipeline, the alert manager, the outbox sender against a platform refusing its events); then she is retired and
purged, and every text, JSON and binary column of every table in :data:`store.schema.metadata` is scanned for
her name, address, family contact and what people wrote about her. Her elder id and meter id may stay only where
the docs keep them (the record of care: alerts, their history, the audit log; readings until their own retention).
A table added to the schema is scanned too, and fails here until the purge handles it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from alerts.manager import AlertManager
from alerts.notifiers import WebhookNotifier
from alerts.receiver import WebhookReceiver
from alerts.sender import OutboxSender
from core.domain import Finding
from core.settings import get_settings
from engine.pipeline import Pipeline
from ingest.payload import RawMessage
from store.registry import meter_context
from store.retention import DAY_S, RetentionPolicy, purge
from store.schema import daily_notes, held_findings, metadata, outbox
from tests.api_fixtures import A, Api
from tests.helpers import message

SECRET = b"platform-secret"
ELDER = {
    "elder_id": "EP7",
    "meter_id": "MP7",
    "name": "周淑华",
    "district": "静安区",
    "street": "大宁路街道",
    "community": A,
    "grid": "网格3",
    "building": "9号楼",
    "room": "东1203",
    "contacts": [{"name": "周建国", "relation": "儿子", "phone": "13812345678", "daily_note": True}],
}
#: What identifies or locates her, or what people wrote about her: found nowhere after the purge.
PERSONAL = ("周淑华", "淑华", "9号楼", "东1203", "周建国", "13812345678", "瑞金医院")
#: Where her elder id and meter id are kept after the purge, as the docs say (README "Privacy", store.retention).
IDS_KEPT = {
    "elders": {"elder_id"},
    "meters": {"meter_id", "elder_id"},
    "readings": {"meter_id"},  # until TAPWATCH_READINGS_RETENTION_DAYS, as every meter's
    "alerts": {"alert_id", "elder_id", "meter_id", "case_key", "details"},
    "alert_events": {"data"},
    "audit_log": {"target", "old", "new"},
    "influx_deletions": {"elder_id", "meter_ids"},  # until the InfluxDB writer has deleted her series there
}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _her_data(api: Api, engine: Engine, now: float) -> None:
    """Everything a district records about her in a few weeks, through the code that records it."""
    assert api.post("cadre_a", "/elders", json=ELDER).status_code == 201
    assert api.get("cadre_a", "/elders", params={"q": "淑华"}).status_code == 200  # a search, audited
    assert api.get("cadre_a", "/elders/EP7").status_code == 200  # a read of her contacts, audited
    # Readings up to noon in Beijing (her day's first use at noon's reading or before: a daily note to her son).
    noon = (now - 4 * 3600) // DAY_S * DAY_S + 4 * 3600
    pipeline = Pipeline(engine, AlertManager(["sms"]), late_window_s=60 * DAY_S, clock=lambda: noon)
    points = [(noon - 119 * 1800.0 + k * 1800.0, 10.0 + k) for k in range(120)]
    pipeline.process([RawMessage("test", message("MP7", points), "MP7")])  # readings, routine, the daily note
    with engine.connect() as conn:
        assert conn.execute(select(daily_notes)).first() is not None
    pipeline.process([RawMessage("test", b'{"meter_id": "MP7", "readings": "x"}', "MP7")])  # a dead letter
    change = {"values": {"ceiling_hours": 10}, "reason": "周淑华出院后起得晚（瑞金医院）"}
    assert api.put("op_a", "/thresholds/elder/EP7", json=change).status_code == 200
    _a_parked_case(api, engine, now)
    # Half a year at her son's, her alerts snoozed meanwhile: a silence found in it is held until its end.
    snooze = {"kind": "snooze", "start": _iso(now - 3600), "end": _iso(now + 180 * DAY_S), "reason": "住周建国家"}
    assert api.post("cadre_a", "/elders/EP7/away", json=snooze).status_code == 201
    with engine.begin() as conn:
        context = meter_context(conn, "MP7")
        assert context is not None
        AlertManager().apply(conn, context, Finding("MP7", "no_activity", "high", now, "未用水", "no use"), now)
        assert conn.execute(select(held_findings)).first() is not None  # held until the snooze ends
    retire = {"reason": "随儿子周建国迁往浦东（13812345678）"}
    assert api.post("cadre_a", "/elders/EP7/retire", json=retire).status_code == 200


def _a_parked_case(api: Api, engine: Engine, now: float) -> None:
    """A running tap: its events refused by the platform (parked), put back by an operator, refused again and
    dismissed, resolved with a note."""
    with engine.begin() as conn:
        context = meter_context(conn, "MP7")
        assert context is not None
        finding = Finding("MP7", "continuous_flow", "high", now, "水流不停", "water running")
        alert_id = AlertManager(["webhook"]).apply(conn, context, finding, now)
    assert alert_id is not None
    receiver = WebhookReceiver(secret=SECRET, respond=lambda _e: (400, {})).start()
    try:
        OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}).run_once()
        with engine.connect() as conn:
            job_id = conn.execute(select(outbox.c.id).where(outbox.c.status == "parked")).scalars().first()
        assert job_id is not None
        requeue = {"reason": "已电话告知周建国 13812345678"}
        assert api.post("op_a", f"/deliveries/parked/{job_id}/requeue", json=requeue).status_code == 200
        OutboxSender(engine, {"webhook": WebhookNotifier(receiver.url, SECRET)}).run_once()  # refused: parked again
        # Dismissed, the job leaves with the delivered ones (30 days) before her purge (90): its row is gone then.
        dismiss = {"reason": "平台不收，已告知周建国"}
        assert api.post("op_a", f"/deliveries/parked/{job_id}/dismiss", json=dismiss).status_code == 200
    finally:
        receiver.stop()
    resolved = {"outcome": "ok", "note": "周淑华在家，水龙头已关"}
    assert api.post("cadre_a", f"/alerts/{alert_id}/resolve", json=resolved).status_code == 200


def _text(value: Any) -> str:
    if isinstance(value, int | float):  # times and counts: no text of hers (and digits that match by chance)
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _found(engine: Engine) -> list[str]:
    """Every place (table.column = value) where something of hers is left that the docs do not keep."""
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    text = _text(value)
                    kept_ids = column in IDS_KEPT.get(table.name, set())
                    leaks = [p for p in PERSONAL if p in text]
                    leaks += [i for i in ("EP7", "MP7") if i in text and not kept_ids]
                    if leaks:
                        found.append(f"{table.name}.{column} = {text[:160]!r} ({', '.join(leaks)})")
    return found


def test_a_purged_elder_leaves_nothing_personal_in_any_table(any_engine: Engine) -> None:
    engine, now = any_engine, time.time()
    api = Api(engine, get_settings())
    with api.client:
        _her_data(api, engine, now)
    holding = {place.split(".")[0] for place in _found(engine)}  # the scan sees her data before the purge
    assert holding >= {"elders", "away_windows", "outbox", "daily_notes", "held_findings", "thresholds", "audit_log"}
    assert purge(engine, RetentionPolicy(), now + 100 * DAY_S).elders == 1
    assert _found(engine) == [], "\n".join(_found(engine))
