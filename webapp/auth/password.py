"""Changing one's own password (``bp``), for every signed-in role: the current password
asked for and counted against sign-in throttling (a session left open is not a way to
guess it), the new one by the rule, every other session ended."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..errors import render_too_many
from ..extensions import db
from ..models import User
from ..services import limits, users as service
from ..services.sessions import renew_session
from . import throttle
from .forms import ChangePasswordForm

bp = Blueprint("password", __name__, url_prefix="/account")


def _page(form, user, status=200, headers=None):
    return render_template("auth/password.html", form=form, user=user), status, headers or {}


def _wait_words(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = (seconds + 59) // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@bp.get("/password")
@login_required
def show():
    return _page(ChangePasswordForm(formdata=None), db.session.get(User, current_user.id))


@bp.post("/password")
@login_required
def change():
    user = db.session.get(User, current_user.id)
    form = ChangePasswordForm()
    if user.is_demo or not user.has_password:
        return _page(form, user, 403)  # the page says why; there is no form to send
    taken, wait = limits.take("passwords")  # before the rule's costly checks
    if not taken:
        return render_too_many("Too many password changes", "The password was changed several "
                               "times in the last minute. Wait a moment and try again.", wait,
                               back=(url_for("password.show"), "Back to Password"))
    if not form.validate():
        return _page(form, user, 422)
    address = throttle.client_key(request.remote_addr)
    # counted as a failed sign-in until the current password proves right
    attempt = throttle.reserve(user.email, address)
    wait = throttle.seconds_blocked(user.email, address) or \
        throttle.seconds_slowed(user.email, address, attempt)
    if wait:
        throttle.release(attempt)  # refused unchecked: not a failure
        form.current.errors.append(f"Too many wrong passwords. Try again in "
                                   f"{_wait_words(wait)}.")
        return _page(form, user, 429, {"Retry-After": str(wait)})
    try:
        ended = service.change_own_password(user.id, current_user.current_session_id,
                                            form.current.data, form.new.data)
    except service.WrongPassword as exc:
        form.current.errors.append(str(exc))  # the attempt's row stays as its failure
        return _page(form, user, 422)
    except service.UserError as exc:
        throttle.clear_failures(user.email, address)
        form.new.errors.append(str(exc))
        return _page(form, user, 422)
    throttle.clear_failures(user.email, address)
    renew_session(user, current_user.current_session_id, current_user.via)
    flash("Your password has been changed. You stay signed in here; " + (
        f"your {ended} other session{'s' if ended != 1 else ''} (other browsers or devices) "
        f"{'were' if ended != 1 else 'was'} signed out." if ended else
        "you were signed in nowhere else."), "success")
    return redirect(url_for("password.show"), 303)
