"""held findings: what a snooze window muted is offered again when the window ends

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 17:00:00

A snooze muted a silence or a running tap found inside it for good: the detectors raise such a condition
once per episode, so a fall whose silence went on past the window called nobody until the water came back.
Such findings are kept here until the windows covering them end (alerts.lifecycle.Lifecycle.release).
"""

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'held_findings',
        sa.Column('elder_id', sa.String(length=64), nullable=False),
        sa.Column('meter_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('finding', sa.JSON(), nullable=False),
        sa.Column('release_at', sa.Float(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('elder_id', 'meter_id', 'kind', name=op.f('pk_held_findings')),
    )
    op.create_index(op.f('ix_held_findings_release_at'), 'held_findings', ['release_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_held_findings_release_at'), table_name='held_findings')
    op.drop_table('held_findings')
