"""Faults in the dashboard's own database, made by a test from a second connection."""
from __future__ import annotations

import sqlite3

import sqlalchemy


class SqliteWriteLock:
    """Another writer holding the SQLite file's write lock (``BEGIN EXCLUSIVE``)."""

    def __init__(self, uri: str):
        self.path = uri[len("sqlite:///"):]
        self.conn = None

    def take(self):
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=10,
                                    check_same_thread=False)  # taken where upstream answers
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self):
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


class PostgresTableLock:
    """Another session holding ``LOCK TABLE … IN ACCESS EXCLUSIVE MODE`` (no reads, no
    writes of that table until it lets go); ``mode="EXCLUSIVE"`` lets reads go on."""

    def __init__(self, url: str, table: str = "audit_entries", mode: str = "ACCESS EXCLUSIVE"):
        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self.table, self.mode = table, mode
        self.conn = None

    def take(self):
        self.conn = self.engine.connect()
        self.conn.begin()
        self.conn.execute(sqlalchemy.text(f"LOCK TABLE {self.table} IN {self.mode} MODE"))

    def release(self):
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None
        self.engine.dispose()


def terminate_other_connections(url: str) -> int:
    """``pg_terminate_backend`` for every other client connection to the database (as a
    restart would drop them; not the server's own, such as an autovacuum worker, which
    only a superuser may end); returns how many were ended."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return len(conn.execute(sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'")).all())
    finally:
        engine.dispose()
