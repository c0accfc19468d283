"""Creating, changing and removing users; shared by the admin page and the CLI."""
from __future__ import annotations

import re

from sqlalchemy import delete, select

from ..extensions import db
from ..models import ROLES, User, UserSession

_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
DEMO_USERS = (("admin@demo.test", "admin"), ("finance@demo.test", "finance"),
              ("viewer@demo.test", "viewer"))
DEMO_PASSWORD = "demo"
MIN_PASSWORD = 8


class UserError(ValueError):
    """A user change that cannot be made; the message says why."""


def normalise_email(email: str) -> str:
    """The stored form of ``email``. Raises ``UserError`` when it is not an email address."""
    email = (email or "").strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise UserError(f"“{email[:80]}” is not a valid email address.")
    return email


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"Unknown role “{role}”: choose one of {', '.join(ROLES)}.")
    return role


def find(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise UserError(f"No user with email {email.strip().lower()}.")
    return user


def create_user(email, role, password, *, is_demo=False) -> User:
    """Add a user. Raises ``UserError`` for a bad email or role, a short password, a duplicate."""
    email = normalise_email(email)
    check_role(role)
    if not is_demo and len(password or "") < MIN_PASSWORD:
        raise UserError(f"The password must have at least {MIN_PASSWORD} characters.")
    if db.session.scalar(select(User).where(User.email == email)) is not None:
        raise UserError(f"A user with email {email} already exists.")
    user = User(email=email, role=role, is_demo=is_demo)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def set_role(email, role) -> User:
    """Change a user's role; it applies on their next request. Raises ``UserError``."""
    user = find(email)
    user.role = check_role(role)
    db.session.commit()
    return user


def delete_user(email):
    """Remove a user and end their sessions. Raises ``UserError``."""
    user = find(email)
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    db.session.delete(user)
    db.session.commit()


def list_users() -> list[User]:
    return db.session.scalars(select(User).order_by(User.email)).all()


def sync_demo_users(sandbox_mode: bool) -> bool:
    """Seed the demo accounts in sandbox mode; make sure they never exist outside it."""
    if not sandbox_mode:
        demo = db.session.scalars(select(User).where(User.is_demo.is_(True))).all()
        for user in demo:
            db.session.execute(delete(UserSession).where(UserSession.user_id == user.id))
            db.session.delete(user)
        db.session.commit()
        return False
    for email, role in DEMO_USERS:
        user = db.session.scalar(select(User).where(User.email == email))
        if user is None:
            create_user(email, role, DEMO_PASSWORD, is_demo=True)
    return True
