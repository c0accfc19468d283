from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import app_clock
from ..errors import render_error, render_store_busy
from ..extensions import db
from ..models import VIA_PASSWORD, VIA_SSO, User
from ..security import is_safe_next
from ..services import trail
from ..services.sessions import end_session, start_session
from ..services.users import fold_case
from ..services.sso import Policy, SignInRefused, admit
from . import sso, throttle
from .forms import SignInForm

bp = Blueprint("auth", __name__)

#: refusals that are about the request (a lost cookie, a reused code, a bad token), and
#: the provider not answering; any other refusal is a 403
BAD_REQUEST_REASONS = {"state did not match", "code refused", "ID token refused",
                       "no ID token", "userinfo for another subject", "unreadable answer"}
UNAVAILABLE_REASONS = {"provider unreachable", "provider misconfigured"}
#: refusals that cost the provider a code exchange, counted against the address; a
#: callback nobody here started ("state did not match") costs nothing and counts not,
#: so no web page can make a whole office's browsers lock it out
COSTLY_REASONS = {"code refused", "ID token refused", "no ID token", "unreadable answer",
                  "userinfo for another subject", "provider error"}

GENERIC_FAILURE = "Wrong email or password."
#: with ``PASSWORD_SIGNIN=admins`` every failure says the same, so the answer never tells
#: whether a non-admin's password was right
ADMINS_ONLY_FAILURE = ("Wrong email or password, or not a local admin: password sign-in is "
                       "kept for local admins here. Everyone else signs in with their "
                       "company account.")
#: the reasons a refused sign-in is folded under on the audit trail
WRONG = "wrong email or password"
THROTTLED = "too many failed sign-ins"
NOT_LOCAL_ADMIN = "password sign-in is for local admins"
DUMMY_HASH = generate_password_hash("not-a-real-password")
NOT_RECORDED = ("The dashboard's database did not answer in time (it may be busy or "
                "restarting), so the sign-in could not be put on the audit trail and you are "
                "not signed in. Try again in a few seconds.")


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    if current_user.is_authenticated:
        return redirect(url_for("billing.dashboard"))
    form = SignInForm()
    target = request.values.get("next")
    status, retry_after = 200, None
    mode = current_app.config["PASSWORD_SIGNIN"]
    failure = ADMINS_ONLY_FAILURE if mode == "admins" else GENERIC_FAILURE
    if request.method == "POST" and mode == "off":
        # switched off on the server, not only hidden: the right password gets nowhere
        _refused(VIA_PASSWORD, "password sign-in off", form.email.data)
        form.form_errors.append("Password sign-in is switched off here. Sign in with your "
                                "company account.")
        status = 403
    elif form.validate_on_submit():
        email = fold_case(form.email.data)
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
            right = user is not None and user.check_password(form.password.data)
            if user is None:
                # same work as a real check, so timing does not reveal who has an account
                check_password_hash(DUMMY_HASH, form.password.data)
            if right and (mode == "on" or _local_admin(user)):
                throttle.clear_failures(email, address)
                try:  # on the trail first: a sign-in it cannot record does not happen
                    trail.signed_in(user.email, user.role, VIA_PASSWORD, address, _minute())
                except trail.TrailUnavailable as exc:
                    return render_store_busy(NOT_RECORDED, reason=exc.__cause__)
                start_session(user, via=VIA_PASSWORD)
                current_app.logger.info("sign-in: %s (%s)", user.email, user.role)
                return redirect(target if is_safe_next(target) else url_for("billing.dashboard"))
            # the attempt's row, written before the check, stays as its failure
            _refused(VIA_PASSWORD, NOT_LOCAL_ADMIN if right else WRONG, email)
            form.form_errors.append(failure)
            status = 401
    elif request.method == "POST":
        status = 400
    return _signin_page(form, target, status, retry_after)


def _local_admin(user: User) -> bool:
    """An admin of ours, not one the identity provider vouches for: the break-glass
    account ``PASSWORD_SIGNIN=admins`` keeps."""
    return user.role == "admin" and not user.uses_sso


def _signin_page(form, target, status, retry_after=None):
    cfg = current_app.config
    return render_template("auth/signin.html", form=form,
                           next=target if is_safe_next(target) else None,
                           sandbox=cfg["SANDBOX_MODE"], sso=sso.enabled(),
                           password_mode=cfg["PASSWORD_SIGNIN"],
                           sso_label=cfg["OIDC_BUTTON_LABEL"]), status, \
        {"Retry-After": str(retry_after)} if retry_after else {}


def _minute() -> int:
    """This minute, as the trail folds sign-in rows by it (whole minutes since the epoch)."""
    return int(app_clock().time()) // 60


def _refused(via: str, reason: str, email=None, detail=None) -> None:
    """Fold a refused sign-in into its row on the trail (one a way in, reason, address
    and minute). Best effort: the refusal stands when the trail cannot take it (a
    password failure is counted for throttling all the same)."""
    try:
        trail.sign_in_refused(email=fold_case(email)[:254] or None, via=via,
                              reason=reason, address=throttle.client_key(request.remote_addr),
                              minute=_minute(), detail=detail)
    except trail.TrailUnavailable:
        current_app.logger.warning("a refused sign-in (%s) could not be put on the trail",
                                   reason)


@bp.get("/signin/sso")
def sso_start():
    """Off to the identity provider; it sends the browser back to ``sso_callback``."""
    if not sso.enabled():
        return render_error(404)
    if current_user.is_authenticated:
        return redirect(url_for("billing.dashboard"))
    target = request.args.get("next")
    try:
        address = sso.authorization_url(_public_url("auth.sso_callback"),
                                        target if is_safe_next(target) else None)
    except SignInRefused as exc:
        return _sso_refused(exc)
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
    if current_user.is_authenticated:  # a second tab's callback: already signed in
        return redirect(url_for("billing.dashboard"))
    address = throttle.client_key(request.remote_addr)
    if wait := throttle.seconds_blocked_sso(address):
        # each callback costs the provider a code exchange: an address that keeps
        # failing waits, as it would at the password form
        return render_error(429, "Too many failed sign-ins",
                            "Too many sign-ins from here did not go through. Try again later.",
                            retry_after=wait)
    try:
        identity, id_token, target = sso.finish()
        user = admit(identity, Policy.from_config(current_app.config), app_clock().now())
    except SignInRefused as exc:
        if exc.reason in COSTLY_REASONS:
            throttle.reserve(throttle.SSO, address)  # stays as a failure
        return _sso_refused(exc)
    try:  # on the trail first: a sign-in it cannot record does not happen
        trail.signed_in(user.email, user.role, VIA_SSO, address, _minute())
    except trail.TrailUnavailable as exc:
        return render_store_busy(NOT_RECORDED, reason=exc.__cause__)
    start_session(user, via=VIA_SSO, id_token=id_token)
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
    """End our session (on the trail, best effort: signing out never waits on it); one
    that came in through the provider ends there too, when it says how (its
    end-session endpoint)."""
    user = current_user._get_current_object() if current_user.is_authenticated else None
    id_token = end_session(user)
    if user is None:
        return redirect(url_for("auth.signin"))
    try:
        trail.signed_out(user.email, user.role, user.via,
                         throttle.client_key(request.remote_addr), _minute())
    except trail.TrailUnavailable:
        current_app.logger.warning("a sign-out could not be put on the trail")
    if user.via == VIA_SSO and sso.enabled():
        there = sso.logout_url(id_token, _public_url("auth.signin"))
        if there:
            return redirect(there, 303)
    return redirect(url_for("auth.signin"))
