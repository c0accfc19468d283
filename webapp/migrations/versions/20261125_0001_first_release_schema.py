"""The first release's schema: users, sign-in sessions, failed sign-ins, audit trail.

A database made by the first release (``create_all``, no migration history)
already has these tables: each is created only where it is missing, so
``flask db upgrade`` adopts such a database instead of failing on it.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _missing(table: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade():
    if _missing("users"):
        op.create_table(
            "users",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("email", sa.String(254), nullable=False, unique=True),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("password_hash", sa.String(255), nullable=False),
            sa.Column("is_demo", sa.Boolean(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )
    if _missing("user_sessions"):
        op.create_table(
            "user_sessions",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        )
    if _missing("login_failures"):
        op.create_table(
            "login_failures",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("email", sa.String(254), nullable=False),
            sa.Column("address", sa.String(64), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_login_failures_email_at", "login_failures", ["email", "at"])
        op.create_index("ix_login_failures_address_at", "login_failures", ["address", "at"])
    if _missing("audit_entries"):
        op.create_table(
            "audit_entries",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("user_email", sa.String(254), nullable=False),
            sa.Column("user_role", sa.String(16), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("amount", sa.Numeric(14, 2), nullable=True),
            sa.Column("plan_from", sa.String(200), nullable=True),
            sa.Column("plan_to", sa.String(200), nullable=True),
            sa.Column("outcome", sa.String(64), nullable=False),
            sa.Column("detail", sa.String(500), nullable=True),
            sa.Column("request_id", sa.String(100), nullable=True),
            sa.Column("checkout_url", sa.String(2048), nullable=True),
            sa.Column("nonce", sa.String(64), nullable=True, unique=True),
        )
        op.create_index("ix_audit_at", "audit_entries", ["at"])


def downgrade():
    for table in ("audit_entries", "login_failures", "user_sessions", "users"):
        op.drop_table(table)
