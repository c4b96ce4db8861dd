"""``tapwatch register``: the checks of ``POST /elders`` per record, a non-zero exit for any bad one, upserts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, insert, select

from alerts.manager import AlertManager
from alerts.messages import local_time
from alerts.queries import alert_history
from core.domain import Finding
from store.registry import meter_context
from store.schema import alerts, audit_log, elders, meters, outbox, thresholds
from tapwatch.cli import main
from tapwatch.storecli import REGISTER_ACTOR


def _elder(elder_id: str, meter_id: str, **extra: Any) -> dict[str, Any]:
    return {"elder_id": elder_id, "meter_id": meter_id, "name": "赵秀英", "community": "延长新村居委会", **extra}


@pytest.fixture
def register(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("TAPWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TAPWATCH_DATABASE_URL", raising=False)
    assert main(["migrate"]) == 0
    capsys.readouterr()

    def run(records: Any) -> tuple[int, str, str]:
        path = tmp_path / "elders.json"
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        code = main(["register", str(path)])
        out = capsys.readouterr()
        return code, out.out, out.err

    run.engine = create_engine(f"sqlite:///{tmp_path / 'tapwatch.db'}")  # type: ignore[attr-defined]
    return run


def _stored(register: Any) -> dict[str, dict[str, Any]]:
    with register.engine.connect() as conn:
        return {r.elder_id: dict(r._mapping) for r in conn.execute(select(elders))}


def test_bad_records_are_named_refused_and_exit_non_zero_while_good_ones_register(register: Any) -> None:
    code, out, err = register(
        [
            _elder("E1", "M1"),
            _elder("E2", "M2", tz="Mars/Olympus"),
            {"elder_id": "E3", "name": "钱", "community": "延长新村居委会"},
            _elder("E4", "M4", name="王\x07芳"),
        ]
    )
    assert code == 1
    assert "record 2 (E2): tz: unknown time zone 'Mars/Olympus'" in err
    assert "record 3 (E3): meter_id: missing" in err
    assert "record 4 (E4): name:" in err
    assert "Traceback" not in err
    assert "registered 1 elders, updated 0, 0 unchanged, 3 refused" in out
    assert set(_stored(register)) == {"E1"}


def test_a_meter_of_another_elder_is_refused_with_its_owner(register: Any) -> None:
    assert register([_elder("E1", "M1")])[0] == 0
    code, _out, err = register([_elder("E1", "M1"), _elder("E9", "M1")])
    assert code == 1
    assert "record 2 (E9): meter 'M1' is already registered to elder 'E1'" in err
    assert set(_stored(register)) == {"E1"}


def test_running_a_changed_file_again_updates_and_says_what_changed(register: Any) -> None:
    assert register([_elder("E1", "M1", room="301"), _elder("E2", "M2")])[0] == 0
    with register.engine.connect() as conn:
        version = conn.execute(select(meters.c.state_version).where(meters.c.meter_id == "M1")).scalar()
    code, out, err = register([_elder("E1", "M1", room="302", tz="Asia/Urumqi"), _elder("E2", "M2")])
    assert (code, err) == (0, "")
    assert "registered 0 elders, updated 1, 1 unchanged, 0 refused" in out
    assert "updated E1 (room, tz)" in out
    stored = _stored(register)["E1"]
    assert (stored["room"], stored["tz"]) == ("302", "Asia/Urumqi")
    with register.engine.connect() as conn:
        # Workers reload the meter (its elder's time zone changed), and the change is audited.
        assert conn.execute(select(meters.c.state_version).where(meters.c.meter_id == "M1")).scalar() > version
        trail = conn.execute(select(audit_log.c.actor, audit_log.c.action, audit_log.c.old, audit_log.c.new)).all()
    # What each changed field was and became, as PATCH /elders records it: a wrong file can be put right from it.
    old, new = {"room": "301", "tz": "Asia/Shanghai"}, {"room": "302", "tz": "Asia/Urumqi"}
    assert (REGISTER_ACTOR, "elder.update", old, new) in [tuple(r) for r in trail]


def test_a_changed_contact_is_audited_as_a_count_never_the_phone_numbers(register: Any) -> None:
    son = {"name": "赵伟", "relation": "儿子", "phone": "13800000000"}
    daughter = {"name": "赵芳", "relation": "女儿", "phone": "13900000000"}
    assert register([_elder("E1", "M1", contacts=[son])])[0] == 0
    assert register([_elder("E1", "M1", contacts=[son, daughter])])[0] == 0
    with register.engine.connect() as conn:
        old, new = conn.execute(
            select(audit_log.c.old, audit_log.c.new).where(audit_log.c.action == "elder.update")
        ).one()
    assert (old, new) == ({"contacts": "1 contacts"}, {"contacts": "2 contacts"})


def test_a_changed_meter_is_refused_not_silently_ignored(register: Any) -> None:
    assert register([_elder("E1", "M1")])[0] == 0
    code, _out, err = register([_elder("E1", "M7")])
    assert code == 1 and "elder 'E1' has meter 'M1', not 'M7'" in err


def test_two_records_of_one_elder_in_a_file_are_both_refused_not_the_first_overwritten(register: Any) -> None:
    """Two people given one elder id (a copy-paste): the second record silently overwrote the first's name and door,
    exit status 0, and her cadre went to the wrong flat. Which record is right cannot be told: neither is taken."""
    first, other = _elder("E1", "M1", name="赵秀英", room="301"), _elder("E1", "M1", name="钱桂兰", room="502")
    code, out, err = register([first, _elder("E2", "M2"), other])
    assert code == 1
    for number in (1, 3):
        assert f"record {number} (E1): elder 'E1' is given by records 1, 3: one record per elder" in err
    assert "registered 1 elders, updated 0, 0 unchanged, 2 refused" in out
    assert set(_stored(register)) == {"E2"}
    # Registered already, she is not updated by either.
    assert register([_elder("E1", "M1", room="301")])[0] == 0
    code, _out, _err = register([_elder("E1", "M1", room="401"), _elder("E1", "M1", room="502")])
    assert code == 1 and _stored(register)["E1"]["room"] == "301"


def test_a_file_that_is_not_a_list_of_records_is_refused(register: Any) -> None:
    code, _out, err = register({"elder_id": "E1"})
    assert code == 2 and "expected a JSON list" in err


def test_fields_left_out_of_the_file_keep_their_stored_values(register: Any) -> None:
    contacts = [{"name": "赵伟", "relation": "儿子", "phone": "13800000000"}]
    assert register([_elder("E1", "M1", contacts=contacts)])[0] == 0
    code, out, _err = register([_elder("E1", "M1", room="5")])
    assert code == 0 and "updated E1 (room)" in out
    assert _stored(register)["E1"]["contacts"] == contacts


def test_elders_without_a_zone_get_the_configured_one_stored(register: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPWATCH_TIMEZONE", "Europe/Madrid")
    assert register([_elder("E1", "M1"), _elder("E2", "M2", tz="Atlantic/Canary")])[0] == 0
    assert {k: e["tz"] for k, e in _stored(register).items()} == {"E1": "Europe/Madrid", "E2": "Atlantic/Canary"}
    # Stored with the elder: a later change of the setting does not move her, nor does a record without tz.
    monkeypatch.setenv("TAPWATCH_TIMEZONE", "Asia/Shanghai")
    code, out, _err = register([_elder("E1", "M1", room="5")])
    assert code == 0 and "updated E1 (room)" in out
    assert _stored(register)["E1"]["tz"] == "Europe/Madrid"


def test_a_move_to_another_community_is_audited_in_the_community_she_left_too(register: Any) -> None:
    assert register([_elder("E1", "M1")])[0] == 0
    code, out, _err = register([_elder("E1", "M1", community="大宁社区")])
    assert code == 0 and "updated E1 (community)" in out
    with register.engine.connect() as conn:
        query = select(audit_log.c.community, audit_log.c.new, audit_log.c.reason).where(
            audit_log.c.action == "elder.update"
        )
        rows = conn.execute(query).all()
    seen_in = {community: new for community, new, _ in rows}
    # The operators of each community read the audit of their own: the one she left sees where she went.
    assert set(seen_in) == {"延长新村居委会", "大宁社区"}
    assert seen_in["延长新村居委会"]["community"] == "大宁社区"
    assert {reason for *_, reason in rows} == {"tapwatch register elders.json"}  # both name the file


def test_a_move_to_a_community_whose_thresholds_clash_with_her_own_is_refused(register: Any) -> None:
    assert register([_elder("E1", "M1")])[0] == 0
    with register.engine.begin() as conn:
        for scope, scope_id, name, value in (
            ("elder", "E1", "daily_min_l", 500),
            ("community", "大宁社区", "daily_max_l", 400),
        ):
            row = {"scope": scope, "scope_id": scope_id, "name": name, "value": value}
            conn.execute(insert(thresholds).values(**row, updated_at=0.0, updated_by="t"))
    code, _out, err = register([_elder("E1", "M1", community="大宁社区")])
    # Her monitor would refuse its thresholds on every load: each of her readings a dead letter.
    assert code == 1 and "record 1 (E1): her own thresholds do not fit community '大宁社区'" in err, err
    assert "daily_min_l" in err
    assert _stored(register)["E1"]["community"] == "延长新村居委会"


def test_an_elders_open_alert_follows_her_to_her_new_community(register: Any) -> None:
    assert register([_elder("E1", "M1")])[0] == 0
    now = time.time()
    with register.engine.begin() as conn:
        context = meter_context(conn, "M1")
        assert context is not None
        finding = Finding("M1", "no_activity", "high", now, "未用水", "no use")
        alert_id = AlertManager().apply(conn, context, finding, now)
    assert register([_elder("E1", "M1", community="大宁社区")])[0] == 0
    with register.engine.connect() as conn:
        community = conn.execute(select(alerts.c.community).where(alerts.c.alert_id == alert_id)).scalar()
        assert alert_id is not None
        history = alert_history(conn, alert_id)
    # As with PATCH /elders: her new community's workers see and work her case, the old one no longer does.
    assert community == "大宁社区"
    # ...and learn it at once: the move is an event of the case (their live pages, the platform)
    assert (history[-1]["type"], history[-1]["actor"]) == ("moved", REGISTER_ACTOR)
    assert history[-1]["data"]["moved_from"] == "延长新村居委会"


def _queued_case(engine: Any, meter_id: str, ts: float) -> None:
    """A case of ``meter_id``'s elder whose steps wait in the webhook's outbox (its receiver down, say)."""
    f = Finding(meter_id, "no_activity", "high", ts, "12 小时未用水。", "No use for 12 h.", since=ts - 12 * 3600)
    with engine.begin() as conn:
        context = meter_context(conn, meter_id)
        assert context is not None
        assert AlertManager(["webhook"]).apply(conn, context, f, ts) is not None


def _unsent(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [r.payload["data"] for r in conn.execute(select(outbox.c.payload).where(outbox.c.status != "sent"))]


def test_a_new_room_is_the_door_her_case_s_queued_steps_name(register: Any) -> None:
    """A record giving her a new room (no move) left her case's steps still queued naming the old door."""
    assert register([_elder("E1", "M1", building="3号楼", room="502")])[0] == 0
    _queued_case(register.engine, "M1", 1_790_000_000.0)
    code, out, _err = register([_elder("E1", "M1", building="3号楼", room="601")])
    assert code == 0 and "updated E1 (room)" in out
    steps = _unsent(register.engine)
    assert len(steps) >= 2  # raised, the work order
    for step in steps:
        assert step["who"]["room"] == "601"
        assert "赵秀英（延长新村居委会 3号楼 601）：" in step["text"]["zh"] and "502" not in step["text"]["zh"]


