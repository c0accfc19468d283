"""Sign-in through the company's identity provider: a user's identity there (issuer and
subject, never the email alone), users without a password of ours (they sign in
only through the provider), and the way each session came in (password or SSO) with the ID token its sign-out at the
provider takes.

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
    # back up after a downgrade: a user the downgrade gave the unusable password has none
    op.execute("UPDATE users SET password_hash = NULL WHERE password_hash = '!'")
    with op.batch_alter_table("user_sessions") as sessions:
        sessions.add_column(sa.Column("via", sa.String(16), nullable=False,
                                      server_default="password"))
        sessions.add_column(sa.Column("id_token", sa.Text(), nullable=True))


def downgrade():
    # sessions that came in through the provider end: the schema below cannot tell them
    op.execute("DELETE FROM user_sessions WHERE via = 'SSO'")
    with op.batch_alter_table("user_sessions") as sessions:
        sessions.drop_column("id_token")
        sessions.drop_column("via")
    # a user without a password (single sign-on only) gets one nobody knows: the column
    # goes back to NOT NULL, and such a user cannot sign in until given one
    op.execute("UPDATE users SET password_hash = '!' WHERE password_hash IS NULL")
    with op.batch_alter_table("users") as users:
        users.drop_constraint("uq_users_oidc_identity", type_="unique")
        users.drop_column("oidc_subject")
        users.drop_column("oidc_issuer")
        users.alter_column("password_hash", existing_type=sa.String(255), nullable=False)
