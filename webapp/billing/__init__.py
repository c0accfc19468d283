"""The billing page: balance gauge, forecast, plan cards, top-up and plan change."""
from flask import Blueprint

bp = Blueprint("billing", __name__, url_prefix="/billing")

from . import views  # noqa: E402,F401  (registers the routes on bp)
