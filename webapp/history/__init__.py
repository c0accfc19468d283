"""Usage over time: the balance history, the usage chart, reconciled checkouts,
the CSV exports and the ``flask billing poll`` poller."""
from flask import Blueprint

bp = Blueprint("history", __name__, url_prefix="/billing")


from . import views  # noqa: E402,F401  (registers the routes on bp)
