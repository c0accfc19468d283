"""Starting a checkout, exactly once, with the attempt on record first.

Order matters: role and input are checked by the view; here the per-user
limit is applied, a ``pending`` row keyed by the form's one-time token is
committed (``record.claim``), upstream is called once, the checkout URL is
checked against the allowlist, the row is settled, and only then is the
browser sent away. A replayed form finds its earlier row and starts nothing
new.

If the database will not take the pending row, nothing is sent (a 503 that
says so). Once upstream has answered, the user is told the truth whatever
the database does: if the settling write fails, what upstream said is kept
in the outbox (``settlement``) and written when the database is back, and
the user is still sent to the checkout that exists.

Refused attempts count against the same per-user limit (``refuse``), and
past it they are folded into one audit row a minute: refusing cannot be
used to bury the trail.
"""
from __future__ import annotations

import logging
from decimal import Decimal

from flask import current_app, redirect, session, url_for
from blinker import Namespace
from flask_login import current_user

from ...clock import app_clock
from ...errors import render_error, render_store_busy, render_upstream_error
from ...formatting import money
from ...giga import Checkout, ConnectionFailed, GigaError, Plan, Timeout
from ...security import checkout_url_allowed
from .. import limits, trail
from ..account import Overview, deadline, gateway
from . import record
from .outbox import OutboxUnavailable
from .settlement import outbox
from .statuses import PENDING, SENT

log = logging.getLogger(__name__)

#: the session key naming the checkout this user was sent to last
RETURNING_FROM = "checkout_started"
PENDING_WAIT_SECONDS = 5.0
#: sent with ``checkout_url`` and ``return_url`` when someone is sent to a checkout
#: (the built-in sandbox listens, to know where its page sends the payer back)
checkout_started = Namespace().signal("checkout-started")


def start_top_up(amount: Decimal, nonce: str):
    """Start a prepaid top-up of ``amount`` for the current user; answers a 303 to
    the checkout, or a page that says why not."""
    return _start(trail.TOP_UP, nonce, what=f"your {money(amount)} top-up", amount=amount)


def start_plan_change(overview: Overview, target: Plan, nonce: str):
    """Start the change from the current plan to ``target``; answers like
    ``start_top_up``."""
    current = overview.current_plan
    return _start(trail.PLAN_CHANGE, nonce, what=f"the change to {target.name}",
                  plan_from=overview.billing.plan, plan_to=target.id,
                  plan_from_name=current.name if current else None, plan_to_name=target.name)


def refuse(action, outcome, *, typo=False, **fields):
    """Record a refused attempt, counted against the user's action limit -- or, for a
    ``typo`` (a form the field checks refused), against an allowance of its own, so
    mistyping an amount never uses up the checkouts a user may start.

    Returns ``None`` once it has its own audit row (the caller then shows its
    own refusal), or the 429 page when the user is past the limit. Raises
    ``TrailUnavailable`` when the row cannot be written.
    """
    taken, wait = limits.take("typos" if typo else "actions")
    if not taken:
        return _past_the_limit(wait)
    trail.record(action, outcome, **fields)
    return None


def allowed(url) -> bool:
    cfg = current_app.config
    return checkout_url_allowed(url, cfg["CHECKOUT_ALLOWED_HOSTS"],
                                cfg["CHECKOUT_ALLOWED_ORIGINS"])


def _start(action, nonce, *, what, **fields):
    """Claim the attempt, ask upstream once, and answer. ``what`` names the checkout
    in words ("your $50.00 top-up") for the notice its user sees on coming back."""
    try:
        earlier = record.find(nonce)
    except trail.TrailUnavailable:
        return _not_recorded()
    if earlier is not None:  # a double-click or a replay: not a new attempt
        return _replayed(earlier)
    taken, wait = limits.take("actions")
    if not taken:
        return _past_the_limit(wait)
    try:
        entry_id, earlier = record.claim(action, nonce, **fields)
    except trail.TrailUnavailable:
        return _not_recorded()
    if earlier is not None:
        return _replayed(earlier)
    try:
        checkout = _ask_upstream(action, fields)
    except GigaError as exc:
        return _upstream_failed(action, entry_id, exc)
    if not allowed(checkout.checkout_url):
        log.error("refused checkout redirect to %r (user %s)", checkout.checkout_url[:200],
                  current_user.email)
        return _settle_or_keep(entry_id, "refused: checkout host not allowed", render_error(
            502, "Checkout address refused",
            "The billing service sent a checkout address that is not on this dashboard's list "
            "of allowed payment pages, so you were not sent there. Nothing was paid. "
            "Tell your administrator."), request_id=checkout.request_id,
            detail=checkout.checkout_url[:500])
    _settle_or_keep(entry_id, SENT, request_id=checkout.request_id,
                    checkout_url=checkout.checkout_url)
    checkout_started.send(current_app._get_current_object(),
                          checkout_url=checkout.checkout_url, return_url=_return_url())
    # only a return from a checkout this session started earns a notice and a fresh read
    session[RETURNING_FROM] = {"what": what, "entry": entry_id}
    return redirect(checkout.checkout_url, 303)


