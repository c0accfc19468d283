"""Keeping the balance history.

Every successful billing read is offered to ``record``: a reading whose
figures match the newest snapshot only moves its ``last_seen_at`` on; a
changed one becomes a new snapshot, and the checkouts still waiting to be
seen are matched against the change (``checkouts.reconcile``).

Recordings are taken one at a time, across processes and hosts: each first
claims the history's lock row (``models.HistoryLock``) and only then reads
the newest snapshot, so a reading is compared and reconciled against the row
truly before it. Two processes can no longer both read the same newest
snapshot, both add a snapshot after it and both reconcile: one payment
credits one top-up, whatever the timing.

A page is answered before its reading is recorded (``services.arrivals``),
so what it draws from the history is the history *with* its reading:
``with_reading`` makes of the snapshots what ``record`` will make of the rows.

Each recording also works out, in its own transaction and under the same lock,
the usage of every quarter hour its reading has closed (``rollups.advance``);
``rebuild_usage`` works all of it out again (``flask billing rebuild-usage``).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..checkouts.reconcile import reconcile
from ...database import mark_busy, missing_schema, say_schema_missing, unavailable
from ...extensions import db
from ...giga import Billing
from ...models import HISTORY, BalanceSnapshot, HistoryLock
from . import rollups
from .rollups import rows_seen
from ..recent import recently
from .usage import Snapshot

log = logging.getLogger(__name__)


def _figures(billing: Billing) -> tuple:
    return (billing.plan, billing.plan_credits_remaining, billing.prepaid_balance,
            billing.total_balance, billing.period_start, billing.period_end)


def _row_figures(row: BalanceSnapshot) -> tuple:
    return (row.plan, row.plan_credits_remaining, row.prepaid_balance, row.total_balance,
            row.period_start, row.period_end)


def _snapshot_figures(snap: Snapshot) -> tuple:
    return (snap.plan, snap.plan_credits, snap.prepaid, snap.total, snap.period_start,
            snap.period_end)


#: what a reading does to the newest snapshot (``_effect``)
EXTENDS, LATE, NEW = "extends", "late", "new"


def _effect(last_figures: tuple | None, last_seen: datetime | None, billing: Billing,
            seen_at: datetime) -> str:
    """``EXTENDS`` (same figures: it moves ``last_seen`` on, if later), ``LATE`` (changed
    figures read before the newest snapshot was last seen: the newer one stands) or
    ``NEW`` (a snapshot of its own)."""
    if last_figures is not None and last_figures == _figures(billing):
        return EXTENDS
    if last_seen is not None and seen_at <= last_seen:
        return LATE
    return NEW


def with_reading(snaps: list[Snapshot], billing: Billing, seen_at: datetime) -> list[Snapshot]:
    """``snaps`` (ending with the newest snapshot) as they read once ``billing``, read at
    ``seen_at``, is recorded."""
    last = snaps[-1] if snaps else None
    effect = _effect(_snapshot_figures(last) if last else None,
                     last.last_seen if last else None, billing, seen_at)
    if effect == EXTENDS:
        if seen_at <= last.last_seen:
            return snaps
        return snaps[:-1] + [replace(last, last_seen=seen_at)]
    if effect == LATE:
        return snaps
    return snaps + [Snapshot(seen_at, seen_at, *_figures(billing))]


#: how long a process keeps the time of the first reading kept (it moves only when the
#: retention drops a day, or a restore brings older readings)
FIRST_READING_SECONDS = 60.0


def generation(app) -> int:
    """How many times this process has written the history (pages keep what they drew
    from it no longer than that)."""
    return app.extensions.get("history_generation", 0)


def _written(app) -> None:
    app.extensions["history_generation"] = generation(app) + 1


def first_reading_at() -> datetime | None:
    """When the first reading kept was taken (``None``: there is none), read again at
    most every ``FIRST_READING_SECONDS`` in a process once there is one. Raises
    ``SQLAlchemyError``."""
    return recently("first reading", None, FIRST_READING_SECONDS,
                    lambda: db.session.scalar(select(func.min(BalanceSnapshot.first_seen_at))),
                    keep_if=lambda found: found is not None)


def latest() -> BalanceSnapshot | None:
    """The newest snapshot as the database has it now (not as this session last saw it)."""
    return db.session.scalars(select(BalanceSnapshot).order_by(
        BalanceSnapshot.first_seen_at.desc(), BalanceSnapshot.id.desc()).limit(1)
        .execution_options(populate_existing=True)).first()


def claim_history() -> None:
    """Hold the history's lock row until this transaction ends (another process's
    recording waits for it, within ``DATABASE_WAIT_SECONDS``). The first statement of
    the transaction, so what is read after it is what the last recording committed.
    Raises ``SQLAlchemyError``."""
    claim = update(HistoryLock).where(HistoryLock.id == HISTORY).values(
        recordings=HistoryLock.recordings + 1)
    if db.session.execute(claim).rowcount:
        return
    # the row is gone (removed by hand): made again, and so held, by one process
    db.session.add(HistoryLock(id=HISTORY, recordings=1))
    try:
        db.session.flush()
    except IntegrityError:
        # another process made it first (and has committed, or this insert would still
        # be waiting for it): hold theirs
        db.session.rollback()
        db.session.execute(claim)


def record(billing: Billing, seen_at: datetime, *, keep_days: int) -> BalanceSnapshot | None:
    """Add ``billing`` as read at ``seen_at`` to the history; returns the snapshot it is in.

    Never raises: the history must not cost anyone their page. Returns ``None``
    when the database would not take it (logged), and for a reading older than
    the newest snapshot with other figures (the newer one stands).
    """
    try:
        claim_history()
        last = latest()
        effect = _effect(_row_figures(last) if last else None,
                         last.last_seen_at if last else None, billing, seen_at)
        if effect == EXTENDS:
            # only later readings move it on
            db.session.execute(update(BalanceSnapshot).where(
                BalanceSnapshot.id == last.id, BalanceSnapshot.last_seen_at < seen_at)
                .values(last_seen_at=seen_at))
            rollups.advance(max(last.last_seen_at, seen_at))
            db.session.commit()
            return last
        if effect == LATE:
            db.session.rollback()  # lets the lock go
            return None  # an older reading arriving late: the newer one stands
        row = BalanceSnapshot(first_seen_at=seen_at, last_seen_at=seen_at, plan=billing.plan,
                              plan_credits_remaining=billing.plan_credits_remaining,
                              prepaid_balance=billing.prepaid_balance,
                              total_balance=billing.total_balance,
                              period_start=billing.period_start, period_end=billing.period_end)
        db.session.add(row)
        if last is not None:
            reconcile(last, row)
        if db.session.execute(delete(BalanceSnapshot).where(
                BalanceSnapshot.last_seen_at < seen_at - timedelta(days=keep_days))).rowcount:
            rollups.forget_before(db.session.scalar(
                select(func.min(BalanceSnapshot.first_seen_at))))
        rollups.advance(seen_at)
        db.session.commit()
        _written(current_app)
        return row
    except SQLAlchemyError as exc:
        db.session.rollback()
        if unavailable(exc):
            mark_busy(current_app)
        elif missing_schema(exc):
            say_schema_missing(current_app, exc)
        else:
            log.exception("could not record a balance reading")
        return None


def snapshots(since: datetime, until: datetime) -> list[Snapshot]:
    """Snapshots seen in ``[since, until)``, with the one in force at ``since`` first.

    Plain rows, not ORM objects: a range can hold tens of thousands of readings.
    """
    return [Snapshot(*row[1:]) for row in rows_seen(since, until)]


def marker(newest: tuple[int, Snapshot] | None, billing: Billing, seen_at: datetime):
    """Something that changes whenever what is drawn from the history with this reading
    does, given the ``(id, snapshot)`` recorded newest (for caching what is drawn from
    it): the newest snapshot once the reading is in, and whether the reading still makes
    a snapshot of its own (recording it may reconcile a checkout, which changes what is
    drawn). The newest snapshot's "last seen" counts by its quarter hour: usage is told
    by quarter hours, and no interval ends at the newest snapshot's last sighting, so
    an unchanged balance read again within the quarter hour draws the same."""
    recorded = [newest[1]] if newest is not None else []
    after = with_reading(recorded, billing, seen_at)
    last = after[-1]
    seen = rollups.quarter_start(rollups.quarter_of(last.last_seen))
    return (newest[0] if newest is not None else None, replace(last, last_seen=seen),
            len(after) > len(recorded))


def all_snapshot_rows():
    """Every snapshot, oldest first, one at a time (for the CSV export)."""
    return db.session.scalars(select(BalanceSnapshot).order_by(
        BalanceSnapshot.first_seen_at, BalanceSnapshot.id).execution_options(yield_per=500))


def rebuild_usage() -> int:
    """Work the usage of every quarter hour out again from the readings (after a restore
    or an import of readings), holding the history's lock so no recording lands
    meanwhile; the caller commits. Returns how many quarter hours are kept. Raises
    ``SQLAlchemyError``."""
    claim_history()
    newest = latest()
    _written(current_app)
    return rollups.rebuild(newest.last_seen_at if newest is not None else None)


def catch_up_usage() -> bool:
    """Build the usage rollups when they are not (the first start after the upgrade that
    brought them, or the state row removed by hand): ``rebuild_usage``, committed.
    Returns whether it did; otherwise it costs one query. Raises ``SQLAlchemyError``."""
    there, reached = rollups.through()
    if there and reached is not None:
        return False
    rebuild_usage()
    db.session.commit()
    return True
