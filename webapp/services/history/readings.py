"""Keeping the balance history.

Every successful billing read is offered to ``record``: a reading whose
figures match the newest snapshot only moves its ``last_seen_at`` on; a
changed one becomes a new snapshot, and the checkouts still waiting to be
seen are matched against the change (``checkouts.reconcile``).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..checkouts.reconcile import reconcile
from ...database import mark_busy, unavailable
from ...extensions import db
from ...giga import Billing
from ...models import BalanceSnapshot
from .usage import Snapshot

log = logging.getLogger(__name__)



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
