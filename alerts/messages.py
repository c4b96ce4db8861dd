"""Human-readable alert texts, Chinese by default and English on request.

Each text says who (name as registered, community, building/room), what was
seen and what is normal for this elder (the detector's message says both; a
separate ``details["normal"] = {"zh": ..., "en": ...}`` is added when given),
since when, and what to do. The detector's message ends with general advice
(:data:`detect.messages.ADVICE`); here it gives way to advice for this receiver.
Each receiver gets only what it needs: the emergency contact already knows
the elder's address, maintenance needs the meter and the door but not the
elder's habits.

>>> alert = {"kind": "no_activity", "message_zh": "12 小时未用水。", "message_en": "No use for 12 h.",
...          "since_ts": 1_700_000_000.0, "details": {"normal": {"zh": "通常 3 小时内会用水。",
...          "en": "Usually uses water within 3 h."}}}
>>> who = {"name": "王秀兰", "community": "大宁社区", "building": "3号楼", "room": "502", "tz": "Asia/Shanghai"}
>>> print(compose(alert, who, "contact", "zh"))
【长时间未用水】王秀兰：12 小时未用水。自 11-15 06:13 起。请现在给老人打电话确认平安；如联系不上，请告知社区。
>>> print(compose(alert, who, "community", "en"))
[No water use] 王秀兰 (大宁社区 3号楼 502): No use for 12 h. Normally: Usually uses water within 3 h.
Since 11-15 06:13. Phone the elder now; if there is no answer, visit as soon as possible.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.domain import DEVICE_KINDS
from detect.messages import ADVICE

KIND_LABELS = {
    "no_activity": ("长时间未用水", "No water use"),
    "continuous_flow": ("持续用水", "Continuous water flow"),
    "high_usage": ("用水量异常偏高", "Unusually high use"),
    "low_usage": ("用水量异常偏低", "Unusually low use"),
    "routine_change": ("生活规律变化", "Change in routine"),
    "meter_offline": ("水表离线", "Meter offline"),
    "meter_fault": ("水表故障", "Meter fault"),
}

# What to do, by kind and by who receives it.
_TODO_COMMUNITY = {
    "no_activity": (
        "请立即电话联系老人；联系不上请尽快上门查看。",
        "Phone the elder now; if there is no answer, visit as soon as possible.",
    ),
    "continuous_flow": (
        "请联系老人确认是否忘关水龙头或漏水；必要时上门。",
        "Ask the elder whether a tap was left open or a pipe leaks; visit if needed.",
    ),
}
_TODO_COMMUNITY_DEFAULT = (
    "请联系老人了解近况；如有异常请上门查看。",
    "Contact the elder to see how they are; visit if anything seems wrong.",
)
_TODO_CONTACT = (
    "请现在给老人打电话确认平安；如联系不上，请告知社区。",
    "Please phone them now to check they are well; if they do not answer, tell the community office.",
)
_TODO_STREET = (
    "社区工单已超时未确认，请街道督办。",
    "The community work order has not been acknowledged in time; please follow it up.",
)
_TODO_MAINTENANCE = ("请安排水务人员检修水表。", "Please send the water utility to check the meter.")


def kind_label(kind: str, language: str = "zh") -> str:
    """>>> kind_label("meter_fault", "en")
    'Meter fault'
    """
    zh, en = KIND_LABELS.get(kind, (kind, kind))
    return zh if language == "zh" else en


#: How a text says a local time: ``MM-DD HH:MM``.
LOCAL_TIME = "%m-%d %H:%M"
#: Where :func:`compose` says since when, by language: the local time is the group.
_SINCE = (re.compile(r"自 (\d\d)-(\d\d) (\d\d):(\d\d) 起。"), re.compile(r"Since (\d\d)-(\d\d) (\d\d):(\d\d)\."))


def _zone(tz: str | None) -> ZoneInfo:
    """The elder's own time zone (Shanghai if unknown)."""
    try:
        return ZoneInfo(tz or "Asia/Shanghai")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("Asia/Shanghai")


def local_time(ts: float, tz: str | None) -> str:
    """``MM-DD HH:MM`` in the elder's own time zone (Shanghai if unknown)."""
    return datetime.fromtimestamp(ts, UTC).astimezone(_zone(tz)).strftime(LOCAL_TIME)


def local_day(ts: float, tz: str | None) -> str:
    """``YYYY-MM-DD``, the date in the elder's own time zone (Shanghai if unknown) at ``ts``.

    >>> local_day(1_700_000_000.0, "Asia/Shanghai"), local_day(1_700_000_000.0, "America/New_York")
    ('2023-11-15', '2023-11-14')
    """
    return datetime.fromtimestamp(ts, UTC).astimezone(_zone(tz)).date().isoformat()


