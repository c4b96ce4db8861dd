"""dead letter ids never reused on SQLite (AUTOINCREMENT), as PostgreSQL's never are

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 05:00:00

Retention deletes old dead letters; once it had deleted them all, SQLite numbered the next from 1 again,
ids the InfluxDB mirror had passed (its cursor is the largest id it sent), so none of them was mirrored.
"""

from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return  # PostgreSQL's identity never hands out an id twice
    with op.batch_alter_table(
        'dead_letters', recreate='always', table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    with op.batch_alter_table(
        'dead_letters', recreate='always', table_kwargs={'sqlite_autoincrement': False}
    ) as batch_op:
        pass
