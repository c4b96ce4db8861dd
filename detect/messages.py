"""Alert texts a community cadre understands, in Chinese and English.

Each says what was seen, what is normal for this elder, and how unusual it is.

>>> zh, en = no_activity_learned(7 * 3600 + 600, 0, 3.5, 0.9995, 2.0, "learned")
>>> print(en)
No water used since 07:10 (3.5 h). Of this elder's silences starting around this hour,
99.95% ended sooner; the usual longest is about 2.0 h.
>>> print(zh)
自 07:10 起未用水（已 3.5 小时）。该老人在这个时段开始的无用水时段中，99.95% 比这更短；通常最长约 2.0 小时。
"""

from __future__ import annotations


def hm(ts: float, utc_offset_s: int) -> str:
    """Local clock time ``HH:MM`` of an epoch time."""
    seconds = int(ts + utc_offset_s) % 86400
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _pct(share: float) -> str:
    pct = 100.0 * share
    return f"{pct:.2f}%" if pct >= 99.0 else f"{pct:.0f}%"


def no_activity_learned(
    since: float, offset: int, hours: float, share_shorter: float, usual_h: float, basis: str
) -> tuple[str, str]:
    """A silence longer than this elder's (or, in cold start, a typical elder's) routine."""
    t = hm(since, offset)
    if basis == "prior":
        zh = (
            f"自 {t} 起未用水（已 {hours:.1f} 小时）。尚在学习该老人的习惯；按一般老人的规律，"
            f"{_pct(share_shorter)} 的此类无用水时段比这更短。"
        )
        en = (
            f"No water used since {t} ({hours:.1f} h). Still learning this elder's routine; for typical "
            f"elders, {_pct(share_shorter)} of silences starting around this hour end sooner."
        )
        return zh, en
    zh = (
        f"自 {t} 起未用水（已 {hours:.1f} 小时）。该老人在这个时段开始的无用水时段中，"
        f"{_pct(share_shorter)} 比这更短；通常最长约 {usual_h:.1f} 小时。"
    )
    en = (
        f"No water used since {t} ({hours:.1f} h). Of this elder's silences starting around this hour, "
        f"{_pct(share_shorter)} ended sooner; the usual longest is about {usual_h:.1f} h."
    )
    return zh, en


def no_activity_rule(hours: float, litres: float, used: float) -> tuple[str, str]:
    zh = f"兜底规则：过去 {hours:g} 小时用水不足 {litres:g} 升（{used:.0f} 升）。"
    en = f"Safety-net rule: under {litres:g} L of water used in the last {hours:g} h ({used:.0f} L)."
    return zh, en


def use_resumed(ts: float, offset: int, litres: float) -> tuple[str, str]:
    t = hm(ts, offset)
    return f"{t} 前恢复用水（{litres:.0f} 升）。", f"Water use resumed before {t} ({litres:.0f} L)."


def continuous_flow(since: float, offset: int, hours: float, lpm: float, usual_h: float) -> tuple[str, str]:
    t = hm(since, offset)
    zh = (
        f"自 {t} 起持续用水不间断（已 {hours:.1f} 小时，约 {lpm:.1f} 升/分钟）。"
        f"该老人在这个时段最长的连续用水约 {usual_h:.1f} 小时。可能漏水、忘关水龙头，或老人在卫生间出事。"
    )
    en = (
        f"Water has been flowing without a break since {t} ({hours:.1f} h, about {lpm:.1f} L/min). "
        f"This elder's longest uninterrupted use at this hour is about {usual_h:.1f} h. Possible leak, a tap "
        f"left running, or a fall in the bathroom."
    )
    return zh, en


def burst(litres: float, minutes: float, usual_max_l: float) -> tuple[str, str]:
    zh = (
        f"{minutes:.0f} 分钟内用水 {litres:.0f} 升，远超该老人以往同样时长的最大用水（约 {usual_max_l:.0f} 升）。"
        f"可能水龙头未关。"
    )
    en = (
        f"{litres:.0f} L used in {minutes:.0f} min, far above this elder's largest for such a stretch "
        f"(about {usual_max_l:.0f} L). A tap may be running."
    )
    return zh, en


def flow_stopped(ts: float, offset: int) -> tuple[str, str]:
    t = hm(ts, offset)
    return f"{t} 前持续用水已停止。", f"The continuous flow stopped before {t}."


def daily(kind: str, total: float, low: float, high: float, bound: bool) -> tuple[str, str]:
    """A day's total outside the learned range (or the absolute bounds)."""
    more = kind == "high_usage"
    if bound:
        zh = f"昨日用水 {total:.0f} 升，{'超过' if more else '低于'}绝对{'上' if more else '下'}限。"
        en = f"Yesterday's use was {total:.0f} L, {'above' if more else 'below'} the absolute bound."
    else:
        zh = f"昨日用水 {total:.0f} 升；该老人平常一天约 {low:.0f}–{high:.0f} 升。"
        en = f"Yesterday's use was {total:.0f} L; this elder usually uses {low:.0f}–{high:.0f} L a day."
    return zh, en


def routine_change(feature: str, recent: float, usual: float) -> tuple[str, str]:
    if feature == "rising":
        zh = f"起床时间在变化：最近首次用水约 {recent:.1f} 点，以往约 {usual:.1f} 点。建议下次走访时关注。"
        en = (
            f"The rising time is drifting: first water use lately around {recent:.1f} h, "
            f"before around {usual:.1f} h. Worth a look at the next visit."
        )
    else:
        zh = f"日用水量在持续变化：最近约 {recent:.0f} 升/天，以往约 {usual:.0f} 升/天。建议下次走访时关注。"
        en = (
            f"Daily water use is drifting: lately about {recent:.0f} L a day, before about {usual:.0f} L. "
            f"Worth a look at the next visit."
        )
    return zh, en


def meter_fault(status: str) -> tuple[str, str]:
    zh = f"水表读数异常（{status}），该时段用水未知（设备问题，需维护）。"
    en = f"The meter's register misbehaved ({status}); use in that stretch is unknown (a device issue)."
    return zh, en


def meter_offline(hours: float) -> tuple[str, str]:
    zh = f"水表已超过 {hours:g} 小时未上报数据（设备问题，不代表无人用水）。"
    en = f"The meter has sent no data for over {hours:g} h (a device issue, not a sign of no water use)."
    return zh, en
