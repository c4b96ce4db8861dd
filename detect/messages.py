"""Alert texts a community cadre understands, in Chinese and English.

Each says what is unusual, compared with this elder's own usual (or, while the
routine is still being learned, with elders in general), and what to do first.
No statistics: "99.95% of silences were shorter" asks the reader to do the
thinking; "about 3 h longer than usual, phone first" does not. The numbers behind
the words (p-value, scores) stay in the finding's ``details``.
The closing advice is one of :data:`ADVICE`, so a message sent to one receiver
(alerts/messages.py) can swap it for advice meant for that receiver.

>>> zh, en = no_activity_learned(7 * 3600 + 600, 0, 5.0, 0.9995, 2.0, "learned")
>>> print(zh)
自 07:10 起已 5 小时未用水，比平时这个时段最长的不用水时间（约 2 小时）还长了约 3 小时。建议先给老人打电话，确认平安。
>>> print(en)
No water used since 07:10 (5 h), about 3 h longer than this elder's usual longest gap at this time of day
(about 2 h). Phone the elder first to check they are well.
"""

from __future__ import annotations

import time

#: What to do first, by situation: (zh, en). Every alert text ends with one of these.
ADVICE = {
    "phone": ("建议先给老人打电话，确认平安。", "Phone the elder first to check they are well."),
    "flow": (
        "建议先打电话问老人是否忘关水龙头；无人接听请尽快上门。",
        "Phone the elder first to ask about a running tap; if there is no answer, visit soon.",
    ),
    "high_day": (
        "建议问问老人家里是否漏水或忘关水龙头。",
        "Ask the elder whether a pipe leaks or a tap was left running.",
    ),
    "low_day": ("建议打电话问问老人近况。", "Phone the elder to ask how they are."),
    "routine": ("建议下次走访时留意老人的身体和精神状况。", "Look at how the elder is doing at the next visit."),
    "device": (
        "这是水表的问题，不代表老人有事；请安排检修。",
        "This is a meter problem, not a sign about the elder; have the meter checked.",
    ),
    "plumbing": (
        "这是管道或水箱的问题（如马桶水箱关不严、水龙头滴水），不代表老人有事；请安排检修，修好前用水数据判断老人平安的依据较少。",
        "This is the plumbing (a running cistern, a dripping tap), not a sign about the elder; have it repaired: until "
        "then water use says less about whether the elder is well.",
    ),
    "vacant": (
        "请确认房屋是否空置，或安排检查水表是否正常计量。",
        "Confirm the home is empty, or have the meter checked that it still counts.",
    ),
    "offline": (
        "请安排检修水表；修好前无法从用水判断老人是否平安，如有担心请打电话问候。",
        "Have the meter checked; until then water use cannot show whether the elder is well, so phone if in doubt.",
    ),
}

#: Meter interval statuses in words (core.domain.INTERVAL_*).
_STATUS = {
    "reset": ("读数归零或突变，可能换了水表", "the register restarted or jumped, perhaps a new meter"),
    "glitch": ("读数出现不可能的跳变", "a reading jumped by an impossible amount"),
    "gap": ("读数间隔过长", "readings too far apart"),
}


def hm(ts: float, utc_offset_s: int) -> str:
    """Local clock time ``HH:MM`` of an epoch time."""
    seconds = int(ts + utc_offset_s) % 86400
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _clock(hour: float) -> str:
    """``7.5`` -> ``07:30`` (an hour of the day as a clock time)."""
    minutes = round(hour * 60) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _h(hours: float) -> str:
    """Hours for reading aloud: ``5``, ``2.5``, ``0.5`` (no trailing ``.0``)."""
    return f"{round(hours * 2) / 2:g}"


def _with(text: tuple[str, str], advice: str) -> tuple[str, str]:
    zh_advice, en_advice = ADVICE[advice]
    return f"{text[0]}{zh_advice}", f"{text[1]} {en_advice}"