def local_day_end(ts: float, tz: str | None) -> float:
    """The end (the next local midnight) of the day in the elder's time zone that holds ``ts``, epoch seconds: a day
    of 23 or 25 hours where the clocks change.

    >>> local_day_end(1_774_747_800.0, "Europe/Madrid")  # 29 March 2026, 01:30 UTC: its day ends at 22:00 UTC
    1774821600.0
    """
    zone = _zone(tz)
    there = datetime.fromtimestamp(ts, UTC).astimezone(zone)
    return (datetime(there.year, there.month, there.day, tzinfo=zone) + timedelta(days=1)).timestamp()


def _place(who: Mapping[str, Any], language: str) -> str:
    parts = [str(who.get(k) or "") for k in ("community", "building", "room")]
    place = " ".join(p for p in parts if p)
    if not place:
        return ""
    return f"（{place}）" if language == "zh" else f" ({place})"


def _normal(alert: Mapping[str, Any], language: str) -> str:
    normal = (alert.get("details") or {}).get("normal")
    if isinstance(normal, Mapping) and normal.get(language):
        return f"平时：{normal[language]}" if language == "zh" else f"Normally: {normal[language]}"
    return ""


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def grouped_note(alert: Mapping[str, Any], route: str, language: str = "zh") -> str:
    """What the case grouped (:mod:`alerts.grouping`): a maintenance case's occurrence, a case's other kinds.

    >>> case = {"kind": "meter_offline", "details": {"kinds": ["meter_offline"], "occurrences": 3}}
    >>> grouped_note(case, "maintenance"), grouped_note(case, "maintenance", "en")
    ('此表近期第 3 次。', '3rd time recently for this meter.')
    >>> grouped_note({"kind": "no_activity", "details": {"kinds": ["no_activity", "continuous_flow"]}}, "community")
    '同一警报还有：持续用水。'
    """
    zh = language == "zh"
    kind = str(alert["kind"])
    details = alert.get("details") or {}
    others = [str(k) for k in details.get("kinds") or [] if k != kind]
    if route == "maintenance":
        n = int(details.get("occurrences") or 1)
        if n > 1:
            return f"此表近期第 {n} 次。" if zh else f"{_ordinal(n)} time recently for this meter."
        return ""
    if others:
        labels = ("、" if zh else ", ").join(kind_label(k, language) for k in others)
        return f"同一警报还有：{labels}。" if zh else f"Same case also: {labels}."
    return ""


def _todo(kind: str, route: str) -> tuple[str, str]:
    if kind in DEVICE_KINDS or route == "maintenance":
        return _TODO_MAINTENANCE
    if route == "contact":
        return _TODO_CONTACT
    if route == "street":
        return _TODO_STREET
    return _TODO_COMMUNITY.get(kind, _TODO_COMMUNITY_DEFAULT)


def _without_advice(text: str, language: str) -> str:
    """The detector's message without its closing general advice (the receiver gets its own)."""
    for zh, en in ADVICE.values():
        advice = zh if language == "zh" else " " + en
        if text.endswith(advice):
            return text.removesuffix(advice)
    return text


def compose(alert: Mapping[str, Any], who: Mapping[str, Any], route: str, language: str = "zh") -> str:
    """One message for one receiver; ``route`` is contact, community, street or maintenance."""
    zh = language == "zh"
    kind = str(alert["kind"])
    label = kind_label(kind, language)
    head = f"【{label}】" if zh else f"[{label}] "
    if route == "maintenance":  # the utility needs the meter and the door, not the elder's habits
        subject = (f"水表 {alert.get('meter_id', '')}" if zh else f"Meter {alert.get('meter_id', '')}") + _place(
            who, language
        )
    elif route == "contact":  # the contact knows where the elder lives
        subject = str(who.get("name", ""))
    else:
        subject = f"{who.get('name', '')}{_place(who, language)}"
    seen = _without_advice(str(alert["message_zh"] if zh else alert["message_en"]), language)
    parts = [f"{head}{subject}{'：' if zh else ': '}{seen}"]
    if route in ("community", "street"):
        parts.append(_normal(alert, language))
    parts.append(grouped_note(alert, route, language))
    if alert.get("since_ts") is not None:
        when = local_time(float(alert["since_ts"]), who.get("tz"))
        parts.append(f"自 {when} 起。" if zh else f"Since {when}.")
    parts.append(_todo(kind, route)[0 if zh else 1])
    return ("" if zh else " ").join(p for p in parts if p)


