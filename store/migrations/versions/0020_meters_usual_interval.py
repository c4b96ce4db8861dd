"""meters' usual interval: the devices page draws the offline line detection draws

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 22:10:00

The page said a meter was offline after ``offline_hours`` alone, while the monitor waits 2.5 of the meter's usual
interval when that is longer (``core.cadence.offline_line``): a meter that reports every 6 h was shown offline for
most of each interval. Ingest writes the monitor's usual interval with the meter's newest reading; NULL (every
meter until its next reading after this upgrade, a new meter until its first interval): ``offline_hours`` alone.
"""

from alembic import op
import sqlalchemy as sa


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('usual_interval_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.drop_column('usual_interval_s')
