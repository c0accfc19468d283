"""Creating, changing and removing users; shared by the admin page and the CLI,
so both keep the same password rule, the same last-admin guard and the same
audit entries."""
from __future__ import annotations

import functools
import re
import string
import unicodedata

from sqlalchemy import bindparam, delete, func, select, update
from werkzeug.security import generate_password_hash

from . import trail as audit
from ..extensions import db
from ..checks import has_control_characters
from ..models import ROLES, User, UserSession
from ..settings import ZXCVBN_LOCK

_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
#: format, private-use, unassigned and surrogate code points: nothing a reader sees
_INVISIBLE = {"Cf", "Co", "Cn", "Cs"}
DEMO_USERS = (("admin@demo.test", "admin"), ("finance@demo.test", "finance"),
              ("viewer@demo.test", "viewer"))
DEMO_PASSWORD = "demo"
#: OWASP ASVS 2.1.1
MIN_PASSWORD = 12
MAX_PASSWORD = 1000
#: zxcvbn's score (0-4) a password must reach: 3 is "safely unguessable"
MIN_PASSWORD_SCORE = 3


class UserError(ValueError):
    """A user change that cannot be made; the message says why."""


class WrongPassword(UserError):
    """The current password given to change one's own is not the current password."""


def fold_case(email: str) -> str:
    """``email`` trimmed, its ASCII letters in lower case and nothing else changed: full
    Unicode lowering would make the Kelvin sign's ``\u212aate@`` the same address as
    ``kate@``, letting one person's verified address claim another's account."""
    return (email or "").strip().translate(_ASCII_LOWER)


def normalise_email(email: str) -> str:
    """The stored form of ``email`` (``fold_case``). Raises ``UserError`` when it is not
    an email address, or holds an invisible character (a zero-width space, a direction
    mark) that would make it look like another."""
    email = fold_case(email)
    if len(email) > 254 or not _EMAIL.fullmatch(email) or has_control_characters(email) \
            or any(unicodedata.category(c) in _INVISIBLE for c in email):
        shown = "".join(c if c.isprintable() else "?" for c in email[:80])
        raise UserError(f"“{shown}” is not a valid email address.")
    return email


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"Unknown role “{role}”: choose one of {', '.join(ROLES)}.")
    return role


def password_problem(password: str | None) -> str | None:
    """Why ``password`` is not acceptable, in words for the person choosing it, or None."""
    password = password or ""
    if not password.strip():
        return "The password cannot be blank."
    if len(password) < MIN_PASSWORD:
        return f"The password must have at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"The password must have at most {MAX_PASSWORD} characters."
    # loaded here, not at import: its dictionaries are 13 MB that a web process needs
    # only when someone chooses a password (the lock: see settings._guesses_log10)
    with ZXCVBN_LOCK:
        from zxcvbn import zxcvbn

        # zxcvbn's cost grows with length; the first 100 characters tell enough
        verdict = zxcvbn(password[:100], max_length=100)
    if verdict["score"] < MIN_PASSWORD_SCORE:
        why = verdict["feedback"]["warning"] or "It is too easy to guess."
        return f"This password is too common or easy to guess. {why}".strip()
    return None


