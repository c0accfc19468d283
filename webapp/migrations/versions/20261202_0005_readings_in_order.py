"""Readings in order: the lock every recording of a reading takes first, and the time
of the newest reading that acted on each alert rule.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    locks = op.create_table(
        "history_locks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recordings", sa.Integer(), nullable=False),
    )
    # the account's row, there before the first recording (which only updates it)
    op.bulk_insert(locks, [{"id": 1, "recordings": 0}])
    # nullable: a rule no reading has acted on since the upgrade takes the next one
    op.add_column("alert_states", sa.Column("reading_at", sa.DateTime(timezone=True),
                                            nullable=True))


def downgrade():
    with op.batch_alter_table("alert_states") as batch:  # SQLite drops a column by copy
        batch.drop_column("reading_at")
    op.drop_table("history_locks")
