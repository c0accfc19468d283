"""The built-in sandbox: the four billing endpoints and a checkout page,
served over real HTTP on loopback so the dashboard and its tests talk to
an upstream that behaves like the real one (auth, envelopes, error codes,
the 60-requests-a-minute limit).
"""
from __future__ import annotations

import collections
import json
import logging
import secrets
import threading
import uuid
from decimal import Decimal
from pathlib import Path

from flask import Flask, Response, abort, redirect, render_template, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.serving import WSGIRequestHandler, make_server

from ..formatting import init_formatting
from ..giga.client import contract_json
from ..gateway.store import MemoryStore
from .state import PLANS, SandboxState, plan_by_id

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
STATIC = Path(__file__).resolve().parents[2] / "static"


class _QuietHandler(WSGIRequestHandler):
    """The sandbox's access log would drown the dashboard's own."""

    def log_request(self, *args, **kwargs):
        pass


class RateLimiter:
    """The contract's limit: a sliding one-minute window per key."""

    def __init__(self, per_minute):
        self.per_minute = per_minute
        self._store = MemoryStore()

    def hit(self, key) -> tuple[bool, int, int]:
        """Count one request; returns ``(allowed, remaining, retry_after_seconds)``."""
        allowed, wait = self._store.take(key, self.per_minute, 60)
        remaining = self.per_minute - self._store.count(key, 60)
        return allowed, remaining, 0 if allowed else max(1, int(wait + 0.999))


class CheckoutOrigins:
    """The sandbox's checkout origin as the allowlist sees it, known once it serves.

    ``origin in CheckoutOrigins(s)`` is true for exactly the running sandbox's
    origin (redirects are checked after the API call that started it). Listed,
    it gives what the page's Content-Security-Policy ``form-action`` needs:
    that origin, or any port on the sandbox's loopback host before it serves.
    """

    def __init__(self, sandbox: "Sandbox"):
        self._sandbox = sandbox

    def __contains__(self, origin) -> bool:
        return self._sandbox.running and origin == self._sandbox.origin

    def __iter__(self):
        yield self._sandbox.origin if self._sandbox.running else \
            f"http://{self._sandbox.host}:*"