def test_a_new_time_zone_is_the_zone_her_case_s_queued_steps_say_since_when_in(register: Any) -> None:
    """A record giving her a new time zone left her case's steps still queued saying since when in the old one."""
    ts = 1_790_000_000.0
    assert register([_elder("E1", "M1", tz="Asia/Shanghai")])[0] == 0
    _queued_case(register.engine, "M1", ts)
    code, out, _err = register([_elder("E1", "M1", tz="Europe/Madrid")])
    assert code == 0 and "updated E1 (tz)" in out
    was, now = local_time(ts - 12 * 3600, "Asia/Shanghai"), local_time(ts - 12 * 3600, "Europe/Madrid")
    steps = _unsent(register.engine)
    assert len(steps) >= 2  # raised, the work order
    for step in steps:
        assert f"自 {now} 起。" in step["text"]["zh"] and was not in step["text"]["zh"]
        assert f"Since {now}." in step["text"]["en"]


def test_registering_an_elder_takes_her_row_lock_once(register: Any) -> None:
    """Reading her zone before the change and the change itself each took her row's lock, in one transaction."""
    assert register([_elder("E1", "M1"), _elder("E2", "M2")])[0] == 0
    locks: list[str] = []

    def count_locks(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE elders SET elder_id="):  # store.registry.lock_elder
            locks.append(statement)

    event.listen(Engine, "before_cursor_execute", count_locks)
    try:
        assert register([_elder("E1", "M1", room="302"), _elder("E2", "M2"), _elder("E3", "M3")])[0] == 0
    finally:
        event.remove(Engine, "before_cursor_execute", count_locks)
    assert len(locks) == 3  # one per record: a change, none, a new elder


def test_a_record_is_named_in_a_few_characters_whatever_its_elder_id(register: Any) -> None:
    """A refused record was named by its elder id as the file wrote it, any text: a damaged file's 1 MB id was a
    1 MB line on stderr (three, given by three records), a terminal's control sequence (ESC) went to the terminal."""
    huge, escape = "E" * 1_000_000, "\x1b[2J"
    records = [_elder(huge, "M1"), _elder(huge, "M2"), _elder(huge, "M3"), _elder(escape, "M4"), _elder("E5", "M5")]
    code, out, err = register(records)
    assert code == 1 and "registered 1 elders" in out and "4 refused" in out
    lines = err.splitlines()
    assert len(lines) == 4 and all(len(line) < 300 for line in lines), [line[:100] for line in lines]
    assert "\x1b" not in err and "EEEE" in lines[0] and "records 1, 2, 3" in lines[0]