def find(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise UserError(f"No user with email {fold_case(email)}.")
    return user


def create_user(email, role, password, *, actor=None, is_demo=False) -> User:
    """Add a user, on the audit trail as done by ``actor`` (``(email, role)``; the
    signed-in user when None). ``password`` None: a user who signs in only through
    the identity provider (their first sign-in there, with this email verified, claims
    the account). Raises ``UserError`` for a bad email or role, a password that breaks
    the rule, a duplicate. Only the sandbox's demo accounts (``is_demo``, made in
    sandbox mode only) skip the password rule."""
    email = normalise_email(email)
    check_role(role)
    if password is not None and not is_demo and (problem := password_problem(password)):
        raise UserError(problem)
    if db.session.scalar(select(User).where(User.email == email)) is not None:
        raise UserError(f"A user with email {email} already exists.")
    user = User(email=email, role=role, is_demo=is_demo)
    if is_demo and password == DEMO_PASSWORD:
        user.password_hash = _demo_hash()  # everyone knows it: worked out once a process
    elif password is not None:
        user.set_password(password)
    db.session.add(user)
    if not is_demo:
        audit.stage(audit.USER_ADDED, "done", actor=actor, subject=email, role_to=role,
                    detail=None if password is not None else "Signs in through SSO only.")
    db.session.commit()
    return user


def _others_admins():
    """How many admins there are besides the user being changed, as part of the
    statement that changes them (``id`` is bound by the caller)."""
    return (select(func.count()).select_from(User)
            .where(User.role == "admin", User.id != bindparam("changed_id")).scalar_subquery())


def change_keeping_an_admin(user: User, statement, what: str):
    """Run ``statement`` (an UPDATE or DELETE of ``user``) unless it would leave no
    admin. Raises ``UserError`` then.

    The check is part of the statement itself, so it is atomic on SQLite; on
    PostgreSQL the admin rows are locked first, so two admins demoting each
    other at once cannot both pass.
    """
    if user.role == "admin":
        db.session.scalars(select(User.id).where(User.role == "admin").with_for_update()).all()
        statement = statement.where(_others_admins() >= 1)
    if db.session.execute(statement, {"changed_id": user.id}).rowcount != 1:
        db.session.rollback()
        raise UserError(f"{user.email} is the last admin and cannot be {what}: make another "
                        "user an admin first.")


def set_role(email, role, *, actor=None) -> User:
    """Change a user's role; it applies on their next request. Raises ``UserError``
    (the last admin is never demoted)."""
    user = find(email)
    check_role(role)
    before = user.role
    if role == before:
        return user
    change_keeping_an_admin(user, update(User).where(User.id == user.id).values(role=role)
                             .execution_options(synchronize_session=False), "demoted")
    audit.stage(audit.ROLE_CHANGED, "done", actor=actor, subject=user.email,
                role_from=before, role_to=role)
    db.session.commit()
    db.session.refresh(user)
    return user


def delete_user(email, *, actor=None):
    """Remove a user and end their sessions. Raises ``UserError`` (the last admin is
    never removed)."""
    user = find(email)
    email, role, user_id = user.email, user.role, user.id
    db.session.execute(delete(UserSession).where(UserSession.user_id == user_id))
    change_keeping_an_admin(user, delete(User).where(User.id == user_id)
                             .execution_options(synchronize_session=False), "removed")
    audit.stage(audit.USER_REMOVED, "done", actor=actor, subject=email, role_from=role)
    db.session.commit()


def change_own_password(user_id: int, session_id: str, current: str, new: str) -> int:
    """The signed-in user (``user_id``, in session ``session_id``) changes their own
    password: ``current`` must be it, ``new`` must keep the rule and differ from it.
    Every other session of theirs ends (the one they changed it from stays). Returns
    how many ended. Raises ``WrongPassword`` (checked first), ``UserError``."""
    user = db.session.get(User, user_id)
    if user is None or not user.check_password(current or ""):
        raise WrongPassword("That is not your current password.")
    if new == current:
        raise UserError("The new password is the same as the current one: choose another.")
    return set_password(user.email, new, actor=(user.email, user.role), keep_session=session_id)


def set_password(email, password, *, actor=None, keep_session: str | None = None,
                 first: bool = False) -> int:
    """Give ``email`` the password ``password`` and end their sessions, all of them or
    all but ``keep_session``; on the audit trail as done by ``actor`` (the signed-in
    user when None). Returns how many sessions ended. A user who signs in only through
    single sign-on gets a password only with ``first`` (the command line's break-glass
    way in). Raises ``UserError`` (the password rule, a demo account, no such user)."""
    user = find(email)
    if user.is_demo:
        raise UserError(f"{user.email} is a demo account: its password stays the published "
                        f"one, “{DEMO_PASSWORD}”, so that everyone can try the sandbox.")
    was_sso_only = not user.has_password
    if was_sso_only and not first:
        raise UserError(f"{user.email} signs in through single sign-on and has no password "
                        "here: giving them one would open a way in that the identity provider "
                        "does not control. If they cannot get in through it, an operator can "
                        "run flask users set-password.")
    if problem := password_problem(password):
        raise UserError(problem)
    user.set_password(password)
    ending = delete(UserSession).where(UserSession.user_id == user.id)
    if keep_session is not None:
        ending = ending.where(UserSession.id != keep_session)
    ended = db.session.execute(ending).rowcount
    sessions = f"{ended} {'other ' if keep_session else ''}session{'' if ended == 1 else 's'} ended"
    audit.stage(audit.PASSWORD_CHANGED, "done", actor=actor, subject=user.email,
                detail=f"{sessions}; first password (single sign-on only until now)."
                if was_sso_only else f"{sessions}.")
    db.session.commit()
    return ended


def admin_count() -> int:
    return db.session.scalar(select(func.count()).select_from(User).where(User.role == "admin"))


def list_users() -> list[User]:
    return db.session.scalars(select(User).order_by(User.email)).all()


@functools.cache
def _demo_hash() -> str:
    """The demo accounts' password, hashed (scrypt) once per process, not once per account
    and start: it is published in the README, so a shared salt gives nothing away."""
    return generate_password_hash(DEMO_PASSWORD)


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