def compose_both(alert: Mapping[str, Any], who: Mapping[str, Any], route: str) -> dict[str, str]:
    return {"zh": compose(alert, who, route, "zh"), "en": compose(alert, who, route, "en")}


def readdress(text: str, was: Mapping[str, Any], now: Mapping[str, Any], language: str = "zh") -> str:
    """``text`` (by :func:`compose`, for ``was``) saying who ``now`` is and where she lives: its subject, only.

    The name is found where compose puts it, right after the kind's label; the place where compose puts it, in
    brackets right before the colon that ends the subject: a word of the message equal to a community's name
    (one letter, say) is left alone.

    >>> was = {"name": "王秀兰", "community": "A", "building": "3号楼", "room": "502"}
    >>> now = {**was, "community": "B", "building": "1号楼", "room": "101"}
    >>> readdress("【长时间未用水】王秀兰（A 3号楼 502）：12 小时未用水。", was, now)
    '【长时间未用水】王秀兰（B 1号楼 101）：12 小时未用水。'
    >>> readdress("[No water use] 王秀兰 (A 3号楼 502): A tap ran (A 3号楼 502): 12 h.", was, now, "en")
    '[No water use] 王秀兰 (B 1号楼 101): A tap ran (A 3号楼 502): 12 h.'
    >>> readdress("【水表故障】水表 M1（A 3号楼 502）：王秀兰…", was, {**was, "name": "王秀英"})  # a meter's subject
    '【水表故障】水表 M1（A 3号楼 502）：王秀兰…'
    """
    text = _renamed(text, str(was.get("name") or ""), str(now.get("name") or ""), language)
    colon = "：" if language == "zh" else ": "
    old = _place(was, language) + colon
    if not _place(was, language) or old not in text:
        return text
    return text.replace(old, _place(now, language) + colon, 1)


def renamed(text: str, was: str | None, now: str | None) -> str:
    """``text`` (by :func:`compose` or :func:`daily_note`, either language) naming ``now`` where its subject names
    ``was``: what a text to her family needs when her name is put right (it carries no address to change).

    >>> renamed("【平安】王秀兰今天 06:13 已用水。", "王秀兰", "王秀英")
    '【平安】王秀英今天 06:13 已用水。'
    >>> renamed("[No water use] 王秀兰: No use for 12 h. 王秀兰 ...", "王秀兰", "王秀英")
    '[No water use] 王秀英: No use for 12 h. 王秀兰 ...'
    """
    for language in ("zh", "en"):
        text_now = _renamed(text, str(was or ""), str(now or ""), language)
        if text_now != text:
            return text_now
    return text


def _renamed(text: str, was: str, now: str, language: str) -> str:
    """``text`` naming ``now`` where its subject, right after the label (``【…】``, ``[…] ``), names ``was``."""
    end = text.find("】") + 1 if language == "zh" else text.find("] ") + 2
    if not was or not now or end < 2 or not text.startswith(was, end):
        return text
    return text[:end] + now + text[end + len(was) :]


def retime(text: str, was: str | None, now: str | None, written: float) -> str:
    """``text`` (by :func:`compose`, in time zone ``was``, at ``written``) saying since when in time zone ``now``.

    Only the time compose puts before the advice, the last one of its form: the detector's message is left alone.

    >>> text = "【长时间未用水】王秀兰：12 小时未用水。自 11-15 06:13 起。请现在给老人打电话确认平安。"
    >>> retime(text, "Asia/Shanghai", "Asia/Urumqi", 1_700_000_000.0)
    '【长时间未用水】王秀兰：12 小时未用水。自 11-15 04:13 起。请现在给老人打电话确认平安。'
    >>> retime("[Continuous water flow] 王秀兰: Since 01-01 07:30. Visit.", "Asia/Shanghai", "Europe/Madrid", 1.7e9)
    '[Continuous water flow] 王秀兰: Since 01-01 00:30. Visit.'
    """
    for pattern in _SINCE:
        *_, last = [None, *pattern.finditer(text)]
        if last is not None:
            month, day, hour, minute = (int(g) for g in last.groups())
            since = _nearest(month, day, hour, minute, _zone(was), written)
            if since is not None:
                said = since.astimezone(_zone(now)).strftime(LOCAL_TIME)
                text = text[: last.start(1)] + said + text[last.end(4) :]
    return text


