"""How the dashboard waits on its own database, and what it does when it cannot.

A database that is locked, restarting or refusing connections must cost a
user a few seconds and a plain 503 page, never a 500 after the driver's
defaults (SQLite waits 5 s per statement; PostgreSQL waits for a lock
forever). So every connection waits at most ``DATABASE_WAIT_SECONDS`` for a
lock or a connection, pooled connections are checked before use (a
database restart costs no request), and SQLite runs in WAL mode, where
readers are not blocked by a writer: a page that only reads still answers
while another process holds a write lock.

Writes a page can do without (a session's "last seen", a balance reading,
an alert check) are skipped for a few seconds after one of them found the
database busy, so a page does not wait once per such write. Such a busy
spell is two lines in the log: one when it starts, one with how long it
lasted when a write gets through again -- not one per skipped write.

A process starting while its database is away (PostgreSQL still starting,
say) waits for it, up to ``DATABASE_START_WAIT_SECONDS``, then refuses to
start in one line that names ``DATABASE_URL``.

A database without the dashboard's tables is not busy: nothing will change
by waiting. ``missing_schema`` tells it apart (SQLite's "no such table",
PostgreSQL's ``UndefinedTable``), and what the page and the log say then is
how to bring the schema up (``SCHEMA_MISSING``).
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import InterfaceError, OperationalError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import NullPool

from .settings import ConfigError

log = logging.getLogger(__name__)

#: what a database that is busy, restarting or away raises (not a bug in a query)
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout, PendingRollbackError)
#: how long writes a page can do without are skipped after one found the database busy
BUSY_BACKOFF_SECONDS = 5.0
#: a statement may run this many times the lock wait before it is cancelled (PostgreSQL)
STATEMENT_LIMIT_FACTOR = 5
#: the schema's migrations (Alembic, through Flask-Migrate)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: the page cache of each SQLite connection, in KB
SQLITE_CACHE_KB = 64
#: PostgreSQL's SQLSTATE for a table that does not exist
UNDEFINED_TABLE = "42P01"
#: how to bring the schema up, for the page and the log
SCHEMA_MISSING = ("Bring it up with `flask --app wsgi db upgrade`, run with the dashboard's "
                  "settings (DATABASE_URL, or GIGA_SANDBOX=1 for the sandbox's database), or "
                  "start the dashboard with `gunicorn wsgi:app` or `flask --app wsgi run`, "
                  "which do it at start.")


def engine_options(url: str, wait: int) -> dict:
    """SQLAlchemy engine options for ``url``: bounded waits and checked pooled connections."""
    if url.startswith("sqlite"):
        # the driver's busy timeout: how long a statement waits for another's lock
        return {"connect_args": {"timeout": wait}}
    options = f"-c lock_timeout={wait * 1000} -c statement_timeout=" \
              f"{wait * 1000 * STATEMENT_LIMIT_FACTOR}"
    return {"pool_pre_ping": True, "pool_timeout": wait,
            "connect_args": {"connect_timeout": wait, "options": options}}


def prepare(app, engine) -> None:
    """Once per app: SQLite into WAL mode (kept in the file), so readers go on while a
    writer holds its lock; and every write watched for the end of a busy spell."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.execute(text("PRAGMA journal_mode=WAL"))

        @event.listens_for(engine, "connect")
        def small_page_cache(dbapi_connection, _record):
            # each pooled connection would keep up to 2 MB of pages (SQLite's default):
            # a process's memory is better spent elsewhere, and the OS caches the file
            dbapi_connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KB}")
        engine.dispose()  # the connections pooled so far had the default

    @event.listens_for(engine, "handle_error")
    def a_failed_ping_is_a_dead_connection(context):
        # psycopg may report a connection whose socket closed during the pre-ping as
        # "can't change 'autocommit' now" (a ProgrammingError, raised while SQLAlchemy
        # restores autocommit), which SQLAlchemy would not take for a disconnect and
        # would hand a page as an error. A connection that fails its ping is dead:
        # the pool replaces it, as it does one whose socket is plainly closed.
        if context.is_pre_ping:
            context.is_disconnect = True

    @event.listens_for(engine, "after_cursor_execute")
    def a_write_got_through(conn, cursor, statement, parameters, context, executemany):
        if context is not None and (context.isinsert or context.isupdate or context.isdelete):
            _wrote(app)


