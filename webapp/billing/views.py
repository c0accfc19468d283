import secrets
from functools import partial

from flask import abort, current_app, render_template, request, session
from flask_login import current_user

from ..audit import service as audit
from ..auth.roles import permission_required
from ..errors import render_error, render_upstream_error
from ..formatting import money
from ..gateway import UpstreamFault
from ..history.report import DEFAULT_RANGE, RANGES, page_history
from ..clock import app_clock as clock
from ..formatting import clock as clock_format
from ..history.service import (CREDITED, PLAN_CHANGED, checkout_seen, mark_cancelled,
                               pending_checkouts)
from . import bp
from .actions import RETURNING_FROM, refuse, start_checkout
from .amount import range_text
from .forms import ChangePlanForm, TopUpForm
from .overview import gateway, load_overview

PRESETS = ("25", "50", "100", "500")
#: how much of a refused amount the audit trail keeps
TYPED_MAX = 40
RETURN_NOTICES = {
    # the balance below already shows it (a reading reconciled the checkout)
    "seen": ("success", "Thank you. {What} is {done}: the figures below include it."),
    "success": ("success", "Thank you. Your payment for {what} is being processed; it is not "
                "in the figures below yet (read at {read}). Reload in a minute to see it."),
    "cancel": ("info", "Checkout of {what} was cancelled. Nothing was charged and your balance "
               "is unchanged."),
}
#: how a checkout shows once the balance has it
DONE = {CREDITED: "credited", PLAN_CHANGED: "done"}


def _new_nonce() -> str:
    return secrets.token_urlsafe(24)


def _return_notice(outcome: str, started: dict, overview) -> tuple[str, str]:
    """What to say to a user back from checkout, matching the figures under it: a paid
    checkout the fresh reading already shows is "credited" (or "done"), else "being
    processed"."""
    what = started["what"]
    if outcome == "success":
        seen = checkout_seen(started["entry"])
        if seen in DONE:
            kind, text = RETURN_NOTICES["seen"]
            return kind, text.format(What=what[0].upper() + what[1:], done=DONE[seen])
    kind, text = RETURN_NOTICES[outcome]
    return kind, text.format(what=what, read=clock_format(overview.fetched_at))


def render_dashboard(form=None, *, status=200, fresh=False, returning=None):
    """The billing page; an upstream fault on the balance read gets the error page.

    ``returning``: ``(outcome, started)`` for a user back from a checkout they
    started, whose notice is worked out after the fresh reading.
    """
    try:
        overview = load_overview(fresh=fresh)
    except UpstreamFault as exc:
        return render_upstream_error(exc)
    notice = _return_notice(*returning, overview) if returning else None
    history = page_history(request.args.get("range", DEFAULT_RANGE), overview.billing,
                           overview.now, overview.known_plans)
    cfg = current_app.config
    if form is None:
        form = TopUpForm(formdata=None)
        amount = request.args.get("amount", "")
        form.amount.data = amount if amount in PRESETS else ""
    form.nonce.data = _new_nonce()
    presets = [p for p in PRESETS if cfg["RECHARGE_MIN"] <= int(p) <= cfg["RECHARGE_MAX"]]
    pending = pending_checkouts(overview.now) if current_user.can("audit") else []
    return render_template("billing/dashboard.html", o=overview, form=form, notice=notice,
                           presets=presets, can_change=current_user.can("change_plan"),
                           amount_range=range_text(cfg["RECHARGE_MIN"], cfg["RECHARGE_MAX"]),
                           report=history.report, ranges=RANGES, pending=pending), status


@bp.get("")
@permission_required("view")
def dashboard():
    outcome = request.args.get("checkout")
    # a notice, and a fresh read, only for the user coming back from a checkout this
    # session started, once: a link with ?checkout=success alone does neither, so no
    # one can spend the shared upstream budget by reloading it
    started = session.pop(RETURNING_FROM, None) if outcome in ("success", "cancel") else None
    if not isinstance(started, dict):
        return render_dashboard()
    if outcome == "cancel":  # they said so on the checkout page: not a pending payment
        mark_cancelled(started["entry"], current_user.email, clock().now())
    return render_dashboard(fresh=outcome == "success", returning=(outcome, started))


