"""Settings › API tokens: anyone signed in makes and revokes personal tokens for the JSON
API; admins also team tokens, and revoke anyone's. A new token is shown once, on the
answer to the form that made it (never in a redirect's flash: that would put it in the
session cookie); every page is ``Cache-Control: no-store`` (``security``)."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from ..clock import app_clock
from ..extensions import db
from ..models import ApiToken, User
from ..services import limits
from ..services import tokens as service
from ..errors import render_too_many
from .forms import NewTokenForm, RevokeForm

bp = Blueprint("tokens", __name__, url_prefix="/settings/tokens")

ROW_ID = "int(min=1, max=2147483647)"


def _is_admin() -> bool:
    return current_user.can("users")


def _page(form=None, *, made=None, status=200):
    now = app_clock().now()
    rows = service.visible_to(current_user.id, admin=_is_admin())
    return render_template("tokens/index.html", form=form or NewTokenForm(formdata=None),
                           rows=rows, made=made, now=now, revoke=RevokeForm(),
                           status=service.status, soon=service.expiring_soon,
                           may_revoke=lambda t: service.may_revoke(
                               t, current_user.id, current_user.role),
                           admin=_is_admin()), status


@bp.get("")
@login_required
def index():
    return _page()


@bp.post("")
@login_required
def create():
    form = NewTokenForm()
    if not form.validate():
        return _page(form, status=422)
    if form.team.data and not _is_admin():
        form.form_errors.append("Only an admin can make a team token.")
        return _page(form, status=403)
    taken, wait = limits.take("tokens")
    if not taken:
        return render_too_many("Too many tokens", "Several tokens were made or revoked in "
                               "the last minute. Wait a moment and try again.", wait,
                               back=(url_for("tokens.index"), "Back to API tokens"))
    owner = None if form.team.data else db.session.get(User, current_user.id)
    try:
        token, text = service.create(form.name.data, form.scopes.data, form.days.data,
                                     owner=owner, actor=(current_user.email, current_user.role),
                                     now=app_clock().now())
    except service.TokenError as exc:
        getattr(form, exc.field or "name").errors.append(str(exc))
        return _page(form, status=422)
    return _page(made=(token, text), status=201)


@bp.post(f"/<{ROW_ID}:token_id>/revoke")
@login_required
def revoke(token_id):
    token = db.session.get(ApiToken, token_id)
    if token is None or not service.may_revoke(token, current_user.id, current_user.role):
        flash("No such token of yours.", "error")
        return redirect(url_for("tokens.index"), 303)
    taken, wait = limits.take("tokens")
    if not taken:
        return render_too_many("Too many changes", "Several tokens were made or revoked in "
                               "the last minute. Wait a moment and try again.", wait,
                               back=(url_for("tokens.index"), "Back to API tokens"))
    if service.revoke(token, actor=(current_user.email, current_user.role),
                      now=app_clock().now()):
        flash(f"Revoked {token.hint} “{token.name}”: it is refused from now on.", "success")
    else:
        flash(f"{token.hint} was revoked already.", "info")
    return redirect(url_for("tokens.index"), 303)
