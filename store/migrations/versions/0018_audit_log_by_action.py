"""audit log by action: a purge reads the operators' moves of parked jobs, not the whole log

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 19:40:00

Each elder purged looks for the reasons written when her parked jobs were put back or dismissed
(``delivery.requeue``, ``delivery.dismiss``), found by her id in the entry, since the jobs themselves
have left by then. The log had no index on the action alone, so each elder purged read every entry
ever written (every list read is one), in the purge's transaction: on SQLite, with ingest waiting for it.
"""

from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_audit_log_action_at', 'audit_log', ['action', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_log_action_at', table_name='audit_log')
