"""What happens to each balance the dashboard reads upstream: it is kept in the
history, then the alert rules are checked against it (``on_billing_read``)."""
from __future__ import annotations


def reading_arrived(app, reading) -> None:
    from .alerts.service import evaluate
    from .history import record_reading

    record_reading(app, reading)
    with app.app_context():
        evaluate(app, reading.value, reading.fetched_at)
