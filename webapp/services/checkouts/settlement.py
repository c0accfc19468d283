"""Bringing the trail back to the truth after the database had a bad moment.

A checkout attempt's row is claimed (``pending``) before its one upstream
call and settled after it. When the settling write fails, what upstream
said is kept in the ``Outbox`` and written here once the database is back;
a row still ``pending`` well after any call could have ended becomes
``status unknown: not recorded``, so no row stays pending for good (and the
reconciliation by observation can still credit it).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from ...database import missing_schema, say_schema_missing
from ..trail import TrailUnavailable
from . import record
from .outbox import Outbox, OutboxUnavailable
from .statuses import UNSETTLED

log = logging.getLogger(__name__)

#: a pending row is given at least this long before it is called unsettled
MIN_PENDING_LIMIT = timedelta(minutes=2)
#: ``app.extensions`` key: set while the database keeps refusing these writes
DATABASE_BUSY = "settlement_database_busy"


def outbox(app) -> Outbox:
    """This app's outbox (``unsettled-checkouts.jsonl`` under ``INSTANCE_PATH``, and
    Redis when there is one)."""
    return app.extensions["checkout_outbox"]


def pending_limit(app) -> timedelta:
    """How long a row may stay pending: far past the longest upstream call."""
    return max(MIN_PENDING_LIMIT, timedelta(seconds=4 * app.config["UPSTREAM_DEADLINE"]))


def settle_kept(app, now: datetime) -> None:
    """Write the kept settlements, then mark rows pending past ``pending_limit`` as
    unsettled. Never raises: with the database still away, the next turn tries again;
    an outbox that cannot be read (which it logs, once a spell) does not stop the
    marking. A busy database is logged once a spell too."""
    try:
        written = _write_kept(app)
        marked = record.expire_pending(now - pending_limit(app))
    except TrailUnavailable as exc:
        if missing_schema(exc):  # not busy: nothing comes of waiting (the log says what does)
            say_schema_missing(app, exc)
            return
        if not app.extensions.get(DATABASE_BUSY):
            app.extensions[DATABASE_BUSY] = True
            log.info("the database is busy: kept settlements and pending attempts wait "
                     "for it (tried every few seconds)")
        return
    if app.extensions.pop(DATABASE_BUSY, None):
        log.info("the database takes settlements again")
    if written:
        log.info("wrote %d settlement(s) kept while the database was busy", written)
    if marked:
        log.warning("%d checkout attempt(s) left pending are now '%s'", marked, UNSETTLED)


def _write_kept(app) -> int:
    """How many kept settlements were written now. Raises ``TrailUnavailable``."""
    try:
        return outbox(app).flush(lambda entry_id, kept: record.settle(entry_id, **kept))
    except OutboxUnavailable:
        return 0  # said in the log by the outbox; the marking still runs