def _nearest(month: int, day: int, hour: int, minute: int, zone: ZoneInfo, written: float) -> datetime | None:
    """The local time ``MM-DD HH:MM`` in ``zone`` of the year that brings it nearest ``written`` (the text has no year:
    the condition began before it was written, a new year's eve's may have begun the year before)."""
    year = datetime.fromtimestamp(written, UTC).year
    times = []
    for y in (year - 1, year, year + 1):
        try:
            times.append(datetime(y, month, day, hour, minute, tzinfo=zone))
        except ValueError:  # 29 February of a year that has none
            continue
    return min(times, key=lambda t: abs(t.timestamp() - written), default=None)


RESOLVED_BY_DATA = {
    "zh": "用水已恢复，系统已自动关闭此警报。如已安排人员上门，他们可能仍在途中，请通知其核实后取消。",
    "en": "Water use has resumed and the alert was closed automatically. If someone was sent, they may still "
    "be on the way: let them know, and confirm before standing down.",
}
#: A person's change of the registry closes her cases with a note: a phrase before the reason she gave, in English
#: (the API writes it, api/routes/elders.py; the dashboard reads it), and what the phrase says in each language.
CONSENT_WITHDRAWN, RETIRED, METER_REPLACED = "consent withdrawn: ", "elder retired: ", "meter replaced: "
REGISTRY_NOTES = {
    CONSENT_WITHDRAWN: {"zh": "已撤回监测同意：", "en": "Consent to monitoring withdrawn: "},
    RETIRED: {"zh": "老人已注销登记：", "en": "Elder retired from monitoring: "},
    METER_REPLACED: {"zh": "已更换水表：", "en": "Meter replaced: "},
}


def registry_note_text(note: str) -> dict[str, str] | None:
    """What a note a change of the registry wrote says, in each language; ``None`` for any other note.

    >>> registry_note_text("elder retired: 搬去养老院")
    {'zh': '老人已注销登记：搬去养老院', 'en': 'Elder retired from monitoring: 搬去养老院'}
    >>> registry_note_text("见到老人，平安") is None
    True
    """
    for phrase, said in REGISTRY_NOTES.items():
        if note.startswith(phrase):
            return {lang: words + note[len(phrase) :] for lang, words in said.items()}
    return None


#: Closed by the data for any other condition (a tap turned off, a day back to normal): no use "resumed".
CLEARED_BY_DATA = {
    "zh": "数据显示情况已消除，系统已自动关闭此警报。如已安排人员上门，他们可能仍在途中，请通知其核实后取消。",
    "en": "The data shows the condition has cleared and the alert was closed automatically. If someone was sent, "
    "they may still be on the way: let them know, and confirm before standing down.",
}


# -- group robots (WeCom, DingTalk) ----------------------------------------------------------

OUTCOME_LABELS = {
    "ok": ("见到老人，平安", "the elder was seen and is well"),
    "needed_help": ("老人需要帮助，已协助", "the elder needed help and got it"),
    "hospital": ("老人已送医", "the elder went to hospital"),
    "away": ("老人不在家（外出）", "the elder was not at home (away)"),
    "false_alarm": ("误报", "false alarm"),
    "device_fault": ("设备故障", "device fault"),
    "use_resumed": ("用水已恢复", "water use resumed"),
    "cleared": ("情况已消除", "the condition cleared"),
}


def chat_message(event: Mapping[str, Any], language: str = "zh") -> tuple[str, str] | None:
    """``(title, markdown)`` of one alert event for a cadres' group chat; None for events a group needs not see.

    The text is the one the platform gets for the same event (``data.text``), so
    a group sees what a work order says; lifecycle steps without a text get a
    short line. ``notified`` (a channel took the event) is bookkeeping: no message.

    >>> ev = {"type": "org.tapwatch.alert.acknowledged", "data": {"alert_id": "0b6c1d2e-x", "kind": "no_activity",
    ...       "community": "大宁社区", "actor": "li", "event": "acknowledged"}}
    >>> chat_message(ev)
    ('【长时间未用水】大宁社区', '**【长时间未用水】大宁社区**\\n\\nli 已接手处理。\\n\\n> 警报 0b6c1d2e')
    >>> chat_message({"type": "org.tapwatch.alert.notified", "data": {}}) is None
    True
    >>> chat_message({"type": "org.tapwatch.alert.outcome", "data": {"kind": "no_activity", "community": "大宁社区",
    ...       "actor": "li", "outcome": "ok", "event": "outcome"}}, "en")[1].splitlines()[2]
    'li visited and recorded: the elder was seen and is well.'
    >>> cleared = {"kind": "no_activity", "cleared": "continuous_flow", "kinds_open": ["no_activity"]}
    >>> chat_message({"type": "org.tapwatch.alert.cleared", "data": cleared})[1].split("\\n\\n")[1]
    '持续用水已恢复；此警报仍有：长时间未用水。'
    """
    data = event.get("data") or {}
    event_type = str(data.get("event") or str(event.get("type", "")).rsplit(".", 1)[-1])
    if event_type == "notified":
        return None
    zh = language == "zh"
    label = kind_label(str(data.get("kind", "")), language)
    who = data.get("who") or {}
    place = str(data.get("community") or who.get("community") or "")
    title = f"【{label}】{place}" if zh else f"[{label}] {place}"
    body = _chat_body(event_type, data, zh)
    ref = str(data.get("alert_id", ""))[:8]
    footer = f"> 警报 {ref}" if zh else f"> Alert {ref}"
    return title, f"**{title}**\n\n{body}\n\n{footer}"


