from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import app_clock
from ..errors import render_store_busy
from ..extensions import db
from ..models import VIA_PASSWORD, User
from ..security import is_safe_next
from . import throttle
from .forms import SignInForm
from ..services import trail
from ..services.sessions import end_session, start_session

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "Wrong email or password."
#: the reasons a refused sign-in is folded under on the audit trail
WRONG = "wrong email or password"
THROTTLED = "too many failed sign-ins"
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
            _refused(VIA_PASSWORD, THROTTLED, email)
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
                try:  # on the trail first: a sign-in it cannot record does not happen
                    trail.signed_in(user.email, user.role, VIA_PASSWORD)
                except trail.TrailUnavailable as exc:
                    return render_store_busy(NOT_RECORDED, reason=exc.__cause__)
                start_session(user, via=VIA_PASSWORD)
                current_app.logger.info("sign-in: %s (%s)", user.email, user.role)
                return redirect(target if is_safe_next(target) else url_for("billing.dashboard"))
            if user is None:
                # same work as a real check, so timing does not reveal who has an account
                check_password_hash(DUMMY_HASH, form.password.data)
            # the attempt's row, written before the check, stays as its failure
            _refused(VIA_PASSWORD, WRONG, email)
            form.form_errors.append(GENERIC_FAILURE)
            status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/signin.html", form=form,
                           next=target if is_safe_next(target) else None,
                           sandbox=current_app.config["SANDBOX_MODE"]), status, \
        {"Retry-After": str(retry_after)} if retry_after else {}


NOT_RECORDED = ("The dashboard's database did not answer in time (it may be busy or "
                "restarting), so the sign-in could not be put on the audit trail and you are "
                "not signed in. Try again in a few seconds.")


def _refused(via: str, reason: str, email=None, detail=None) -> None:
    """Fold a refused sign-in into its row on the trail (one a way in, reason, address
    and minute). Best effort: the refusal stands when the trail cannot take it (a
    password failure is counted for throttling all the same)."""
    try:
        trail.sign_in_refused(email=(email or "").strip().lower()[:254] or None, via=via,
                              reason=reason, address=throttle.client_key(request.remote_addr),
                              minute=int(app_clock().time()) // 60, detail=detail)
    except trail.TrailUnavailable:
        current_app.logger.warning("a refused sign-in (%s) could not be put on the trail",
                                   reason)


@bp.get("/login")
def login():
    """``/login``, as people type it: sign-in, keeping ``next`` when it is a path here."""
    target = request.args.get("next")
    return redirect(url_for("auth.signin", next=target if is_safe_next(target) else None))


@bp.post("/signout")
def signout():
    user = current_user._get_current_object() if current_user.is_authenticated else None
    end_session(user)
    if user is not None:
        try:  # after the session has ended: signing out never waits on the trail
            trail.signed_out(user.email, user.role, user.via)
        except trail.TrailUnavailable:
            current_app.logger.warning("a sign-out could not be put on the trail")
    return redirect(url_for("auth.signin"))
