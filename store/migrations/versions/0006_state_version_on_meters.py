"""state version on meters: the per-batch version bump no longer rewrites checkpoint rows

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 19:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state_version', sa.Integer(), nullable=False, server_default='0'))
    op.execute(
        'UPDATE meters SET state_version = COALESCE('
        '(SELECT version FROM detector_state WHERE detector_state.meter_id = meters.meter_id), 0)'
    )
    with op.batch_alter_table('detector_state', schema=None) as batch_op:
        batch_op.drop_column('version')


def downgrade() -> None:
    with op.batch_alter_table('detector_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='0'))
    op.execute(
        'UPDATE detector_state SET version = '
        '(SELECT state_version FROM meters WHERE meters.meter_id = detector_state.meter_id)'
    )
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.drop_column('state_version')
