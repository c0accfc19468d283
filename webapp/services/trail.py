"""Writing the audit trail: every billing action attempt gets a row (a checkout's
own row is ``checkouts.record``'s), every change to the users, to the alert
rules, to the time zone and to the budget gets one too. Refusals past a user's action limit are folded into one
summary row per user per minute, so no one can bury the trail."""
from __future__ import annotations

import hashlib
import logging
import unicodedata

from flask_login import current_user
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..extensions import db
from ..gateway import Declined
from ..models import AuditEntry

log = logging.getLogger(__name__)

TOP_UP = "top-up"
PLAN_CHANGE = "plan change"
USER_ADDED = "user added"
ROLE_CHANGED = "role changed"
USER_REMOVED = "user removed"
ALERT_RULES_CHANGED = "alert rules saved"
ZONE_CHANGED = "time zone saved"
BUDGET_CHANGED = "budget saved"
TOKEN_CREATED = "API token created"
TOKEN_REVOKED = "API token revoked"
#: a summary row: an expired or revoked API token refused, within one hour
TOKEN_REFUSED = "API token refused"
#: a summary row: refused attempts past the user's limit within one minute
REFUSED_ATTEMPTS = "refused attempts"
SIGNED_IN = "signed in"
SIGNED_OUT = "signed out"
#: a summary row: sign-ins refused for one reason from one client address within a minute
SIGN_IN_REFUSED = "sign-in refused"
PASSWORD_CHANGED = "password changed"
#: an existing user's first sign-in through SSO, matched by a verified email
SSO_LINKED = "SSO linked"
ACTIONS = (TOP_UP, PLAN_CHANGE, USER_ADDED, ROLE_CHANGED, USER_REMOVED, ALERT_RULES_CHANGED,
           ZONE_CHANGED, BUDGET_CHANGED, TOKEN_CREATED, TOKEN_REVOKED, TOKEN_REFUSED,
           REFUSED_ATTEMPTS, SIGNED_IN, SIGNED_OUT, SIGN_IN_REFUSED, PASSWORD_CHANGED, SSO_LINKED)
#: who tried a refused sign-in that named nobody (an SSO sign-in refused before the
#: provider said who it was)
NOBODY = "(unknown)"
TOO_MANY = "refused: too many attempts"
#: who made a change from the ``flask users`` commands
COMMAND_LINE = ("(command line)", "cli")


def upstream_outcome(exc) -> str:
    """The audit outcome for an upstream fault: its code, or its kind when it has none;
    a call the dashboard itself held back is marked as never sent."""
    if isinstance(exc, Declined):
        return f"not sent: {exc.reason}"
    return f"upstream error: {exc.code or type(exc).__name__}"


class TrailUnavailable(RuntimeError):
    """The audit trail could not be read or written (the database is busy or away);
    whatever needed the record must not go on."""


def fit(fields: dict) -> dict:
    """``fields`` with every string cut to its column's length, so text from upstream (an
    error code, a request ID) can never make the row fail to write."""
    columns = AuditEntry.__table__.columns
    out = {}
    for key, value in fields.items():
        length = getattr(columns[key].type, "length", None) if key in columns else None
        out[key] = value[:length] if isinstance(value, str) and length else value
    return out


def who(actor=None):
    """``actor``, else the signed-in user; outside any request (a command, a script)
    the change is the command line's."""
    if actor is None:
        signed_in = current_user and current_user.is_authenticated
        actor = (current_user.email, current_user.role) if signed_in else COMMAND_LINE
    email, role = actor
    return {"user_email": email, "user_role": role}


def stage(action, outcome, *, actor=None, **fields) -> AuditEntry:
    """Add a row to the session, to be committed with the change it records (one
    transaction: the change and its record land together or not at all);
    ``actor`` is ``(email, role)`` when it is not the signed-in user (``COMMAND_LINE``)."""
    entry = AuditEntry(**fit({"action": action, "outcome": outcome, **who(actor), **fields}))
    db.session.add(entry)
    return entry


def record(action, outcome, *, actor=None, **fields) -> AuditEntry:
    """Write one finished attempt. Raises ``TrailUnavailable``."""
    entry = stage(action, outcome, actor=actor, **fields)
    commit()
    return entry


