"""The billing page: the balance gauge, the forecast, the usage chart, the plan cards,
and the top-up and plan-change forms that start a checkout."""
import secrets

from flask import (Blueprint, abort, current_app, get_template_attribute,
                   render_template, request)
from flask_login import current_user

from ..errors import render_error, render_upstream_error
from ..giga import GigaError
from ..services import trail
from ..services.checkouts import returns
from ..services.account import load_overview, plan_names
from ..services.checkouts.reconcile import pending_checkouts
from ..services.budget import budget_for_page
from ..services.history.readings import first_reading_at
from ..services.planfit import plan_fit
from ..services.history.report import DEFAULT_RANGE, RANGES, page_history, with_budget_line
from ..services.zone import display_zone
from ..services.amount import range_text
from ..security import permission_required
from . import answers
from .forms import ChangePlanForm, TopUpForm

bp = Blueprint("billing", __name__, url_prefix="/billing")

PRESETS = ("25", "50", "100", "500")
#: how much of a refused amount the audit trail keeps
TYPED_MAX = 40
#: charts kept rendered in each process (each with the report it was drawn from)
RENDERED_CHARTS = 12


@bp.context_processor
def checkout_name():
    """Where the payer goes: Stripe Checkout for real, the sandbox's own page otherwise."""
    sandbox = current_app.config["SANDBOX_MODE"]
    return {"checkout_name": "the sandbox's checkout page" if sandbox else "Stripe Checkout"}


def _new_nonce() -> str:
    return secrets.token_urlsafe(24)


def _usage_chart(report, budget_per_day, can_export: bool):
    """The usage chart and its table as HTML, with the budget's share a day drawn on it
    (``None``: no budget), rendered once per report (the history service keeps a report
    while nothing it shows changes), budget and kind of viewer: a year's table is most
    of the page's rendering."""
    kept = current_app.extensions.setdefault("rendered_charts", {})
    key = (id(report), budget_per_day, can_export)
    found = kept.get(key)
    if found is None or found[0] is not report:  # an id may be reused once one is gone
        html = get_template_attribute("macros/history.html", "usage_chart")(
            with_budget_line(report, budget_per_day), RANGES, can_export)
        if len(kept) >= RENDERED_CHARTS:
            kept.clear()
        found = kept[key] = (report, html)
    return found[1]


def render_dashboard(form=None, *, status=200, back=None):
    """The billing page; an upstream fault on the balance read gets the error page.

    ``back``: a ``returns.Return`` for a user back from a checkout they started,
    whose notice is worked out after the (fresh) reading.
    """
    try:
        overview = load_overview(fresh=back is not None and back.wants_fresh_figures)
    except GigaError as exc:
        return render_upstream_error(exc)
    notice = returns.notice(back, overview.fetched_at) if back else None
    history = page_history(request.args.get("range", DEFAULT_RANGE), overview.billing,
                           overview.now, overview.known_plans, read_at=overview.fetched_at,
                           zone=display_zone())
    budget_row, budget = budget_for_page(overview.billing, overview.forecast, overview.known_plans,
                                overview.now, read_at=overview.fetched_at, zone=display_zone())
    fit = plan_fit(overview.billing, overview.known_plans, overview.now,
                   read_at=overview.fetched_at, zone=display_zone(), began=first_reading_at())
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
                           pending=pending, budget=budget, budget_row=budget_row, fit=fit,
                           usage_chart=_usage_chart(history.report,
                                                    budget.per_day if budget else None,
                                                    current_user.can("audit"))), status


@bp.get("")
@permission_required("view")
def dashboard():
    return render_dashboard(back=returns.came_back(request.args.get("checkout")))


def _typed_amount() -> str:
    """The amount field as it was typed, trimmed for the audit trail."""
    return request.form.get("amount", "").strip()[:TYPED_MAX]


def _refuse_top_up(*_args, **_kw):
    return answers.refused(trail.TOP_UP, "refused: role", amount_typed=_typed_amount(),
                           detail="role may not top up")


@bp.post("/topup")
@permission_required("topup", on_refusal=_refuse_top_up)
def top_up():
    form = TopUpForm()
    if not form.validate():
        errors = "; ".join(e for errs in form.errors.values() for e in errs)
        return answers.refused(trail.TOP_UP, "refused: invalid input", typo=True,
                               amount_typed=_typed_amount(), detail=errors[:500]) \
            or render_dashboard(form, status=422)
    return answers.top_up(form.decimal, form.nonce.data)


def _plan_change_context(plan_id):
    """``(overview, target, None, None)`` for a plan change, or ``(.., .., response, reason)``
    when it cannot go ahead; ``reason`` is the audit outcome."""
    try:
        overview = load_overview()
    except GigaError as exc:
        return None, None, render_upstream_error(exc), trail.upstream_outcome(exc)
    if overview.plans_error is not None:
        exc = overview.plans_error
        return None, None, render_upstream_error(exc), trail.upstream_outcome(exc)
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
    names = plan_names()
    return {f"plan_{end}_name": names.get(pid) for end, pid in zip(("from", "to"), plan_ids)
            if pid is not None}


def _refuse_plan_change(plan_id):
    if request.method == "POST":
        return answers.refused(trail.PLAN_CHANGE, "refused: role", plan_to=plan_id[:200],
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
        return answers.refused(trail.PLAN_CHANGE, "refused: invalid input", typo=True,
                               plan_to=plan_id[:200], **_plan_names(None, plan_id),
                               detail=errors[:500]) or render_error(
            400, "Form not accepted", "This form is missing its one-time token. Go back, "
            "reload the page and try again.")
    overview, target, failure, reason = _plan_change_context(plan_id)
    if failure:
        return answers.refused(trail.PLAN_CHANGE, reason, plan_to=plan_id[:200],
                               **_plan_names(None, plan_id)) or failure
    return answers.plan_change(overview, target, form.nonce.data)
