"""audit_log indexed by (target, action): one elder's history without reading the city's

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 07:15:00
"""

from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_audit_log_target_action', 'audit_log', ['target', 'action'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_log_target_action', table_name='audit_log')
