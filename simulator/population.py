"""Who the elders are: individual routine traits drawn from population distributions, and the registry.

The numbers are assumptions stated in docs/simulator.md with their sources; the
registry (names, communities, contacts) is synthetic and belongs to nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程魏苏吕丁沈"
GIVEN_F = [
    "秀英",
    "桂英",
    "玉兰",
    "凤英",
    "淑珍",
    "美华",
    "佩玲",
    "素芬",
    "月娥",
    "慧珍",
    "雅琴",
    "丽华",
    "金娣",
    "彩凤",
]
GIVEN_M = [
    "国强",
    "建华",
    "德明",
    "志刚",
    "永福",
    "根宝",
    "海生",
    "立新",
    "文彬",
    "庆余",
    "宝林",
    "振华",
    "阿福",
    "家驹",
]
# (district, street, community): a handful of made-up residents' committees in Jing'an.
COMMUNITIES = [
    ("静安区", "大宁路街道", "延长新村居委会"),
    ("静安区", "大宁路街道", "宁和家园居委会"),
    ("静安区", "彭浦新村街道", "共康三村居委会"),
    ("静安区", "临汾路街道", "阳曲路居委会"),
    ("静安区", "芷江西路街道", "光华里居委会"),
]
RELATIONS_NEAR = ["女儿", "儿子", "侄女", "外甥"]
RELATIONS_OTHER = ["邻居", "社区志愿者", "楼组长"]


@dataclass(frozen=True)
class Traits:
    """One elder's habits. Hours are local clock hours; volumes litres."""

    wake_h: float
    bed_h: float
    wake_sd_h: float
    bed_sd_h: float
    activity: float  # overall scale on how often discretionary things are done
    thrift: float  # scale on volumes drawn (frugal elders reuse basin water, run taps gently)
    flush_l: float
    toilet_day: float  # expected daytime flushes besides the first one on rising
    toilet_night: float  # expected flushes between bedtime and rising (nocturia)
    handwash_p: float
    kettle_per_day: float
    cook_p: tuple[float, float, float]  # breakfast, lunch, dinner
    lunch_h: float
    dinner_h: float
    shower_every_d: float
    shower_l: float
    shower_time: str  # "evening", "afternoon" (warmest in winter) or "morning"
    laundry_per_week: float
    plants: bool
    plant_every_d: float
    mop_every_d: float
    foot_bath: bool


def draw_traits(rng: np.random.Generator) -> Traits:
    """Draw one elder's routine (see docs/simulator.md, "Distributions used")."""
    wake = float(np.clip(rng.normal(6.2, 0.7), 4.5, 9.0))
    bed = float(np.clip(rng.normal(21.8, 0.8), 19.5, 24.0))
    # Toilets in Shanghai homes: old 9 L cisterns and 6 L / 4.5 L low-flush ones (GB 25502).
    flush = float(rng.choice([4.5, 6.0, 6.0, 7.5, 9.0]) + rng.uniform(-0.3, 0.3))
    return Traits(
        wake_h=wake,
        bed_h=bed,
        wake_sd_h=float(rng.uniform(0.2, 0.6)),
        bed_sd_h=float(rng.uniform(0.3, 0.8)),
        activity=float(np.exp(rng.normal(0.0, 0.35))),
        thrift=float(np.exp(rng.normal(0.0, 0.25))),
        flush_l=float(np.clip(flush, 4.0, 9.0)),
        toilet_day=float(rng.uniform(3.0, 7.0)),
        toilet_night=float(rng.uniform(0.3, 2.0)),
        handwash_p=float(rng.uniform(0.4, 0.9)),
        kettle_per_day=float(rng.uniform(1.0, 3.0)),
        cook_p=(float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.6, 0.95)), float(rng.uniform(0.7, 0.98))),
        lunch_h=float(rng.normal(11.5, 0.5)),
        dinner_h=float(rng.normal(17.6, 0.6)),
        shower_every_d=float(rng.uniform(1.0, 3.0)),
        shower_l=float(rng.uniform(30.0, 80.0)),
        shower_time=str(rng.choice(["evening", "afternoon", "morning"], p=[0.5, 0.25, 0.25])),
        laundry_per_week=float(rng.choice([1.0, 1.5, 2.0])),
        plants=bool(rng.random() < 0.45),
        plant_every_d=float(rng.uniform(2.0, 4.0)),
        mop_every_d=float(rng.uniform(2.0, 5.0)),
        foot_bath=bool(rng.random() < 0.4),
    )


def registry_entry(index: int, meter_id: str, tz: str, rng: np.random.Generator) -> dict[str, Any]:
    """The registry record of one elder (synthetic name, address and contacts)."""
    female = rng.random() < 0.65  # women outlive men: most elders living alone are women
    surname = SURNAMES[int(rng.integers(len(SURNAMES)))]
    given = GIVEN_F if female else GIVEN_M
    district, street, community = COMMUNITIES[int(rng.integers(len(COMMUNITIES)))]
    contacts = [_contact(rng, RELATIONS_NEAR)]
    if rng.random() < 0.6:
        contacts.append(_contact(rng, RELATIONS_OTHER))
    return {
        "elder_id": f"E{index + 1:06d}",
        "name": surname + given[int(rng.integers(len(given)))],
        "meter_id": meter_id,
        "district": district,
        "street": street,
        "community": community,
        "grid": f"第{int(rng.integers(1, 9))}网格",
        "building": f"{int(rng.integers(1, 60))}号楼",
        "room": f"{int(rng.integers(1, 7))}0{int(rng.integers(1, 5))}室",
        "tz": tz,
        "sex": "F" if female else "M",
        "age": int(rng.integers(68, 96)),
        "contacts": contacts,
    }


def _contact(rng: np.random.Generator, relations: list[str]) -> dict[str, str]:
    surname = SURNAMES[int(rng.integers(len(SURNAMES)))]
    pool = GIVEN_F if rng.random() < 0.5 else GIVEN_M
    # 1380000xxxx-style numbers keep them obviously synthetic.
    return {
        "name": surname + pool[int(rng.integers(len(pool)))],
        "relation": relations[int(rng.integers(len(relations)))],
        "phone": f"1380000{int(rng.integers(10000)):04d}",
    }
