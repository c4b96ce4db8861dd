"""alert case key: one open case per elder (community) and per meter (maintenance), not per elder and kind

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:00:00

Every stored alert gets its case key (``community``, or ``maintenance:<meter_id>`` for device kinds
and findings routed to maintenance); the unique index on open alerts moves from (elder, kind) to
(elder, case key). Alerts open at the upgrade that the new rule would have grouped (two community
kinds of one elder) stay separate cases: the oldest keeps the key, the others get ``legacy:<id>``,
clear by the data and are resolved by people as before, and new findings join the oldest.
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_DEVICE_KINDS = ('meter_offline', 'meter_fault')
_alerts = sa.table(
    'alerts',
    sa.column('alert_id', sa.String),
    sa.column('elder_id', sa.String),
    sa.column('meter_id', sa.String),
    sa.column('kind', sa.String),
    sa.column('state', sa.String),
    sa.column('raised_at', sa.Float),
    sa.column('details', sa.JSON),
    sa.column('case_key', sa.String),
)


def _key(row: sa.Row) -> str:
    details = row.details if isinstance(row.details, dict) else {}
    if row.kind in _DEVICE_KINDS or details.get('route') == 'maintenance':
        return f'maintenance:{row.meter_id}'
    return 'community'


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('case_key', sa.String(length=80), nullable=False, server_default=''))
        batch_op.drop_index(
            'uq_alerts_open_elder_kind',
            sqlite_where=sa.text("state != 'resolved'"),
            postgresql_where=sa.text("state != 'resolved'"),
        )
    conn = op.get_bind()
    taken: set[tuple[str, str]] = set()
    rows = conn.execute(sa.select(_alerts).order_by(_alerts.c.raised_at, _alerts.c.alert_id)).all()
    for row in rows:
        key = _key(row)
        if row.state != 'resolved':
            if (row.elder_id, key) in taken:
                key = f'legacy:{row.alert_id}'
            taken.add((row.elder_id, key))
        conn.execute(sa.update(_alerts).where(_alerts.c.alert_id == row.alert_id).values(case_key=key))
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(
            'uq_alerts_open_case',
            ['elder_id', 'case_key'],
            unique=True,
            sqlite_where=sa.text("state != 'resolved'"),
            postgresql_where=sa.text("state != 'resolved'"),
        )


def downgrade() -> None:
    _refuse_open_cases_sharing_a_kind()
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(
            'uq_alerts_open_case',
            sqlite_where=sa.text("state != 'resolved'"),
            postgresql_where=sa.text("state != 'resolved'"),
        )
        batch_op.create_index(
            'uq_alerts_open_elder_kind',
            ['elder_id', 'kind'],
            unique=True,
            sqlite_where=sa.text("state != 'resolved'"),
            postgresql_where=sa.text("state != 'resolved'"),
        )
        batch_op.drop_column('case_key')


def _refuse_open_cases_sharing_a_kind() -> None:
    """Before 0008 an elder had one open alert per kind: two open cases of one kind (two meters' maintenance cases)
    cannot go back. Named, with what to do, instead of the unique index's error halfway through."""
    both = (
        sa.select(_alerts.c.elder_id, _alerts.c.kind, sa.func.count())
        .where(_alerts.c.state != 'resolved')
        .group_by(_alerts.c.elder_id, _alerts.c.kind)
        .having(sa.func.count() > 1)
        .order_by(_alerts.c.elder_id, _alerts.c.kind)
    )
    shared = op.get_bind().execute(both).all()
    if shared:
        named = ', '.join(f'elder {elder} has {count} open {kind} cases' for elder, kind, count in shared)
        raise ValueError(
            f'cannot go back before revision 0008, which allows one open alert per elder and kind: {named}. '
            'Resolve all but one of each, then run the downgrade again (nothing was changed).'
        )
