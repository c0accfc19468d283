"""Usage worked out once: per quarter hour (UTC) and period, the intervals kept one by
one that quarter hours cannot add up, and how far both reach. Empty here: the first
start after the upgrade fills them from the readings (``processes.prepare``), as
``flask billing rebuild-usage`` does.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "usage_quarters",
        sa.Column("quarter", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("usage", sa.BigInteger(), nullable=False),
        sa.Column("prepaid_usage", sa.BigInteger(), nullable=False),
        sa.Column("top_ups", sa.BigInteger(), nullable=False),
        sa.Column("first_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closing", sa.BigInteger(), nullable=False),
        sa.Column("closing_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "usage_intervals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before_plan", sa.String(200), nullable=True),
        sa.Column("before_plan_credits", sa.Numeric(18, 6), nullable=True),
        sa.Column("before_prepaid", sa.Numeric(18, 6), nullable=True),
        sa.Column("before_period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("plan", sa.String(200), nullable=False),
        sa.Column("plan_credits", sa.Numeric(18, 6), nullable=False),
        sa.Column("prepaid", sa.Numeric(18, 6), nullable=False),
        sa.Column("total", sa.Numeric(18, 6), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("known_top_up", sa.Numeric(14, 2), nullable=True),
    )
    op.create_index("ix_usage_intervals_ends_at", "usage_intervals", ["ends_at"])
    state = op.create_table(
        "usage_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("through", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rebuilds", sa.Integer(), nullable=False),
    )
    # not built yet: the next start works the readings out (``rollups.catch_up``)
    op.bulk_insert(state, [{"id": 1, "through": None, "rebuilds": 0}])


def downgrade():
    op.drop_table("usage_state")
    op.drop_index("ix_usage_intervals_ends_at", table_name="usage_intervals")
    op.drop_table("usage_intervals")
    op.drop_table("usage_quarters")
