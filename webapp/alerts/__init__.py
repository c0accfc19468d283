"""Alerts before the credit runs out: the rules, the channels (email, webhook),
deliveries with retries, and the Alerts page."""
from flask import Blueprint

bp = Blueprint("alerts", __name__, url_prefix="/alerts")

from . import views  # noqa: E402,F401  (registers the routes on bp)
