"""What runs, started in one named place for each kind of process.

``create_app`` only assembles an app; a process then readies it here:

- ``prepare``: every kind of process, first (web, command, test): the
  schema brought up to date (migrations), a month of readings made up on the
  sandbox's first start, the demo users kept in sandbox mode and removed
  outside it -- all of it one process at a time, whatever the database and
  however many processes start at once. Once per app.
- ``serve``: a web process (``wsgi.py``: gunicorn, and ``flask --app wsgi
  run``): ``prepare``, the sandbox's server, the background worker from the
  start (alert deliveries, checkout settlements, the session purge) and, in
  sandbox mode, the banner with the demo accounts.
- ``ready_on_first_request``: an app no process readied, served as it is
  (``flask --app webapp run``, ``gunicorn 'webapp:create_app()'``, any WSGI
  server given ``create_app()``): its first request readies it as ``serve``
  would, once, before any request is answered.
- ``forked``: a gunicorn worker forked from a master that loaded the app
  (``--preload``): its own database connections and its own threads.
- a ``flask`` command: ``prepare`` (``commands.PreparedGroup``); those that
  run long start what they need themselves (``billing poll --every``).
"""
from __future__ import annotations

import fcntl
import logging
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy import text

from .errors import render_error
from .settings import ConfigError

log = logging.getLogger(__name__)

#: the advisory lock ``prepare`` holds on PostgreSQL; not the one ``migrations/env.py``
#: takes inside the migration's transaction (a session's own lock would not stop it)
PREPARE_LOCK = 7_314_159_266
#: how long a starting process waits for another to finish preparing the database: a
#: first start's migrations and seeding take seconds; a lock held this long is stuck
PREPARE_WAIT_SECONDS = 120
#: how often a process waiting for that lock tries it again (seconds)
PREPARE_RETRY_EVERY = 0.2


def serve(app):
    """Ready ``app`` for answering requests: see the module's docstring. Under any
    ``flask`` command but ``run`` (``flask --app wsgi users list``) it does nothing:
    that command prepares what it needs itself.

    Raises ``ConfigError`` (see ``prepare``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name != "run":
        return app
    return _ready_to_serve(app)


def _ready_to_serve(app):
    """``prepare``, the background worker, and the sandbox's server with its banner."""
    from .services.background import worker

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


def ready_on_first_request(app):
    """Ready ``app`` on its first request when no process readied it (see the module's
    docstring): requests that come meanwhile wait for it. An app readied by ``serve``
    or ``prepare`` is left as it is -- a ``flask`` command's, or a test's, which
    starts no thread it did not ask for -- and so is every ``TESTING`` app: a test
    readies its apps itself.

    If the database does not answer (``ConfigError``), the request gets a 503 page
    that says so, and the next request tries again.
    """
    lock = threading.Lock()
    readied = threading.Event()  # set once the first request has readied it, or found it ready

    def ready():
        if readied.is_set():
            return None
        with lock:
            if readied.is_set():
                return None
            if not (app.extensions.get("prepared") or app.testing):
                log.info("readying the dashboard on its first request (it was started "
                         "without wsgi.py, which readies it at start)")
                try:
                    _ready_to_serve(app)
                except (ConfigError, click.ClickException) as exc:
                    log.error("the dashboard could not be readied: %s", exc)
                    return render_error(503, "The dashboard could not start", str(exc))
            readied.set()
        return None

    # first of all: no other hook may reach the database before its schema is there
    app.before_request_funcs.setdefault(None, []).insert(0, ready)


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
    if app.extensions.get("prepared"):  # else its first request readies it, worker and all
        worker(app)
    return app


