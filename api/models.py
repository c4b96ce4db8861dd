"""Request and response models, one family per resource (``Create``, ``Update``, ``Public``, ``List``).

Times are ISO-8601 with an offset (inputs without one are refused); volumes are
litres unless a field name says ``m3``. Public models never carry secrets, and
lists never carry home addresses or contacts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from core.domain import ALERT_KINDS, SEVERITIES, check_plain_text
from core.settings import known_zone
from core.thresholds import THRESHOLD_SPECS
from store.users import password_problem, username_problem

#: Every time the API accepts lies in this range: far-future and far-past values (year 9999 at -14:00,
#: year 1) would overflow when stored as epoch seconds and read back, so they answer 422 instead.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _bounded(value: datetime) -> datetime:
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"must lie between {EARLIEST.date()} and {LATEST.date()} (UTC)")
    return value


def _one_line(value: str) -> str:
    return check_plain_text(value)


def _multiline(value: str) -> str:
    return check_plain_text(value, multiline=True)


#: An instant with a UTC offset, within :data:`EARLIEST` .. :data:`LATEST`: the type of every API time input.
Instant = Annotated[AwareDatetime, AfterValidator(_bounded)]
IdStr = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
#: Names and free text: no control, zero-width, bidi-override or other invisible character (see
#: core.domain.check_plain_text); line breaks and tabs only in notes and reasons.
Text64 = Annotated[str, StringConstraints(max_length=64), AfterValidator(_one_line)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128), AfterValidator(_one_line)]
Community = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^*]+$"),
    AfterValidator(_one_line),
]
CommunityOrAll = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), AfterValidator(_one_line)
]
Note = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_multiline)]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), AfterValidator(_multiline)
]
OptionalReason = Annotated[str, StringConstraints(max_length=500), AfterValidator(_multiline)]
Phone = Annotated[str, StringConstraints(max_length=32, pattern=r"^[0-9+\-() ]*$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]

AlertState = Literal["open", "notified", "acknowledged", "resolved"]
AlertKind = Literal[ALERT_KINDS]  # type: ignore[valid-type]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
#: What a person may record; ``use_resumed`` and ``cleared`` are the system's own (see alerts.cases.OUTCOMES).
Outcome = Literal["ok", "needed_help", "hospital", "away", "false_alarm", "device_fault"]
ThresholdName = Literal[tuple(THRESHOLD_SPECS)]  # type: ignore[valid-type]
RoleName = Literal["admin", "operator", "cadre", "platform"]
WindowKind = Literal["away", "snooze"]
DeviceStatus = Literal["offline", "faulty", "low_battery"]


def to_dt(ts: float) -> datetime:
    """A stored epoch time as UTC; one outside what a datetime can hold (a meter's absurd clock) is clamped."""
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC) if ts > 0 else datetime.min.replace(tzinfo=UTC)


def to_dt_or_none(ts: float | None) -> datetime | None:
    return to_dt(ts) if ts is not None else None


# -- auth and users ---------------------------------------------------------------------


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")
    role: RoleName
    communities: list[str]
    username: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "k3Jd…",
                    "token_type": "bearer",
                    "expires_in": 43200,
                    "role": "operator",
                    "communities": ["大宁社区"],
                    "username": "wang.operator",
                }
            ]
        }
    )


class Me(BaseModel):
    user_id: int
    username: str
    role: RoleName
    communities: list[str]


class UserBase(BaseModel):
    role: RoleName
    communities: list[CommunityOrAll] = Field(
        default_factory=list,
        max_length=200,
        description='Assigned communities; ["*"] means all. At least one unless the role is admin (422): without'
        " one the login sees nothing.",
    )


