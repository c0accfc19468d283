"""The team's budget (an amount per plan period or per calendar month of the account's
zone; NULL: none) and how sensitive the spend-spike alert is.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "budget_settings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("amount", sa.Numeric(14, 2), nullable=True),
        sa.Column("basis", sa.String(16), nullable=False, server_default="period"),
        sa.Column("spike_sensitivity", sa.String(8), nullable=False, server_default="medium"),
        sa.Column("updated_by", sa.String(254), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade():
    op.drop_table("budget_settings")
