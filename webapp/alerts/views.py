from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from ..services import trail as audit
from ..services import limits
from ..clock import app_clock
from ..extensions import db
from ..errors import render_error, render_too_many
from .forms import AlertRulesForm, BudgetForm, SendTestForm
from ..services import budget as budgets
from ..services.alerting.rules import describe, settings
from ..services.alerting.deliveries import (configured, deliveries_of, evaluate, recent,
                                            send_test, targets)
from ..security import permission_required

bp = Blueprint("alerts", __name__, url_prefix="/alerts")


def _budget_form():
    """The budget form filled with what is kept, and the kept row."""
    row = budgets.budget_settings(fresh=True)
    return BudgetForm(formdata=None, amount=str(row.amount or ""), basis=row.basis,
                      spike_sensitivity=row.spike_sensitivity), row


def _page(form, status=200, budget_form=None):
    rules = settings()
    alerts = recent()
    cfg = current_app.config
    fresh_budget_form, budget = _budget_form()
    return render_template("alerts/index.html", form=form, test_form=SendTestForm(),
                           budget_form=budget_form or fresh_budget_form, budget=budget,
                           can_budget=current_user.can("budget"),
                           rules=rules, alerts=alerts, configured=configured(cfg),
                           deliveries=deliveries_of([a.id for a in alerts]),
                           targets=targets(cfg, rules), cfg=cfg,
                           can_edit=current_user.can("alerts_edit")), status


def _rules_form():
    rules = settings()
    return AlertRulesForm(formdata=None, balance_below=str(rules.balance_below or ""),
                          runs_out_within_days=rules.runs_out_within_days,
                          email_roles=[r for r in rules.email_roles.split(",") if r],
                          extra_emails="\n".join(e for e in rules.extra_emails.split(",") if e))


@bp.get("")
@permission_required("alerts")
def index():
    return _page(_rules_form())


@bp.post("")
@permission_required("alerts_edit")
def save():
    form = AlertRulesForm()
    if not form.validate():
        return _page(form, 422)
    rules = db.session.merge(settings())  # the seeded defaults, if never saved yet
    before = describe(rules)
    rules.balance_below = form.balance
    rules.runs_out_within_days = form.runs_out_within_days.data
    email = bool(current_app.config["SMTP_URL"])
    if email:  # without a mail server the email choices are off on the page: kept as they are
        rules.email_roles = ",".join(form.email_roles.data or [])
        rules.extra_emails = ",".join(form.addresses)
    rules.updated_by, rules.updated_at = current_user.email, app_clock().now()
    after = describe(rules)
    # on the trail in the same transaction: saved rules and their record land together
    audit.stage(audit.ALERT_RULES_CHANGED, "done" if after != before else "done, unchanged",
                subject="alert rules", detail=f"from: {before} → to: {after}")
    db.session.commit()
    flash("Alert rules saved. They are checked on every fresh balance reading." + (
        "" if email else " Email is off (no SMTP_URL): " + (
            "alerts go to the webhook only." if configured(current_app.config)
            else "no channel is set, so no alert is sent yet.")), "success")
    return redirect(url_for("alerts.index"), 303)


@bp.post("/test")
@permission_required("alerts_edit")
def test():
    if not SendTestForm().validate():
        return render_error(400, "This form has expired", "Reload the page and try again.")
    if not configured(current_app.config):
        return render_error(409, "No channel configured", "Set SMTP_URL or ALERT_WEBHOOK_URL "
                            "first; there is nowhere to send a test alert.")
    # each admin may send one test a minute: a button must not flood an inbox
    taken, wait = limits.take("alert-test")
    if not taken:
        return render_too_many("Test alert already sent", "A test alert was sent a moment ago. "
                               "Wait a minute before sending another.", wait,
                               back=(url_for("alerts.index"), "Back to Alerts"))
    send_test(current_app._get_current_object(), app_clock().now(), current_user.id,
              current_user.email)
    flash("Test alert queued; its delivery status shows below in a few seconds.", "success")
    return redirect(url_for("alerts.index"), 303)


@bp.post("/budget")
@permission_required("budget")
def save_budget():
    form = BudgetForm()
    if not form.validate():
        return _page(_rules_form(), 422, budget_form=form)
    # every save is a row on the trail: a user may not write them by the thousand
    taken, wait = limits.take("settings")
    if not taken:
        return render_too_many("Too many saves", "The budget was saved several times in the "
                               "last minute. Wait a moment and try again.", wait,
                               back=(url_for("alerts.index"), "Back to Alerts"))
    app = current_app._get_current_object()
    _, after = budgets.save(form.decimal, form.basis.data, form.spike_sensitivity.data,
                            current_user.email, app_clock().now())
    # a budget lowered below what is spent says so now, not at the next reading
    known = app.extensions["giga_gateway"].known_billing()
    if known is not None:
        evaluate(app, known.value, known.fetched_at)
    flash(f"Saved: {after}. A budget does not stop usage; it is what the page and the "
          "alerts measure spending against.", "success")
    return redirect(url_for("alerts.index"), 303)