def no_activity_habit(since: float, offset: int, hours: float, missed: list[int]) -> tuple[str, str]:
    """A silence that went through hours in which this elder uses water on nearly every day.

    >>> print(no_activity_habit(13.5 * 3600, 0, 7.0, [15, 17])[1])
    No water used since 13:30 (7 h): 15:00 and 17:00 went by without water, when this elder uses ... every day.
    """
    t = hm(since, offset)
    clocks = [f"{h:02d}:00" for h in missed]
    zh = f"自 {t} 起已 {_h(hours)} 小时未用水：老人几乎每天都在 {'、'.join(clocks)} 用水，今天这些时段都没有用水。"
    en = (
        f"No water used since {t} ({_h(hours)} h): {' and '.join(clocks)} went by without water, "
        "when this elder uses water on nearly every day."
    )
    return zh, en


def no_activity_learned(
    since: float, offset: int, hours: float, share_shorter: float, usual_h: float, basis: str
) -> tuple[str, str]:
    """A silence longer than this elder's (or, in cold start, a typical elder's) usual at this hour.

    ``share_shorter`` (how many past silences were shorter) is kept in the finding's
    details; the text says how much longer than usual instead.
    """
    del share_shorter  # statistics for the record, not for the reader
    t = hm(since, offset)
    learning = basis == "prior"
    whose_zh = "一般老人在" if learning else "平时"
    whose_en = "elders' usual longest gap in general" if learning else "this elder's usual longest gap"
    extra = hours - usual_h
    if extra >= 0.5:
        zh = (
            f"自 {t} 起已 {_h(hours)} 小时未用水，比{whose_zh}这个时段最长的不用水时间"
            f"（约 {_h(usual_h)} 小时）还长了约 {_h(extra)} 小时。"
        )
        en = (
            f"No water used since {t} ({_h(hours)} h), about {_h(extra)} h longer than {whose_en} "
            f"at this time of day (about {_h(usual_h)} h)."
        )
    else:
        zh = f"自 {t} 起已 {_h(hours)} 小时未用水，超过了{whose_zh}这个时段最长的不用水时间（约 {_h(usual_h)} 小时）。"
        en = (
            f"No water used since {t} ({_h(hours)} h), longer than {whose_en} at this time of day "
            f"(about {_h(usual_h)} h)."
        )
    if learning:
        zh += "系统还在熟悉这位老人的作息。"
        en += " The system is still learning this elder's routine."
    return _with((zh, en), "phone")


def silent_after_visit(since: float, offset: int, days: float) -> tuple[str, str]:
    """A home still without water long after a visit found the elder well (maintenance, not a cadre's call).

    >>> zh, en = silent_after_visit(8 * 3600, 0, 30.2)
    >>> print(zh)
    1月1日 08:00 的提醒经上门确认老人无事，此后已约 30 天没有用水。请确认房屋是否空置，或安排检查水表是否正常计量。
    >>> print(en)
    No water used for about 30 days since the alert of 1970-01-01 08:00, which a visit found to be no emergency. ...
    """
    day = time.gmtime(since + offset)
    t = hm(since, offset)
    zh = f"{day.tm_mon}月{day.tm_mday}日 {t} 的提醒经上门确认老人无事，此后已约 {days:.0f} 天没有用水。"
    en = (
        f"No water used for about {days:.0f} days since the alert of {time.strftime('%Y-%m-%d', day)} {t}, "
        "which a visit found to be no emergency."
    )
    return _with((zh, en), "vacant")


def no_activity_rule(hours: float, litres: float, used: float) -> tuple[str, str]:
    """The fixed safety net: too little water in a long window."""
    zh = f"过去 {hours:g} 小时只用了约 {used:.0f} 升水，少于最低 {litres:g} 升（固定规则）。"
    en = f"Only about {used:.0f} L of water used in the last {hours:g} h, under the {litres:g} L minimum (fixed rule)."
    return _with((zh, en), "phone")


