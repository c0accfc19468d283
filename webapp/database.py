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
database busy, so a page does not wait once per such write.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeout

#: what a database that is busy, restarting or away raises (not a bug in a query)
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout, PendingRollbackError)
#: how long writes a page can do without are skipped after one found the database busy
BUSY_BACKOFF_SECONDS = 5.0
#: a statement may run this many times the lock wait before it is cancelled (PostgreSQL)
STATEMENT_LIMIT_FACTOR = 5


def engine_options(url: str, wait: int) -> dict:
    """SQLAlchemy engine options for ``url``: bounded waits and checked pooled connections."""
    if url.startswith("sqlite"):
        # the driver's busy timeout: how long a statement waits for another's lock
        return {"connect_args": {"timeout": wait}}
    options = f"-c lock_timeout={wait * 1000} -c statement_timeout=" \
              f"{wait * 1000 * STATEMENT_LIMIT_FACTOR}"
    return {"pool_pre_ping": True, "pool_timeout": wait,
            "connect_args": {"connect_timeout": wait, "options": options}}


def prepare(engine) -> None:
    """Once per database: SQLite into WAL mode (kept in the file), so readers go on
    while a writer holds its lock."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.execute(text("PRAGMA journal_mode=WAL"))


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is busy or away (rather than a bug)."""
    return isinstance(exc, UNAVAILABLE)


def mark_busy(app) -> None:
    """The database was busy just now: skip writes a page can do without for a moment."""
    clock = app.extensions["clock"]
    app.extensions["database_busy_until"] = clock.monotonic() + BUSY_BACKOFF_SECONDS


def busy(app) -> bool:
    """Whether a write a page can do without should be skipped now (see ``mark_busy``)."""
    until = app.extensions.get("database_busy_until")
    return until is not None and app.extensions["clock"].monotonic() < until
