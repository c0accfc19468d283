"""Who may use the dashboard: the admin page and the ``flask users`` commands."""
from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/users")

from . import views  # noqa: E402,F401  (registers the routes on bp)
