"""Writing the audit trail. Every billing action attempt gets a row, and the
row is committed *before* the user is sent to checkout."""
from __future__ import annotations

import logging

from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..extensions import db
from ..gateway import Declined
from ..models import AuditEntry

log = logging.getLogger(__name__)

TOP_UP = "top-up"
PLAN_CHANGE = "plan change"
ACTIONS = (TOP_UP, PLAN_CHANGE)


def upstream_outcome(exc) -> str:
    """The audit outcome for an upstream fault: its code, or its kind when it has none;
    a call the dashboard itself held back is marked as never sent."""
    if isinstance(exc, Declined):
        return f"not sent: {exc.reason}"
    return f"upstream error: {exc.code or type(exc).__name__}"


class AuditWriteError(RuntimeError):
    """The audit row could not be written; the action must not go on."""


def _who():
    return {"user_email": current_user.email, "user_role": current_user.role}


def record(action, outcome, **fields) -> AuditEntry:
    """Write one finished attempt (a refusal). Raises ``AuditWriteError``."""
    entry = AuditEntry(action=action, outcome=outcome, **_who(), **fields)
    db.session.add(entry)
    _commit()
    return entry


def claim(action, nonce, **fields) -> tuple[AuditEntry | None, AuditEntry | None]:
    """Open a ``pending`` row for a new attempt keyed by the form's ``nonce``.

    Returns ``(new_entry, None)``, or ``(None, earlier_entry)`` when that
    form was submitted before. Raises ``AuditWriteError``.
    """
    entry = AuditEntry(action=action, outcome="pending", nonce=nonce, **_who(), **fields)
    db.session.add(entry)
    try:
        db.session.commit()
        return entry, None
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


def settle(entry: AuditEntry, outcome: str, **fields):
    """Record how the attempt ended. Raises ``AuditWriteError``."""
    entry.outcome = outcome
    for key, value in fields.items():
        setattr(entry, key, value)
    _commit()


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
