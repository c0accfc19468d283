"""What happens to each balance the dashboard reads upstream: it is kept in the
history, then the alert rules are checked against it (``on_billing_read``)."""
from __future__ import annotations

import logging

from ..database import busy

log = logging.getLogger(__name__)


def reading_arrived(app, reading) -> None:
    """Record ``reading`` and check the alert rules, in one app context of its own
    (it may arrive on a pool thread or in the poller)."""
    from .alerting.deliveries import evaluate
    from .history.readings import record

    with app.app_context():
        if busy(app):  # the next reading is recorded and checked instead
            log.info("the database is busy: a balance reading is not recorded")
            return
        record(reading.value, reading.fetched_at, keep_days=app.config["HISTORY_DAYS"])
        evaluate(app, reading.value, reading.fetched_at)
