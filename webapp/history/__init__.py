"""Usage over time: the balance history, the usage chart, reconciled checkouts,
the CSV exports and the ``flask billing poll`` poller."""
from flask import Blueprint

bp = Blueprint("history", __name__, url_prefix="/billing")


def record_reading(app, reading) -> None:
    """Keep a balance the gateway has just read upstream (``on_billing_read``)."""
    from .service import record

    with app.app_context():
        record(reading.value, reading.fetched_at, keep_days=app.config["HISTORY_DAYS"])


from . import views  # noqa: E402,F401  (registers the routes on bp)
