"""Response headers, cookie policy, proxy trust, and the checkout redirect allowlist."""
from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

from flask import request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from wtforms.validators import ValidationError

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
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    else:
        _warn_of_an_untrusted_proxy(app)
    form_targets = " ".join(["'self'"] + [f"https://{h}" for h in app.config[
        "CHECKOUT_ALLOWED_HOSTS"]] + list(app.config["CHECKOUT_ALLOWED_ORIGINS"]))
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


def checkout_url_allowed(url, hosts, origins=()) -> bool:
    """True only for ``https://<allowed host>[:443]/...`` or an exact allowed origin.

    Look-alike hosts, userinfo, backslashes, whitespace, other schemes and
    other ports are refused.
    """
    if not isinstance(url, str) or not url.isascii() or len(url) > 2048:
        return False
    if any(c in url for c in "\\ \t\r\n\x00") or any(ord(c) < 32 for c in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if "@" in parts.netloc or not parts.hostname:
        return False
    host = parts.hostname
    if parts.scheme == "https" and host in hosts and port in (None, 443) \
            and parts.netloc.lower() in (host, f"{host}:443"):
        return True
    return f"{parts.scheme}://{parts.netloc}" in origins


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a NUL or another control character (no column takes a NUL on
    PostgreSQL, and none belongs in an address or a filter)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)


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
