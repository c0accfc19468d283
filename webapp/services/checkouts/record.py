"""A checkout attempt's audit row: claimed ``pending`` (keyed by the form's one-time
token) before the one upstream call, settled after it -- now, or later from the
outbox -- and marked unsettled if it stays pending too long."""
from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ...extensions import db
from ...models import AuditEntry
from ..trail import TrailUnavailable, fit, who
from .statuses import PENDING, UNSETTLED, UNSETTLED_DETAIL

log = logging.getLogger(__name__)


def find(nonce) -> AuditEntry | None:
    """The attempt made with the form token ``nonce``, if any. Raises
    ``TrailUnavailable`` when the trail cannot be read (so nothing can be recorded)."""
    try:
        return db.session.scalar(select(AuditEntry).where(AuditEntry.nonce == nonce))
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("audit read failed")
        raise TrailUnavailable("audit trail could not be read") from exc


def claim(action, nonce, **fields) -> tuple[int | None, AuditEntry | None]:
    """Open a ``pending`` row for a new attempt keyed by the form's ``nonce``.

    Returns ``(new_entry_id, None)``, or ``(None, earlier_entry)`` when that
    form was submitted before. Raises ``TrailUnavailable``.
    """
    entry = AuditEntry(**fit({"action": action, "outcome": PENDING, "nonce": nonce, **who(),
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
            raise TrailUnavailable("audit row could not be written") from None
        return None, earlier
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("audit write failed")
        raise TrailUnavailable("audit row could not be written") from exc


def settle(entry_id: int, outcome: str, **fields) -> None:
    """Record how attempt ``entry_id`` ended, if its row still awaits that (``pending``,
    or marked unsettled meanwhile): one UPDATE, whether now or later from the outbox.
    Raises ``TrailUnavailable``."""
    try:
        db.session.execute(update(AuditEntry).where(
            AuditEntry.id == entry_id, AuditEntry.outcome.in_((PENDING, UNSETTLED)))
            .values(**fit({"outcome": outcome, **fields})))
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("audit entry %s could not be settled: %s", entry_id,
                    str(exc).splitlines()[0][:200])
        raise TrailUnavailable("audit row could not be written") from exc


def expire_pending(before) -> int:
    """Attempts still ``pending`` since before ``before`` become ``UNSETTLED`` (their
    call is long over; how it ended never reached the database). Returns how many.
    Raises ``TrailUnavailable``."""
    try:
        n = db.session.execute(update(AuditEntry).where(
            AuditEntry.outcome == PENDING, AuditEntry.at < before)
            .values(outcome=UNSETTLED, detail=UNSETTLED_DETAIL)).rowcount
        db.session.commit()
        return n
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise TrailUnavailable("pending attempts could not be marked") from exc


def reload(entry_id) -> AuditEntry | None:
    """The row as now stored (another request may have settled it)."""
    db.session.expire_all()
    return db.session.get(AuditEntry, entry_id)
