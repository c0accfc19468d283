from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from ..services import trail as audit
from ..services import limits
from ..clock import app_clock
from ..extensions import db
from ..errors import render_error, render_too_many
from .forms import AlertRulesForm, SendTestForm
from ..services.alerting.rules import describe, settings
from ..services.alerting.deliveries import configured, deliveries_of, recent, send_test, targets
from ..security import permission_required

bp = Blueprint("alerts", __name__, url_prefix="/alerts")


def _page(form, status=200):
    rules = settings()
    alerts = recent()
    cfg = current_app.config
    return render_template("alerts/index.html", form=form, test_form=SendTestForm(),
                           rules=rules, alerts=alerts, configured=configured(cfg),
                           deliveries=deliveries_of([a.id for a in alerts]),
                           targets=targets(cfg, rules), cfg=cfg,
                           can_edit=current_user.can("alerts_edit")), status


@bp.get("")
@permission_required("alerts")
def index():
    rules = settings()
    form = AlertRulesForm(formdata=None, balance_below=str(rules.balance_below or ""),
                          runs_out_within_days=rules.runs_out_within_days,
                          email_roles=[r for r in rules.email_roles.split(",") if r],
                          extra_emails="\n".join(e for e in rules.extra_emails.split(",") if e))
    return _page(form)


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
