"""Request and response models, one family per resource."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from tapwatch.domain import ALERT_KINDS, SEVERITIES

IdStr = Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")


def to_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def to_dt_or_none(ts: float | None) -> datetime | None:
    return to_dt(ts) if ts is not None else None


class Contact(BaseModel):
    name: str = Field(max_length=128)
    relation: str = Field("", max_length=64)
    phone: str = Field("", max_length=32)


class ElderBase(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    district: str = Field("", max_length=64)
    street: str = Field("", max_length=64)
    community: str = Field(min_length=1, max_length=64)
    grid: str = Field("", max_length=64)
    building: str = Field("", max_length=64)
    room: str = Field("", max_length=64)
    tz: str = Field("Asia/Shanghai", max_length=64)
    consent: bool = True


class ElderCreate(ElderBase):
    elder_id: str = IdStr
    meter_id: str = IdStr
    contacts: list[Contact] = Field(default_factory=list, max_length=10)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "elder_id": "E0001",
                    "meter_id": "WM000001",
                    "name": "张秀英",
                    "community": "大宁社区",
                    "building": "12号楼",
                    "room": "301",
                    "contacts": [{"name": "张伟", "relation": "儿子", "phone": "13800000000"}],
                }
            ]
        }
    }


class ElderPublic(ElderBase):
    elder_id: str
    meter_id: str | None
    created_at: datetime


class ElderList(BaseModel):
    data: list[ElderPublic]
    count: int


AlertState = Literal["open", "notified", "acknowledged", "resolved"]
AlertKind = Literal[ALERT_KINDS]  # type: ignore[valid-type]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]


class AlertPublic(BaseModel):
    alert_id: str
    elder_id: str
    meter_id: str
    community: str
    kind: AlertKind
    severity: Severity
    state: AlertState
    basis: str
    data_time: datetime
    since: datetime | None
    raised_at: datetime
    message: dict[str, str]
    outcome: str | None = None
    resolved_at: datetime | None = None


class AlertList(BaseModel):
    data: list[AlertPublic]
    count: int