def use_resumed(ts: float, offset: int, litres: float) -> tuple[str, str]:
    t = hm(ts, offset)
    return f"{t} 前恢复用水（{litres:.0f} 升）。", f"Water use resumed before {t} ({litres:.0f} L)."


def continuous_flow(since: float, offset: int, hours: float, lpm: float, usual_h: float) -> tuple[str, str]:
    t = hm(since, offset)
    extra = max(hours - usual_h, 0.0)
    zh = (
        f"自 {t} 起水一直没停（已 {hours:.1f} 小时，每分钟约 {lpm:.1f} 升），"
        f"比平时这个时段最长的连续用水（约 {usual_h:.1f} 小时）长了约 {extra:.1f} 小时。"
        f"可能漏水、忘关水龙头，或老人在卫生间出事。"
    )
    en = (
        f"Water has been running without a break since {t} ({hours:.1f} h, about {lpm:.1f} L a minute), "
        f"about {extra:.1f} h longer than this elder's usual longest use at this time of day "
        f"(about {usual_h:.1f} h). Possibly a leak, a tap left running, or a fall in the bathroom."
    )
    return _with((zh, en), "flow")


def burst(litres: float, minutes: float, usual_max_l: float) -> tuple[str, str]:
    """One huge draw in an interval, against the most this elder drew in such a stretch (``usual_max_l``).

    A new meter has learned no rate yet (under a litre would read "about 0 L"): the draw is told alone.

    >>> print(burst(300.0, 30.0, 0.0)[1])
    300 L used in 30 min. A tap may be running or a pipe leaking. The system is still learning ... running tap; ...
    """
    if usual_max_l < 1.0:
        zh = f"{minutes:.0f} 分钟内用了 {litres:.0f} 升水。可能水龙头没关或水管漏水。系统还在熟悉这位老人的用水。"
        en = (
            f"{litres:.0f} L used in {minutes:.0f} min. A tap may be running or a pipe leaking. "
            "The system is still learning this elder's water use."
        )
        return _with((zh, en), "flow")
    times = litres / usual_max_l
    if times >= 1.5:
        zh_more = f"是平时同样时长最多用水（约 {usual_max_l:.0f} 升）的 {times:.0f} 倍"
        en_more = f"{times:.0f} times this elder's most for such a stretch (about {usual_max_l:.0f} L)"
    else:
        zh_more = f"超过平时同样时长最多的用水（约 {usual_max_l:.0f} 升）"
        en_more = f"more than this elder's most for such a stretch (about {usual_max_l:.0f} L)"
    zh = f"{minutes:.0f} 分钟内用了 {litres:.0f} 升水，{zh_more}。可能水龙头没关或水管漏水。"
    en = f"{litres:.0f} L used in {minutes:.0f} min, {en_more}. A tap may be running or a pipe leaking."
    return _with((zh, en), "flow")


def flow_stopped(ts: float, offset: int) -> tuple[str, str]:
    t = hm(ts, offset)
    return f"{t} 前持续用水已停止。", f"The continuous flow stopped before {t}."


def flow_misread(ts: float, offset: int) -> tuple[str, str]:
    """A burst the register's next readings showed was one reading off: the case is withdrawn.

    >>> print(flow_misread(10 * 3600, 0)[1])
    The reading at 10:00 was a meter misreading (the register went back down right after it): no water ran, ...
    """
    t = hm(ts, offset)
    zh = f"{t} 的读数是水表误读（之后的读数随即回落），并没有用这么多水，此提醒撤回。"
    en = (
        f"The reading at {t} was a meter misreading (the register went back down right after it): "
        "no water ran, this alert is withdrawn."
    )
    return zh, en


