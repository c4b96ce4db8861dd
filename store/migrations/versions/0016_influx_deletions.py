"""influx deletions: a purged elder's series are deleted from InfluxDB once it answers

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 18:00:00

The purge (store.retention) erased an elder's personal data from the store, while InfluxDB kept her readings and
findings (tagged with her elder id) for 400 days, their hourly aggregates 5 years and the daily ones for good.
The purge queues her here in its transaction; the InfluxDB writer deletes her series and removes the row once
InfluxDB confirmed (timeseries.erase). Elders purged before this upgrade are queued by it.
"""

import time

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'influx_deletions',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('elder_id', sa.String(length=64), nullable=False),
        sa.Column('meter_ids', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_influx_deletions')),
    )
    _queue_elders_purged_before()


def _queue_elders_purged_before() -> None:
    """An older tapwatch purged them from the store only: their series are deleted from InfluxDB now."""
    bind = op.get_bind()
    audit_log = sa.table('audit_log', sa.column('action', sa.String), sa.column('target', sa.String))
    meters = sa.table('meters', sa.column('meter_id', sa.String), sa.column('elder_id', sa.String))
    deletions = sa.table(
        'influx_deletions',
        sa.column('elder_id', sa.String),
        sa.column('meter_ids', sa.JSON),
        sa.column('created_at', sa.Float),
    )
    purged = bind.execute(sa.select(audit_log.c.target).where(audit_log.c.action == 'elder.purge').distinct())
    now = time.time()
    for elder_id in sorted(target.removeprefix('elder:') for target in purged.scalars()):
        meter_ids = sorted(bind.execute(sa.select(meters.c.meter_id).where(meters.c.elder_id == elder_id)).scalars())
        bind.execute(deletions.insert().values(elder_id=elder_id, meter_ids=meter_ids, created_at=now))


def downgrade() -> None:
    op.drop_table('influx_deletions')
