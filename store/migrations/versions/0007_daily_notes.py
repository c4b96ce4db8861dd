"""daily notes: at most one "平安" note per elder and local day

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 23:59:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'daily_notes',
        sa.Column('elder_id', sa.String(length=64), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('elder_id', 'day', name=op.f('pk_daily_notes')),
    )


def downgrade() -> None:
    op.drop_table('daily_notes')
