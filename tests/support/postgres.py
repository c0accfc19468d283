"""The PostgreSQL that ``.ci/run`` starts (``TEST_DATABASE_URL``), emptied for a test."""
from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

#: the database's URL as the dashboard takes it, or None (the PostgreSQL cases skip)
PG_URL = os.environ.get("TEST_DATABASE_URL")
SKIP_REASON = "TEST_DATABASE_URL is not set (.ci/run starts PostgreSQL and sets it)"


def with_driver(url: str) -> str:
    """``url`` naming the psycopg driver, for an engine of a test's own."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def drop_every_table(conn):
    """Empty the database, whatever an earlier run or release left in it."""
    existing = sa.MetaData()
    existing.reflect(conn)
    existing.drop_all(conn)


def emptied_postgres() -> str:
    """``PG_URL`` with every table dropped (the dashboard's start builds them all
    again); skips the calling test when no PostgreSQL is set."""
    if not PG_URL:
        pytest.skip(SKIP_REASON)
    engine = sa.create_engine(with_driver(PG_URL))
    with engine.begin() as conn:
        drop_every_table(conn)
    engine.dispose()
    return PG_URL
