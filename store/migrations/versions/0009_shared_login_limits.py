"""shared login limits: failed logins and familiar addresses in the store; dead_letters.source indexed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 03:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'login_failures',
        sa.Column('id', Id, autoincrement=True, nullable=False),
        sa.Column('username', sa.String(length=128), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('familiar', sa.Boolean(), nullable=False),
        sa.Column('forgiven', sa.Boolean(), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_login_failures')),
    )
    op.create_index(op.f('ix_login_failures_at'), 'login_failures', ['at'], unique=False)
    op.create_index('ix_login_failures_username_at', 'login_failures', ['username', 'at'], unique=False)
    op.create_index('ix_login_failures_address_at', 'login_failures', ['address', 'at'], unique=False)
    op.create_table(
        'login_familiar',
        sa.Column('username', sa.String(length=128), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('until', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('username', 'address', name=op.f('pk_login_familiar')),
    )
    op.create_index(op.f('ix_dead_letters_source'), 'dead_letters', ['source'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_dead_letters_source'), table_name='dead_letters')
    op.drop_table('login_familiar')
    op.drop_index('ix_login_failures_address_at', table_name='login_failures')
    op.drop_index('ix_login_failures_username_at', table_name='login_failures')
    op.drop_index(op.f('ix_login_failures_at'), table_name='login_failures')
    op.drop_table('login_failures')
