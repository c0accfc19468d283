"""Server-side sign-in sessions behind Flask-Login.

The cookie carries a random session id, not the user id. Signing out
deletes the record, so a replayed old cookie finds nothing; each request
reloads the user (and so their role) from the database; sessions end
after an idle period and after an absolute lifetime.
"""
from __future__ import annotations

from datetime import timedelta, timezone

from flask import current_app, session
from flask_login import UserMixin, login_user, logout_user
from sqlalchemy import bindparam, delete, select, update

from ..clock import app_clock
from ..database import UNAVAILABLE, busy, mark_busy
from ..extensions import db, login_manager
from ..models import VIA_PASSWORD, User, UserSession, role_can

#: the longest ID token kept for signing out at the provider (a longer one is not kept:
#: the provider then asks the person to confirm)
ID_TOKEN_MAX = 16_384
#: a session's last_seen_at is written at most this often (less with a short idle limit)
TOUCH_EVERY = timedelta(seconds=60)


def touch_interval(idle: timedelta) -> timedelta:
    """How often last_seen_at is written: a minute, or half the idle limit if that is less."""
    return min(TOUCH_EVERY, idle / 2)


def init_login(app):
    login_manager.init_app(app)
    login_manager.login_view = "auth.signin"
    login_manager.login_message = "Sign in to see your billing."
    login_manager.login_message_category = "info"
    # the server-side session record is the protection: it is revocable and
    # expires on its own; hashing address and agent on each request adds nothing
    login_manager.session_protection = None
    # the cookie need not be re-signed on every response: idle expiry lives
    # in the session record, not in the cookie's age
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    app.permanent_session_lifetime = timedelta(hours=app.config["SESSION_MAX_HOURS"])


class SignedInUser(UserMixin):
    """The user behind this request, read fresh from the database on every request.

    A plain object rather than an ORM instance: loading it is one indexed
    join, which keeps a warm page cheap.
    """

    __slots__ = ("id", "email", "role", "current_session_id", "via")

    def __init__(self, id, email, role, current_session_id, via=VIA_PASSWORD):
        self.id = id
        self.email = email
        self.role = role
        self.current_session_id = current_session_id
        #: the way this session came in: ``models.VIA_PASSWORD`` or ``VIA_SSO``
        self.via = via

    def can(self, permission: str) -> bool:
        return role_can(self.role, permission)

    def get_id(self):
        return self.current_session_id


_LOAD = (select(UserSession.id, UserSession.created_at, UserSession.last_seen_at,
                UserSession.via, User.id, User.email, User.role)
         .join(User, User.id == UserSession.user_id)
         .where(UserSession.id == bindparam("sid")))


@login_manager.user_loader
def load_user(session_id):
    """The user of a live session record, or ``None`` (expired, revoked or unknown).

    The role comes from the database each time: a demoted user loses rights at once.
    """
    # Core, not the ORM session: this runs on every request and is the page's
    # biggest fixed cost after rendering
    with db.engine.connect() as conn:
        row = conn.execute(_LOAD, {"sid": session_id}).first()
    if row is None:
        return None
    sid, created_at, last_seen_at, via, user_id, email, role = row
    created_at, last_seen_at = _aware(created_at), _aware(last_seen_at)
    now = app_clock().now()
    cfg = current_app.config
    idle = timedelta(minutes=cfg["SESSION_IDLE_MINUTES"])
    touch = touch_interval(idle)
    # last_seen_at may lag the last request by up to ``touch`` (it is written only that
    # often), so the limit allows for it: nobody active within the limit is signed out
    if now - last_seen_at > idle + touch or \
            now - created_at > timedelta(hours=cfg["SESSION_MAX_HOURS"]) or \
            not password_allowed(cfg["PASSWORD_SIGNIN"], via, role):
        _write_if_possible(delete(UserSession).where(UserSession.id == sid))
        return None
    if now - last_seen_at > touch:
        _write_if_possible(update(UserSession).where(UserSession.id == sid)
                           .values(last_seen_at=now))
    return SignedInUser(user_id, email, role, sid, via)


def password_allowed(mode: str, via: str, role: str) -> bool:
    """Whether ``PASSWORD_SIGNIN`` (``mode``) still lets a session that came in ``via``
    live: switched to ``off`` (or ``admins``), the password sessions it no longer
    allows end at their next request, not 12 hours later."""
    return via != VIA_PASSWORD or mode == "on" or (mode == "admins" and role == "admin")


def _write_if_possible(statement) -> None:
    """A write the page can do without (a "last seen" time, an expired record, which the
    purge removes later anyway): skipped while the database is busy, never fatal."""
    app = current_app._get_current_object()
    if busy(app):
        return
    try:
        db.session.execute(statement)
        db.session.commit()
    except UNAVAILABLE as exc:
        db.session.rollback()
        mark_busy(app, exc)


def _aware(when):
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def start_session(user: User, via: str = VIA_PASSWORD, id_token: str | None = None):
    """Sign ``user`` in with a brand-new session (old cookie contents are dropped), which
    came in ``via`` (``models.VIA_PASSWORD`` or ``VIA_SSO``, with the provider's
    ``id_token`` for signing out there: kept here, not in the cookie, which a token
    listing many groups would push past what a browser keeps); past
    ``SESSION_MAX_PER_USER`` live sessions, their oldest are ended."""
    session.clear()
    now = app_clock().now()
    record = UserSession(user_id=user.id, created_at=now, last_seen_at=now, via=via,
                         id_token=id_token if id_token and len(id_token) <= ID_TOKEN_MAX
                         else None)
    db.session.add(record)
    db.session.flush()
    keep = select(UserSession.id).where(UserSession.user_id == user.id).order_by(
        UserSession.created_at.desc(), UserSession.id.desc()).limit(
        current_app.config["SESSION_MAX_PER_USER"])
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                                 UserSession.id.not_in(keep.scalar_subquery())))
    db.session.commit()
    login_user(SignedInUser(user.id, user.email, user.role, record.id, via))
    session.permanent = True


def renew_session(user: User, old_session_id: str, via: str):
    """Put a brand-new session (record, cookie and CSRF token) in place of
    ``old_session_id``: after a password change a copy of the old cookie is worth
    nothing."""
    db.session.execute(delete(UserSession).where(UserSession.id == old_session_id))
    start_session(user, via=via)


def purge_expired(now) -> int:
    """Delete every session record past its idle or absolute lifetime (the background
    worker runs this on a schedule; a record is otherwise removed only when its own
    cookie comes back). Returns how many."""
    cfg = current_app.config
    idle = timedelta(minutes=cfg["SESSION_IDLE_MINUTES"])
    gone = db.session.execute(delete(UserSession).where(
        (UserSession.last_seen_at < now - idle - touch_interval(idle))
        | (UserSession.created_at < now - timedelta(hours=cfg["SESSION_MAX_HOURS"])))).rowcount
    db.session.commit()
    return gone


def end_session(user) -> str | None:
    """Revoke the current session record and clear the cookie. Returns the ID token the
    session came in with through the provider (None for a password session)."""
    id_token = None
    if user is not None and getattr(user, "current_session_id", None):
        id_token = db.session.execute(
            delete(UserSession).where(UserSession.id == user.current_session_id)
            .returning(UserSession.id_token)).scalar()
        db.session.commit()
    logout_user()
    session.clear()
    return id_token
