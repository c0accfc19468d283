"""The Usage & Billing dashboard for WithGiga accounts.

``create_app`` only assembles: settings, extensions, the upstream, the
pages, the error pages, the commands. It starts no thread and opens no
socket; what runs is started in one named place for each kind of process
(``processes``: ``serve`` for a web process, ``prepare`` for every
process, commands and tests included). An app served without either
(``flask --app webapp run``, ``gunicorn 'webapp:create_app()'``) is readied
by its first request, as ``serve`` would ready it.
"""
from __future__ import annotations

import logging
import sys
from functools import partial

import click
from flask import Flask, redirect, url_for

from .database import MIGRATIONS
from .processes import prepare, ready_on_first_request, serve
from .settings import ConfigError, load_settings

__all__ = ["create_app", "serve", "prepare", "ConfigError", "MIGRATIONS"]

log = logging.getLogger(__name__)



def create_app(overrides: dict | None = None) -> Flask:
    """Build the app from the environment plus ``overrides`` (tests pass a dict).

    Raises ``ConfigError`` when a setting is missing or malformed (under the
    ``flask`` command, a plain "Error: ..." and exit status 1 instead of a traceback).
    """
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    configure(app, overrides)
    register_readiness(app)
    register_sandbox(app)
    register_extensions(app)
    register_static(app)
    register_upstream(app)
    register_security(app)
    register_sso(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_commands(app)
    return app


def configure(app, overrides):
    """The settings (``settings.load_settings``) into ``app.config``, and the log format."""
    try:
        settings = load_settings(overrides=overrides)
    except ConfigError as exc:
        if click.get_current_context(silent=True) is not None:
            raise click.ClickException(str(exc)) from None
        raise
    app.instance_path = settings["INSTANCE_PATH"]
    app.config.update(settings)
    configure_logging(app)


def configure_logging(app):
    """One log format on stderr; the API key is never logged anywhere."""
    from flask.logging import default_handler

    app.logger.removeHandler(default_handler)  # root's handler prints it already
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # alembic lists its plugins when first imported: noise on every start
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def register_readiness(app):
    """An app that no process readied (``processes.serve`` or ``prepare``) gets its
    schema, seeding and background worker on its first request: any WSGI server may
    serve ``create_app()`` as it is."""
    ready_on_first_request(app)


def register_sandbox(app):
    """With ``GIGA_SANDBOX=1`` (and no key), the built-in sandbox (a test hands in one
    it started); it serves from the first API call, or from ``processes.serve``."""
    if not app.config["SANDBOX_MODE"]:
        app.config["CHECKOUT_ALLOWED_ORIGINS"] = ()
        if app.config["SANDBOX_IGNORED"]:
            log.warning("GIGA_API_KEY is set, so GIGA_SANDBOX=1 is ignored: the dashboard "
                        "talks to %s with real money", app.config["GIGA_API_URL"])
        return
    from .sandbox import Sandbox
    from .services.checkouts.start import checkout_started

    sandbox = app.config.get("SANDBOX")
    if sandbox is None:
        sandbox = Sandbox(app.config["SANDBOX_STATE_PATH"], port=app.config["SANDBOX_PORT"],
                          spend_per_hour=app.config["SANDBOX_SPEND_PER_HOUR"])
        app.config["SANDBOX_SEED_HISTORY"] = True  # a newcomer's chart should not be empty
    app.extensions["sandbox"] = sandbox
    app.config["GIGA_API_KEY"] = sandbox.api_key
    # the sandbox checkout page is on loopback over http: allowed here, and only here
    app.config["CHECKOUT_ALLOWED_ORIGINS"] = sandbox.checkout_origins()
    # each checkout returns to the dashboard that started it (the payment path only
    # says a checkout started; the sandbox listens)
    checkout_started.connect(lambda _app, checkout_url, return_url:
                             sandbox.note_return(checkout_url, return_url), app, weak=False)


def _redis(url: str | None):
    """A Redis client for ``url``, or ``None`` without one (redis-py is then never
    loaded: a process without Redis has no use for it)."""
    if not url:
        return None
    from .gateway.redis_store import connect

    return connect(url)


def register_extensions(app):
    from .services.sessions import init_login
    from .database import engine_options
    from .extensions import compress, csrf, db

    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config["DATABASE_WAIT_SECONDS"]))
    db.init_app(app)
    csrf.init_app(app)
    # pages, the CSV downloads and /metrics
    app.config.setdefault("COMPRESS_MIMETYPES", ["text/html", "text/css", "text/csv",
                                                 "text/plain", "application/json"])
    compress.init_app(app)
    init_login(app)


def register_static(app):
    """Static files under content-hashed names with long cache lifetimes (WhiteNoise)."""
    from .assets import init_assets

    init_assets(app)


