"""Server-side sign-in sessions behind Flask-Login.

The cookie carries a random session id, not the user id. Signing out
deletes the record, so a replayed old cookie finds nothing; each request
reloads the user (and so their role) from the database; sessions end
after an idle period and after an absolute lifetime.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app, session
from flask_login import login_user, logout_user

from ..extensions import db, login_manager
from ..models import User, UserSession, utcnow

#: a session's last_seen_at is written at most this often
TOUCH_EVERY = timedelta(seconds=60)


def init_login(app):
    login_manager.init_app(app)
    login_manager.login_view = "auth.signin"
    login_manager.login_message = "Sign in to see your billing."
    login_manager.login_message_category = "info"
    # the server-side record already binds the cookie; "strong" would also
    # drop sessions whose address changes behind a proxy
    login_manager.session_protection = "basic"


@login_manager.user_loader
def load_user(session_id):
    """The user of a live session record, or ``None`` (expired, revoked or unknown)."""
    record = db.session.get(UserSession, session_id)
    if record is None:
        return None
    now = utcnow()
    cfg = current_app.config
    if now - record.last_seen_at > timedelta(minutes=cfg["SESSION_IDLE_MINUTES"]) or \
            now - record.created_at > timedelta(hours=cfg["SESSION_MAX_HOURS"]):
        db.session.delete(record)
        db.session.commit()
        return None
    if now - record.last_seen_at > TOUCH_EVERY:
        record.last_seen_at = now
        db.session.commit()
    user = record.user
    user.current_session_id = record.id
    return user


def start_session(user: User):
    """Sign ``user`` in with a brand-new session (old cookie contents are dropped)."""
    session.clear()
    record = UserSession(user_id=user.id)
    db.session.add(record)
    db.session.commit()
    user.current_session_id = record.id
    login_user(user)
    session.permanent = True
    current_app.permanent_session_lifetime = timedelta(
        hours=current_app.config["SESSION_MAX_HOURS"])


def end_session(user):
    """Revoke the current session record and clear the cookie."""
    if user is not None and getattr(user, "current_session_id", None):
        record = db.session.get(UserSession, user.current_session_id)
        if record is not None:
            db.session.delete(record)
            db.session.commit()
    logout_user()
    session.clear()