def base_flow(since: float, offset: int, hours: float, lph: float) -> tuple[str, str]:
    """A home whose water has not stopped for days: a running cistern, a drip, a leak under the leak level.

    >>> zh, en = base_flow(8 * 3600, 0, 75.0, 0.5)
    >>> print(zh)
    自 1月1日 08:00 起水表一直有小流量（约 3 天，至少每小时 0.5 升），从未停过，可能马桶水箱漏水或水龙头滴水，...
    >>> print(en)
    Water has not stopped since 1970-01-01 08:00 (about 3 days, at least 0.5 L an hour): a running cistern, ...
    """
    day = time.gmtime(since + offset)
    t = hm(since, offset)
    days = max(round(hours / 24.0), 1)
    zh = (
        f"自 {day.tm_mon}月{day.tm_mday}日 {t} 起水表一直有小流量（约 {days} 天，至少每小时 {_h(lph)} 升），从未停过，"
        f"可能马桶水箱漏水或水龙头滴水，每天至少浪费 {lph * 24:.0f} 升。"
    )
    en = (
        f"Water has not stopped since {time.strftime('%Y-%m-%d', day)} {t} (about {days} days, at least {_h(lph)} L an "
        f"hour): a running cistern, a dripping tap or a small leak, wasting at least {lph * 24:.0f} L a day."
    )
    return _with((zh, en), "plumbing")


def base_flow_stopped(ts: float, offset: int) -> tuple[str, str]:
    t = hm(ts, offset)
    return f"{t} 前水表的持续小流量已停止。", f"The water that never stopped had stopped before {t}."


def flow_handed_on(ts: float, offset: int) -> tuple[str, str]:
    """A slow flow open on the maintenance route closes there: a tap runs on top of it (a cadre's case now)."""
    t = hm(ts, offset)
    return (
        f"{t} 慢速流水之上又有水龙头长开，转交社区处理。",
        f"At {t} a tap started running on top of the slow flow: handed to the community.",
    )


def flow_handed_back(ts: float, offset: int) -> tuple[str, str]:
    """A tap's case closes: the tap stopped, a steady slow flow under it goes on (the plumbing's case now)."""
    t = hm(ts, offset)
    return (
        f"{t} 水龙头已关，其下的慢速流水仍未停止，转交维修处理。",
        f"At {t} the tap stopped; the slow flow under it goes on: handed to maintenance.",
    )


def daily(kind: str, total: float, low: float, high: float, bound: bool) -> tuple[str, str]:
    """A day's total outside this elder's usual range (or, while learning, outside the fixed limits)."""
    more = kind == "high_usage"
    if bound:
        limit_zh, limit_en = (
            ("超出每天用水的上限", "above the daily maximum")
            if more
            else ("低于每天用水的下限", "below the daily minimum")
        )
        zh = f"昨天用了 {total:.0f} 升水，{limit_zh}（固定规则）。"
        en = f"Yesterday {total:.0f} L of water was used, {limit_en} (fixed rule)."
    else:
        than_zh, than_en = ("多", "more") if more else ("少", "less")
        zh = f"昨天用了 {total:.0f} 升水，明显{than_zh}于该老人平时一天的 {low:.0f}–{high:.0f} 升。"
        en = (
            f"Yesterday {total:.0f} L of water was used, clearly {than_en} than this elder's usual "
            f"{low:.0f}–{high:.0f} L a day."
        )
    return _with((zh, en), "high_day" if more else "low_day")


#: A change of routine names the rising time when it moved this much later (h), the daily use when it fell this
#: share: smaller moves are within a day's wobble and would only blur what the cadre is told to look at.
LATER_WORTH_H = 0.25
LESS_WORTH = 0.1


