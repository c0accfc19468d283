from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import User
from ..security import is_safe_next
from . import throttle
from .forms import SignInForm
from ..services.sessions import end_session, start_session

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "Wrong email or password."
DUMMY_HASH = generate_password_hash("not-a-real-password")


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    if current_user.is_authenticated:
        return redirect(url_for("billing.dashboard"))
    form = SignInForm()
    target = request.values.get("next")
    status, retry_after = 200, None
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        address = throttle.client_key(request.remote_addr)
        # counted before the check, so attempts made at once cannot all be checked
        attempt = throttle.reserve(email, address)
        wait = throttle.seconds_blocked(email, address)
        spaced = 0 if wait else throttle.seconds_slowed(email, address, attempt)
        if wait or spaced:
            throttle.release(attempt)  # refused unchecked: not a failure
        if wait:
            minutes = max(1, (wait + 59) // 60)
            form.form_errors.append(
                f"Too many failed sign-ins. Try again in {minutes} minute"
                f"{'s' if minutes != 1 else ''}.")
            status, retry_after = 429, wait
        elif spaced:
            # an account under attack: answered at once, no thread held, nothing checked
            form.form_errors.append(
                f"Too many failed sign-ins for this account. Try again in {spaced} second"
                f"{'s' if spaced != 1 else ''}.")
            status, retry_after = 429, spaced
        else:
            user = db.session.scalar(select(User).where(User.email == email))
            if user is not None and user.check_password(form.password.data):
                throttle.clear_failures(email, address)
                start_session(user)
                current_app.logger.info("sign-in: %s (%s)", user.email, user.role)
                return redirect(target if is_safe_next(target) else url_for("billing.dashboard"))
            if user is None:
                # same work as a real check, so timing does not reveal who has an account
                check_password_hash(DUMMY_HASH, form.password.data)
            # the attempt's row, written before the check, stays as its failure
            form.form_errors.append(GENERIC_FAILURE)
            status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/signin.html", form=form,
                           next=target if is_safe_next(target) else None,
                           sandbox=current_app.config["SANDBOX_MODE"]), status, \
        {"Retry-After": str(retry_after)} if retry_after else {}


@bp.get("/login")
def login():
    """``/login``, as people type it: sign-in, keeping ``next`` when it is a path here."""
    target = request.args.get("next")
    return redirect(url_for("auth.signin", next=target if is_safe_next(target) else None))


@bp.post("/signout")
def signout():
    end_session(current_user if current_user.is_authenticated else None)
    return redirect(url_for("auth.signin"))
