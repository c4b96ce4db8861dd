"""escalation timers keep their writer's clock (boot id, wall time at boot)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 11:10:00

A wall clock stepped back while no escalation runner ran delayed every timer stored before the step by
the step: the runner that started next had not seen it. With the writer's boot id and its wall time at
boot (the wall clock less the time since boot, which only a step changes), a runner on the same host and
boot sees the step and moves the timer. Timers stored before this revision have neither (NULL).
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clock_boot', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('clock_epoch', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_column('clock_epoch')
        batch_op.drop_column('clock_boot')
