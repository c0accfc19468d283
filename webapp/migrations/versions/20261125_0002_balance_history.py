"""Balance history, and what readings showed of each checkout.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "balance_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plan", sa.String(200), nullable=False),
        sa.Column("plan_credits_remaining", sa.Numeric(18, 6), nullable=False),
        sa.Column("prepaid_balance", sa.Numeric(18, 6), nullable=False),
        sa.Column("total_balance", sa.Numeric(18, 6), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_balance_snapshots_first_seen_at", "balance_snapshots",
                    ["first_seen_at"])
    with op.batch_alter_table("audit_entries") as batch:
        batch.add_column(sa.Column("seen", sa.String(32), nullable=True))
        batch.add_column(sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_column("seen_at")
        batch.drop_column("seen")
    op.drop_table("balance_snapshots")
