"""Tokens for the read-only JSON API: made, listed, revoked, and checked on each request.

A token reads ``wgb_<public id>_<secret>_<checksum>``: the prefix lets secret scanners
find a leaked one, the checksum (CRC32 of the rest) refuses a mistyped one without a
database read, the public id finds its row. The secret is kept only as an HMAC keyed
with ``API_TOKEN_PEPPER``, so the database alone lets no one in; the whole token is
shown once, when it is made.

A token's rights are its scopes intersected with its owner's role *now*: the role is
read with the token on every request, so a demoted owner's token loses what the new
role may not do at once, and a removed owner's personal token stops. Team tokens,
made by an admin, belong to the account and outlive whoever made them.

Services take plain values and raise the project's errors; the pages (the settings
page, the API, the command) turn those into answers.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import ApiToken, User, role_can
from . import trail

PREFIX = "wgb"
#: what each scope lets a token read, and the role permission its owner needs for it
SCOPES = {"balance:read": "view", "usage:read": "view", "audit:read": "audit"}
SCOPE_WORDS = {"balance:read": "the balance, its history",
               "usage:read": "usage by day and by hour",
               "audit:read": "the audit trail and checkouts (finance and admins)"}
#: the lifetimes on offer, in days; every token expires
LIFETIMES = (7, 30, 90, 365)
DEFAULT_LIFETIME = 30
#: the page warns this long before a token expires
WARN_BEFORE = timedelta(days=7)
#: last use is written at most this often
TOUCH_EVERY = timedelta(seconds=60)
NAME_MAX = 100

_ALNUM = string.ascii_letters + string.digits
_PUBLIC = string.ascii_lowercase + string.digits
PUBLIC_LENGTH, SECRET_LENGTH, CHECKSUM_LENGTH = 8, 32, 6
_SHAPE = re.compile(rf"{PREFIX}_([a-z0-9]{{{PUBLIC_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})"
                    rf"_([A-Za-z0-9]{{{CHECKSUM_LENGTH}}})")

INVALID, EXPIRED, REVOKED = "invalid_token", "token_expired", "token_revoked"
#: refusals of an expired or revoked token go on the trail as one row per token an hour
REFUSALS_EVERY = 3600


class TokenError(ValueError):
    """A token cannot be made or revoked as asked; ``field`` names the form field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class Refused(Exception):
    """A presented token does not let its bearer in: ``kind`` is ``invalid_token``,
    ``token_expired`` or ``token_revoked``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Grant:
    """A token that let its bearer in: what it may read now, and its own details."""

    id: int
    name: str
    hint: str
    scopes: tuple[str, ...]
    #: the scopes the owner's role allows now (a team token: all its scopes)
    rights: frozenset[str]
    team: bool
    owner_email: str
    owner_role: str | None
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None = None


# -- the token's text --------------------------------------------------------------------

def _base62(number: int, length: int) -> str:
    out = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        out.append(_ALNUM[digit])
    return "".join(reversed(out))


def checksum(public_id: str, secret: str) -> str:
    return _base62(zlib.crc32(f"{PREFIX}_{public_id}_{secret}".encode()), CHECKSUM_LENGTH)


def parse(text: str | None) -> tuple[str, str] | None:
    """``(public id, secret)`` of a well-formed token whose checksum holds, else ``None``
    (no database read)."""
    match = _SHAPE.fullmatch(text or "")
    if match is None or not hmac.compare_digest(checksum(match[1], match[2]), match[3]):
        return None
    return match[1], match[2]


def _new_text() -> tuple[str, str, str]:
    public_id = "".join(secrets.choice(_PUBLIC) for _ in range(PUBLIC_LENGTH))
    secret = "".join(secrets.choice(_ALNUM) for _ in range(SECRET_LENGTH))
    return public_id, secret, f"{PREFIX}_{public_id}_{secret}_{checksum(public_id, secret)}"


def _hmac(public_id: str, secret: str) -> str:
    pepper = current_app.config["API_TOKEN_PEPPER"].encode()
    return hmac.new(pepper, f"{public_id}:{secret}".encode(), hashlib.sha256).hexdigest()


def hint_of(text: str) -> str:
    """How a token is listed: ``wgb_ab12…x9``."""
    return f"{text[:len(PREFIX) + 5]}…{text[-2:]}"


# -- made, listed, revoked -----------------------------------------------------------------

def check_request(name: str, scopes, days, *, role: str | None) -> tuple[str, tuple, int]:
    """The name, scopes and lifetime as asked, checked; ``role`` is the owner's (``None``
    for a team token). Raises ``TokenError`` naming the field."""
    name = (name or "").strip()
    if not name:
        raise TokenError("Give the token a name, like “month-end reconciliation”.", "name")
    if len(name) > NAME_MAX or not name.isprintable():
        raise TokenError(f"Use at most {NAME_MAX} printable characters.", "name")
    scopes = tuple(s for s in SCOPES if s in set(scopes or ()))
    if not scopes or len(scopes) != len(set(scopes or ())):
        raise TokenError("Choose at least one of " + ", ".join(SCOPES) + ".", "scopes")
    if role is not None:
        barred = [s for s in scopes if not role_can(role, SCOPES[s])]
        if barred:
            raise TokenError(f"A {role} cannot read {', '.join(barred)}.", "scopes")
    try:
        days = int(days if days not in (None, "") else DEFAULT_LIFETIME)
    except (TypeError, ValueError):
        days = None
    if days not in LIFETIMES:
        raise TokenError("Choose 7, 30, 90 or 365 days.", "days")
    return name, scopes, days


def create(name: str, scopes, days, *, owner: User | None, actor: tuple[str, str],
           now: datetime) -> tuple[ApiToken, str]:
    """A new token and its text (shown once, kept nowhere). ``owner`` is the user a
    personal token belongs to; ``None`` makes a team token (an admin's, or the command
    line's). On the trail with the token's hint. Raises ``TokenError`` or
    ``trail.TrailUnavailable``."""
    name, scopes, days = check_request(name, scopes, days,
                                       role=owner.role if owner is not None else None)
    public_id, secret, text = _new_text()
    token = ApiToken(public_id=public_id, secret_hmac=_hmac(public_id, secret),
                     hint=hint_of(text), name=name, scopes=" ".join(scopes),
                     team=owner is None, owner_id=owner.id if owner else None,
                     owner_email=owner.email if owner else actor[0], created_at=now,
                     expires_at=now + timedelta(days=days))
    db.session.add(token)
    trail.stage(trail.TOKEN_CREATED, "created", actor=actor, subject=token.owner_email,
                detail=_described(token))
    trail.commit()
    return token, text


def _described(token: ApiToken) -> str:
    kind = "team token" if token.team else f"personal token of {token.owner_email}"
    return (f"{token.hint} “{token.name}”, {kind}, {token.scopes.replace(' ', ', ')}, "
            f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC")


def visible_to(user_id: int | None, *, admin: bool) -> list[ApiToken]:
    """The tokens a user sees on the settings page: their own personal ones, and for an
    admin every token; newest first. ``user_id`` ``None``: all (the command line)."""
    query = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if user_id is not None and not admin:
        query = query.where(ApiToken.owner_id == user_id, ApiToken.team.is_(False))
    return list(db.session.scalars(query))


def find(ref: str) -> ApiToken:
    """A token by its whole text, its public id, or its listing (``wgb_ab12…x9``).
    Raises ``TokenError``."""
    ref = (ref or "").strip()
    parsed = parse(ref)
    if parsed is not None:
        found = db.session.scalar(select(ApiToken).where(ApiToken.public_id == parsed[0]))
    elif "…" in ref:
        matches = db.session.scalars(select(ApiToken).where(ApiToken.hint == ref)).all()
        found = matches[0] if len(matches) == 1 else None
        if len(matches) > 1:
            raise TokenError(f"Several tokens are listed as {ref}; give the public id.")
    else:
        found = db.session.scalar(select(ApiToken).where(ApiToken.public_id == ref))
    if found is None:
        raise TokenError(f"No token {ref[:40]!r}.")
    return found


def revoke(token: ApiToken, *, actor: tuple[str, str], now: datetime) -> bool:
    """Revoke ``token`` (it is refused from the next request on, in every process: each
    request reads it); ``False`` when it was revoked already. On the trail. Raises
    ``trail.TrailUnavailable``."""
    if token.revoked_at is not None:
        return False
    token.revoked_at, token.revoked_by = now, actor[0]
    trail.stage(trail.TOKEN_REVOKED, "revoked", actor=actor, subject=token.owner_email,
                detail=_described(token))
    trail.commit()
    return True


def revoke_personal(user_id: int, *, actor: tuple[str, str], now: datetime) -> int:
    """Revoke every live personal token of user ``user_id`` (a team token outlives its
    maker), each on the trail; the caller commits. Returns how many."""
    live = db.session.scalars(select(ApiToken).where(
        ApiToken.owner_id == user_id, ApiToken.team.is_(False),
        ApiToken.revoked_at.is_(None))).all()
    for token in live:
        token.revoked_at, token.revoked_by = now, actor[0]
        trail.stage(trail.TOKEN_REVOKED, "revoked", actor=actor, subject=token.owner_email,
                    detail=_described(token))
    return len(live)


def may_revoke(token: ApiToken, user_id: int, role: str) -> bool:
    """An admin may revoke any token; anyone else their own personal ones."""
    return role_can(role, "users") or (not token.team and token.owner_id == user_id)


# -- checked on each request -------------------------------------------------------------

_LOAD = (select(ApiToken, User.email, User.role)
         .outerjoin(User, User.id == ApiToken.owner_id))


def authenticate(text: str | None, now: datetime) -> Grant:
    """The grant of the token ``text``, with its owner's role as it is now. Raises
    ``Refused`` (an expired or revoked token's refusal is on the trail, one row per
    token an hour with the count) or ``SQLAlchemyError``."""
    parsed = parse(text)
    if parsed is None:
        raise Refused(INVALID, "The bearer token is missing or malformed. Send "
                               "“Authorization: Bearer wgb_…” with a token from Settings › "
                               "API tokens.")
    row = db.session.execute(_LOAD.where(ApiToken.public_id == parsed[0])).first()
    if row is None or not hmac.compare_digest(row[0].secret_hmac, _hmac(*parsed)):
        raise Refused(INVALID, "This token is not known. It may have been mistyped.")
    token, email, role = row
    if token.revoked_at is not None:
        _refusal(token, REVOKED, now)
        raise Refused(REVOKED, f"This token was revoked on "
                               f"{token.revoked_at:%Y-%m-%d %H:%M} UTC.")
    if token.expires_at <= now:
        _refusal(token, EXPIRED, now)
        raise Refused(EXPIRED, f"This token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC. "
                               "Make a new one in Settings › API tokens.")
    scopes = tuple(token.scopes.split())
    if token.team:
        rights = frozenset(scopes)
    elif email is None or email != token.owner_email:
        raise Refused(INVALID, "The user this token belonged to no longer has access.")
    else:
        rights = frozenset(s for s in scopes if role_can(role, SCOPES[s]))
    return Grant(token.id, token.name, token.hint, scopes, rights, token.team,
                 token.owner_email, role, token.created_at, token.expires_at,
                 token.last_used_at)


def touch(grant: Grant, address: str, now: datetime) -> None:
    """Note the token's use: written at most once a minute (no statement at all while
    the row read says it was written within the minute; the condition is in the
    statement too, so many processes at once write it once). A write the request can
    do without: a failure is rolled back and forgotten."""
    if grant.last_used_at is not None and now - grant.last_used_at < TOUCH_EVERY:
        return
    try:
        written = db.session.execute(
            update(ApiToken).where(ApiToken.id == grant.id, or_(
                ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - TOUCH_EVERY))
            .values(last_used_at=now, last_used_address=address[:64]))
        if written.rowcount:
            db.session.commit()
        else:
            db.session.rollback()
    except SQLAlchemyError:
        db.session.rollback()


def _refusal(token: ApiToken, kind: str, now: datetime) -> None:
    """One trail row per token, kind and hour, counting the refusals (a script retrying
    in a loop adds to a number, not to the trail). Best effort: the refusal stands even
    when the trail cannot take it."""
    hour = int(now.timestamp()) // REFUSALS_EVERY
    try:
        trail.count_token_refusal(f"token:{token.id}:{kind}:{hour}", actor=(
            token.owner_email, "api token"), outcome=f"refused: {kind.replace('_', ' ')}",
            detail=_described(token))
    except trail.TrailUnavailable:
        pass


def expiring_soon(token: ApiToken, now: datetime) -> bool:
    return token.revoked_at is None and now < token.expires_at <= now + WARN_BEFORE


def status(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    return "active"

