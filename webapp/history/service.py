"""Keeping the balance history, and reconciling checkouts against it.

Every successful billing read is offered to ``record``: a reading whose
figures match the newest snapshot only moves its ``last_seen_at`` on; a
changed one becomes a new snapshot, and is then matched against checkouts
still waiting to be seen (a top-up is **credited** when prepaid credit grew
by its amount, oldest first, within 48 hours; a plan change is **plan
changed** when the reading shows the new plan).
"""
from __future__ import annotations

import bisect
import logging
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..audit import service as audit
from ..database import mark_busy, unavailable
from ..extensions import db
from ..giga import Billing
from ..models import AuditEntry, BalanceSnapshot
from .usage import Snapshot

log = logging.getLogger(__name__)

SENT = "sent to checkout"
CREDITED = "credited"
PLAN_CHANGED = "plan changed"
NOT_SEEN = "not seen — check with WithGiga"
CANCELLED = "cancelled at checkout"
WAITING = "not yet seen"
#: how long a checkout may take to show in the balance before it is called unseen
SEEN_WITHIN = timedelta(hours=48)


def _same_figures(row: BalanceSnapshot, billing: Billing) -> bool:
    return (row.plan == billing.plan
            and row.plan_credits_remaining == billing.plan_credits_remaining
            and row.prepaid_balance == billing.prepaid_balance
            and row.total_balance == billing.total_balance
            and row.period_start == billing.period_start
            and row.period_end == billing.period_end)


def latest() -> BalanceSnapshot | None:
    return db.session.scalars(select(BalanceSnapshot).order_by(
        BalanceSnapshot.first_seen_at.desc(), BalanceSnapshot.id.desc()).limit(1)).first()


def record(billing: Billing, seen_at: datetime, *, keep_days: int) -> BalanceSnapshot | None:
    """Add ``billing`` as read at ``seen_at`` to the history; returns the snapshot it is in.

    Never raises: the history must not cost anyone their page. Returns ``None``
    when the database would not take it (logged).
    """
    try:
        last = latest()
        if last is not None and _same_figures(last, billing):
            # only later readings move it on; the update is one statement, so two
            # processes recording at once cannot move it backwards
            db.session.execute(update(BalanceSnapshot).where(
                BalanceSnapshot.id == last.id, BalanceSnapshot.last_seen_at < seen_at)
                .values(last_seen_at=seen_at))
            db.session.commit()
            return last
        if last is not None and seen_at <= last.last_seen_at:
            return None  # an older reading arriving late: the newer one stands
        row = BalanceSnapshot(first_seen_at=seen_at, last_seen_at=seen_at, plan=billing.plan,
                              plan_credits_remaining=billing.plan_credits_remaining,
                              prepaid_balance=billing.prepaid_balance,
                              total_balance=billing.total_balance,
                              period_start=billing.period_start, period_end=billing.period_end)
        db.session.add(row)
        if last is not None:
            reconcile(last, row)
        db.session.execute(delete(BalanceSnapshot).where(
            BalanceSnapshot.last_seen_at < seen_at - timedelta(days=keep_days)))
        db.session.commit()
        return row
    except SQLAlchemyError as exc:
        db.session.rollback()
        if unavailable(exc):
            mark_busy(current_app)
            log.warning("could not record a balance reading: the database is busy")
        else:
            log.exception("could not record a balance reading")
        return None


#: outcomes after which a checkout may exist: sent to one, or how it ended is unknown
STATUS_UNKNOWN = "status unknown"


def _may_have_reached_checkout():
    return or_(AuditEntry.outcome == SENT, AuditEntry.outcome.startswith(STATUS_UNKNOWN))


def _waiting(action, before: datetime):
    # a checkout its user cancelled can still turn out paid (the return link is theirs to
    # follow, and a payment may have gone through), and one whose start was never
    # confirmed may exist all the same: the balance has the last word
    return db.session.scalars(select(AuditEntry).where(
        AuditEntry.action == action, _may_have_reached_checkout(),
        or_(AuditEntry.seen.is_(None), AuditEntry.seen == CANCELLED),
        AuditEntry.at <= before, AuditEntry.at >= before - SEEN_WITHIN)
        .order_by(AuditEntry.at, AuditEntry.id)).all()


