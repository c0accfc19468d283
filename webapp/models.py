"""What the dashboard stores: users, their sign-in sessions, failed sign-ins,
the audit trail of billing actions, the balance history (the lock its
recordings take, and its usage worked out per quarter hour), and the alert
rules, their states and deliveries."""
from __future__ import annotations

import functools
import secrets
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import (BigInteger, DateTime, ForeignKey, Index, Numeric, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db

ROLES = ("viewer", "finance", "admin")

#: who may do what; the server checks this on every request
PERMISSIONS = {
    "view": {"viewer", "finance", "admin"},
    "topup": {"finance", "admin"},
    "change_plan": {"admin"},
    "audit": {"finance", "admin"},
    "users": {"admin"},
    "alerts": {"finance", "admin"},
    "alerts_edit": {"admin"},
    #: the account's settings page (the time zone days and times are shown in)
    "settings": {"finance", "admin"},
    #: the budget and the spike alert's sensitivity (on the Alerts page)
    "budget": {"finance", "admin"},
}


def role_can(role: str, permission: str) -> bool:
    """The one place that says what a role may do."""
    return role in PERMISSIONS[permission]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(db.TypeDecorator):
    """Timezone-aware UTC datetimes on SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


#: how a session came in
VIA_PASSWORD = "password"
VIA_SSO = "SSO"


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject",
                                       name="uq_users_oidc_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    #: None: no password of ours; the user signs in only through the identity provider
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: who the identity provider says this is (``iss`` and ``sub``), once they signed in
    #: through it: the identity, which the email alone never is
    oidc_issuer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    oidc_subject: Mapped[str | None] = mapped_column(String(255), nullable=True)

    def set_password(self, password: str):
        # werkzeug's default is scrypt with a random salt
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """False for a user without a password (after the same work, so timing does
        not tell them apart)."""
        if self.password_hash is None:
            check_password_hash(_no_password(), password)
            return False
        return check_password_hash(self.password_hash, password)

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    @property
    def uses_sso(self) -> bool:
        return self.oidc_subject is not None


@functools.cache
def _no_password() -> str:
    """A hash nobody knows the password of, made once a process, for ``check_password``
    of a user who has none."""
    return generate_password_hash(secrets.token_urlsafe(16))



class UserSession(db.Model):
    """A server-side record of one sign-in; deleting it signs that cookie out."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True,
                                    default=lambda: secrets.token_urlsafe(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the way in: ``VIA_PASSWORD`` or ``VIA_SSO``
    via: Mapped[str] = mapped_column(String(16), default=VIA_PASSWORD,
                                     server_default=VIA_PASSWORD)
    #: a session that came in through the provider: its ID token, the hint its
    #: end-session endpoint takes when the person signs out
    id_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    user: Mapped[User] = relationship()


class LoginFailure(db.Model):
    """One failed sign-in, for throttling by account and by client address."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_email_at", "email", "at"),
                      Index("ix_login_failures_address_at", "address", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(db.Model):
    """One attempt at a billing action, written before anyone is sent to checkout,
    or one change to the users; refusals past a user's limit share one row a minute."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_at", "at"), Index("ix_audit_user_at", "user_email", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_email: Mapped[str] = mapped_column(String(254))
    user_role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))  # one of services.trail.ACTIONS
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    #: a refused top-up's amount as it was typed (trimmed), so a reviewer sees what was tried
    amount_typed: Mapped[str | None] = mapped_column(String(40), nullable=True)
    plan_from: Mapped[str | None] = mapped_column(String(200), nullable=True)
    plan_to: Mapped[str | None] = mapped_column(String(200), nullable=True)
    plan_from_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    plan_to_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: the user a users-page change was made to, and their role before and after
    subject: Mapped[str | None] = mapped_column(String(254), nullable=True)
    role_from: Mapped[str | None] = mapped_column(String(16), nullable=True)
    role_to: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: on a summary row: how many refused attempts past the limit it stands for
    repeats: Mapped[int | None] = mapped_column(nullable=True)
    outcome: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(500), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    checkout_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    #: the form's one-time token: a replayed form finds the first attempt
    nonce: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    #: what later balance readings showed of a checkout: "credited" or "plan changed"
    seen: Mapped[str | None] = mapped_column(String(32), nullable=True)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BalanceSnapshot(db.Model):
    """The account's figures as read from the API, from first to last seen unchanged.

    A reading that changes nothing only moves ``last_seen_at`` on, so the
    series stays compact; the API keeps no history, so this table is it.
    """

    __tablename__ = "balance_snapshots"
    __table_args__ = (Index("ix_balance_snapshots_first_seen_at", "first_seen_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    plan: Mapped[str] = mapped_column(String(200))
    plan_credits_remaining: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    prepaid_balance: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    total_balance: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)


#: the ``HistoryLock`` row of the account the dashboard watches (it watches one)
HISTORY = 1


class HistoryLock(db.Model):
    """The row every recording of a balance reading updates first, and holds until it
    commits: recordings are taken one at a time across processes and hosts, so each
    one reads the newest snapshot as it truly is before its own (see
    ``services.history.readings.record``).

    A row's update is the one lock SQLite and PostgreSQL share: on SQLite it takes
    the database's write lock before the newest snapshot is read, on PostgreSQL
    that row's lock, which nothing but a recording waits for.
    """

    __tablename__ = "history_locks"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: readings recorded so far (the update has to change something; this is it)
    recordings: Mapped[int] = mapped_column(default=0)


#: money in the usage rollups is kept in millionths of a dollar, as whole numbers: a
#: sum in the database is then exact on SQLite (whose NUMERIC is a float) too
MICROS = 1_000_000


class UsageQuarter(db.Model):
    """The usage of one quarter hour (UTC) of one period, worked out once that quarter
    hour is complete (``services.history.rollups``): what its plain intervals (those
    ending in it that the rules tell exactly, no gap) add up to, and the balance its
    newest reading showed. A row for every quarter hour a reading covers, so a day
    with readings has rows even when nothing was used."""

    __tablename__ = "usage_quarters"

    #: whole quarter hours since 1970-01-01 00:00 UTC
    quarter: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    usage: Mapped[int] = mapped_column(BigInteger)  # millionths of a dollar
    #: the part of ``usage`` drawn from prepaid credit (the rest drew plan credits)
    prepaid_usage: Mapped[int] = mapped_column(BigInteger)
    top_ups: Mapped[int] = mapped_column(BigInteger)
    #: the start of the earliest interval summed here (the forecast's pace counts from it)
    first_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the newest reading of the period that covers the quarter hour: its total, first seen
    closing: Mapped[int] = mapped_column(BigInteger)
    closing_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageInterval(db.Model):
    """An interval kept one by one, with both readings' figures, because the quarter
    hours cannot simply add it up: a reset or a plan change (worked out again with the
    plan list when shown), usage the readings cannot tell, a gap, or -- with no
    reading before it (``starts_at`` NULL) -- the first reading kept."""

    __tablename__ = "usage_intervals"
    __table_args__ = (Index("ix_usage_intervals_ends_at", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    before_plan: Mapped[str | None] = mapped_column(String(200), nullable=True)
    before_plan_credits: Mapped[Decimal | None] = mapped_column(Numeric(18, 6), nullable=True)
    before_prepaid: Mapped[Decimal | None] = mapped_column(Numeric(18, 6), nullable=True)
    before_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    plan: Mapped[str] = mapped_column(String(200))
    plan_credits: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    prepaid: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    total: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    #: a top-up credited within the interval (the audit trail's), when there was one
    known_top_up: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)


class UsageState(db.Model):
    """How far the usage rollups reach (one row, id 1): every quarter hour before
    ``through`` is in ``usage_quarters`` / ``usage_intervals``; from it on, a page reads
    the readings themselves. NULL: not built yet (the next start builds them)."""

    __tablename__ = "usage_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    through: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: how many times they were rebuilt: a process drops what it kept of them when it moves
    rebuilds: Mapped[int] = mapped_column(default=0)


class AccountSettings(db.Model):
    """The account's own settings (one row, id 1), changed on the settings page; a
    NULL falls back to the environment's setting of the same name."""

    __tablename__ = "account_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the IANA zone days and times are shown in (``DISPLAY_TIMEZONE`` when NULL)
    display_timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AlertSettings(db.Model):
    """The admin's alert rules (one row); the built-in plan-credit rules need none."""

    __tablename__ = "alert_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    balance_below: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    runs_out_within_days: Mapped[int | None] = mapped_column(nullable=True)
    email_roles: Mapped[str] = mapped_column(String(64), default="finance,admin")
    extra_emails: Mapped[str] = mapped_column(String(2000), default="")
    updated_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BudgetSettings(db.Model):
    """The team's budget and the spend-spike alert's sensitivity (one row, id 1), set on
    the Alerts page by finance or an admin. A budget never stops usage: the API has no
    cap; it is what the page and the alerts measure spending against."""

    __tablename__ = "budget_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: dollars per window; NULL: no budget
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    #: the window: "period" (the plan period) or "month" (a calendar month of the zone)
    basis: Mapped[str] = mapped_column(String(16), default="period")
    #: "low" | "medium" | "high"
    spike_sensitivity: Mapped[str] = mapped_column(String(8), default="medium")
    updated_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AlertState(db.Model):
    """Whether a rule may fire: it fires once when its condition becomes true
    (armed -> fired) and re-arms when the condition is false again -- on readings
    newer than the last one that acted on it only."""

    __tablename__ = "alert_states"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    armed: Mapped[bool] = mapped_column(default=True)
    crossings: Mapped[int] = mapped_column(default=0)
    #: when the newest reading that acted on this rule was read: an older one, checked
    #: late by a slower process, neither fires nor re-arms it
    reading_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Alert(db.Model):
    """One crossing (or a test), written once by whichever process saw it first."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_fired_at", "fired_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(220), unique=True)
    rule: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    figures: Mapped[str] = mapped_column(Text)  # JSON, money as strings
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertDelivery(db.Model):
    """One alert to one channel target, retried with backoff until it is sent."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))  # "email" | "webhook"
    target: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    alert: Mapped[Alert] = relationship()


class AlertAttempt(db.Model):
    """Each try at a delivery, as it went."""

    __tablename__ = "alert_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("alert_deliveries.id",
                                                        ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(default=False)
    detail: Mapped[str] = mapped_column(String(500), default="")


class ApiToken(db.Model):
    """A bearer token for the read-only JSON API (``services.tokens``). The secret is kept
    only as an HMAC with the deployment's pepper (``API_TOKEN_PEPPER``): a copy of the
    database lets no one call the API. A personal token carries its owner's rights as
    they are at each request; a team token (``team``) outlives the admin who made it."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the token's public part (``wgb_<public_id>_...``): how a presented token is found
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hmac: Mapped[str] = mapped_column(String(64))
    #: how the token is listed: ``wgb_ab12…x9`` (the public id's start, the checksum's end)
    hint: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[str] = mapped_column(String(100))  # space-separated
    team: Mapped[bool] = mapped_column(default=False)
    #: a personal token's owner (a team token's creator); the email too, so a user made
    #: later under a reused id never inherits a removed user's tokens
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True)
    owner_email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