class UserCreate(UserBase):
    username: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@\-]{3,64}$")]
    password: Password
    allow_new_community: bool = Field(
        False,
        description="Give communities no elder belongs to yet (one set up before its elders are registered); "
        "without it they are refused (422), naming the closest known: a typo would give a login that sees nothing.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"username": "li.cadre", "password": "a long passphrase", "role": "cadre", "communities": ["大宁社区"]}
            ]
        }
    )

    @field_validator("username")
    @classmethod
    def _free_username(cls, value: str) -> str:
        problem = username_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _strong_password(self) -> UserCreate:
        problem = password_problem(self.username, self.password)
        if problem is not None:
            raise ValueError(problem)
        return self


class UserUpdate(BaseModel):
    role: RoleName | None = None
    communities: list[CommunityOrAll] | None = Field(None, max_length=200)
    disabled: bool | None = None
    password: Password | None = None
    allow_new_community: bool = Field(False, description="As for a new user: communities no elder belongs to yet.")


class UserPublic(UserBase):
    communities: list[str] = Field(description='Assigned communities; ["*"] means all.')  # as stored
    user_id: int
    username: str
    created_at: datetime
    disabled: bool


class UserList(BaseModel):
    data: list[UserPublic]
    count: int


class TokenPublic(BaseModel):
    """A login token or API key, never its value (the store keeps only its hash)."""

    token_id: int
    username: str
    role: RoleName
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class TokenList(BaseModel):
    data: list[TokenPublic]
    count: int


# -- elders and meters ------------------------------------------------------------------


_DAILY_NOTE = (
    'Opt-in: a short text once a day at the elder\'s first water use ("今天 07:12 已用水"); '
    "never a substitute for alerts (docs/alerts.md)."
)


class Contact(BaseModel):
    name: Name
    relation: Text64 = ""
    phone: Phone = ""
    daily_note: bool = Field(False, description=_DAILY_NOTE)


class ContactPublic(BaseModel):
    """A contact as stored (the registry may hold records made outside the API)."""

    name: str = ""
    relation: str = ""
    phone: str = ""
    daily_note: bool = Field(False, description=_DAILY_NOTE)


class ElderBase(BaseModel):
    name: Name
    district: Text64 = ""
    street: Text64 = ""
    community: Community
    grid: Text64 = ""
    tz: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="IANA time zone, e.g. Asia/Shanghai; omitted: TAPWATCH_TIMEZONE, stored with the elder."
    )
    consent: bool = Field(
        True,
        description=(
            "The elder (or guardian) agreed to monitoring. Without it the meter's readings are dropped unread"
            " and nothing is detected or alerted."
        ),
    )

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else known_zone(value)


class ElderCreate(ElderBase):
    elder_id: IdStr
    meter_id: IdStr
    building: Text64 = ""
    room: Text64 = ""
    contacts: list[Contact] = Field(default_factory=list, max_length=10)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "elder_id": "E0001",
                    "meter_id": "WM000001",
                    "name": "张秀英",
                    "district": "静安区",
                    "street": "大宁路街道",
                    "community": "大宁社区",
                    "grid": "网格3",
                    "building": "12号楼",
                    "room": "301",
                    "contacts": [{"name": "张伟", "relation": "儿子", "phone": "13800000000"}],
                }
            ]
        }
    )


class ElderUpdate(BaseModel):
    """Fields to change; omitted fields stay as they are."""

    name: Name | None = None
    district: Text64 | None = None
    street: Text64 | None = None
    community: Community | None = None
    grid: Text64 | None = None
    building: Text64 | None = None
    room: Text64 | None = None
    tz: Annotated[str, StringConstraints(max_length=64)] | None = None
    consent: bool | None = Field(
        None,
        description=(
            "false withdraws consent: monitoring stops, open alerts close, the learned routine is erased;"
            " true starts monitoring afresh."
        ),
    )
    contacts: list[Contact] | None = Field(None, max_length=10)
    reason: OptionalReason = ""

    model_config = ConfigDict(json_schema_extra={"examples": [{"room": "302", "reason": "moved within the building"}]})

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else known_zone(value)