def register_upstream(app):
    """One clock, one shared-state store, one client and one gateway per app.

    Views reach them through ``app.extensions``; the gateway is their only
    way upstream. With ``REDIS_URL`` the store is shared by every process.
    """
    from .clock import Clock
    from .gateway import BillingGateway, make_store
    from .giga import GigaClient
    from .services.checkouts.outbox import Outbox, database_key
    from .services.arrivals import reading_arrived
    # the worker listens for alert deliveries that are due (its start on first use)
    from .services import background  # noqa: F401

    cfg = app.config
    clock = cfg.get("CLOCK") or Clock()
    store = cfg.get("STORE") or make_store(cfg["REDIS_URL"], clock=clock)
    if cfg["REDIS_URL"] and not cfg.get("STORE") and not store.ping():
        log.warning("Redis at %s (REDIS_URL) is not answering yet; each process keeps its "
                    "own state (and a share of the budget) until it does", store.where)
    sandbox = app.extensions.get("sandbox")
    client = GigaClient(sandbox.address if sandbox else cfg["GIGA_API_URL"],
                        cfg["GIGA_API_KEY"], clock=clock,
                        connect_timeout=cfg["UPSTREAM_CONNECT_TIMEOUT"],
                        total_timeout=cfg["UPSTREAM_DEADLINE"])
    app.extensions["clock"] = clock
    app.extensions["giga_store"] = store
    # what upstream said of a checkout, kept here while the database will not take it:
    # on this host's disk, and in Redis where every host finds it; only this
    # database's (a sandbox run from the same folder never takes production's)
    app.extensions["checkout_outbox"] = Outbox(
        app.instance_path, database_key(cfg["SQLALCHEMY_DATABASE_URI"]),
        redis_client=_redis(cfg["REDIS_URL"]),
        adopt_unkeyed=not cfg["SANDBOX_MODE"])
    app.extensions["giga_gateway"] = BillingGateway(
        client, store, clock=clock,
        billing_ttl=cfg["BILLING_CACHE_TTL"],
        plans_ttl=cfg["PLANS_CACHE_TTL"],
        stale_max_age=cfg["STALE_MAX_AGE"],
        budget_per_minute=cfg["UPSTREAM_BUDGET_PER_MINUTE"],
        reserved_for_actions=cfg["UPSTREAM_RESERVED_FOR_ACTIONS"],
        get_retries=cfg["UPSTREAM_GET_RETRIES"],
        breaker_threshold=cfg["BREAKER_THRESHOLD"],
        breaker_cooldown=cfg["BREAKER_COOLDOWN"],
        on_billing_read=partial(reading_arrived, app))


def register_security(app):
    from .security import init_security

    init_security(app)


def register_sso(app):
    """Sign-in through the company's identity provider, when ``OIDC_ISSUER`` is set."""
    from .auth.sso import init_sso

    init_sso(app)


def register_blueprints(app):
    """One blueprint a page package, each beside its routes (``<package>.views.bp``; the
    sign-in package has a second, one's own password page)."""
    from .account.views import bp as account_bp
    from .alerts.views import bp as alerts_bp
    from .api import init_api
    from .audit.views import bp as audit_bp
    from .auth.password import bp as password_bp
    from .auth.views import bp as auth_bp
    from .billing.views import bp as billing_bp
    from .exports.views import bp as exports_bp
    from .metrics.views import bp as metrics_bp
    from .tokens.views import bp as tokens_bp
    from .users.views import bp as users_bp

    for bp in (auth_bp, billing_bp, exports_bp, alerts_bp, metrics_bp, audit_bp, users_bp,
               account_bp, tokens_bp, password_bp):
        app.register_blueprint(bp)

    init_api(app)  # the JSON API and its OpenAPI document (flask-smorest)

    @app.get("/")
    def index():
        return redirect(url_for("billing.dashboard"))


def register_errorhandlers(app):
    from .errors import init_errorhandlers, render_store_busy
    from .services.trail import TrailUnavailable

    init_errorhandlers(app)
    # the trail could not be read or written: nothing that needed it went on
    app.register_error_handler(TrailUnavailable,
                               lambda exc: render_store_busy(reason=exc.__cause__))


def register_template_helpers(app):
    """The filters; every date and time a page shows is in the team's zone."""
    from .formatting import init_formatting
    from .services.zone import display_zone

    init_formatting(app, zone=display_zone)


def register_commands(app):
    from .commands.billing import billing_cli
    from .commands.sandbox import sandbox_cli
    from .commands.schema import schema_cli
    from .commands.tokens import tokens_cli
    from .commands.users import users_cli

    app.cli.add_command(schema_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(billing_cli)
    app.cli.add_command(sandbox_cli)
    app.cli.add_command(tokens_cli)
