"""Response headers, cookie policy, proxy trust, the role guard on views, and the form
validator against control characters (the checks themselves are ``checks``)."""
from __future__ import annotations

import ipaddress
import logging
import threading
from functools import wraps
from urllib.parse import urlsplit

from flask import request
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user, login_required
from werkzeug.middleware.proxy_fix import ProxyFix
from wtforms.validators import ValidationError

from .checks import has_control_characters
from .errors import render_error

log = logging.getLogger(__name__)


class _SessionInterface(SecureCookieSessionInterface):
    """Marks the session cookie ``Secure`` whenever the request came over https."""

    def get_cookie_secure(self, app):
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def init_security(app):
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_NAME="giga_session",
                      WTF_CSRF_TIME_LIMIT=None,  # the session lifetime bounds it
                      MAX_CONTENT_LENGTH=64 * 1024)
    app.session_interface = _SessionInterface()
    if app.config["TRUST_PROXY"]:
        hops = app.config["TRUST_PROXY"]
        app.wsgi_app = ProxyFix(ForwardedAddress(app.wsgi_app, hops), x_for=hops,
                                x_proto=hops, x_host=hops)
    else:
        _warn_of_an_untrusted_proxy(app)
    # signing out may redirect to the identity provider's end-session endpoint
    provider = [origin(app.config["OIDC_ISSUER"])] if app.config["OIDC_ISSUER"] else []
    form_targets = " ".join(["'self'"] + [f"https://{h}" for h in app.config[
        "CHECKOUT_ALLOWED_HOSTS"]] + list(app.config["CHECKOUT_ALLOWED_ORIGINS"]) + provider)
    csp = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
           # browsers apply form-action to the redirect after a post: checkout must be listed
           f"frame-ancestors 'none'; form-action {form_targets}")

    @app.after_request
    def headers(resp):
        resp.headers.setdefault("Content-Security-Policy", csp)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        # same-origin keeps the Referer that Flask-WTF checks on https posts
        resp.headers["Referrer-Policy"] = "same-origin"
        if request.is_secure:
            resp.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if request.endpoint != "static":
            resp.headers["Cache-Control"] = "no-store"
        return resp


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def permission_required(permission, on_refusal=None):
    """The role guard: every view names the permission it needs. Require a signed-in
    user whose role grants ``permission`` (the rules, which role may do what, are
    ``models.role_can``, asked through ``current_user.can``).

    Anyone else gets the polite 403 page; ``on_refusal(*args, **kwargs)``
    runs first (the billing actions use it to record the refusal) and may
    answer instead (a 429 when the user keeps trying).
    """
    def decorate(view):
        @wraps(view)
        @login_required
        def guarded(*args, **kwargs):
            if not current_user.can(permission):
                answer = on_refusal(*args, **kwargs) if on_refusal is not None else None
                return answer or render_error(403)
            return view(*args, **kwargs)
        return guarded
    return decorate


def _warn_of_an_untrusted_proxy(app):
    """Behind a reverse proxy with ``TRUST_PROXY=0`` every request seems to come from the
    proxy, so sign-in throttling by address would treat all users as one: say so in the
    log, once per process."""
    warned = threading.Event()

    @app.before_request
    def forwarded_but_not_trusted():
        if not warned.is_set() and "X-Forwarded-For" in request.headers:
            warned.set()
            log.warning("Requests carry X-Forwarded-For but TRUST_PROXY is 0: behind a reverse "
                        "proxy every user seems to come from the proxy's address, and sign-in "
                        "throttling by address treats them all as one. Set TRUST_PROXY to the "
                        "number of proxies in front of the dashboard.")


class ForwardedAddress:
    """WSGI middleware behind ``ProxyFix``: the client's address it took from
    ``X-Forwarded-For`` is kept only when it is an IP address.

    ProxyFix takes whatever text is there; counted by that text, each made-up
    value would be a client of its own with a clean sign-in record. Anything
    else counts as the peer the request came from. Requests that come without
    the header at all mean clients reach gunicorn past the proxy, where any of
    them can choose its address: said in the log, once per process.
    """

    def __init__(self, app, hops: int):
        self.app, self.hops = app, hops
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()

    def __call__(self, environ, start_response):
        peer = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
        if "HTTP_X_FORWARDED_FOR" not in environ:
            self._warn_once("missing", "TRUST_PROXY is %d but a request came without "
                            "X-Forwarded-For: clients seem to reach the dashboard without "
                            "the proxy, and each of them can then choose the address its "
                            "sign-in attempts are counted by. Let only the proxy reach "
                            "gunicorn, or set TRUST_PROXY=0.", self.hops)
        elif environ.get("REMOTE_ADDR") != peer:
            forwarded = environ.get("REMOTE_ADDR", "")
            try:
                environ["REMOTE_ADDR"] = str(ipaddress.ip_address(forwarded))
            except ValueError:
                environ["REMOTE_ADDR"] = peer
                self._warn_once("invalid", "X-Forwarded-For held %r, not an IP address: "
                                "such a request counts as the peer it came from (%s)",
                                forwarded[:64], peer)
        return self.app(environ, start_response)

    def _warn_once(self, kind: str, message: str, *args) -> None:
        if kind in self._warned:
            return
        with self._warned_lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        log.warning(message, *args)


def no_control_characters(form, field):
    """A WTForms validator: refuse a value with control characters, by the field."""
    if field.data and has_control_characters(str(field.data)):
        raise ValidationError("Remove the control characters from this field.")


def is_safe_next(target) -> bool:
    """True when ``target`` is a path on this site (the ``next`` rule after sign-in)."""
    if not isinstance(target, str) or not target.startswith("/") or len(target) > 2000:
        return False
    if target.startswith(("//", "/\\")) or "\\" in target:
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
