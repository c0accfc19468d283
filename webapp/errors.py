"""One way to render every error page, for HTTP errors and upstream faults alike.

No error reaches a user as a traceback: anything unexpected is logged and
answered with a plain 500 page.
"""
from __future__ import annotations

import logging
import secrets

from flask import current_app, g, jsonify, render_template, request
from flask_login import AnonymousUserMixin, current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from .database import SCHEMA_MISSING, mark_busy, missing_schema, say_schema_missing, unavailable
from .extensions import db
from .gateway import Declined
from .giga import (AuthenticationError, BadResponse, ConnectionFailed, GigaError,
                   PermissionDenied, RateLimited, ServerError, Timeout)

log = logging.getLogger(__name__)

TITLES = {400: "Bad request", 403: "Not allowed", 404: "Page not found",
          405: "Method not allowed", 409: "Already submitted", 413: "Too large",
          429: "Too many requests", 500: "Something went wrong"}
MESSAGES = {
    403: "Your role does not allow this. Ask an account admin if you need it.",
    404: "There is nothing at this address.",
    405: "This page cannot be used that way.",
    413: "The form sent far more data than it should.",
    429: "Too many requests. Wait a minute and try again.",
    500: "The dashboard failed on its side. Nothing was sent to checkout. Try again; "
         "if it keeps happening, tell your administrator.",
}


#: what a page says when the dashboard's own database is busy or away
STORE_BUSY_TITLE = "The dashboard's own store is busy"
STORE_BUSY_RETRY_SECONDS = 5
#: what a page says when the dashboard's database has none of its tables
SCHEMA_MISSING_TITLE = "The dashboard's database has no tables yet"


#: where every answer is JSON, errors included (``api``)
API_PREFIX = "/api/"
JSON_ERRORS = {400: ("bad_request", "The request could not be read."),
               404: ("not_found", "There is nothing at this address; the README's JSON API "
                                  "section lists the endpoints."),
               405: ("method_not_allowed", "The API only reads: use GET."),
               413: ("too_large", "The request sent far more data than it should.")}


def request_id() -> str:
    """This request's ID, made when first asked for (the JSON API quotes it in every
    error and in ``X-Request-ID``)."""
    if "request_id" not in g:
        g.request_id = "req_" + secrets.token_hex(8)
    return g.request_id


def wants_json() -> bool:
    return request.path.startswith(API_PREFIX)


def json_error(status: int, kind: str, message: str, *, headers=None):
    """The JSON API's one error shape: ``{"error": {"type", "message"}, "request_id"}``."""
    answer = jsonify({"error": {"type": kind, "message": message}, "request_id": request_id()})
    answer.status_code = status
    answer.headers.update(headers or {})
    answer.headers["X-Request-ID"] = request_id()
    return answer


def render_error(status, title=None, message=None, *, retry_after=None, error=None,
                 headers=None, sales_link=False, balance=None, back=None):
    """The one error page: a title, plain words, and upstream details when there are any.

    A page that could not be read (a GET that failed upstream or was held
    back) offers **Try again** on the same address; ``sales_link`` adds the
    way to WithGiga's sales team; ``back`` is ``(address, words)`` for the way back
    when it is not the billing page.
    """
    again = None
    if request.method == "GET" and (status >= 500 or status == 429):
        again = request.full_path.rstrip("?")
    body = render_template("errors/error.html", status=status,
                           title=title or TITLES.get(status, "Error"),
                           message=message or MESSAGES.get(status, ""),
                           retry_after=retry_after, error=error, try_again=again,
                           sales_link=sales_link, balance=balance, back=back)
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return body, status, headers


def render_too_many(title: str, message: str, wait: float, back=None):
    """The one 429 page for a user past a limit (``services.limits.take`` said how long
    to ``wait``), saying when to try again."""
    return render_error(429, title, message, retry_after=int(wait) + 1, back=back)


def describe_upstream(exc) -> tuple[int, str, str]:
    """``(status, title, plain message)`` for a ``GigaError`` or a ``Declined``."""
    if isinstance(exc, AuthenticationError):
        return (502, "Billing is unavailable",
                "The billing service does not accept this dashboard's API key (it is missing, "
                "malformed or revoked). An administrator needs to set a valid GIGA_API_KEY.")
    if isinstance(exc, PermissionDenied):
        return (502, "Billing is unavailable",
                "The billing service refused: this dashboard's API key lacks permission "
                "for billing.")
    if isinstance(exc, RateLimited):
        return (503, "The billing service is busy",
                "Too many requests reached the billing service from this account.")
    if isinstance(exc, Declined):
        # the dashboard held back (cool-down, breaker, budget): the service was not asked
        return 503, "Please wait a moment", exc.message
    if isinstance(exc, Timeout):
        return 504, "The billing service is not answering", exc.message
    if isinstance(exc, ConnectionFailed):
        return 502, "The billing service is not reachable", exc.message
    if isinstance(exc, BadResponse):
        return (502, "The billing service sent something unexpected",
                exc.message + " Nothing was changed.")
    if isinstance(exc, ServerError):
        return (502, "The billing service had a problem",
                f"The billing service failed (HTTP {exc.status or 'error'}).")
    return (502, "The billing service refused the request", "The billing service said no.")