class MeterPublic(BaseModel):
    meter_id: str
    installed_at: datetime
    retired_at: datetime | None
    last_reading_at: datetime | None
    last_seen_at: datetime | None
    battery_pct: float | None
    rssi: float | None


class ElderSummary(BaseModel):
    """An elder in a list: no address inside the building, no contacts.

    Plain strings, not the input types: what is stored (maybe registered before a rule existed,
    or purged) is shown as it is rather than failing the whole answer.
    """

    name: str
    district: str
    street: str
    community: str
    grid: str
    tz: str
    consent: bool
    elder_id: str
    meter_id: str | None = Field(description="The active meter; null once retired.")
    created_at: datetime
    retired_at: datetime | None = None
    open_alerts: int = 0


class ElderPublic(ElderSummary):
    building: str
    room: str
    contacts: list[ContactPublic] | None = Field(
        description="Emergency contacts; null for roles that do not call them."
    )
    meters: list[MeterPublic] = Field(description="Every meter the elder has had, newest first.")


class ElderList(BaseModel):
    data: list[ElderSummary]
    count: int


class RetireRequest(BaseModel):
    reason: Reason

    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "moved to a care home"}]})


class MeterReplace(BaseModel):
    meter_id: IdStr
    reason: Reason

    model_config = ConfigDict(json_schema_extra={"examples": [{"meter_id": "WM000777", "reason": "battery failed"}]})


# -- readings and routine ---------------------------------------------------------------


class ReadingPublic(BaseModel):
    ts: datetime
    total_l: float = Field(description="Cumulative register, litres.")
    usage_l: float | None = Field(description="Litres since the previous reading; null when unknown.")
    status: str


class ReadingList(BaseModel):
    meter_id: str
    elder_id: str
    data: list[ReadingPublic]
    count: int


class UsageBucket(BaseModel):
    start: datetime = Field(description="Start of the hour or day, in the elder's local time.")
    usage_l: float
    readings: int


class UsageList(BaseModel):
    meter_id: str
    elder_id: str
    every: Literal["hour", "day"]
    data: list[UsageBucket]
    count: int


class RoutineSlot(BaseModel):
    slot: int = Field(ge=0, le=47)
    start: str = Field(description="Local time the half hour starts, HH:MM.", examples=["07:30"])
    p_use: float = Field(ge=0, le=1, description="Share of days with water use in this half hour.")
    typical_l: float = Field(ge=0, description="Median litres used in this half hour on days with use.")
    days: int = Field(ge=0, description="Days observed for this slot.")


class Routine(BaseModel):
    elder_id: str
    source: Literal["detector", "readings"]
    days: int = Field(description="The window read: this many days up to now.")
    days_observed: int = Field(
        ge=0,
        description="Local dates in the window with readings (today's part included): under 7, the routine is "
        "still being learned and says little of what is usual.",
    )
    weekday: list[RoutineSlot]
    weekend: list[RoutineSlot]


# -- alerts -----------------------------------------------------------------------------


class AlertTold(BaseModel):
    """An open case as its texts tell it now (:func:`alerts.grouping.told`)."""

    kind: AlertKind
    message: dict[str, str]
    since: datetime | None = None


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
    kinds: list[str] = Field(
        default_factory=list,
        description="Every kind this case has held, first one first (it is `kind`): a second community kind "
        "joins the elder's open case, a meter's maintenance findings its maintenance case.",
    )
    kinds_open: list[str] = Field(default_factory=list, description="The kinds that have not cleared yet.")
    told: AlertTold | None = Field(
        None,
        description="What the open case is about now, as its later events and work order tell it: its most severe "
        "kind still open, in that kind's newest words and from that kind's start (a fall that joined a routine "
        "change's case is told as the fall); `kind` and `message` stay the first kind's. None once closed.",
    )
    kinds_withdrawn: list[str] = Field(
        default_factory=list,
        description="The kinds the detector took back: the reading behind them was misread, no water ran. A "
        "person's outcome on the case is recorded all the same; it teaches the detector nothing of them, and a "
        "false_alarm of a case whose kind was withdrawn suggests no threshold to ease.",
    )
    occurrences: int = Field(1, description="How many findings the case grouped (a meter offline on 3 nights: 3).")
    route: Literal["community", "maintenance"] = Field(
        "community",
        description="Who acts: `community`, a cadre; `maintenance`, the water utility (offline and faulty meters, "
        "slow leaks, a silence that lasted a month after a visit found no emergency), never the cadres.",
    )
    escalation_level: int = 0
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    outcome: str | None = None
    note: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None