class Sandbox:
    """A sandbox: ``start()`` it (or let ``address()`` start it on first use), read
    ``url`` and ``api_key``, ``stop()`` it."""

    def __init__(self, state_path, *, api_key=None, host="127.0.0.1", port=0,
                 rate_limit=60, spend_per_hour=0):
        #: ``spend_per_hour``: credits the account's agents use on their own
        self.state = SandboxState(state_path, spend_per_hour=spend_per_hour)
        self.api_key = api_key or "giga_sk_sandbox_" + secrets.token_hex(16)
        self.host = host
        self.port = port
        self.limiter = RateLimiter(rate_limit)
        #: while True every API call answers 500, as during an outage
        self.outage = False
        #: recent API calls, as (method, path): tests count upstream calls;
        #: bounded so a sandbox left running for days does not grow
        self.calls: collections.deque = collections.deque(maxlen=10_000)
        self._server = None
        self._thread = None
        self._start_lock = threading.Lock()
        self.app = self._build_app()

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> "Sandbox":
        """Bind the loopback port and serve on a daemon thread (once; again is a no-op)."""
        with self._start_lock:
            if self._server is not None:
                return self
            self._server = make_server(self.host, self.port, self.app, threaded=True,
                                       request_handler=_QuietHandler)
            self.port = self._server.server_port
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            name="giga-sandbox", daemon=True)
            self._thread.start()
        log.info("sandbox billing API on %s", self.url)
        return self

    @property
    def running(self) -> bool:
        return self._server is not None

    def address(self) -> str:
        """The API's address, serving from now on: a process whose command never calls
        the API (``flask sandbox spend``, ``flask users …``) starts no server."""
        return self.start().url

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        """The checkout page's origin, allowed as a redirect target in sandbox mode only."""
        return self.url

    def note_return(self, checkout_url: str, return_url: str):
        """Remember where the checkout at ``checkout_url`` sends its payer back.

        The dashboard calls this for each checkout it starts, with its own
        address as the request that started it saw it (or ``PUBLIC_URL``), so
        no other request's ``Host`` header decides where anyone else returns.
        """
        prefix = f"{self.url}/checkout/"
        if checkout_url.startswith(prefix):
            self.state.set_return_url(checkout_url[len(prefix):], return_url)

    def checkout_origins(self) -> "CheckoutOrigins":
        """Where this sandbox's checkout page may be: see ``CheckoutOrigins``."""
        return CheckoutOrigins(self)

    def api_calls(self, path_prefix="/api/") -> int:
        return sum(1 for _, p in self.calls if p.startswith(path_prefix))

    # -- the HTTP app -----------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("giga_sandbox", template_folder=str(TEMPLATES), static_folder=str(STATIC))
        # the checkout page's Pay and Cancel forms carry a CSRF token like every form
        # (the API is called with a bearer key, not a browser's cookie: no token there)
        app.secret_key = secrets.token_bytes(32)
        app.config["WTF_CSRF_CHECK_DEFAULT"] = False
        # cookies ignore ports: a name of its own keeps the dashboard's session intact
        app.config["SESSION_COOKIE_NAME"] = "giga_sandbox_checkout"
        csrf = CSRFProtect(app)
        init_formatting(app)  # money reads the same on the checkout page as on the dashboard
        app.before_request(self._gate)
        app.after_request(_remaining_header)
        self._api_routes(app)
        self._checkout_routes(app, csrf)
        app.after_request(_page_headers)
        return app

    def _gate(self):
        """The contract's auth and rate limit on every API call (and the outage switch)."""
        if not request.path.startswith("/api/"):
            return None
        self.calls.append((request.method, request.path))
        auth = request.headers.get("Authorization", "")
        if not auth:
            return _error(401, "UNAUTHORIZED", "No Authorization header.",
                          "Send 'Authorization: Bearer giga_sk_...'.")
        if not auth.startswith("Bearer ") or not secrets.compare_digest(
                auth[7:].encode(), self.api_key.encode()):
            return _error(401, "INVALID_API_KEY", "The API key is malformed or revoked.")
        allowed, remaining, retry = self.limiter.hit(self.api_key)
        request.environ["giga.remaining"] = remaining
        if not allowed:
            return _error(429, "RATE_LIMITED", "Over 60 requests per minute.",
                          f"Retry after {retry} seconds.",
                          {"Retry-After": str(retry), "X-RateLimit-Remaining": "0"})
        if self.outage:
            return _error(500, "INTERNAL_ERROR", "The billing service failed.")
        return None

    def _api_routes(self, app):
        """The four billing endpoints."""
        sandbox = self

        @app.get("/api/billing")
        def billing():
            return _envelope({"billing": sandbox.state.billing()})

        @app.get("/api/billing/plans")
        def plans():
            return _envelope({"plans": PLANS})

        @app.post("/api/billing/subscribe")
        def subscribe():
            doc = _json_body()
            if doc is None or "planId" not in doc:
                return _error(400, "INVALID_REQUEST", "Body must be JSON with a planId.")
            plan = plan_by_id(doc["planId"]) if isinstance(doc["planId"], str) else None
            if plan is None:
                return _error(404, "RESOURCE_NOT_FOUND", "No such plan.", "planId")
            if isinstance(plan["price"], str):
                return _error(400, "INVALID_FIELD", "This plan is sold by our sales team.",
                              "planId: contact sales for a custom plan")
            if plan["id"] == sandbox.state.billing()["plan"]:
                return _error(400, "INVALID_FIELD", "The account is already on this plan.",
                              "planId")
            cid = sandbox.state.open_checkout("subscribe", planId=plan["id"])
            return _envelope({"checkoutUrl": f"{sandbox.url}/checkout/{cid}"})

        @app.post("/api/billing/recharge")
        def recharge():
            doc = _json_body()
            if doc is None or "amount" not in doc:
                return _error(400, "INVALID_REQUEST", "Body must be JSON with an amount.")
            amount = doc["amount"]
            if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)) \
                    or Decimal(amount) <= 0 or Decimal(amount).as_tuple().exponent < -2:
                return _error(400, "INVALID_FIELD", "amount must be a positive number of USD.",
                              "amount")
            cid = sandbox.state.open_checkout("recharge", amount=str(Decimal(amount)))
            return _envelope({"checkoutUrl": f"{sandbox.url}/checkout/{cid}"})

    def _checkout_routes(self, app, csrf):
        """The checkout page, with Pay and Cancel."""
        sandbox = self

        @app.get("/checkout/<checkout_id>")
        def checkout_page(checkout_id):
            session = sandbox.state.checkout(checkout_id) or abort(404)
            plan = plan_by_id(session.get("planId")) if session["kind"] == "subscribe" else None
            return render_template("sandbox/checkout.html", session=session, plan=plan,
                                   amount=Decimal(session.get("amount", "0")),
                                   checkout_id=checkout_id, return_url=session.get("returnUrl"))

        @app.post("/checkout/<checkout_id>/<any(pay, cancel):choice>")
        def settle(checkout_id, choice):
            csrf.protect()
            session = sandbox.state.settle(checkout_id, pay=choice == "pay") or abort(404)
            outcome = "success" if session["status"] == "paid" else "cancel"
            if session.get("returnUrl"):
                return redirect(f"{session['returnUrl']}?checkout={outcome}", 303)
            return render_template("sandbox/checkout.html", session=session, plan=None,
                                   amount=Decimal(session.get("amount", "0")),
                                   checkout_id=checkout_id, return_url=None)


def _envelope(data, status=200, rid=None):
    resp = Response(contract_json({"success": True, "data": data}), status=status,
                    mimetype="application/json")
    resp.headers["X-Request-Id"] = rid or str(uuid.uuid4())
    return resp


def _error(status, code, message, hint=None, headers=None):
    body = {"code": code, "message": message, "requestId": str(uuid.uuid4())}
    if hint:
        body["hint"] = hint
    resp = Response(contract_json({"error": body}), status=status, mimetype="application/json")
    resp.headers["X-Request-Id"] = body["requestId"]
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _json_body():
    try:
        doc = json.loads(request.get_data(as_text=True), parse_float=Decimal)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _remaining_header(resp):
    if "giga.remaining" in request.environ:
        resp.headers["X-RateLimit-Remaining"] = str(request.environ["giga.remaining"])
    return resp


def _page_headers(resp):
    if not request.path.startswith("/api/"):
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'none'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'; form-action *")
        resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