def prepare(app):
    """Wait for the database if it is still starting, then, one process at a time
    (``_one_at_a_time``): bring the schema up to date (Alembic migrations), make up
    the sandbox's month of readings on its first start, seed the demo users in
    sandbox mode or remove them otherwise, and work out the usage of the readings
    kept when it is not yet (once per app; returns it).

    Raises ``ConfigError`` (under a ``flask`` command, click's one-line error) when the
    database does not answer within ``DATABASE_START_WAIT_SECONDS``, or another
    process holds the preparation past ``PREPARE_WAIT_SECONDS``.
    """
    if app.extensions.get("prepared"):
        return app
    from .database import prepare as prepare_engine
    from .extensions import db
    from .services.history.readings import catch_up_usage
    from .services.history.seed import seed_sandbox
    from .services.users import sync_demo_users

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    sqlite_file = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
    if sqlite_file:
        # a newcomer's first run: the instance/ folder does not exist yet
        Path(sqlite_file).parent.mkdir(parents=True, exist_ok=True)
    with app.app_context():
        _database_answers(app)
        with _one_at_a_time(sqlite_file):
            _upgrade_schema(app)
            prepare_engine(app, db.engine)
            if app.config.get("SANDBOX_SEED_HISTORY"):
                seed_sandbox(app.extensions["sandbox"], app.extensions["clock"].now())
            sync_demo_users(app.config["SANDBOX_MODE"])
            # the first start after the upgrade that brought them (one query after that)
            catch_up_usage()
    app.extensions["prepared"] = True
    return app


def _database_answers(app):
    """Return once the database takes a connection (see ``database.wait_until_answering``).
    Raises ``ConfigError``, or click's one-line error under a ``flask`` command."""
    from .database import wait_until_answering
    from .extensions import db

    try:
        wait_until_answering(db.engine, app.config["DATABASE_START_WAIT_SECONDS"])
    except ConfigError as exc:
        if click.get_current_context(silent=True) is not None:
            raise click.ClickException(str(exc)) from None
        raise


@contextmanager
def _one_at_a_time(sqlite_file: str | None):
    """Let one process at a time prepare the database (migrations, seeding, demo users),
    so processes starting together -- a server's workers, several servers -- neither
    seed twice nor trip over each other's demo users: a lock on a file beside a SQLite
    database, an advisory lock on PostgreSQL. Raises ``ConfigError`` (click's one-line
    error under a ``flask`` command) when another process holds it past
    ``PREPARE_WAIT_SECONDS``."""
    from .extensions import db

    if sqlite_file:
        with open(sqlite_file + ".migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    elif db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            # a session's lock, on a connection of its own: held across the migration's
            # and the seeding's transactions, and let go however they end
            conn.execution_options(isolation_level="AUTOCOMMIT")
            _take_prepare_lock(conn)
            try:
                yield
            finally:
                _let_go_of_prepare_lock(conn)
    else:
        yield


def _take_prepare_lock(conn) -> None:
    """Wait for ``PREPARE_LOCK`` on ``conn`` (said once in the log if another process
    holds it), trying again and again rather than blocking: the engine's connections
    give up on a lock after ``DATABASE_WAIT_SECONDS``. Raises ``ConfigError``, or
    click's one-line error under a ``flask`` command."""
    deadline = time.monotonic() + PREPARE_WAIT_SECONDS
    said = False
    while not conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": PREPARE_LOCK}):
        if time.monotonic() >= deadline:
            problem = (f"another process has been preparing the database (migrations, "
                       f"seeding) for over {PREPARE_WAIT_SECONDS} s and still holds its lock; "
                       "start again once it is done, or stop it")
            if click.get_current_context(silent=True) is not None:
                raise click.ClickException(problem)
            raise ConfigError(problem)
        if not said:
            said = True
            log.info("another process is preparing the database (migrations, seeding); "
                     "waiting for it")
        time.sleep(PREPARE_RETRY_EVERY)


def _let_go_of_prepare_lock(conn) -> None:
    """Release ``PREPARE_LOCK``; a connection that cannot is closed, which releases it."""
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PREPARE_LOCK})
    except Exception:  # noqa: BLE001 -- whatever went wrong, the lock must not outlive this
        log.warning("the database's preparation lock could not be let go of; closing its "
                    "connection instead", exc_info=True)
        conn.invalidate()


def _upgrade_schema(app):
    """``flask db upgrade``, quietly: at start nothing needs saying unless it fails.
    A database at the newest revision already (every start but the first after an
    upgrade) costs one query, and Alembic is not loaded."""
    from .commands.schema import head_revision, use_migrate

    head = head_revision()
    if head is not None and _schema_revision() == head:
        return
    use_migrate(app)
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        from flask_migrate import upgrade

        upgrade()
    finally:
        alembic_log.setLevel(level)


def _schema_revision() -> str | None:
    """The revision the database's schema is at (``None``: none, or unreadable)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .extensions import db

    try:
        with db.engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
