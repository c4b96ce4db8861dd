"""A real ``tapwatch demo`` run shows the product as meant (issue 19 item 3).

Every planned reading reaches the store through the embedded broker (the history burst used to be
published before the monitor had subscribed, and about half of it was dropped), history starts on
the first simulated day, healthy elders raise nothing, and the scripted fall gives one learned alert
with a handful of events that goes to the emergency contact (a stand-in SMS gateway) first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo_fixtures import RunningDemo
from tests.helpers import this_tree
from tests.processes import wait_until

#: Events of the fall's alert by the time the demo has published everything: raised, texted to the
#: contact (escalated, level 1), delivered to the platform (notified). A few more would still be a handful.
MAX_FALL_EVENTS = 5


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    running = RunningDemo(tmp_path_factory.mktemp("demo")).start()
    try:
        yield running
    finally:
        assert running.stop(), "the demo did not stop within STOP_WAIT_S of SIGTERM (a service manager would kill it)"


def _planned() -> tuple[int, float, str]:
    """(readings the demo's simulation delivers, the first reading's time, the fallen elder's id)."""
    from simulator import demo_config, simulate
    from tapwatch.demo import DEMO_DAYS, HISTORY_DAYS, _demo_start

    sim = simulate(demo_config(start=_demo_start(days=DEMO_DAYS), days=DEMO_DAYS, history_days=HISTORY_DAYS))
    fall = next(lab for lab in sim.labels if lab.category == "incident")
    fallen = next(e["elder_id"] for e in sim.elders if e["meter_id"] == fall.meter_id)
    return len(sim.ts), float(sim.ts.min()), fallen


def _one(db: Path, sql: str) -> object:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


def test_demo_stores_every_reading_and_raises_only_the_fall(demo: RunningDemo) -> None:
    planned, first_ts, fallen = _planned()
    assert demo.wait_for("simulated meters finished publishing", 300), demo.output()[-3000:]
    stored = lambda: _one(demo.db, "SELECT count(*) FROM readings")  # noqa: E731
    assert wait_until(lambda: stored() == planned, 60), f"{stored()} of {planned} readings stored"
    assert _one(demo.db, "SELECT count(*) FROM dead_letters") == 0
    assert _one(demo.db, "SELECT min(ts) FROM readings") == pytest.approx(first_ts)

    with sqlite3.connect(demo.db) as conn:
        alerts = conn.execute("SELECT alert_id, elder_id, kind, basis, escalation_level FROM alerts").fetchall()
        assert [(a[1], a[2], a[3]) for a in alerts] == [(fallen, "no_activity", "learned")], alerts
        alert_id, *_rest, level = alerts[0]
        assert level == 1, "the emergency contact is texted first; the work order waits 15 minutes"
        events = [t for (t,) in conn.execute("SELECT type FROM alert_events WHERE alert_id = ?", (alert_id,))]
    assert events[0] == "raised" and "escalated" in events and len(events) <= MAX_FALL_EVENTS, events
    assert "[短信/SMS 紧急联系人" in demo.output()
    assert "learning period: " in demo.output()


def test_demo_never_resets_a_directory_it_did_not_make(tmp_path: Path) -> None:
    """`tapwatch demo --data-dir var` (the monitor's TAPWATCH_DATA_DIR) deleted the directory whole, the
    production store with every elder and alert in it, because the demo resets its directory on each run."""
    import subprocess
    import sys

    from tapwatch.broker import free_port

    production = tmp_path / "var"
    production.mkdir()
    (production / "tapwatch.db").write_bytes(b"the district's store")
    env = this_tree({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    command = [sys.executable, "-m", "tapwatch.cli", "demo", "--data-dir", str(production)]
    command += ["--port", str(free_port()), "--mqtt-port", str(free_port()), "--exit-after", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert (production / "tapwatch.db").read_bytes() == b"the district's store"
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--data-dir" in done.stderr and "Traceback" not in done.stderr


def test_the_demos_own_directory_from_before_the_mark_is_still_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` after an upgrade: var/demo was made by a demo that left no mark, and is the demo's all the same."""
    from tapwatch import demo

    monkeypatch.chdir(tmp_path)
    old = tmp_path / "var" / "demo"
    old.mkdir(parents=True)
    (old / "tapwatch.db").write_bytes(b"last week's demo")
    (tmp_path / "var" / "tapwatch.db").write_bytes(b"the district's store")
    demo._reset(Path(demo.DEMO_DIR))
    assert sorted(p.name for p in old.iterdir()) == [demo.DEMO_MARK]
    with pytest.raises(ValueError, match="not a directory the demo made"):
        demo._reset(tmp_path / "var")
    assert (tmp_path / "var" / "tapwatch.db").read_bytes() == b"the district's store"


def test_the_demo_never_uses_the_districts_channels_or_stores(tmp_path: Path) -> None:
    """`make demo` in the deployment's checkout (/opt/tapwatch, beside its .env) took every TAPWATCH_* setting
    of .env it did not set itself: the district's WeCom and DingTalk robots (simulated elders' falls posted
    into the community workers' real groups, each a call or a visit), its InfluxDB (simulated readings in
    the real history), and its MQTT 5 shared group (then the demo refused to start: the embedded broker speaks
    3.1.1). The demo runs on its own stand-ins only."""
    import json
    import urllib.error
    import urllib.request

    (tmp_path / ".env").write_text(
        "TAPWATCH_WECOM_ROBOT_URL=http://127.0.0.1:9/cgi-bin/webhook/send?key=district-group\n"
        'TAPWATCH_DINGTALK_COMMUNITY_ROBOTS={"延长新村居委会": "http://127.0.0.1:9/robot/send?access_token=c1"}\n'
        'TAPWATCH_ALERT_NOTIFIERS=["webhook", "sms", "wecom", "dingtalk"]\n'
        "TAPWATCH_INFLUX_URL=http://127.0.0.1:9\n"
        "TAPWATCH_INFLUX_TOKEN=district-token\n"
        "TAPWATCH_MQTT_PROTOCOL=5\n"
        "TAPWATCH_MQTT_SHARED_GROUP=tapwatch\n",
        encoding="utf-8",
    )
    demo = RunningDemo(tmp_path).start()
    try:
        try:
            with urllib.request.urlopen(f"{demo.base}/readyz", timeout=10) as answer:
                ready = json.load(answer)
        except urllib.error.HTTPError as not_ready:  # 503 still says which channels run
            ready = json.load(not_ready)
    finally:
        demo.stop()
    assert ready["delivery"]["channels"] == ["sms", "webhook"], ready
    assert "influx" not in ready, ready


def test_a_later_event_of_a_case_prints_without_an_empty_address() -> None:
    from tapwatch.demo import event_line

    raised = {
        "type": "tapwatch.alert.raised",
        "data": {
            "kind_label": {"zh": "长时间未用水"},
            "elder_id": "E1",
            "who": {"name": "谢志刚", "community": "延长新村", "building": "15号楼", "room": "104室"},
            "message": {"zh": "已 9.5 小时未用水"},
        },
    }
    later = {
        "type": "tapwatch.alert.escalated",
        "data": {"kind_label": {"zh": "长时间未用水"}, "elder_id": "E1", "message": {"zh": "已 9.5 小时未用水"}},
    }
    assert (
        event_line(raised)
        == "[网格平台/grid platform] raised: 长时间未用水 · 谢志刚 延长新村15号楼104室 — 已 9.5 小时未用水"
    )
    assert event_line(later) == "[网格平台/grid platform] escalated: 长时间未用水 · E1 — 已 9.5 小时未用水"