class AlertList(BaseModel):
    data: list[AlertPublic]
    count: int


class AlertEventPublic(BaseModel):
    seq: int
    type: str
    at: datetime
    actor: str
    data: dict[str, Any]


class AlertEventList(BaseModel):
    data: list[AlertEventPublic]
    count: int


class AlertAck(BaseModel):
    note: Note = ""

    model_config = ConfigDict(json_schema_extra={"examples": [{"note": "called the elder, visiting now"}]})


class AlertResolve(BaseModel):
    outcome: Outcome
    note: Note = ""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"outcome": "away", "note": "staying with her daughter until Sunday"}]}
    )


# -- thresholds and backtest ------------------------------------------------------------


class ThresholdSpecPublic(BaseModel):
    name: str
    unit: str
    low: float
    high: float
    default: float
    description: dict[str, str]


class ThresholdSpecList(BaseModel):
    data: list[ThresholdSpecPublic]
    count: int


class ThresholdValue(BaseModel):
    name: str
    value: float
    updated_at: datetime
    updated_by: str


class ThresholdSet(BaseModel):
    """The values set at one level (global, a community, an elder); unset names inherit."""

    scope: Literal["global", "community", "elder"]
    scope_id: str
    values: dict[str, float]
    updated: list[ThresholdValue]


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class ThresholdChange(BaseModel):
    values: dict[ThresholdName, FiniteFloat | None] = Field(  # type: ignore[valid-type]
        min_length=1, description="New values; null removes the value at this level so it inherits again."
    )
    reason: Reason

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"values": {"ceiling_hours": 10}, "reason": "falls reported at night"}]}
    )


class EffectiveThreshold(BaseModel):
    name: str
    value: float
    unit: str
    source: Literal["default", "global", "community", "elder"]


class EffectiveThresholds(BaseModel):
    elder_id: str
    community: str
    values: list[EffectiveThreshold]


class BacktestRequest(BaseModel):
    community: Community
    days: int = Field(7, ge=1, le=90, description="How many days of stored history to replay.")
    thresholds: dict[ThresholdName, FiniteFloat] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="Proposed values for the community, as PUT /thresholds/community/{community} would set them: "
        "an elder's own value of a threshold (set for her alone) stays hers.",
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"community": "大宁社区", "days": 14, "thresholds": {"ceiling_hours": 10}}]}
    )


class BacktestPrepare(BaseModel):
    community: Community
    days: int = Field(7, ge=1, le=90, description="The days the previews to come will replay.")


class BacktestPrepared(BaseModel):
    community: str
    days: int
    state: Literal["preparing", "ready"] = Field(
        description="`ready`: a preview now replays only the period; `preparing`: under way in the background."
    )


class BacktestCounts(BaseModel):
    total: int
    by_kind: dict[str, int]


class BacktestAlert(BaseModel):
    elder_id: str
    meter_id: str
    kind: str
    severity: str
    basis: str
    data_time: datetime
    since: datetime | None
    message: dict[str, str]


