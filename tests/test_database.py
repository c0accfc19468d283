"""The dashboard's own database having a bad moment, as the log tells it."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

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


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_database_without_tables_is_never_called_busy(tmp_path, fault_server, caplog,
                                                        database):
    """An app whose database has none of its tables (never readied: a ``TESTING`` app is
    not readied by its first request) says so, and how to bring the schema up -- on the
    page, and once in the log -- where it used to say "busy, try again" for ever; its
    background work (kept settlements, a reading to record) does not call it busy either."""
    from webapp import create_app
    from webapp.extensions import db
    from webapp.giga.client import parse_billing
    from webapp.services.checkouts.settlement import settle_kept
    from webapp.services.history.readings import record

    from .support.faultserver import BILLING
    from .support.postgres import emptied_postgres

    url = f"sqlite:///{tmp_path / 'empty.db'}" if database == "sqlite" else emptied_postgres()
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False,
                      "INSTANCE_PATH": str(tmp_path), "GIGA_API_URL": fault_server.url,
                      "GIGA_API_KEY": "giga_sk_test_fault", "DATABASE_URL": url})
    caplog.set_level(logging.INFO)
    try:
        for _ in range(2):
            resp = app.test_client().post("/signin", data={"email": "finance@example.com",
                                                           "password": PASSWORD})
            page = resp.get_data(as_text=True)
            assert resp.status_code == 503 and "Retry-After" not in resp.headers
            assert "has no tables" in page and "flask --app wsgi db upgrade" in page
            assert "busy" not in page
        with app.app_context():
            clock = app.extensions["clock"]
            settle_kept(app, clock.now())
            billing = parse_billing(json.loads(json.dumps(BILLING), parse_float=Decimal))
            assert record(billing, clock.now(), keep_days=400) is None
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("webapp")]
    assert not [line for line in lines if "busy" in line]
    said = [line for line in lines if "no tables" in line]
    assert len(said) == 1 and "flask --app wsgi db upgrade" in said[0]


def test_background_work_the_database_cannot_serve_waits_for_it_without_a_traceback(
        tmp_path, fault_server, caplog):
    """The database refusing the background worker's writes (here a held lock; under
    gunicorn, connections ended by a restart): the task has not run, so it runs again the
    next round rather than after its spacing, and the log says "busy" once, with no
    traceback for an operator to chase."""
    from webapp.database import busy
    from webapp.extensions import db
    from webapp.models import UserSession
    from webapp.services.background import worker

    clock = FrozenClock()
    app = make_app(tmp_path, GIGA_API_URL=fault_server.url, GIGA_API_KEY="giga_sk_test_fault",
                   CLOCK=clock, DATABASE_WAIT_SECONDS="1", ALERT_SEND_EVERY="3600")
    with app.app_context():
        create_user("finance@example.com", "finance", PASSWORD)
    app.test_client().post("/signin", data={"email": "finance@example.com",
                                            "password": PASSWORD})
    clock.advance(13 * 3600)  # past SESSION_MAX_HOURS: the record is the purge's to delete
    background = worker(app)  # its own thread sleeps an hour: the rounds here are ours
    lock = SqliteWriteLock(app.config["SQLALCHEMY_DATABASE_URI"])
    caplog.set_level(logging.INFO)
    lock.take()
    try:
        background.run_due()
    finally:
        lock.release()
    with app.app_context():
        assert busy(app) and db.session.query(UserSession).count() == 1
    clock.advance(1)  # the next round, long before the purge's 300 s spacing
    background.run_due()
    with app.app_context():
        assert db.session.query(UserSession).count() == 0
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    said = [r.getMessage() for r in caplog.records if r.name == "webapp.database"]
    assert len(said) == 2 and "busy (database is locked)" in said[0] and "again" in said[1]
