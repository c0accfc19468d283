"""The same storage on PostgreSQL: users, sessions, throttling, audit rows and CSV.

Needs TEST_DATABASE_URL (``.ci/run`` starts a local PostgreSQL and sets it).
"""
import csv
import io
from decimal import Decimal

import pytest

from .conftest import AuthActions, make_app
from .support.postgres import PG_URL as URL, SKIP_REASON, emptied_postgres

pytestmark = pytest.mark.skipif(not URL, reason=SKIP_REASON)


@pytest.fixture
def pg_app(tmp_path, sandbox):
    from webapp.extensions import db
    # every table and the migration history, whatever was left: the start builds it all
    app = make_app(tmp_path, SANDBOX=sandbox, DATABASE_URL=emptied_postgres())
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_flows_on_postgresql(pg_app, sandbox):
    assert pg_app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    runner = pg_app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "pg@example.com", "--role", "finance",
                                 "--password", "long-enough-pw"])
    assert result.exit_code == 0, result.output
    assert "already exists" in runner.invoke(args=["users", "create", "pg@example.com", "--role",
                                                   "viewer", "--password", "violet-anchor-meadow-42"]).output
    # the last-admin guard's locking statement runs on PostgreSQL too
    demoted = runner.invoke(args=["users", "set-role", "admin@demo.test", "viewer"])
    assert demoted.exit_code == 1 and "last admin" in demoted.output
    assert runner.invoke(args=["users", "set-role", "pg@example.com", "admin"]).exit_code == 0
    assert runner.invoke(args=["users", "set-role", "admin@demo.test", "viewer"]).exit_code == 0
    client = pg_app.test_client()
    auth = AuthActions(client)
    for _ in range(5):
        auth.login("pg@example.com", password="wrong")
    assert auth.login("pg@example.com", password="long-enough-pw").status_code == 429
    auth.login("finance")
    resp = client.post("/billing/topup", data={"amount": "42.10", "nonce": "pg" * 12})
    assert resp.status_code == 303
    replay = client.post("/billing/topup", data={"amount": "42.10", "nonce": "pg" * 12})
    assert replay.headers["Location"] == resp.headers["Location"]
    rows = list(csv.reader(io.StringIO(client.get("/audit/export.csv").get_data(as_text=True))))
    assert rows[1][1:5] == ["finance@demo.test", "finance", "top-up", "42.10"]
    assert rows[1][rows[0].index("outcome")] == "sent to checkout"
    auth.logout()
    assert client.get("/billing").status_code == 302
    with pg_app.app_context():
        from webapp.models import AuditEntry
        assert AuditEntry.query.filter_by(action="top-up").one().amount == Decimal("42.10")


def test_two_admins_demoting_each_other_at_once_leave_one(pg_app):
    """The last-admin guard holds under concurrency: the admin rows are locked first."""
    from webapp.models import User
    from webapp.services.users import create_user
    from .support.races import demote_each_other
    with pg_app.app_context():
        create_user("second@example.com", "admin", "violet-anchor-meadow-42")
    assert demote_each_other(pg_app, "admin@demo.test", "second@example.com") == \
        ["demoted", "refused"]
    with pg_app.app_context():
        assert User.query.filter_by(role="admin").count() == 1
