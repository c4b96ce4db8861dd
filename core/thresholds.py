"""Detection thresholds: one set per elder, resolved from global, community and elder levels.

``THRESHOLD_SPECS`` describes every field (unit, bounds, words in Chinese and
English) so the API can validate an operator's change and explain it.

>>> Thresholds().validate()
>>> Thresholds().replace(sensitivity=0.01).sensitivity
0.01
>>> Thresholds(ceiling_hours=0.5).validate()
Traceback (most recent call last):
...
ValueError: ceiling_hours must be between 2 and 72 h, got 0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """What one threshold means and which values an operator may set."""

    unit: str
    low: float
    high: float
    zh: str
    en: str


THRESHOLD_SPECS: Final[dict[str, ThresholdSpec]] = {
    "sensitivity": ThresholdSpec(
        "probability",
        1e-6,
        0.1,
        "灵敏度：当前无用水时长在该老人历史中出现的概率低于此值时报警（越大越敏感）",
        "Sensitivity: alert when a silence this long is rarer than this for this elder (larger = more alerts)",
    ),
    "ceiling_hours": ThresholdSpec(
        "h",
        2,
        72,
        "学习期兜底规则：连续多少小时用水不足兜底升数即报警",
        "Safety net during cold start: alert when under the ceiling litres were used in this many hours",
    ),
    "learned_ceiling_hours": ThresholdSpec(
        "h",
        2,
        72,
        "学会习惯后的兜底规则：连续多少小时用水不足兜底升数即报警",
        "Safety net once the routine is learned: alert when under the ceiling litres were used in this many hours",
    ),
    "ceiling_litres": ThresholdSpec(
        "L",
        1,  # the net alerts under this many litres: at 0 nothing is under it, and the net never fired
        100,
        "兜底规则的用水量下限（升）",
        "Safety net: litres below which the window counts as no use",
    ),
    "leak_flow_lpm": ThresholdSpec(
        "L/min",
        0.05,
        10,
        "最小持续流量：低于此流量的不间断用水不视为漏水",
        "Smallest steady flow treated as a possible leak",
    ),
    "daily_min_l": ThresholdSpec("L", 0, 1000, "日用水量绝对下限（升）", "Absolute lower bound of a day's use"),
    "daily_max_l": ThresholdSpec("L", 50, 20000, "日用水量绝对上限（升）", "Absolute upper bound of a day's use"),
    "cold_start_days": ThresholdSpec(
        "days",
        0,
        90,
        "学习期：登记后这么多天内，系统还在熟悉老人的作息，先参照一般老人的规律和固定规则判断",
        "Learning period: for this many days after registration, judge by elders in general and the fixed rules",
    ),
    "offline_hours": ThresholdSpec(
        "h",
        1,
        168,
        "水表多少小时未上报即视为离线（几小时才上报一次的水表：至少为其通常上报间隔的 2.5 倍）",
        "Hours without data before the meter counts as offline (a meter reporting every few hours: 2.5 of its "
        "usual intervals at least)",
    ),
    "flow_run_factor": ThresholdSpec(
        "times",
        1,
        4,
        "持续用水提醒：水不停地流，超过该老人这个时段最长一次用水时间的几倍（再加下面的宽限时间）才提醒；"
        "越大误报越少，但水龙头没关也发现得越晚。无论设多大，水龙头开着最迟 13 小时内提醒；"
        "匀速的漏水另有规则，不受此项影响",
        "Water left running: alert once a flow lasts this many times this elder's longest use at that hour "
        "(plus the grace time below); larger = fewer false calls, but a tap left open is found later "
        "(never later than 13 h). A steady leak has its own rule and does not wait for this",
    ),
    "flow_margin_h": ThresholdSpec(
        "h",
        0.5,
        4,
        "持续用水提醒的宽限时间：水不停地流，比该老人这个时段最长一次用水（乘以上面的倍数）还多流这么多小时才提醒；"
        "老人从没在这个时段长时间用过水时，只看这一项。越大误报越少，水龙头没关也发现得越晚（最迟 13 小时）",
        "Water left running, the grace time: alert once a flow runs this many hours past this elder's longest use at "
        "that hour (times the factor above); at an hour with no long use before, this alone decides. Larger = fewer "
        "false calls, a tap left open found later (never later than 13 h)",
    ),
    "routine_threshold": ThresholdSpec(
        "points",
        4,
        30,
        "作息变化提醒门槛：起床越来越晚、每天用水越来越少，两者合起来每天按偏离平常的程度计分"
        "（两者都明显时一天最多约 3 分，只有一项时约 1.4 分，一晚一多互相抵消），累计超过此值才提醒；"
        "越大提醒越少、越晚。默认 8：两者都持续明显变化时几天内提醒，只有一项时一两周，缓慢的衰退常要一个多月",
        "Routine change: rising later and using less are raised once the days' departures from the usual, "
        "both taken together, add up past this (a day counts at most about 3 when both moved, 1.4 for one alone; "
        "later but more water cancel out); larger = fewer, later alerts. Default 8: a lasting clear change in "
        "both shows within days, in one alone in one or two weeks, a slow decline often only after a month",
    ),
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Tunable parameters of detection; the API exposes them to operators."""

    sensitivity: float = 1e-3  # alert when a silence this long is rarer than this
    # Safety net in cold start: under ceiling_litres in this many hours. 16 h since session 9 (Shanghai's 12 h before):
    # an elder's night can last 12-13 h, and the 12 h net called a cadre about it each first week
    # (docs/detection-studies.md, "Where false silence calls come from").
    ceiling_hours: float = 16.0
    learned_ceiling_hours: float = 24.0  # the same net once the routine is learned
    ceiling_litres: float = 10.0
    leak_flow_lpm: float = 0.3  # smallest steady flow treated as a leak
    daily_min_l: float = 10.0
    daily_max_l: float = 2000.0
    cold_start_days: float = 7.0  # until then: population prior plus fixed rules
    offline_hours: float = 6.0  # no reading for this long: meter_offline
    # Added in session 8 (older checkpoints lack them: ``__setstate__``).
    flow_run_factor: float = 1.5  # a flow alerts past this many times the longest run learned at its hour (+ 1 h)
    flow_margin_h: float = 1.0  # ... plus this many hours
    routine_threshold: float = 8.0  # the routine_change (Page-Hinkley) detector's threshold

    def __getstate__(self) -> list[float]:
        # Fields added after the first checkpoints are left out while at their defaults: a meter with the
        # usual settings checkpoints the same bytes as before they existed.
        values = [getattr(self, f.name) for f in fields(self)]
        while len(values) > _FIRST_FIELDS and values[-1] == _DEFAULTS[len(values) - 1]:
            values.pop()
        return values  # a list, as the dataclass's own ``__getstate__`` gave

    def __setstate__(self, state: Sequence[float]) -> None:
        names = [f.name for f in fields(self)]
        if not _FIRST_FIELDS <= len(state) <= len(names):
            raise ValueError(f"Thresholds: a checkpoint of {len(state)} values, expected {_FIRST_FIELDS}..{len(names)}")
        values = list(state) + list(_DEFAULTS[len(state) :])  # fields a checkpoint lacks take their defaults
        for name, value in zip(names, values, strict=True):
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> Thresholds:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown thresholds: {sorted(unknown)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Thresholds(**values)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field outside its bounds."""
        for name, spec in THRESHOLD_SPECS.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if not spec.low <= value <= spec.high:
                raise ValueError(f"{name} must be between {spec.low:g} and {spec.high:g} {spec.unit}, got {value:g}")
        if self.daily_min_l >= self.daily_max_l:
            raise ValueError(f"daily_min_l ({self.daily_min_l:g}) must be below daily_max_l ({self.daily_max_l:g})")


#: Fields of the first checkpoints (up to ``offline_hours``); later ones are optional in a checkpoint.
_FIRST_FIELDS = 9
#: Every field's default, in field order.
_DEFAULTS: tuple[float, ...] = tuple(f.default for f in fields(Thresholds))  # type: ignore[misc]