def wait_until_answering(engine, seconds: int) -> None:
    """Return once ``engine``'s database takes a connection, trying for up to ``seconds``
    (said once in the log if it does not at once). A SQLite file is not waited for:
    it is there or it is a mistake.

    Raises ``ConfigError`` naming ``DATABASE_URL`` when it never does.
    """
    if engine.dialect.name == "sqlite":
        return
    where = engine.url.render_as_string(hide_password=True)
    deadline = time.monotonic() + seconds
    said = False
    while True:
        try:
            with engine.connect():
                return
        except UNAVAILABLE as exc:
            reason = _first_line(exc)
        if time.monotonic() >= deadline:
            raise ConfigError(f"the database at {where} (DATABASE_URL) did not answer within "
                              f"{seconds} s: {reason}. Check that it is running and that "
                              "DATABASE_URL points at it.")
        if not said:
            said = True
            log.warning("the database at %s (DATABASE_URL) is not answering (%s); waiting up "
                        "to %d s for it", where, reason, seconds)
        time.sleep(1)


def wait_for_database(url: str, wait: int, seconds: int) -> None:
    """``wait_until_answering`` for the database at ``url``, before any app is made (a
    server's master process, before its workers start). Raises ``ConfigError``."""
    if url.startswith("sqlite"):
        return
    engine = create_engine(url, poolclass=NullPool,
                           connect_args=engine_options(url, wait)["connect_args"])
    try:
        wait_until_answering(engine, seconds)
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    """The driver's own words for ``exc``, in one short line (no password is in them)."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is busy or away (rather than a bug, or a
    database without the dashboard's tables: see ``missing_schema``)."""
    return isinstance(exc, UNAVAILABLE) and not missing_schema(exc)


def missing_schema(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) says a table of the dashboard's is not
    there: SQLite's "no such table", PostgreSQL's ``UndefinedTable``. Waiting does not
    help then; bringing the schema up does (``SCHEMA_MISSING``)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        driver = getattr(exc, "orig", None) or exc
        if getattr(driver, "sqlstate", None) == UNDEFINED_TABLE \
                or getattr(driver, "pgcode", None) == UNDEFINED_TABLE \
                or str(driver).startswith("no such table"):
            return True
        exc = exc.__cause__
    return False


def say_schema_missing(app, exc: BaseException) -> None:
    """Say in the log, once per app, that its database has no tables and how to bring
    them up (a page says it each time)."""
    if app.extensions.get("schema_missing_said"):
        return
    app.extensions["schema_missing_said"] = True
    reason = exc
    while getattr(reason, "__cause__", None) is not None and not hasattr(reason, "orig"):
        reason = reason.__cause__
    log.error("the dashboard's database has no tables (%s): its schema is not there. %s",
              _first_line(reason), SCHEMA_MISSING)


class _Spell:
    """One app's busy spell: since when (``None``: none), and until when writes a page
    can do without are skipped."""

    def __init__(self):
        self.lock = threading.Lock()
        self.since: float | None = None
        self.until: float | None = None


_spells_lock = threading.Lock()


def _spell(app) -> _Spell:
    spell = app.extensions.get("database_busy")
    if spell is None:
        with _spells_lock:
            spell = app.extensions.setdefault("database_busy", _Spell())
    return spell


def mark_busy(app, reason: BaseException | None = None) -> None:
    """The database was busy just now (``reason``, when known): skip writes a page can
    do without for a moment. Said in the log when a spell starts, not each time. A
    ``reason`` that says the tables are missing is no busy spell: the log says so."""
    if reason is not None and missing_schema(reason):
        say_schema_missing(app, reason)
        return
    spell = _spell(app)
    now = app.extensions["clock"].monotonic()
    with spell.lock:
        spell.until = now + BUSY_BACKOFF_SECONDS
        if spell.since is not None:
            return
        spell.since = now
    log.warning("the database is busy%s: writes a page can do without (last seen, readings, "
                "alert checks) are skipped until it takes one again",
                f" ({_first_line(reason)})" if reason is not None else "")


def busy(app) -> bool:
    """Whether a write a page can do without should be skipped now (see ``mark_busy``)."""
    until = _spell(app).until
    return until is not None and app.extensions["clock"].monotonic() < until


def _wrote(app) -> None:
    """A write got through: the busy spell, if there is one, is over."""
    spell = _spell(app)
    if spell.since is None:  # the usual case, without taking the lock
        return
    now = app.extensions["clock"].monotonic()
    with spell.lock:
        if spell.since is None:
            return
        lasted, spell.since, spell.until = now - spell.since, None, None
    log.info("the database takes writes again, after %.0f s busy", lasted)
