"""What the billing page answers for a checkout: the services start or refuse it
(``services.checkouts.start``) and say how it went in a ``Started`` or one of their
errors; here those become the redirect to the checkout or the page that says why
not."""
from __future__ import annotations

from flask import current_app, redirect, session, url_for
from flask_login import current_user

from ..errors import render_error, render_store_busy, render_too_many, render_upstream_error
from ..services.checkouts import start as checkouts
from ..services.checkouts.statuses import PENDING


def _return_url() -> str:
    """The billing page's address for this checkout: ``PUBLIC_URL`` when set, else as
    the request that started the checkout saw it."""
    public = current_app.config["PUBLIC_URL"]
    if public:
        return public.rstrip("/") + url_for("billing.dashboard")
    return url_for("billing.dashboard", _external=True)


def top_up(amount, nonce: str):
    """Start a top-up of ``amount`` for the signed-in user: a 303 to the checkout, or a
    page that says why not."""
    return _answer(checkouts.start_top_up, amount, nonce)


def plan_change(overview, target, nonce: str):
    """Start the change to ``target``; answers like ``top_up``."""
    return _answer(checkouts.start_plan_change, overview, target, nonce)


def refused(action, outcome, **fields):
    """Put a refused attempt on the trail (``checkouts.refuse``): ``None`` once it is
    there (the caller shows its own refusal), else the 429 page or the page that says
    it could not be recorded."""
    try:
        checkouts.refuse(action, outcome, **fields)
    except checkouts.PastTheLimit as exc:
        return _too_many(exc.wait)
    except checkouts.NotRecorded:
        return _not_recorded()
    return None


def _answer(start, *args):
    try:
        started = start(current_user, *args, return_url=_return_url())
    except checkouts.NotRecorded:
        return _not_recorded()
    except checkouts.PastTheLimit as exc:
        return _too_many(exc.wait)
    except checkouts.AlreadySubmitted as exc:
        return _already_submitted(exc.outcome)
    except checkouts.AddressRefused:
        return render_error(
            502, "Checkout address refused",
            "The billing service sent a checkout address that is not on this dashboard's list "
            "of allowed payment pages, so you were not sent there. Nothing was paid. "
            "Tell your administrator.")
    except checkouts.UpstreamFailed as exc:
        return _upstream_failed(exc)
    if started.returning is not None:
        # only a return from a checkout this session started earns a notice and a fresh read
        session[checkouts.RETURNING_FROM] = started.returning
    return redirect(started.checkout_url, 303)


def _upstream_failed(failed):
    if failed.status_unknown:
        return render_error(
            504, "Status unknown",
            "The billing service did not answer in full, so we cannot tell whether a checkout "
            "was started. Nothing was retried. Check your balance before trying again.",
            error=failed.error)
    return render_upstream_error(failed.error, action_note=failed.note)


def _too_many(wait: float):
    return render_too_many("Too many attempts", "You made several attempts in the last "
                           "minute. Wait a moment, check your balance, then try again.", wait)


def _not_recorded():
    """Nothing was sent upstream because the attempt could not be put on record."""
    return render_store_busy(
        "The dashboard could not put this attempt on its audit trail (its database is busy "
        "or restarting), so it did not send anything to checkout. Nothing was charged. "
        "Try again in a few seconds.")


def _already_submitted(outcome: str):
    if outcome == PENDING:
        message = ("This form is already being processed. Check your balance in a minute "
                   "before trying again.")
    else:
        message = (f"This form was already submitted (outcome: {outcome}). Nothing new "
                   "was started. Reload the billing page to try again.")
    return render_error(409, "Already submitted", message)