class BacktestResult(BaseModel):
    community: str
    days: int
    start: datetime
    end: datetime
    elders: int
    readings: int
    current: BacktestCounts = Field(
        description="Alerts the current thresholds raise over the period: cases raised, and community cases "
        "reopened by a condition back within the flap hold-down (the cadre is called again)."
    )
    proposed: BacktestCounts = Field(description="Alerts the proposed thresholds raise over the period (the same).")
    alerts: list[BacktestAlert] = Field(description="The alerts of the proposed thresholds, oldest first.")
    kept_from: datetime | None = Field(
        None,
        description="Set when the store keeps readings for less than the period and its 14 days of warm-up "
        "(TAPWATCH_READINGS_RETENTION_DAYS): readings before this time are purged, so the replay read only what "
        "is kept since (routines warmed on less, and, if it is after start, part of the period unseen). "
        "None: the whole period and its warm-up were read.",
    )


# -- away windows, devices, audit, dead letters ----------------------------------------


class AwayCreate(BaseModel):
    kind: WindowKind = Field(description="away: the elder is not home; snooze: mute no-use alerts for a while.")
    start: Instant
    end: Instant
    reason: OptionalReason = ""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "away",
                    "start": "2026-11-24T09:00:00+08:00",
                    "end": "2026-11-27T18:00:00+08:00",
                    "reason": "staying with her daughter",
                }
            ]
        }
    )

    @model_validator(mode="after")
    def _ordered(self) -> AwayCreate:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if (self.end - self.start).total_seconds() > 366 * 86400:
            raise ValueError("a window lasts at most a year")
        return self


class AwayPublic(BaseModel):
    window_id: int
    elder_id: str
    kind: str
    start: datetime
    end: datetime
    reason: str
    created_by: str
    created_at: datetime


class AwayList(BaseModel):
    data: list[AwayPublic]
    count: int


class DevicePublic(BaseModel):
    meter_id: str
    elder_id: str
    community: str
    statuses: list[DeviceStatus]
    last_reading_at: datetime | None
    last_seen_at: datetime | None
    battery_pct: float | None
    rssi: float | None


class DeviceList(BaseModel):
    data: list[DevicePublic]
    count: int


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    community: str | None
    old: Any
    new: Any
    reason: str


class AuditList(BaseModel):
    data: list[AuditEntry]
    count: int


class DeadLetterPublic(BaseModel):
    id: int
    received_at: datetime
    source: str
    meter_id: str | None
    reason: str
    payload: str


class DeadLetterList(BaseModel):
    data: list[DeadLetterPublic]
    count: int


class ParkedJobPublic(BaseModel):
    """An alert event a notifier could not deliver, kept for an operator (no message text: it may hold names)."""

    id: int
    alert_id: str
    event_seq: int
    event_type: str
    event_id: str | None
    elder_id: str
    community: str
    kind: str
    notifier: str
    attempts: int
    created_at: datetime
    last_error: str | None


class ParkedJobList(BaseModel):
    data: list[ParkedJobPublic]
    count: int


class NotifierDelivery(BaseModel):
    notifier: str
    pending: int
    parked: int
    sent: int
    expired: int = Field(
        0,
        description="Events no longer to be sent: a family's daily note after its day, a family's text after its case.",
    )
    dismissed: int = Field(0, description="Parked events an operator dismissed: never to be sent (refused for good).")
    oldest_pending_s: float = Field(description="Age of the oldest event waiting for delivery (0 if none).")


class DeliverySummary(BaseModel):
    data: list[NotifierDelivery]


class RequeueRequest(BaseModel):
    reason: Reason

    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "platform certificate renewed"}]})


class DismissRequest(BaseModel):
    reason: Reason

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "the platform refuses this event for good (unknown alert)"}]}
    )


class ThresholdSuggestion(BaseModel):
    """A less eager value of the threshold behind a kind, for one elder, within the threshold's bounds."""

    scope: Literal["elder"]
    scope_id: str
    name: str
    old: float
    new: float
    unit: str
    note: dict[str, str] | None = Field(
        default=None,
        description=(
            "Silences only: how many of the calls the elder's silence model made and how many the safety net,"
            " and so which threshold is suggested (zh, en)."
        ),
    )


