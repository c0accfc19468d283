"""The dashboard's own database having a bad moment, as the log tells it."""
from __future__ import annotations

import logging

from webapp.clock import FrozenClock
from webapp.database import BUSY_BACKOFF_SECONDS
from webapp.services.arrivals import settle
from webapp.services.users import create_user

from .conftest import make_app
from .support.dblocks import SqliteWriteLock

PASSWORD = "correct-horse-battery"


def _database_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("webapp") and "database" in r.getMessage()]


def test_a_long_lock_is_one_line_when_it_starts_and_one_when_it_ends(tmp_path, fault_server,
                                                                     caplog):
    """Page views through a lock: readings skipped and writes failing, a line each
    today; one line when the database is found busy, one when it takes a write again."""
    clock = FrozenClock()
    app = make_app(tmp_path, GIGA_API_URL=fault_server.url, GIGA_API_KEY="giga_sk_test_fault",
                   CLOCK=clock, DATABASE_WAIT_SECONDS="1", BILLING_CACHE_TTL="0")
    with app.app_context():
        create_user("finance@example.com", "finance", PASSWORD)
    client = app.test_client()
    client.post("/signin", data={"email": "finance@example.com", "password": PASSWORD})
    assert client.get("/billing").status_code == 200
    settle(app)
    lock = SqliteWriteLock(app.config["SQLALCHEMY_DATABASE_URI"])
    caplog.set_level(logging.INFO)
    lock.take()
    try:
        for _ in range(12):  # 12 s of page views, each with a reading to record
            assert client.get("/billing").status_code == 200
            settle(app)
            clock.advance(1)
    finally:
        lock.release()
    assert len(_database_lines(caplog)) == 1
    clock.advance(BUSY_BACKOFF_SECONDS)
    assert client.get("/billing").status_code == 200
    settle(app)  # its reading is written: the database answers again
    started, ended = _database_lines(caplog)
    assert "busy" in started
    assert "again" in ended and " s" in ended
