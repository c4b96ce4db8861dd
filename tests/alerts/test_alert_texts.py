"""The words a cadre reads (issue 19 item 6): guidance, not statistics, in one language at a time.

Every alert kind's text, in Chinese and in English, says what is unusual against
this elder's usual (or elders in general while learning) and ends with what to
do; Chinese uses full-width brackets only and no English words, English no
Chinese. The message each receiver gets keeps one piece of advice, its own. The
dashboard's words (state badges, threshold page units and labels) follow suit.
"""

from __future__ import annotations

import json
import re

import pytest

from alerts.messages import compose
from core.domain import DEVICE_KINDS
from core.thresholds import THRESHOLD_SPECS
from detect import messages as msg
from tests.conftest import REPO

I18N = json.loads((REPO / "api" / "static" / "i18n.json").read_text(encoding="utf-8"))
SEVEN_TEN = 7 * 3600 + 600
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")

#: kind -> (zh, en) for every text a detector raises, with the words each must contain.
TEXTS = {
    "no_activity learned": (
        "no_activity",
        msg.no_activity_learned(SEVEN_TEN, 0, 5.0, 0.9995, 2.0, "learned"),
        ("自 07:10 起已 5 小时未用水", "比平时这个时段最长的不用水时间（约 2 小时）还长了约 3 小时", "打电话"),
        ("since 07:10 (5 h)", "about 3 h longer than this elder's usual longest gap", "Phone the elder"),
    ),
    "no_activity learning": (
        "no_activity",
        msg.no_activity_learned(SEVEN_TEN, 0, 9.0, 0.999, 6.0, "prior"),
        ("一般老人", "还长了约 3 小时", "还在熟悉"),
        ("elders' usual longest gap in general", "still learning", "Phone the elder"),
    ),
    "no_activity just over": (
        "no_activity",
        msg.no_activity_learned(SEVEN_TEN, 0, 2.2, 0.99, 2.0, "learned"),
        ("超过了平时这个时段最长的不用水时间（约 2 小时）",),
        ("longer than this elder's usual longest gap",),
    ),
    "no_activity rule": (
        "no_activity",
        msg.no_activity_rule(12, 10, 3.0),
        ("过去 12 小时只用了约 3 升水", "最低 10 升", "打电话"),
        ("Only about 3 L", "last 12 h", "10 L minimum"),
    ),
    "continuous_flow": (
        "continuous_flow",
        msg.continuous_flow(
            SEVEN_TEN,
            0,
            4.0,
            0.8,
            1.5,
        ),
        ("水一直没停", "长了约 2.5 小时", "水龙头"),
        ("without a break", "about 2.5 h longer than this elder's usual", "running tap"),
    ),
    "burst": (
        "continuous_flow",
        msg.burst(300.0, 30.0, 60.0),
        ("30 分钟内用了 300 升水", "5 倍"),
        ("300 L used in 30 min", "5 times this elder's most"),
    ),
    "high_usage learned": (
        "high_usage",
        msg.daily("high_usage", 900.0, 80.0, 200.0, False),
        ("昨天用了 900 升水", "明显多于该老人平时一天的 80–200 升", "漏水"),
        ("900 L", "more than this elder's usual 80–200 L a day", "leaks"),
    ),
    "low_usage learned": (
        "low_usage",
        msg.daily("low_usage", 12.0, 80.0, 200.0, False),
        ("明显少于该老人平时", "近况"),
        ("less than this elder's usual", "how they are"),
    ),
    "low_usage bound": (
        "low_usage",
        msg.daily("low_usage", 4.0, 0.0, 0.0, True),
        ("低于每天用水的下限",),
        ("below the daily minimum",),
    ),
    "routine_change rising and volume": (
        "routine_change",
        msg.routine_change(8.5, 7.0, 60.0, 120.0)[:2],
        ("起床比以往晚约 1.5 小时", "最近约 08:30", "以往约 07:00", "每天用水比以往少", "最近约 60 升"),
        ("rises about 1.5 h later", "around 08:30, before 07:00", "uses less water", "about 60 L a day"),
    ),
    "routine_change rising": (
        "routine_change",
        msg.routine_change(8.5, 7.0, 118.0, 120.0)[:2],
        ("起床比以往晚约 1.5 小时",),
        ("rises about 1.5 h later",),
    ),
    "routine_change volume": (
        "routine_change",
        msg.routine_change(7.0, 7.0, 60.0, 120.0)[:2],
        ("每天用水比以往少", "以往约 120 升"),
        ("uses less water", "before 120 L"),
    ),
    "meter_fault": (
        "meter_fault",
        msg.meter_fault("glitch"),
        ("不可能的跳变", "不代表老人有事", "检修"),
        ("impossible amount", "not a sign about the elder"),
    ),
    "meter_offline": (
        "meter_offline",
        msg.meter_offline(6),
        ("6 小时没有上报", "无法从用水判断", "打电话"),
        ("no data for over 6 h", "phone if in doubt"),
    ),
}
ADVICE_ZH = {zh for zh, _ in msg.ADVICE.values()}
ADVICE_EN = {en for _, en in msg.ADVICE.values()}