def count_refusal(minute: int):
    """Fold one refused attempt past the limit into this user's row for ``minute``
    (a whole number of minutes since the epoch). Raises ``TrailUnavailable``."""
    _fold(f"refused:{current_user.id}:{minute}", REFUSED_ATTEMPTS, TOO_MANY, who())


def count_token_refusal(key: str, *, actor, outcome: str, detail: str):
    """Fold one refusal of an expired or revoked API token into the row ``key`` names
    (the token, the kind and the hour). Raises ``TrailUnavailable``."""
    _fold(key, TOKEN_REFUSED, outcome, who(actor), detail=detail)


def signed_in(email: str, role: str, via: str, address: str, minute: int):
    """``email`` signed in (``via``: ``models.VIA_PASSWORD`` or ``VIA_SSO``) from client
    ``address`` in ``minute`` (whole minutes since the epoch). Folded like a refusal:
    one row a user, way in, address and minute, with a count, so a user signing in
    over and over cannot bury the trail. Raises ``TrailUnavailable``."""
    _fold(_key("in", email, via, address, minute), SIGNED_IN, "done", who((email, role)),
          detail=f"{via} from {address}")


def signed_out(email: str, role: str, via: str, address: str, minute: int):
    """``email`` signed out of a session that came in ``via``; folded as ``signed_in``.
    Raises ``TrailUnavailable``."""
    _fold(_key("out", email, via, address, minute), SIGNED_OUT, "done", who((email, role)),
          detail=f"{via} from {address}")


def sign_in_refused(*, email: str | None, via: str, reason: str, address: str,
                    minute: int, detail: str | None = None):
    """Fold one refused sign-in into the row for its ``reason`` (a short fixed phrase:
    the outcome), ``via`` and client ``address`` in ``minute`` (whole minutes since the
    epoch): a flood of failures from one place is one row with a count, so it cannot
    bury the trail. The row names the first ``email`` tried (``NOBODY`` without one);
    ``detail`` says more (the groups seen, the provider's words). Raises
    ``TrailUnavailable``."""
    _fold(_key("refused", via, reason, address, minute), SIGN_IN_REFUSED,
          f"refused: {reason}", who((shown(email) or NOBODY, "-")),
          detail=" ".join(filter(None, (f"via {via} from {address}.", detail))))


def _key(*parts) -> str:
    """A folded sign-in row's nonce: a digest of what it folds by (an email, an address
    or a reason may be longer than the column)."""
    return "signin:" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:57]


def shown(text: str | None) -> str | None:
    """Typed text (an email someone tried) as a row may keep it: every character a
    reader cannot see, or that could make it pass for another address (controls, NUL,
    zero-width and direction marks), as "?"."""
    if text is None:
        return None
    return "".join(c if c.isprintable() and unicodedata.category(c) not in ("Cf", "Co", "Cn")
                   else "?" for c in text)


def _fold(key: str, action: str, outcome: str, actor: dict, **fields):
    """Add one to the summary row ``key``, or write it with a count of one.

    The row is keyed by its ``nonce`` column, so concurrent requests (in any
    process) add to one row: the first inserts it, the rest increment it.
    Raises ``TrailUnavailable``.
    """
    bump = update(AuditEntry).where(AuditEntry.nonce == key).values(
        repeats=AuditEntry.repeats + 1)
    try:
        if db.session.execute(bump).rowcount:
            db.session.commit()
            return
        db.session.add(AuditEntry(**fit({"action": action, "outcome": outcome, "nonce": key,
                                         "repeats": 1, **actor, **fields})))
        db.session.commit()
    except IntegrityError:  # another request inserted it first
        db.session.rollback()
        try:
            db.session.execute(bump)
        except SQLAlchemyError as exc:
            db.session.rollback()
            raise TrailUnavailable("audit row could not be written") from exc
        commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("audit write failed")
        raise TrailUnavailable("audit row could not be written") from exc


def commit():
    """Commit what was staged (the change and its row). Raises ``TrailUnavailable``."""
    try:
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("audit write failed")
        raise TrailUnavailable("audit row could not be written") from exc
