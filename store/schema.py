"""Relational schema (SQLAlchemy Core). Alembic migrations are generated from it.

Times are stored as epoch seconds (double precision): exact to the second,
cheap to compare, and identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
# Autoincrement ids: BIGINT on PostgreSQL, INTEGER (rowid) on SQLite.
Id = BigInteger().with_variant(Integer, "sqlite")

elders = Table(
    "elders",
    metadata,
    Column("elder_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("district", String(64), nullable=False, server_default=""),
    Column("street", String(64), nullable=False, server_default=""),
    Column("community", String(64), nullable=False, index=True),
    Column("grid", String(64), nullable=False, server_default=""),
    Column("building", String(64), nullable=False, server_default=""),
    Column("room", String(64), nullable=False, server_default=""),
    Column("tz", String(64), nullable=False, server_default="Asia/Shanghai"),
    Column("consent", Boolean, nullable=False, server_default=text("true")),
    Column("contacts", JSON, nullable=False, default=list),
    Column("created_at", Float, nullable=False),
    Column("retired_at", Float),
)

meters = Table(
    "meters",
    metadata,
    Column("meter_id", String(64), primary_key=True),
    Column("elder_id", String(64), ForeignKey("elders.elder_id"), nullable=False, index=True),
    Column("installed_at", Float, nullable=False),
    Column("retired_at", Float),
    Column("last_reading_ts", Float),
    Column("last_seen_at", Float),
    Column("battery_pct", Float),
    Column("rssi", Float),
    # The meter's usual interval (s) as its monitor learned it up to ``last_reading_ts``, written with it by ingest:
    # the devices page draws the offline line on it as detection does (core.cadence.offline_line). NULL: none
    # learned (a new meter, its detector state erased, or not written since the column came).
    Column("usual_interval_s", Float),
    # Moves on with every committed change to the meter's detector state (engine.meterstate); kept
    # here, in a narrow row ingest updates anyway, not beside the checkpoint blob, whose rewrite is costly.
    Column("state_version", Integer, nullable=False, server_default="0"),
)

readings = Table(
    "readings",
    metadata,
    Column("meter_id", String(64), primary_key=True),
    Column("ts", Float, primary_key=True),
    Column("total_l", Float, nullable=False),
    Column("usage_l", Float),  # use since the previous reading; NULL when unknown
    Column("status", String(16), nullable=False),  # ok, gap, reset, glitch, first, late
    Column("received_at", Float, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False, index=True),
    Column("source", String(256), nullable=False, index=True),  # a retained message is dead-lettered once
    Column("meter_id", String(64)),
    Column("reason", String(512), nullable=False),
    Column("payload", Text, nullable=False),
    # Ids never reused on SQLite either (as on PostgreSQL): retention may empty the table, and the InfluxDB
    # mirror takes every id up to its cursor as sent.
    sqlite_autoincrement=True,
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(36), primary_key=True),
    Column("elder_id", String(64), ForeignKey("elders.elder_id"), nullable=False),
    Column("meter_id", String(64), nullable=False),
    Column("community", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # open, notified, acknowledged, resolved
    Column("basis", String(16), nullable=False),
    Column("data_ts", Float, nullable=False),
    Column("since_ts", Float),
    Column("raised_at", Float, nullable=False, index=True),
    Column("score", Float, nullable=False, server_default="0"),
    Column("message_zh", Text, nullable=False),
    Column("message_en", Text, nullable=False),
    Column("details", JSON, nullable=False, default=dict),
    Column("seq", Integer, nullable=False, server_default="1"),  # last event sequence number
    Column("acknowledged_at", Float),
    Column("acknowledged_by", String(128)),
    Column("resolved_at", Float),
    Column("resolved_by", String(128)),
    Column("outcome", String(32)),
    Column("note", Text),
    Column("escalation_level", Integer, nullable=False, server_default="0"),
    # Which case of the elder this is (alerts.grouping): "community", or "maintenance:<meter_id>".
    Column("case_key", String(80), nullable=False, server_default=""),
    # Every finding looks up its elder's open and last closed case of its key; alerts are kept for good, so
    # without it each raise and clear reads them all (the unique index below holds the open ones only).
    Index("ix_alerts_elder_id_case_key", "elder_id", "case_key"),
    # Every dashboard load asks for the open cases of its communities (GET /alerts?state=...): by this, the open
    # ones only, not every case the communities ever had (the unique index below, on state != 'resolved', serves
    # neither store for state IN (...)).
    Index("ix_alerts_state_community", "state", "community"),
    # One open case per elder and case key (one community case, one per meter), enforced by the store itself.
    Index(
        "uq_alerts_open_case",
        "elder_id",
        "case_key",
        unique=True,
        sqlite_where=text("state != 'resolved'"),
        postgresql_where=text("state != 'resolved'"),
    ),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), ForeignKey("alerts.alert_id"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("type", String(32), nullable=False),  # raised, notified, acknowledged, resolved, escalated
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("data", JSON, nullable=False, default=dict),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), nullable=False),
    Column("event_seq", Integer, nullable=False),
    Column("elder_id", String(64), nullable=False, index=True),
    Column("notifier", String(32), nullable=False),
    Column("idempotency_key", String(96), nullable=False, unique=True),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False, index=True),  # pending, sent, parked, expired, dismissed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("last_error", String(512)),
    # A sender working the job holds it until lease_until: several workers never send one job at once.
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
)

#: An outbox job is ``pending`` (to send), ``sent``, ``parked`` (given up: a person must pass it on and requeue it),
#: ``expired``: no longer to be sent by anyone (a daily note whose day is over), final as ``sent`` is, or ``dismissed``
#: (:data:`DISMISSED`): parked, then judged by an operator never to be sent (a receiver refuses it for good), final
#: too. Not sent yet:
OUTBOX_UNSENT = ("pending", "parked")
DISMISSED = "dismissed"
#: Final and never sent: kept, as sent jobs are, for the retention's delivered days.
FINAL_UNSENT = ("expired", DISMISSED)

#: The daily "平安" note (alerts.daily): one row per elder and local day a note was queued.
#: Its primary key is the at-most-once-per-day promise, written in the batch that saw the use.
daily_notes = Table(
    "daily_notes",
    metadata,
    Column("elder_id", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),  # the elder's local date, YYYY-MM-DD
    Column("created_at", Float, nullable=False),
)

#: Failed logins, shared by every API worker (api.security.LoginLimiter); kept only for the window they count in.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False),
    Column("address", String(64), nullable=False),
    Column("familiar", Boolean, nullable=False),  # from an address the user logged in from before
    Column("forgiven", Boolean, nullable=False),  # the user logged in since: her own pause is over
    Column("at", Float, nullable=False, index=True),
    Index("ix_login_failures_username_at", "username", "at"),
    Index("ix_login_failures_address_at", "address", "at"),
)

#: Addresses each user logged in from lately: strangers' failures do not slow the user down there.
login_familiar = Table(
    "login_familiar",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("address", String(64), primary_key=True),
    Column("until", Float, nullable=False),
)

#: Named leases for work one worker at a time should do (e.g. the silent-meter sweep).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("until", Float, nullable=False),
)

detector_state = Table(
    "detector_state",
    metadata,
    Column("meter_id", String(64), primary_key=True),
    Column("state", LargeBinary, nullable=False),
    Column("updated_at", Float, nullable=False),
)

thresholds = Table(
    "thresholds",
    metadata,
    Column("scope", String(16), primary_key=True),  # global, community, elder
    Column("scope_id", String(64), primary_key=True),  # "" for global
    Column("name", String(64), primary_key=True),
    Column("value", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(128), nullable=False),
)

away_windows = Table(
    "away_windows",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("elder_id", String(64), ForeignKey("elders.elder_id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # away, snooze
    Column("start_ts", Float, nullable=False),
    Column("end_ts", Float, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Findings a snooze window muted whose condition may outlast it (a silence, a running tap): offered to the alert
# manager again when the windows covering them end (alerts.lifecycle.Lifecycle.release), dropped when the detector
# clears their kind first. One per meter and kind: a detector raises a condition once per episode.
held_findings = Table(
    "held_findings",
    metadata,
    Column("elder_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("finding", JSON, nullable=False),  # the Finding's fields
    Column("release_at", Float, nullable=False, index=True),  # the end of the windows that muted it
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", Id, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),  # admin, operator, cadre, platform
    Column("communities", JSON, nullable=False, default=list),
    Column("created_at", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.user_id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("last_used_at", Float),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(128), nullable=False),
    Column("community", String(64), index=True),  # for scoping who may read the entry; NULL: admins only
    Column("old", JSON),
    Column("new", JSON),
    Column("reason", Text, nullable=False, server_default=""),
    # One elder's (or user's) history, e.g. the outcomes report's consent as it was in a period.
    Index("ix_audit_log_target_action", "target", "action"),
    # One kind of entry across every target, e.g. the operators' moves of parked jobs a purge looks through for
    # an elder's id: without it, the whole log (every list read, for good) was read for each elder purged.
    Index("ix_audit_log_action_at", "action", "at"),
)

escalations = Table(
    "escalations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), ForeignKey("alerts.alert_id"), nullable=False, index=True),
    Column("level", Integer, nullable=False),
    Column("due_at", Float, nullable=False, index=True),
    Column("status", String(16), nullable=False),  # pending, fired, cancelled
    Column("fired_at", Float),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Column("created_at", Float, nullable=False),
    # The writer's clock, for a runner on the same host and boot to see a wall clock step made since, even while no
    # runner ran: its boot id, and its wall time at boot (``created_at`` less the time since boot); NULL: unknown.
    Column("clock_boot", String(36)),
    Column("clock_epoch", Float),
    # The runner's poll asks for the pending timers due: fired and cancelled ones stay, all of them due long ago.
    Index("ix_escalations_status_due_at", "status", "due_at"),
)

# Time-series points waiting for InfluxDB, written in the same transaction as
# the readings they describe (an outbox for the time-series store).
influx_spool = Table(
    "influx_spool",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lines", Text, nullable=False),  # InfluxDB line protocol, one or more points
    Column("created_at", Float, nullable=False),
)

# Purged elders whose series InfluxDB still holds: queued by the purge in its transaction, removed by the
# InfluxDB writer once InfluxDB confirmed the deletion (timeseries.erase), so an InfluxDB down then loses none.
influx_deletions = Table(
    "influx_deletions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("elder_id", String(64), nullable=False),
    Column("meter_ids", JSON, nullable=False),  # her meters: dead letters name a meter, not an elder
    Column("created_at", Float, nullable=False),
)
