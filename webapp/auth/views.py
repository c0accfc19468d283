from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import app_clock
from ..errors import render_error
from ..extensions import db
from ..models import VIA_PASSWORD, VIA_SSO, User
from ..security import is_safe_next
from ..services import trail
from ..services.sessions import end_session, start_session
from ..services.sso import Policy, SignInRefused, admit
from . import sso, throttle
from .forms import SignInForm

bp = Blueprint("auth", __name__)

#: where a sign-in through the provider goes once it is done, and the ID token kept for
#: signing out there (both in the signed session cookie)
SSO_NEXT = "sso_next"
SSO_ID_TOKEN = "sso_id_token"
#: refusals that are about the request (a lost cookie, a reused code, a bad token), and
#: the provider not answering; any other refusal is a 403
BAD_REQUEST_REASONS = {"state did not match", "code refused", "ID token refused",
                       "no ID token", "userinfo for another subject"}
UNAVAILABLE_REASONS = {"provider unreachable", "provider misconfigured"}

GENERIC_FAILURE = "Wrong email or password."
DUMMY_HASH = generate_password_hash("not-a-real-password")


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    if current_user.is_authenticated:
        return redirect(url_for("billing.dashboard"))
    form = SignInForm()
    target = request.values.get("next")
    status, retry_after = 200, None
    mode = current_app.config["PASSWORD_SIGNIN"]
    if request.method == "POST" and mode == "off":
        # switched off on the server, not only hidden: the right password gets nowhere
        _refused(VIA_PASSWORD, "password sign-in off", form.email.data)
        form.form_errors.append("Password sign-in is switched off here. Sign in with your "
                                "company account.")
        status = 403
    elif form.validate_on_submit():
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
                if mode == "admins" and user.role != "admin":
                    _refused(VIA_PASSWORD, "password sign-in is for admins", email)
                    form.form_errors.append("Password sign-in is kept for local admins here. "
                                            "Sign in with your company account.")
                    return _signin_page(form, target, 403)
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
    return _signin_page(form, target, status, retry_after)


def _signin_page(form, target, status, retry_after=None):
    cfg = current_app.config
    return render_template("auth/signin.html", form=form,
                           next=target if is_safe_next(target) else None,
                           sandbox=cfg["SANDBOX_MODE"], sso=sso.enabled(),
                           password_mode=cfg["PASSWORD_SIGNIN"],
                           sso_label=cfg["OIDC_BUTTON_LABEL"]), status, \
        {"Retry-After": str(retry_after)} if retry_after else {}


def _refused(via: str, reason: str, email=None, detail=None):
    """Put a refused sign-in on the trail, folded with others like it from this
    address this minute. Raises ``TrailUnavailable``."""
    trail.sign_in_refused(email=(email or "").strip().lower()[:254] or None, via=via,
                          reason=reason, address=throttle.client_key(request.remote_addr),
                          minute=int(app_clock().now().timestamp() // 60), detail=detail)


@bp.get("/signin/sso")
def sso_start():
    """Off to the identity provider; it sends the browser back to ``sso_callback``."""
    if not sso.enabled():
        return render_error(404)
    if current_user.is_authenticated:
        return redirect(url_for("billing.dashboard"))
    target = request.args.get("next")
    try:
        address = sso.authorization_url(_public_url("auth.sso_callback"))
    except SignInRefused as exc:
        return _sso_refused(exc)
    if is_safe_next(target):
        session[SSO_NEXT] = target
    return redirect(address)


def _public_url(endpoint: str) -> str:
    """A page's full address as the provider knows it: under ``PUBLIC_URL`` when set
    (behind a proxy, or several servers), else as this request saw it."""
    public = current_app.config["PUBLIC_URL"]
    if public:
        return public.rstrip("/") + url_for(endpoint)
    return url_for(endpoint, _external=True)


@bp.get("/signin/sso/callback")
def sso_callback():
    """The provider sent the browser back: check its answer, admit the person (or say
    why not), start our session."""
    if not sso.enabled():
        return render_error(404)
    target = session.pop(SSO_NEXT, None)
    try:
        identity, id_token = sso.finish()
        user = admit(identity, Policy.from_config(current_app.config))
    except SignInRefused as exc:
        return _sso_refused(exc)
    start_session(user, via=VIA_SSO)
    session[SSO_ID_TOKEN] = id_token
    trail.signed_in(user.email, user.role, VIA_SSO)
    current_app.logger.info("sign-in through SSO: %s (%s)", user.email, user.role)
    return redirect(target if is_safe_next(target) else url_for("billing.dashboard"))


def _sso_refused(exc: SignInRefused):
    """A sign-in through the provider that did not happen: on the trail with its
    reason, and a page that says why in words."""
    _refused(VIA_SSO, exc.reason, exc.email, exc.detail)
    status = 400 if exc.reason in BAD_REQUEST_REASONS else \
        503 if exc.reason in UNAVAILABLE_REASONS else 403
    return render_error(status, "Sign-in did not go through", exc.message,
                        back=(url_for("auth.signin"), "Back to sign-in"))


@bp.get("/login")
def login():
    """``/login``, as people type it: sign-in, keeping ``next`` when it is a path here."""
    target = request.args.get("next")
    return redirect(url_for("auth.signin", next=target if is_safe_next(target) else None))


@bp.post("/signout")
def signout():
    """End our session; one that came in through the provider ends there too, when it
    says how (its end-session endpoint)."""
    user = current_user if current_user.is_authenticated else None
    id_token = session.get(SSO_ID_TOKEN)
    via = getattr(user, "via", None)
    end_session(user)
    if user is not None and via == VIA_SSO and sso.enabled():
        there = sso.logout_url(id_token, _public_url("auth.signin"))
        if there:
            return redirect(there, 303)
    return redirect(url_for("auth.signin"))