def reconcile(before: BalanceSnapshot, after: BalanceSnapshot) -> None:
    """Mark the checkouts that the change from ``before`` to ``after`` shows were paid."""
    when = after.first_seen_at
    growth = after.prepaid_balance - before.prepaid_balance
    for entry in _waiting(audit.TOP_UP, when):
        if entry.amount is not None and Decimal(0) < entry.amount <= growth:
            entry.seen, entry.seen_at = CREDITED, when
            growth -= entry.amount
    if after.plan != before.plan:
        for entry in _waiting(audit.PLAN_CHANGE, when):
            if entry.plan_to == after.plan:
                entry.seen, entry.seen_at = PLAN_CHANGED, when


def checkout_status(entry: AuditEntry, now: datetime) -> str | None:
    """What the readings say of a checkout: credited, plan changed, not yet seen, or
    not seen within 48 hours. ``None`` for attempts that never reached checkout, and
    for one whose status is unknown until a reading shows it paid."""
    if entry.outcome.startswith(STATUS_UNKNOWN):
        return entry.seen
    if entry.outcome != SENT:
        return None
    if entry.seen:
        return entry.seen
    return NOT_SEEN if now - entry.at > SEEN_WITHIN else WAITING


def checkout_seen(entry_id: int) -> str | None:
    """What the readings have shown of checkout ``entry_id`` so far (``CREDITED``,
    ``PLAN_CHANGED``, ``CANCELLED``), or ``None``."""
    return db.session.scalar(select(AuditEntry.seen).where(AuditEntry.id == entry_id))


def mark_cancelled(entry_id: int, user_email: str, now: datetime) -> None:
    """The user came back from checkout by its Cancel button: the attempt is no longer
    waiting to be paid (a later reading that shows it paid still marks it credited)."""
    db.session.execute(update(AuditEntry).where(
        AuditEntry.id == entry_id, AuditEntry.user_email == user_email,
        AuditEntry.outcome == SENT, AuditEntry.seen.is_(None))
        .values(seen=CANCELLED, seen_at=now))
    db.session.commit()


def pending_checkouts(now: datetime) -> list[AuditEntry]:
    """Checkouts started in the last 48 hours that no reading has shown yet, oldest first."""
    return db.session.scalars(select(AuditEntry).where(
        AuditEntry.outcome == SENT, AuditEntry.seen.is_(None),
        AuditEntry.at >= now - SEEN_WITHIN).order_by(AuditEntry.at)).all()


_COLUMNS = (BalanceSnapshot.first_seen_at, BalanceSnapshot.last_seen_at, BalanceSnapshot.plan,
            BalanceSnapshot.plan_credits_remaining, BalanceSnapshot.prepaid_balance,
            BalanceSnapshot.total_balance, BalanceSnapshot.period_start,
            BalanceSnapshot.period_end)


def snapshots(since: datetime, until: datetime) -> list[Snapshot]:
    """Snapshots seen in ``[since, until)``, with the one in force at ``since`` first.

    Plain rows, not ORM objects: a range can hold tens of thousands of readings.
    """
    before = db.session.execute(select(*_COLUMNS).where(BalanceSnapshot.first_seen_at < since)
                                .order_by(BalanceSnapshot.first_seen_at.desc()).limit(1)).all()
    rows = db.session.execute(select(*_COLUMNS).where(
        BalanceSnapshot.first_seen_at >= since, BalanceSnapshot.first_seen_at < until)
        .order_by(BalanceSnapshot.first_seen_at, BalanceSnapshot.id)).all()
    return [Snapshot(*row) for row in before + rows]


def newest_marker():
    """Something that changes whenever the history does (for caching what is drawn from it)."""
    return db.session.execute(select(BalanceSnapshot.id, BalanceSnapshot.last_seen_at)
                              .order_by(BalanceSnapshot.id.desc()).limit(1)).first()


def all_snapshot_rows():
    """Every snapshot, oldest first, one at a time (for the CSV export)."""
    return db.session.scalars(select(BalanceSnapshot).order_by(
        BalanceSnapshot.first_seen_at, BalanceSnapshot.id).execution_options(yield_per=500))


def credited_top_ups(since: datetime, until: datetime):
    """A lookup ``(start, end) -> amount | None`` of the top-ups reconciled to readings
    between ``since`` and ``until``, read with one query."""
    credited = db.session.execute(select(AuditEntry.seen_at, AuditEntry.amount).where(
        AuditEntry.seen == CREDITED, AuditEntry.seen_at > since,
        AuditEntry.seen_at <= until).order_by(AuditEntry.seen_at)).all()
    times = [when for when, _ in credited]

    def lookup(start: datetime, end: datetime) -> Decimal | None:
        first, last = bisect.bisect_right(times, start), bisect.bisect_right(times, end)
        if first == last:
            return None
        return sum((amount for _, amount in credited[first:last]), Decimal(0))
    return lookup