def _typed_amount() -> str:
    """The amount field as it was typed, trimmed for the audit trail."""
    return request.form.get("amount", "").strip()[:TYPED_MAX]


def _refuse_top_up(*_args, **_kw):
    return refuse(audit.TOP_UP, "refused: role", amount_typed=_typed_amount(),
                  detail="role may not top up")


@bp.post("/topup")
@permission_required("topup", on_refusal=_refuse_top_up)
def top_up():
    form = TopUpForm()
    if not form.validate():
        errors = "; ".join(e for errs in form.errors.values() for e in errs)
        return refuse(audit.TOP_UP, "refused: invalid input", amount_typed=_typed_amount(),
                      detail=errors[:500]) or render_dashboard(form, status=422)
    amount = form.decimal
    return start_checkout(audit.TOP_UP, partial(gateway().top_up, amount),
                          nonce=form.nonce.data, what=f"your {money(amount)} top-up",
                          amount=amount)


def _plan_change_context(plan_id):
    """``(overview, target, None, None)`` for a plan change, or ``(.., .., response, reason)``
    when it cannot go ahead; ``reason`` is the audit outcome."""
    try:
        overview = load_overview()
    except UpstreamFault as exc:
        return None, None, render_upstream_error(exc), audit.upstream_outcome(exc)
    if overview.plans_error is not None:
        exc = overview.plans_error
        return None, None, render_upstream_error(exc), audit.upstream_outcome(exc)
    target = next((p for p in overview.plans if p.id == plan_id), None)
    if target is None:
        abort(404)
    if target.id == overview.billing.plan:
        return None, None, render_error(400, "Already on this plan",
                                        f"The account is already on {target.name}."), \
            "refused: already on this plan"
    if target.is_custom_priced:
        return None, None, render_error(400, "Contact sales",
                                        f"{target.name} has custom pricing and is not sold "
                                        "through checkout. Contact WithGiga sales to change to "
                                        "it.", sales_link=True), "refused: contact sales"
    return overview, target, None, None


def _plan_names(*plan_ids) -> dict:
    """``plan_from_name`` / ``plan_to_name`` for the audit trail, from the plans last read."""
    names = gateway().plan_names()
    return {f"plan_{end}_name": names.get(pid) for end, pid in zip(("from", "to"), plan_ids)
            if pid is not None}


def _refuse_plan_change(plan_id):
    if request.method == "POST":
        return refuse(audit.PLAN_CHANGE, "refused: role", plan_to=plan_id[:200],
                      **_plan_names(None, plan_id), detail="role may not change plan")
    return None


@bp.get("/plans/<plan_id>")
@permission_required("change_plan", on_refusal=_refuse_plan_change)
def confirm_plan(plan_id):
    overview, target, failure, _ = _plan_change_context(plan_id)
    if failure:
        return failure
    form = ChangePlanForm(formdata=None)
    form.nonce.data = _new_nonce()
    return render_template("billing/confirm.html", o=overview, target=target, form=form,
                           direction=overview.direction(target))


@bp.post("/plans/<plan_id>")
@permission_required("change_plan", on_refusal=_refuse_plan_change)
def change_plan(plan_id):
    form = ChangePlanForm()
    if not form.validate():
        errors = "; ".join(e for errs in form.errors.values() for e in errs)
        return refuse(audit.PLAN_CHANGE, "refused: invalid input", plan_to=plan_id[:200],
                      **_plan_names(None, plan_id), detail=errors[:500]) or render_error(
            400, "Form not accepted", "This form is missing its one-time token. Go back, "
            "reload the page and try again.")
    overview, target, failure, reason = _plan_change_context(plan_id)
    if failure:
        return refuse(audit.PLAN_CHANGE, reason, plan_to=plan_id[:200],
                      **_plan_names(None, plan_id)) or failure
    current = overview.current_plan
    return start_checkout(audit.PLAN_CHANGE, partial(gateway().change_plan, target.id),
                          nonce=form.nonce.data, what=f"the change to {target.name}",
                          plan_from=overview.billing.plan, plan_to=target.id,
                          plan_from_name=current.name if current else None,
                          plan_to_name=target.name)