def _chat_body(event_type: str, data: Mapping[str, Any], zh: bool) -> str:
    text = data.get("text")
    if isinstance(text, Mapping) and text.get("zh" if zh else "en"):
        return str(text["zh" if zh else "en"])
    actor = str(data.get("actor", ""))
    if event_type == "escalated" and data.get("contacts_notified") is not None:
        n = int(data["contacts_notified"])
        return f"已短信通知 {n} 位紧急联系人，等待确认。" if zh else f"Texted {n} emergency contact(s); awaiting reply."
    if event_type == "acknowledged":
        return f"{actor} 已接手处理。" if zh else f"{actor} has taken the case."
    if event_type == "cleared":  # one kind of a case cleared; the case stays open for the others
        lang = "zh" if zh else "en"
        gone = kind_label(str(data.get("cleared", "")), lang)
        still = ("、" if zh else ", ").join(kind_label(str(k), lang) for k in data.get("kinds_open") or [])
        return f"{gone}已恢复；此警报仍有：{still}。" if zh else f"{gone} cleared; still open in this case: {still}."
    if event_type == "resolved":
        zh_label, en_label = OUTCOME_LABELS.get(str(data.get("outcome", "")), ("已结案", "closed"))
        return f"{actor} 已结案：{zh_label}。" if zh else f"Closed by {actor}: {en_label}."
    if event_type == "outcome":  # a person's visit to a case the data had closed
        zh_label, en_label = OUTCOME_LABELS.get(str(data.get("outcome", "")), ("已记录", "recorded"))
        return f"{actor} 上门后记录：{zh_label}。" if zh else f"{actor} visited and recorded: {en_label}."
    message = data.get("message") or {}
    return str(message.get("zh" if zh else "en", "")) if isinstance(message, Mapping) else ""


# -- the daily "平安" note to families who opted in (the Nagano practice) ------------------------


def daily_note(name: str, first_use_ts: float, tz: str | None, language: str = "zh") -> str:
    """One short line: the elder's first water use of the day was seen, and when (local time).

    >>> daily_note("王秀兰", 1_700_000_000.0, "Asia/Shanghai")
    '【平安】王秀兰今天 06:13 已用水。'
    >>> daily_note("王秀兰", 1_700_000_000.0, "Asia/Shanghai", "en")
    '[All well] 王秀兰 used water today at 06:13.'
    """
    at = local_time(first_use_ts, tz)[-5:]
    if language == "zh":
        return f"【平安】{name}今天 {at} 已用水。"
    return f"[All well] {name} used water today at {at}."


#: Where :func:`daily_note` says when, by language: the local time is the group.
_NOTE_AT = (re.compile(r"今天 (\d\d):(\d\d) 已用水"), re.compile(r"used water today at (\d\d):(\d\d)\."))


def retime_note(text: str, was: str | None, now: str | None, day_end: float) -> tuple[str, float] | None:
    """``text`` (by :func:`daily_note`, in time zone ``was``, for the local day ending at ``day_end``) telling the
    time in time zone ``now``, and the end of that day there (the note says "today"); None if it tells no time.

    >>> end = 1_700_064_000.0  # the end of 15 November 2023 in Shanghai
    >>> retime_note("【平安】王秀兰今天 06:13 已用水。", "Asia/Shanghai", "Asia/Urumqi", end)
    ('【平安】王秀兰今天 04:13 已用水。', 1700071200.0)
    """
    for pattern in _NOTE_AT:
        found = pattern.search(text)
        if found is None:
            continue
        day = datetime.fromtimestamp(day_end - 1, UTC).astimezone(_zone(was)).date()
        use = datetime(day.year, day.month, day.day, int(found[1]), int(found[2]), tzinfo=_zone(was))
        there = use.astimezone(_zone(now))
        said = text[: found.start(1)] + there.strftime("%H:%M") + text[found.end(2) :]
        return said, local_day_end(use.timestamp(), now)
    return None