class FalseAlarmEntry(BaseModel):
    elder_id: str
    name: str
    community: str
    kind: str
    count: int = Field(description="Alerts of this kind resolved as false_alarm in the window.")
    last_at: datetime
    sources: dict[str, int] | None = Field(
        default=None,
        description=(
            "no_activity only: the calls counted by what raised them, silence_model (the elder's learned silences,"
            " or elders' in general while learning: sensitivity) and safety_net (under ceiling_litres in"
            " ceiling_hours / learned_ceiling_hours); null for other kinds."
        ),
    )
    suggestion: ThresholdSuggestion | None = Field(
        description=(
            "Apply with PUT /thresholds/elder/{scope_id} {values: {name: new}, reason} after a backtest;"
            " null when no threshold governs the kind or it is already at its bound."
        )
    )


class FalseAlarmList(BaseModel):
    data: list[FalseAlarmEntry]
    count: int


# -- outcomes report (GET /reports/outcomes) -----------------------------------------------------------------


class OutcomeMix(BaseModel):
    """How the cases ended: each outcome a person recorded, closed by the data with no person's outcome, open."""

    needed_help: int
    hospital: int
    ok: int
    false_alarm: int
    away: int
    device_fault: int
    closed_by_data: int = Field(description="Closed by the data (use resumed, cleared); no person recorded an outcome.")
    open: int = Field(description="Not yet resolved.")


class CaseTiming(BaseModel):
    """Minutes from raising a case to acknowledging or resolving it."""

    count: int = Field(description="Cases timed.")
    median_min: float | None
    p90_min: float | None


class KindOutcomes(BaseModel):
    kind: str
    community_cases: int
    maintenance_cases: int
    outcomes: OutcomeMix
    acknowledge: CaseTiming
    resolve: CaseTiming = Field(description="Cases whose outcome a person recorded.")


class OutcomeFigures(BaseModel):
    """What the cases raised in the period came to, for one community or for all of them.

    Rates are null when the period covered less than 0.1 month (elder- or meter-months): too little to say.
    """

    elders: int = Field(description="Elders monitored now (active, consenting).")
    elder_months: float = Field(
        description="Months (30 days) of the period the elders were registered and consenting, consent as it was "
        "then (its history is the audit log's): an elder who withdrew last week still counts the weeks before."
    )
    meter_months: float = Field(description="Months of their meters the period covered, while their elder consented.")
    community_cases: int = Field(description="Cases on the community route: a cadre must act.")
    community_cases_per_elder_month: float | None
    maintenance_cases: int = Field(description="Device faults, offline meters and slow leaks: the utility's.")
    maintenance_cases_per_meter_month: float | None
    outcomes: OutcomeMix = Field(description="Outcomes of the community cases.")
    maintenance_outcomes: OutcomeMix
    false_calls: int = Field(description="Community cases a person resolved ok or false_alarm (away is apart).")
    false_calls_per_elder_month: float | None = Field(
        description="The figure `tapwatch eval` reports as false community alerts per elder-month (issue 17)."
    )
    confirmed: int = Field(description="Community cases a person resolved needed_help or hospital.")
    confirmed_per_elder_month: float | None
    acknowledge: CaseTiming = Field(description="Community cases acknowledged.")
    resolve: CaseTiming = Field(description="Community cases whose outcome a person recorded.")
    by_kind: list[KindOutcomes] = Field(
        description="Per kind, the cases that held it: a case with several kinds (a flow that joined a silence's "
        "case) counts under each of them, so the kinds add up to more than the cases."
    )


class CommunityOutcomes(OutcomeFigures):
    community: str


class OutcomeReport(BaseModel):
    """Per community and in total, what the cases raised in the period came to (issue 17, measured live)."""

    days: int
    start: datetime
    end: datetime
    communities: list[CommunityOutcomes]
    total: OutcomeFigures