def render_upstream_error(exc, *, action_note=None):
    """The error page for an upstream fault, with its requestId and when to retry."""
    status, title, message = describe_upstream(exc)
    if action_note:
        message = f"{message} {action_note}"
    return render_error(status, title, message, retry_after=exc.retry_after, error=exc)


def _rolled_back():
    """The request's transaction ended, so the next statement starts clean."""
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 -- the connection may be gone; the page must go out
        log.debug("rollback after a database fault failed", exc_info=True)
    if "_login_user" not in g:  # not loaded: the page must not ask the database who it is
        g._login_user = AnonymousUserMixin()


def render_store_busy(message=None, *, reason=None):
    """The 503 page for a database that is busy or away (``reason``: what it raised,
    for the log): plain words, ``Retry-After``, and the balance as last read when the
    user is known to be allowed to see it. Touches the database no further. A
    ``reason`` that says the tables are missing gets ``render_schema_missing``."""
    if reason is not None and missing_schema(reason):
        return render_schema_missing(reason)
    _rolled_back()
    mark_busy(current_app, reason)
    balance = None
    if current_user.is_authenticated and current_user.can("view"):
        balance = current_app.extensions["giga_gateway"].known_billing()
    return render_error(
        503, STORE_BUSY_TITLE, message or
        "The dashboard's database did not answer in time (it may be busy or restarting), so "
        "this page cannot be shown in full. Nothing was changed and nothing was sent to "
        "checkout.", retry_after=STORE_BUSY_RETRY_SECONDS, balance=balance)


def render_schema_missing(reason):
    """The 503 page for a database without the dashboard's tables (``reason``: what it
    raised): no ``Retry-After`` -- waiting changes nothing -- but how to bring the
    schema up, said in the log too (once)."""
    _rolled_back()
    say_schema_missing(current_app, reason)
    return render_error(
        503, SCHEMA_MISSING_TITLE,
        "The dashboard's database is there, but its tables are not: its schema was never "
        f"brought up. Nothing was changed and nothing was sent to checkout. {SCHEMA_MISSING}")


def _first_message(messages) -> tuple[str, str]:
    """The first parameter webargs refused and what it said, from its
    ``{location: {name: [words]}}``."""
    for fields in messages.values():
        for name, words in fields.items():
            return name, " ".join(words) if isinstance(words, list) else str(words)
    return "parameters", "they could not be read."


def init_errorhandlers(app):
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_error(400, "This form has expired",
                            "The form was not sent from this dashboard or its security token "
                            "expired. Nothing was done. Go back, reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if exc.code is None or exc.code < 400:
            return exc
        if wants_json() and exc.code == 422:  # a parameter the API's schema refused
            name, words = _first_message(getattr(exc, "data", {}).get("messages", {}))
            return json_error(422, "invalid_parameter", f"{name}: {words}")
        if wants_json():
            return json_error(exc.code, *JSON_ERRORS.get(
                exc.code, ("http_error", TITLES.get(exc.code, "The request failed."))))
        return render_error(exc.code)

    @app.errorhandler(GigaError)
    @app.errorhandler(Declined)
    def upstream_error(exc):
        log.warning("upstream fault: %r", exc)
        return render_upstream_error(exc)

    @app.errorhandler(SQLAlchemyError)
    def database_error(exc):
        if wants_json():
            log.warning("the database failed an API request: %s", str(exc).splitlines()[0][:200])
            return json_error(503, "store_unavailable", "The dashboard's own database is busy "
                              "or away. Nothing was changed; try again in a few seconds.",
                              headers={"Retry-After": str(STORE_BUSY_RETRY_SECONDS)})
        if missing_schema(exc):
            return render_schema_missing(exc)
        if unavailable(exc):
            # the busy spell's first line in the log says why; one line a page would flood it
            log.debug("the database is unavailable: %s", str(exc).splitlines()[0][:200])
            return render_store_busy(reason=exc)
        return unexpected(exc)

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("unhandled error")
        if wants_json():
            return json_error(500, "server_error", "The dashboard failed on its side. Try "
                              "again; if it keeps happening, quote the request ID.")
        return render_error(500)
