"""The billing page: balance gauge, forecast, plan cards, top-up and plan change."""
from flask import Blueprint, current_app

bp = Blueprint("billing", __name__, url_prefix="/billing")


@bp.context_processor
def checkout_name():
    """Where the payer goes: Stripe Checkout for real, the sandbox's own page otherwise."""
    sandbox = current_app.config["SANDBOX_MODE"]
    return {"checkout_name": "the sandbox's checkout page" if sandbox else "Stripe Checkout"}


from . import views  # noqa: E402,F401  (registers the routes on bp)
