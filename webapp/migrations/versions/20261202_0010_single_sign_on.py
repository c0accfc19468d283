"""Sign-in through the company's identity provider: a user's identity there (issuer and
subject, never the email alone), users without a password of ours (they sign in
only through the provider), and the way each session came in (password or SSO).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as users:
        users.alter_column("password_hash", existing_type=sa.String(255), nullable=True)
        users.add_column(sa.Column("oidc_issuer", sa.String(255), nullable=True))
        users.add_column(sa.Column("oidc_subject", sa.String(255), nullable=True))
        users.create_unique_constraint("uq_users_oidc_identity", ["oidc_issuer", "oidc_subject"])
    with op.batch_alter_table("user_sessions") as sessions:
        sessions.add_column(sa.Column("via", sa.String(16), nullable=False,
                                      server_default="password"))


def downgrade():
    with op.batch_alter_table("user_sessions") as sessions:
        sessions.drop_column("via")
    with op.batch_alter_table("users") as users:
        users.drop_constraint("uq_users_oidc_identity", type_="unique")
        users.drop_column("oidc_subject")
        users.drop_column("oidc_issuer")
        users.alter_column("password_hash", existing_type=sa.String(255), nullable=False)