def _zh_clean(text: str) -> None:
    assert not re.search(r"[()\[\]]", text), f"half-width brackets in Chinese: {text}"
    assert not re.search(r"[A-Za-z]{2,}", text.replace("tapwatch", "")), f"English words in Chinese: {text}"


def _en_clean(text: str) -> None:
    assert not CJK.search(text), f"Chinese in English: {text}"


@pytest.mark.parametrize("case", sorted(TEXTS))
def test_each_alert_text_says_what_is_unusual_and_what_to_do(case: str) -> None:
    _kind, (zh, en), zh_words, en_words = TEXTS[case]
    for word in zh_words:
        assert word in zh, (word, zh)
    for word in en_words:
        assert word in en, (word, en)
    assert "%" not in zh + en, "statistics, not guidance"
    assert any(zh.endswith(a) for a in ADVICE_ZH), zh
    assert any(en.endswith(a) for a in ADVICE_EN), en
    _zh_clean(zh)
    _en_clean(en)


WHO = {"name": "王秀兰", "community": "大宁社区", "building": "3号楼", "room": "502", "tz": "Asia/Shanghai"}


#: Every text with every receiver it can reach (only meter problems go to maintenance).
ROUTED = [
    (case, route)
    for case in sorted(TEXTS)
    for route in ("contact", "community", "street", "maintenance")
    if route != "maintenance" or TEXTS[case][0] in DEVICE_KINDS
]


@pytest.mark.parametrize(("case", "route"), ROUTED)
def test_each_receiver_gets_one_piece_of_advice_its_own(case: str, route: str) -> None:
    kind, (zh, en), _, _ = TEXTS[case]
    alert = {"kind": kind, "message_zh": zh, "message_en": en, "since_ts": 1_700_000_000.0, "meter_id": "WM1"}
    zh_out, en_out = compose(alert, WHO, route, "zh"), compose(alert, WHO, route, "en")
    assert not any(a in zh_out for a in ADVICE_ZH), zh_out  # the receiver's advice replaced the general one
    assert not any(a in en_out for a in ADVICE_EN), en_out
    assert zh_out.startswith("【") and "。" in zh_out
    assert not re.search(r"[()\[\]]", zh_out), zh_out
    assert zh_out.count("请") >= 1 and en_out.count("Since 11-15") == 1
    _en_clean(en_out.replace(WHO["name"], "").replace(WHO["community"], "").replace(WHO["building"], ""))


def test_the_dashboard_speaks_one_language_at_a_time() -> None:
    zh, en = I18N["zh"], I18N["en"]
    assert set(zh) == set(en)
    for key, text in zh.items():
        assert not re.search(r"[()\[\]]", text), (key, text)
    for key, text in en.items():
        if key not in ("lang.switch", "lang.switch_label"):
            _en_clean(text)


def test_a_sent_alert_does_not_read_as_handled() -> None:
    assert I18N["zh"]["state.notified"] != "已通知" and "无人接手" in I18N["zh"]["state.notified"]
    assert "no one" in I18N["en"]["state.notified"].lower()


def test_automatic_closing_names_tapwatch_and_the_time() -> None:
    for lang in ("zh", "en"):
        assert "{when}" in I18N[lang]["history.closed"] and "{who}" in I18N[lang]["history.closed"]
        assert "tapwatch" in I18N[lang]["history.system"]


def test_the_threshold_page_has_units_and_words_an_operator_knows() -> None:
    for spec in THRESHOLD_SPECS.values():
        assert f"unit.{spec.unit}" in I18N["zh"] and f"unit.{spec.unit}" in I18N["en"], spec.unit
        _zh_clean(I18N["zh"][f"unit.{spec.unit}"])
        assert "先验" not in spec.zh and "prior" not in spec.en.lower()
        _zh_clean(spec.zh)
        _en_clean(spec.en)
