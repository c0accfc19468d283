"""The Usage & Billing dashboard for WithGiga accounts.

``create_app`` reads like a table of contents: each ``register_*`` below
wires one concern, in the order a request meets them.
"""
from __future__ import annotations

import fcntl
import logging
from decimal import Decimal
import sys
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import click
from flask import Flask, redirect, url_for

from .settings import ConfigError, load_settings

__all__ = ["create_app", "start_web", "ConfigError"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app from the environment plus ``overrides`` (tests pass a dict).

    Raises ``ConfigError`` when a setting is missing or malformed (under the
    ``flask`` command, a plain "Error: ..." and exit status 1 instead of a traceback).
    """
    try:
        settings = load_settings(overrides=overrides)
    except ConfigError as exc:
        if click.get_current_context(silent=True) is not None:
            raise click.ClickException(str(exc)) from None
        raise
    app = Flask(__name__, template_folder="../templates", static_folder="../static",
                instance_path=settings["INSTANCE_PATH"])
    app.config.update(settings)
    configure_logging(app)
    register_sandbox(app)
    register_extensions(app)
    register_static(app)
    register_upstream(app)
    register_security(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_commands(app)
    init_database(app)
    if _serving_with_flask_run():
        start_web(app)
    return app


def start_web(app: Flask) -> Flask:
    """What a web process runs besides answering requests: the background worker
    (``webapp.background``), from its start, so a delivery queued by any process
    (the poller, another server, a retry) goes out within ``ALERT_SEND_EVERY``
    whether or not anyone opens a page, and checkout settlements kept while the
    database was busy are written as soon as it is back.

    ``wsgi.py`` calls this for gunicorn; ``create_app`` for ``flask run``. Under
    any other ``flask`` command (``flask --app wsgi billing poll``…) it does
    nothing: that command runs what it needs itself.
    """
    from .background import worker

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name != "run":
        return app
    worker(app)
    if sandbox := app.extensions.get("sandbox"):
        sandbox.start()  # the checkout page must be there before anyone is sent to it
        if not app.config["TESTING"]:
            print("\n  Sandbox mode (GIGA_SANDBOX=1): the dashboard talks to a built-in\n"
                  f"  billing API at {sandbox.url} (no real money).\n"
                  "  Sign in as admin@demo.test, finance@demo.test or viewer@demo.test,\n"
                  "  password: demo\n", file=sys.stderr, flush=True)
    return app


def _serving_with_flask_run() -> bool:
    """Whether this app is being built by ``flask run`` (and not ``flask users``…)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.info_name == "run"


def configure_logging(app):
    """One log format on stderr; the API key is never logged anywhere."""
    from flask.logging import default_handler

    app.logger.removeHandler(default_handler)  # root's handler prints it already
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # alembic lists its plugins when first imported: noise on every start
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def register_sandbox(app):
    """With ``GIGA_SANDBOX=1`` (and no key), the built-in sandbox (a test hands in one
    it started); it serves from the first API call, or from ``start_web``."""
    if not app.config["SANDBOX_MODE"]:
        app.config["CHECKOUT_ALLOWED_ORIGINS"] = ()
        if app.config["SANDBOX_IGNORED"]:
            log.warning("GIGA_API_KEY is set, so GIGA_SANDBOX=1 is ignored: the dashboard "
                        "talks to %s with real money", app.config["GIGA_API_URL"])
        return
    from .sandbox import Sandbox

    sandbox = app.config.get("SANDBOX")
    if sandbox is None:
        sandbox = Sandbox(app.config["SANDBOX_STATE_PATH"], port=app.config["SANDBOX_PORT"],
                          spend_per_hour=app.config["SANDBOX_SPEND_PER_HOUR"])
        app.config["SANDBOX_SEED_HISTORY"] = True  # a newcomer's chart should not be empty
    app.extensions["sandbox"] = sandbox
    app.config["GIGA_API_KEY"] = sandbox.api_key
    # the sandbox checkout page is on loopback over http: allowed here, and only here
    app.config["CHECKOUT_ALLOWED_ORIGINS"] = sandbox.checkout_origins()
    # each checkout returns to the dashboard that started it (see billing.actions)
    app.extensions["checkout_started"] = sandbox.note_return


def register_extensions(app):
    from .auth.sessions import init_login
    from .database import engine_options
    from .extensions import compress, csrf, db, migrate

    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config["DATABASE_WAIT_SECONDS"]))
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
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
    from .audit.outbox import Outbox
    from .readings import reading_arrived

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
    # what upstream said of a checkout, kept here while the database will not take it
    app.extensions["checkout_outbox"] = Outbox(app.instance_path)
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


def register_blueprints(app):
    from .audit import bp as audit_bp
    from .auth import bp as auth_bp
    from .billing import bp as billing_bp
    from .alerts import bp as alerts_bp
    from .history import bp as history_bp
    from .metrics import bp as metrics_bp
    from .users import bp as users_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(billing_bp)
    app.register_blueprint(history_bp)
    app.register_blueprint(alerts_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(users_bp)

    @app.get("/")
    def index():
        return redirect(url_for("billing.dashboard"))


def register_errorhandlers(app):
    from .errors import init_errorhandlers

    init_errorhandlers(app)


def register_template_helpers(app):
    from .formatting import init_formatting

    init_formatting(app)


def register_commands(app):
    from .history.cli import billing_cli
    from .sandbox.cli import sandbox_cli
    from .users.cli import users_cli

    app.cli.add_command(users_cli)
    app.cli.add_command(billing_cli)
    app.cli.add_command(sandbox_cli)


def init_database(app):
    """Bring the schema up to date (Alembic migrations), then seed demo users in
    sandbox mode or remove them otherwise."""
    from .database import prepare
    from .extensions import db
    from .users.service import sync_demo_users

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    sqlite_file = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
    if sqlite_file:
        # a newcomer's first run: the instance/ folder does not exist yet
        Path(sqlite_file).parent.mkdir(parents=True, exist_ok=True)
    with app.app_context():
        with _one_migrator(sqlite_file):
            _upgrade_schema()
            prepare(db.engine)
            if app.config.get("SANDBOX_SEED_HISTORY"):
                _seed_sandbox_history(app)
        sync_demo_users(app.config["SANDBOX_MODE"])


@contextmanager
def _one_migrator(sqlite_file: str | None):
    """Let one process at a time migrate a SQLite file (PostgreSQL takes an
    advisory lock in ``migrations/env.py`` instead)."""
    if not sqlite_file:
        yield
        return
    with open(sqlite_file + ".migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _seed_sandbox_history(app):
    """A month of past sandbox readings, once, so the usage chart has bars at once."""
    from .giga.client import parse_billing
    from .history import seed
    from .history.service import latest
    from .sandbox import PLANS

    if latest() is not None:
        return
    billing = parse_billing({"billing": app.extensions["sandbox"].state.billing()})
    monthly = next((p["monthlyCredits"] for p in PLANS if p["id"] == billing.plan), None)
    if isinstance(monthly, (int, Decimal)):
        seed.seed(billing, Decimal(monthly), app.extensions["clock"].now())


def _upgrade_schema():
    """``flask db upgrade``, quietly: at start nothing needs saying unless it fails."""
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        from flask_migrate import upgrade

        upgrade()
    finally:
        alembic_log.setLevel(level)
