"""The audit trail of billing actions: who tried what, and how it ended."""
from flask import Blueprint

bp = Blueprint("audit", __name__, url_prefix="/audit")

from . import views  # noqa: E402,F401  (registers the routes on bp)
