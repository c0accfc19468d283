"""The account's own settings, changed on a settings page: first, the time zone its
days and times are shown in (NULL: the DISPLAY_TIMEZONE setting).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "account_settings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("display_timezone", sa.String(64), nullable=True),
        sa.Column("updated_by", sa.String(254), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade():
    op.drop_table("account_settings")
