"""The audit trail says more: the amount as typed, plan names, changes to users,
and refused attempts folded into one row a user a minute.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    sa.Column("amount_typed", sa.String(40), nullable=True),
    sa.Column("plan_from_name", sa.String(200), nullable=True),
    sa.Column("plan_to_name", sa.String(200), nullable=True),
    sa.Column("subject", sa.String(254), nullable=True),
    sa.Column("role_from", sa.String(16), nullable=True),
    sa.Column("role_to", sa.String(16), nullable=True),
    sa.Column("repeats", sa.Integer(), nullable=True),
)


def upgrade():
    # batch mode: SQLite cannot add several columns in one ALTER
    with op.batch_alter_table("audit_entries") as batch:
        for column in COLUMNS:
            batch.add_column(column)
    op.create_index("ix_audit_user_at", "audit_entries", ["user_email", "at"])


def downgrade():
    op.drop_index("ix_audit_user_at", table_name="audit_entries")
    with op.batch_alter_table("audit_entries") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column.name)
