"""alerts by elder and case key: a finding's case look-ups read the elder's alerts only

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 15:10:00

Every raise and clear looks up the elder's open case of its key and her last closed one. The only index
on the elder was the unique one on open alerts (``state != 'resolved'``), which SQLite never takes for
``state IN (...)`` and neither store for closed cases, so each look-up read every alert ever kept.
"""

from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_alerts_elder_id_case_key', 'alerts', ['elder_id', 'case_key'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_alerts_elder_id_case_key', table_name='alerts')
