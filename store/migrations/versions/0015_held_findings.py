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
    _refuse_to_drop_held_findings()
    op.drop_index(op.f('ix_held_findings_release_at'), table_name='held_findings')
    op.drop_table('held_findings')


def _refuse_to_drop_held_findings() -> None:
    """Dropping the table forgets what it holds: a silence found inside a snooze window, held for when the window
    ends, would then call nobody until the water came back. Named, unless the operator said to drop them."""
    config = op.get_context().config
    if config is not None and config.attributes.get('drop_held_findings'):
        return
    held = sa.table('held_findings', sa.column('elder_id'), sa.column('kind'))
    rows = op.get_bind().execute(sa.select(held.c.elder_id, held.c.kind).order_by(held.c.elder_id, held.c.kind)).all()
    if rows:
        named = ', '.join(f"elder {elder}'s {kind}" for elder, kind in rows[:20]) + (' ...' if len(rows) > 20 else '')
        raise ValueError(
            f'cannot go back before revision 0015, which drops the {len(rows)} finding(s) held through a snooze '
            f'until its window ends: {named}. Wait for their windows to end (or end the windows), or drop them: '
            'run it again with --drop-held-findings (nothing was changed).'
        )
