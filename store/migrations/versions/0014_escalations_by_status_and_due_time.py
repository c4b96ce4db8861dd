"""escalations by status and due time: the runner's poll reads the pending timers only

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 15:15:00

Every poll of the escalation runner asks for the pending timers due by now, in due order. Fired and
cancelled timers are kept, each due long ago, so through the index on the due time alone the poll
passed over every timer ever fired before it found (or failed to find) a pending one.
"""

from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_escalations_status_due_at', 'escalations', ['status', 'due_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_escalations_status_due_at', table_name='escalations')
