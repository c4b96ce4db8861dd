"""influx deletions: a purged elder's series are deleted from InfluxDB once it answers

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 18:00:00

The purge (store.retention) erased an elder's personal data from the store, while InfluxDB kept her readings and
findings (tagged with her elder id) for 400 days, their hourly aggregates 5 years and the daily ones for good.
The purge queues her here in its transaction; the InfluxDB writer deletes her series and removes the row once
InfluxDB confirmed (timeseries.erase).
"""

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


def downgrade() -> None:
    op.drop_table('influx_deletions')
