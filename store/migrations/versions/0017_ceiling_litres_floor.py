"""ceiling_litres at least 1 L: a safety net of 0 L never fired

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 20:00:00

The safety net alerts when a window holds under ``ceiling_litres``; nothing is under 0 L, so a net set to 0 (which
the API took, its bound then 0 .. 100) never fired, learning or learned. The bound is 1 .. 100 L now, and a monitor
refuses thresholds out of bounds (every reading of the elder would be dead-lettered): stored values under 1 L are
set to 1 L, the nearest net that fires, each change in the audit trail (actor ``tapwatch``, the old value and the
new) where the operators of its community read it.
"""

import time

from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

FLOOR = 1.0
REASON = (
    'upgrade: ceiling_litres under 1 L is no longer allowed (at 0 the safety net never fired: nothing is under 0 L); '
    'set to 1 L'
)


def upgrade() -> None:
    bind = op.get_bind()
    thresholds = sa.table(
        'thresholds',
        sa.column('scope', sa.String),
        sa.column('scope_id', sa.String),
        sa.column('name', sa.String),
        sa.column('value', sa.Float),
        sa.column('updated_at', sa.Float),
        sa.column('updated_by', sa.String),
    )
    elders = sa.table('elders', sa.column('elder_id', sa.String), sa.column('community', sa.String))
    audit_log = sa.table(
        'audit_log',
        sa.column('at', sa.Float),
        sa.column('actor', sa.String),
        sa.column('action', sa.String),
        sa.column('target', sa.String),
        sa.column('community', sa.String),
        sa.column('old', sa.JSON),
        sa.column('new', sa.JSON),
        sa.column('reason', sa.Text),
    )
    below = (thresholds.c.name == 'ceiling_litres') & (thresholds.c.value < FLOOR)
    rows = bind.execute(
        sa.select(thresholds.c.scope, thresholds.c.scope_id, thresholds.c.value)
        .where(below)
        .order_by(thresholds.c.scope, thresholds.c.scope_id)
    ).all()
    now = time.time()
    for scope, scope_id, value in rows:
        if scope == 'community':
            community = scope_id
        elif scope == 'elder':
            community = bind.execute(sa.select(elders.c.community).where(elders.c.elder_id == scope_id)).scalar()
        else:
            community = None
        bind.execute(
            audit_log.insert().values(
                at=now,
                actor='tapwatch',
                action='thresholds.update',
                target=f'{scope}:{scope_id}' if scope_id else scope,
                community=community,
                old={'ceiling_litres': value},
                new={'ceiling_litres': FLOOR},
                reason=REASON,
            )
        )
    bind.execute(thresholds.update().where(below).values(value=FLOOR, updated_at=now, updated_by='tapwatch'))


def downgrade() -> None:
    pass  # 1 L is a valid value before this revision too
