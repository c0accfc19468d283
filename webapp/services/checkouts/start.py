"""Starting a checkout, exactly once, with the attempt on record first.

Order matters: role and input are checked by the view; here the per-user
limit is applied, a ``pending`` row keyed by the form's one-time token is
committed (``record.claim``), upstream is called once, the checkout URL is
checked against the allowlist, the row is settled, and only then is the
checkout's address handed back (``Started``) for the page to send the browser
away. A replayed form finds its earlier row and starts nothing new.

Everything here takes plain values and answers ``Started`` or raises one of
the errors below; the billing page turns those into a redirect or a page.

If the database will not take the pending row, nothing is sent
(``NotRecorded``). Once upstream has answered, the user is told the truth whatever
the database does: if the settling write fails, what upstream said is kept
in the outbox (``settlement``) and written when the database is back, and
the user is still sent to the checkout that exists.

Refused attempts count against the same per-user limit (``refuse``), and
past it they are folded into one audit row a minute: refusing cannot be
used to bury the trail.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app
from blinker import Namespace

from ...clock import app_clock
from ...formatting import money
from ...giga import Checkout, ConnectionFailed, GigaError, Plan, Timeout
from ...checks import checkout_url_allowed
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


@dataclass(frozen=True)
class Started:
    """Where to send the user: ``checkout_url`` (on the allowlist). ``returning`` is what
    the page keeps in the session under ``RETURNING_FROM`` -- ``{"what", "entry"}``, for
    the notice on coming back -- or ``None`` for a replayed form following its first
    attempt (the session keeps what that attempt left)."""
    checkout_url: str
    returning: dict | None = None


class NotRecorded(Exception):
    """The attempt could not be put on the audit trail (its database is busy or
    restarting), so nothing was sent upstream and nothing was charged."""


class PastTheLimit(Exception):
    """The user is past the per-user limit (the attempt is counted in this minute's
    summary row); ``wait``: seconds until one is free."""

    def __init__(self, wait: float):
        super().__init__(wait)
        self.wait = wait


class AlreadySubmitted(Exception):
    """A form submitted again whose first attempt is still ``pending`` (``outcome``) or
    did not send this user to a checkout: nothing new was started."""

    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


class AddressRefused(Exception):
    """Upstream answered with a checkout address that is not on the allowlist, so the
    user is not sent there (the attempt is settled as refused); nothing was paid."""


class UpstreamFailed(Exception):
    """The one upstream call failed (``error``, a ``GigaError``); the attempt is settled.
    ``status_unknown``: it may have been acted on (a timeout or a lost connection after
    sending), so nothing is retried; otherwise ``note`` says what was (not) charged."""

    def __init__(self, error: GigaError, *, status_unknown: bool, note: str | None = None):
        super().__init__(error)
        self.error, self.status_unknown, self.note = error, status_unknown, note


def start_top_up(user, amount: Decimal, nonce: str, *, return_url: str) -> Started:
    """Start a prepaid top-up of ``amount`` for ``user`` (the signed-in user) with the
    form's one-time token ``nonce``; ``return_url`` is the billing page's address the
    checkout sends the payer back to. Returns ``Started``.

    Raises ``NotRecorded``, ``PastTheLimit``, ``AlreadySubmitted``, ``AddressRefused``
    or ``UpstreamFailed`` (see each).
    """
    return _start(user, trail.TOP_UP, nonce, return_url, what=f"your {money(amount)} top-up",
                  amount=amount)


def start_plan_change(user, overview: Overview, target: Plan, nonce: str, *,
                      return_url: str) -> Started:
    """Start the change from the current plan to ``target``; returns and raises like
    ``start_top_up``."""
    current = overview.current_plan
    return _start(user, trail.PLAN_CHANGE, nonce, return_url, what=f"the change to {target.name}",
                  plan_from=overview.billing.plan, plan_to=target.id,
                  plan_from_name=current.name if current else None, plan_to_name=target.name)


def refuse(action, outcome, *, typo=False, **fields) -> None:
    """Record a refused attempt, counted against the user's action limit -- or, for a
    ``typo`` (a form the field checks refused), against an allowance of its own, so
    mistyping an amount never uses up the checkouts a user may start.

    Returns once it has its own audit row (the caller then shows its own
    refusal). Raises ``PastTheLimit`` when the user is past the limit (or
    ``NotRecorded`` when even that cannot be counted), and ``TrailUnavailable``
    when the row cannot be written.
    """
    taken, wait = limits.take("typos" if typo else "actions")
    if not taken:
        _past_the_limit(wait)  # raises
    trail.record(action, outcome, **fields)


def allowed(url) -> bool:
    cfg = current_app.config
    return checkout_url_allowed(url, cfg["CHECKOUT_ALLOWED_HOSTS"],
                                cfg["CHECKOUT_ALLOWED_ORIGINS"])


def _start(user, action, nonce, return_url, *, what, **fields) -> Started:
    """Claim the attempt, ask upstream once, and answer. ``what`` names the checkout
    in words ("your $50.00 top-up") for the notice its user sees on coming back.
    Raises as ``start_top_up`` says."""
    try:
        earlier = record.find(nonce)
    except trail.TrailUnavailable as exc:
        raise NotRecorded from exc
    if earlier is not None:  # a double-click or a replay: not a new attempt
        return _replayed(user, earlier)
    taken, wait = limits.take("actions")
    if not taken:
        _past_the_limit(wait)  # raises
    try:
        entry_id, earlier = record.claim(action, nonce, **fields)
    except trail.TrailUnavailable as exc:
        raise NotRecorded from exc
    if earlier is not None:
        return _replayed(user, earlier)
    try:
        checkout = _ask_upstream(action, fields)
    except GigaError as exc:
        raise _upstream_failed(user, action, entry_id, exc) from exc
    if not allowed(checkout.checkout_url):
        log.error("refused checkout redirect to %r (user %s)", checkout.checkout_url[:200],
                  user.email)
        _settle_or_keep(entry_id, "refused: checkout host not allowed",
                        request_id=checkout.request_id, detail=checkout.checkout_url[:500])
        raise AddressRefused(checkout.request_id)
    _settle_or_keep(entry_id, SENT, request_id=checkout.request_id,
                    checkout_url=checkout.checkout_url)
    checkout_started.send(current_app._get_current_object(),
                          checkout_url=checkout.checkout_url, return_url=return_url)
    return Started(checkout.checkout_url, returning={"what": what, "entry": entry_id})


def _ask_upstream(action, fields) -> Checkout:
    """The one upstream call of an attempt. Raises ``GigaError``."""
    if action == trail.TOP_UP:
        return gateway().top_up(fields["amount"], deadline())
    return gateway().change_plan(fields["plan_to"], deadline())


def _upstream_failed(user, action, entry_id, exc: GigaError) -> UpstreamFailed:
    """Settle the attempt that ``exc`` ended; returns the ``UpstreamFailed`` to raise."""
    if isinstance(exc, (Timeout, ConnectionFailed)) and not exc.never_sent:
        # the request may have been acted on: say so, and never retry it blindly
        how = "timeout" if isinstance(exc, Timeout) else "connection lost"
        log.warning("%s status unknown after %s (user %s)", action, how, user.email)
        _settle_or_keep(entry_id, f"status unknown: {how}", request_id=exc.request_id)
        return UpstreamFailed(exc, status_unknown=True)
    note = ("Nothing was sent, so nothing was charged." if exc.never_sent or exc.status
            else "Check your balance before trying again.")
    _settle_or_keep(entry_id, trail.upstream_outcome(exc), request_id=exc.request_id)
    return UpstreamFailed(exc, status_unknown=False, note=note)


def _settle_or_keep(entry_id, outcome, **fields) -> None:
    """Record how the attempt ended. Upstream has answered by now, so what the user is
    told is the truth whatever the database does: when the row cannot be written, how
    it ended is kept in the outbox until it can be (which waits for no other process's
    flush; a keep that fails logs every field)."""
    try:
        record.settle(entry_id, outcome, **fields)
    except trail.TrailUnavailable:
        kept = {"outcome": outcome, **{k: v for k, v in fields.items() if v is not None}}
        if outbox(current_app).keep(entry_id, kept):
            log.warning("audit entry %s kept in the outbox: %s", entry_id, outcome)


def _past_the_limit(wait: float):
    """Count one more attempt in this minute's summary row and raise ``PastTheLimit``
    (``NotRecorded`` when the count cannot be written)."""
    try:
        trail.count_refusal(int(app_clock().now().timestamp() // 60))
    except trail.TrailUnavailable as exc:
        raise NotRecorded from exc
    raise PastTheLimit(wait)


def _replayed(user, earlier) -> Started:
    """A form submitted twice: follow the first attempt, never start a second. While
    it is pending, wait up to ``PENDING_WAIT_SECONDS`` for how it ended (in its row or
    in the outbox); an outbox that cannot be read counts as nothing kept yet. Raises
    ``AlreadySubmitted`` when there is no checkout of this user's to follow."""
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
    if earlier.user_email == user.email and outcome == SENT and allowed(checkout_url):
        return Started(checkout_url)
    raise AlreadySubmitted(outcome)


def _kept(entry_id) -> dict | None:
    """The outbox's settlement of ``entry_id``, or None (also when the outbox cannot be
    read: it logs that itself, once a spell)."""
    try:
        return outbox(current_app).find(entry_id)
    except OutboxUnavailable:
        return None