def _ask_upstream(action, fields) -> Checkout:
    """The one upstream call of an attempt. Raises ``GigaError``."""
    if action == trail.TOP_UP:
        return gateway().top_up(fields["amount"], deadline())
    return gateway().change_plan(fields["plan_to"], deadline())


def _return_url() -> str:
    """The billing page's address for this checkout: ``PUBLIC_URL`` when set, else as
    the request that started the checkout saw it."""
    public = current_app.config["PUBLIC_URL"]
    if public:
        return public.rstrip("/") + url_for("billing.dashboard")
    return url_for("billing.dashboard", _external=True)


def _upstream_failed(action, entry_id, exc: GigaError):
    if isinstance(exc, (Timeout, ConnectionFailed)) and not exc.never_sent:
        # the request may have been acted on: say so, and never retry it blindly
        how = "timeout" if isinstance(exc, Timeout) else "connection lost"
        log.warning("%s status unknown after %s (user %s)", action, how, current_user.email)
        return _settle_or_keep(entry_id, f"status unknown: {how}", render_error(
            504, "Status unknown",
            "The billing service did not answer in full, so we cannot tell whether a checkout "
            "was started. Nothing was retried. Check your balance before trying again.",
            error=exc), request_id=exc.request_id)
    note = ("Nothing was sent, so nothing was charged." if exc.never_sent or exc.status
            else "Check your balance before trying again.")
    return _settle_or_keep(entry_id, trail.upstream_outcome(exc),
                           render_upstream_error(exc, action_note=note),
                           request_id=exc.request_id)


def _settle_or_keep(entry_id, outcome, response=None, **fields):
    """Record how the attempt ended, then answer with ``response``. Upstream has
    answered by now, so the answer is the truth whatever the database does: when the
    row cannot be written, how it ended is kept in the outbox until it can be (which
    waits for no other process's flush; a keep that fails logs every field)."""
    try:
        record.settle(entry_id, outcome, **fields)
    except trail.TrailUnavailable:
        kept = {"outcome": outcome, **{k: v for k, v in fields.items() if v is not None}}
        if outbox(current_app).keep(entry_id, kept):
            log.warning("audit entry %s kept in the outbox: %s", entry_id, outcome)
    return response


def _past_the_limit(wait: float):
    """Count one more attempt in this minute's summary row and answer 429."""
    try:
        trail.count_refusal(int(app_clock().now().timestamp() // 60))
    except trail.TrailUnavailable:
        return _not_recorded()
    return limits.too_many("Too many attempts", "You made several attempts in the last "
                           "minute. Wait a moment, check your balance, then try again.", wait)


def _not_recorded():
    """Nothing was sent upstream because the attempt could not be put on record."""
    return render_store_busy(
        "The dashboard could not put this attempt on its audit trail (its database is busy "
        "or restarting), so it did not send anything to checkout. Nothing was charged. "
        "Try again in a few seconds.")


def _replayed(earlier):
    """A form submitted twice: follow the first attempt, never start a second. While
    it is pending, wait up to ``PENDING_WAIT_SECONDS`` for how it ended (in its row or
    in the outbox); an outbox that cannot be read counts as nothing kept yet."""
    waited_until = app_clock().monotonic() + PENDING_WAIT_SECONDS
    outcome, checkout_url = earlier.outcome, earlier.checkout_url
    while outcome == PENDING and app_clock().monotonic() < waited_until:
        kept = _kept(earlier.id)  # ended while the database was busy?
        if kept is not None:
            outcome, checkout_url = kept["outcome"], kept.get("checkout_url")
            break
        app_clock().sleep(0.1)
        earlier = record.reload(earlier.id)
        outcome, checkout_url = earlier.outcome, earlier.checkout_url
    if earlier.user_email == current_user.email and outcome == SENT \
            and allowed(checkout_url):
        return redirect(checkout_url, 303)
    if outcome == PENDING:
        message = ("This form is already being processed. Check your balance in a minute "
                   "before trying again.")
    else:
        message = (f"This form was already submitted (outcome: {outcome}). Nothing new "
                   "was started. Reload the billing page to try again.")
    return render_error(409, "Already submitted", message)


def _kept(entry_id) -> dict | None:
    """The outbox's settlement of ``entry_id``, or None (also when the outbox cannot be
    read: it logs that itself, once a spell)."""
    try:
        return outbox(current_app).find(entry_id)
    except OutboxUnavailable:
        return None
