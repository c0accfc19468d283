"""Writing the audit trail. Every billing action attempt gets a row, and the
row is committed *before* the user is sent to checkout; every change to the
users gets one too. Refusals past a user's action limit are folded into one
summary row per user per minute, so no one can bury the trail."""
from __future__ import annotations

import logging

from flask_login import current_user
from sqlalchemy import select, update
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
#: a summary row: refused attempts past the user's limit within one minute
REFUSED_ATTEMPTS = "refused attempts"
ACTIONS = (TOP_UP, PLAN_CHANGE, USER_ADDED, ROLE_CHANGED, USER_REMOVED, ALERT_RULES_CHANGED,
           REFUSED_ATTEMPTS)
TOO_MANY = "refused: too many attempts"
#: an attempt whose upstream call may be under way
PENDING = "pending"
#: an attempt left pending past ``settlement.pending_limit``: how it ended never reached
#: the database
UNSETTLED = "status unknown: not recorded"
UNSETTLED_DETAIL = ("The dashboard could not record how this attempt ended (its database was "
                    "busy). A checkout may have been started: check the balance.")
#: who made a change from the ``flask users`` commands
COMMAND_LINE = ("(command line)", "cli")


def upstream_outcome(exc) -> str:
    """The audit outcome for an upstream fault: its code, or its kind when it has none;
    a call the dashboard itself held back is marked as never sent."""
    if isinstance(exc, Declined):
        return f"not sent: {exc.reason}"
    return f"upstream error: {exc.code or type(exc).__name__}"


class AuditWriteError(RuntimeError):
    """The audit row could not be written; the action must not go on."""


def _fit(fields: dict) -> dict:
    """``fields`` with every string cut to its column's length, so text from upstream (an
    error code, a request ID) can never make the row fail to write."""
    columns = AuditEntry.__table__.columns
    out = {}
    for key, value in fields.items():
        length = getattr(columns[key].type, "length", None) if key in columns else None
        out[key] = value[:length] if isinstance(value, str) and length else value
    return out


def _who(actor=None):
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
    entry = AuditEntry(**_fit({"action": action, "outcome": outcome, **_who(actor), **fields}))
    db.session.add(entry)
    return entry


def record(action, outcome, *, actor=None, **fields) -> AuditEntry:
    """Write one finished attempt. Raises ``AuditWriteError``."""
    entry = stage(action, outcome, actor=actor, **fields)
    _commit()
    return entry


def count_refusal(minute: int):
    """Fold one refused attempt past the limit into this user's row for ``minute``
    (a whole number of minutes since the epoch). Raises ``AuditWriteError``.

    The row is keyed by its ``nonce`` column, so concurrent requests (in any
    process) add to one row: the first inserts it, the rest increment it.
    """
    key = f"refused:{current_user.id}:{minute}"
    bump = update(AuditEntry).where(AuditEntry.nonce == key).values(
        repeats=AuditEntry.repeats + 1)
    try:
        if db.session.execute(bump).rowcount:
            db.session.commit()
            return
        db.session.add(AuditEntry(action=REFUSED_ATTEMPTS, outcome=TOO_MANY, nonce=key,
                                  repeats=1, **_who()))
        db.session.commit()
    except IntegrityError:  # another request inserted it first
        db.session.rollback()
        db.session.execute(bump)
        _commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("audit write failed")
        raise AuditWriteError("audit row could not be written") from exc


def find(nonce) -> AuditEntry | None:
    """The attempt made with the form token ``nonce``, if any. Raises
    ``AuditWriteError`` when the trail cannot be read (so nothing can be recorded)."""
    try:
        return db.session.scalar(select(AuditEntry).where(AuditEntry.nonce == nonce))
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("audit read failed")
        raise AuditWriteError("audit trail could not be read") from exc


def claim(action, nonce, **fields) -> tuple[int | None, AuditEntry | None]:
    """Open a ``pending`` row for a new attempt keyed by the form's ``nonce``.

    Returns ``(new_entry_id, None)``, or ``(None, earlier_entry)`` when that
    form was submitted before. Raises ``AuditWriteError``.
    """
    entry = AuditEntry(**_fit({"action": action, "outcome": PENDING, "nonce": nonce, **_who(),
                               **fields}))
    db.session.add(entry)
    try:
        db.session.flush()
        entry_id = entry.id  # kept: after the call the database may not answer a read
        db.session.commit()
        return entry_id, None
    except IntegrityError:
        db.session.rollback()
        earlier = db.session.scalar(select(AuditEntry).where(AuditEntry.nonce == nonce))
        if earlier is None:
            raise AuditWriteError("audit row could not be written") from None
        return None, earlier
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("audit write failed")
        raise AuditWriteError("audit row could not be written") from exc


def settle(entry_id: int, outcome: str, **fields) -> None:
    """Record how attempt ``entry_id`` ended, if its row still awaits that (``pending``,
    or marked unsettled meanwhile): one UPDATE, whether now or later from the outbox.
    Raises ``AuditWriteError``."""
    try:
        db.session.execute(update(AuditEntry).where(
            AuditEntry.id == entry_id, AuditEntry.outcome.in_((PENDING, UNSETTLED)))
            .values(**_fit({"outcome": outcome, **fields})))
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("audit entry %s could not be settled: %s", entry_id,
                    str(exc).splitlines()[0][:200])
        raise AuditWriteError("audit row could not be written") from exc


def expire_pending(before) -> int:
    """Attempts still ``pending`` since before ``before`` become ``UNSETTLED`` (their
    call is long over; how it ended never reached the database). Returns how many.
    Raises ``AuditWriteError``."""
    try:
        n = db.session.execute(update(AuditEntry).where(
            AuditEntry.outcome == PENDING, AuditEntry.at < before)
            .values(outcome=UNSETTLED, detail=UNSETTLED_DETAIL)).rowcount
        db.session.commit()
        return n
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise AuditWriteError("pending attempts could not be marked") from exc


def _commit():
    try:
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("audit write failed")
        raise AuditWriteError("audit row could not be written") from exc


def reload(entry_id) -> AuditEntry | None:
    """The row as now stored (another request may have settled it)."""
    db.session.expire_all()
    return db.session.get(AuditEntry, entry_id)
