"""Reconciling checkouts by observation: what later balance readings show of them.

A top-up is **credited** when a reading shows prepaid credit grown by its
amount (oldest first, within ``SEEN_WITHIN``); a plan change is **plan
changed** when a reading shows the new plan; one whose start ended unknown
can still be credited so; one its user cancelled at checkout can still turn
out paid. After ``SEEN_WITHIN`` unseen, a checkout reads "not seen".
"""
from __future__ import annotations

import bisect
from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select, update

from ...extensions import db
from ...models import AuditEntry, BalanceSnapshot
from ..trail import PLAN_CHANGE, TOP_UP
from .statuses import (CANCELLED, CREDITED, NOT_SEEN, PLAN_CHANGED, SEEN_WITHIN, SENT,
                       STATUS_UNKNOWN, WAITING)


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
    for entry in _waiting(TOP_UP, when):
        if entry.amount is not None and Decimal(0) < entry.amount <= growth:
            entry.seen, entry.seen_at = CREDITED, when
            growth -= entry.amount
    if after.plan != before.plan:
        for entry in _waiting(PLAN_CHANGE, when):
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
