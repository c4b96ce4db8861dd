"""alerts by state and community: the dashboard's open cases read the open cases only

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 19:55:00

Every dashboard load (and every reload after its live stream reconnects) counts and pages the open cases of
the cadre's communities, ``state IN ('open', 'notified', 'acknowledged')``. Cases are kept for good; with no
index on the state, SQLite walked every case by its raise time and PostgreSQL every case of the communities.
"""

from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_alerts_state_community', 'alerts', ['state', 'community'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_alerts_state_community', table_name='alerts')
