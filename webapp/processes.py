"""What runs, started in one named place for each kind of process.

``create_app`` only assembles an app; a process then readies it here:

- ``prepare``: every kind of process, first (web, command, test): the
  schema brought up to date (migrations, one process at a time), a month of
  readings made up on the sandbox's first start, the demo users kept in
  sandbox mode and removed outside it. Once per app.
- ``serve``: a web process (``wsgi.py``: gunicorn, and ``flask --app wsgi
  run``): ``prepare``, the sandbox's server, the background worker from the
  start (alert deliveries, checkout settlements, the session purge) and, in
  sandbox mode, the banner with the demo accounts.
- ``forked``: a gunicorn worker forked from a master that loaded the app
  (``--preload``): its own database connections and its own threads.
- a ``flask`` command: ``prepare`` (``commands.PreparedGroup``); those that
  run long start what they need themselves (``billing poll --every``).
"""
from __future__ import annotations

import fcntl
import logging
import sys
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import click

log = logging.getLogger(__name__)


def serve(app):
    """Ready ``app`` for answering requests: see the module's docstring. Under any
    ``flask`` command but ``run`` (``flask --app wsgi users list``) it does nothing:
    that command prepares what it needs itself."""
    from .services.background import worker

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name != "run":
        return app
    prepare(app)
    worker(app)
    if sandbox := app.extensions.get("sandbox"):
        sandbox.start()  # the checkout page must be there before anyone is sent to it
        if not app.config["TESTING"]:
            print("\n  Sandbox mode (GIGA_SANDBOX=1): the dashboard talks to a built-in\n"
                  f"  billing API at {sandbox.url} (no real money).\n"
                  "  Sign in as admin@demo.test, finance@demo.test or viewer@demo.test,\n"
                  "  password: demo\n", file=sys.stderr, flush=True)
    return app


def forked(app):
    """Ready ``app``, made before this process was forked from its parent (``gunicorn
    --preload``), for this process: a connection pool of its own, since the parent's
    connections, used from two processes, would mix their conversations with the
    database; and the threads ``serve`` started, which a fork does not copy."""
    from .extensions import db
    from .services.background import worker

    with app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)  # SQLAlchemy's way: the parent's are left to it
    for started in ("background_worker", "arrivals"):
        app.extensions.pop(started, None)
    worker(app)
    return app


def prepare(app):
    """Wait for the database if it is still starting, bring the schema up to date
    (Alembic migrations), then seed demo users in sandbox mode or remove them
    otherwise (once per app; returns it).

    Raises ``ConfigError`` (under a ``flask`` command, click's one-line error) when the
    database does not answer within ``DATABASE_START_WAIT_SECONDS``.
    """
    if app.extensions.get("prepared"):
        return app
    from .database import prepare as prepare_engine
    from .extensions import db
    from .services.users import sync_demo_users

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    sqlite_file = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
    if sqlite_file:
        # a newcomer's first run: the instance/ folder does not exist yet
        Path(sqlite_file).parent.mkdir(parents=True, exist_ok=True)
    with app.app_context():
        _database_answers(app)
        with _one_migrator(sqlite_file):
            _upgrade_schema()
            prepare_engine(app, db.engine)
            if app.config.get("SANDBOX_SEED_HISTORY"):
                _seed_sandbox_history(app)
        sync_demo_users(app.config["SANDBOX_MODE"])
    app.extensions["prepared"] = True
    return app


def _database_answers(app):
    """Return once the database takes a connection (see ``database.wait_until_answering``).
    Raises ``ConfigError``, or click's one-line error under a ``flask`` command."""
    from .database import wait_until_answering
    from .extensions import db
    from .settings import ConfigError

    try:
        wait_until_answering(db.engine, app.config["DATABASE_START_WAIT_SECONDS"])
    except ConfigError as exc:
        if click.get_current_context(silent=True) is not None:
            raise click.ClickException(str(exc)) from None
        raise


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
    from .services.history import seed
    from .services.history.readings import latest
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