def routine_change(rising: float, usual_rising: float, litres: float, usual_litres: float) -> tuple[str, str, str]:
    """A slow change of routine in words: rising later and/or using less lately (30 days) than before.

    Returns the texts and what moved (``"rising"``, ``"volume"``, both joined by a comma, or ``""`` when neither
    moved enough alone to be named: then both are given as they are).

    >>> zh, en, moved = routine_change(8.6, 7.1, 95.0, 140.0)
    >>> print(zh)
    作息在慢慢变化：最近起床比以往晚约 1.5 小时（最近约 08:36，以往约 07:06），每天用水比以往少...
    >>> "每天用水比以往少（最近约 95 升，以往约 140 升）。" in zh
    True
    >>> print(en)
    The routine is changing slowly: lately rises about 1.5 h later than before (around 08:36, before 07:06) and uses
    less water (about 95 L a day, before 140 L). ...
    >>> cases = (7.2, 7.1, 95.0, 140.0), (8.6, 7.1, 138.0, 140.0), (7.3, 7.1, 130.0, 140.0)
    >>> [routine_change(*case)[2] for case in cases]
    ['volume', 'rising', '']
    >>> print(routine_change(7.3, 7.1, 130.0, 140.0)[1])
    The routine is changing slowly: lately rises around 07:18 (before 07:06) and uses about 130 L a day
    (before 140 L). ...
    """
    later = rising - usual_rising
    less = 1.0 - litres / usual_litres if usual_litres > 0.0 else 0.0
    zh_parts, en_parts, moved = [], [], []
    if later >= LATER_WORTH_H:
        zh_parts.append(
            f"最近起床比以往晚约 {_h(later)} 小时（最近约 {_clock(rising)}，以往约 {_clock(usual_rising)}）"
        )
        when = f"around {_clock(rising)}, before {_clock(usual_rising)}"
        en_parts.append(f"lately rises about {_h(later)} h later than before ({when})")
        moved.append("rising")
    if less >= LESS_WORTH:
        zh_parts.append(f"每天用水比以往少（最近约 {litres:.0f} 升，以往约 {usual_litres:.0f} 升）")
        en_parts.append(f"uses less water (about {litres:.0f} L a day, before {usual_litres:.0f} L)")
        moved.append("volume")
    if not moved:  # a small change in both that added up: say where each stands
        zh_parts = [
            f"最近起床约在 {_clock(rising)}（以往约 {_clock(usual_rising)}）",
            f"每天用水约 {litres:.0f} 升（以往约 {usual_litres:.0f} 升）",
        ]
        en_parts = [
            f"lately rises around {_clock(rising)} (before {_clock(usual_rising)})",
            f"uses about {litres:.0f} L a day (before {usual_litres:.0f} L)",
        ]
    zh = f"作息在慢慢变化：{'，'.join(zh_parts)}。"
    en = f"The routine is changing slowly: {' and '.join(en_parts)}."
    zh, en = _with((zh, en), "routine")
    return zh, en, ",".join(moved)


def meter_fault(status: str) -> tuple[str, str]:
    zh_what, en_what = _STATUS.get(status, ("读数异常", "the register misbehaved"))
    zh = f"水表{zh_what}，这段时间用了多少水无法得知。"
    en = f"The meter reported nonsense ({en_what}); the use in that stretch is unknown."
    return _with((zh, en), "device")


def no_activity_unseen(since: float, offset: int, hours: float, silent_since: float) -> tuple[str, str]:
    """A long silence whose meter stopped reporting before it ended: its alert time passed unseen.

    >>> zh, en = no_activity_unseen(5 * 3600 + 1440, 0, 13.5, 13 * 3600 + 1440)
    >>> print(zh)
    自 05:24 起没有看到用水（已 13.5 小时），水表自 13:24 起也没有上报，无法从用水确认老人是否平安。...
    >>> print(en)
    No water seen since 05:24 (13.5 h), and the meter has sent nothing since 13:24, so water use cannot show
    whether the elder is well. Phone the elder first to check they are well.
    """
    t, m = hm(since, offset), hm(silent_since, offset)
    zh = f"自 {t} 起没有看到用水（已 {_h(hours)} 小时），水表自 {m} 起也没有上报，无法从用水确认老人是否平安。"
    en = (
        f"No water seen since {t} ({_h(hours)} h), and the meter has sent nothing since {m}, so water use cannot "
        "show whether the elder is well."
    )
    return _with((zh, en), "phone")


def meter_offline(hours: float) -> tuple[str, str]:
    zh = f"水表已超过 {hours:g} 小时没有上报数据。"
    en = f"The meter has sent no data for over {hours:g} h."
    return _with((zh, en), "offline")
