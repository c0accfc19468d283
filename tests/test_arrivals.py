"""A balance read for a page is recorded and checked against the alert rules after the
page is answered, exactly once each, in order -- and the page shows it all the same.

The page is served over real HTTP (a threaded server in this process), so the end
of each response is what wakes the work, as under gunicorn.
"""
from __future__ import annotations

import re
import threading
from decimal import Decimal

import pytest
import requests
from werkzeug.serving import make_server

from webapp.extensions import db
from webapp.models import Alert, BalanceSnapshot
from webapp.services.arrivals import settle

from .conftest import DEMO_PASSWORD, make_app
from .support.dblocks import PostgresTableLock, SqliteWriteLock
from .support.postgres import emptied_postgres, with_driver


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request, tmp_path, sandbox, receiver):
    """The dashboard on the sandbox, every read fresh, an alert below $120 to the
    receiver, behind a real HTTP server; ``served.lock`` holds the history's writes
    (SQLite: the file's write lock; PostgreSQL: the snapshots table, reads allowed)."""
    url = (emptied_postgres() if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'dashboard.db'}")
    # a write waits up to a minute: a page that waited for one would be seen waiting
    app = make_app(tmp_path, SANDBOX=sandbox, DATABASE_URL=url, DATABASE_WAIT_SECONDS="60",
                   BILLING_CACHE_TTL="0", ALERT_WEBHOOK_URL=receiver.url,
                   ALERT_BALANCE_BELOW="120", ALERT_SEND_EVERY="3600")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    session = requests.Session()
    base = f"http://127.0.0.1:{server.server_port}"
    session.post(base + "/signin", data={"email": "viewer@demo.test", "password": DEMO_PASSWORD})
    settle(app)  # the reading of the page signing in led to

    class Served:
        def __init__(self):
            self.app, self.session, self.base = app, session, base
            self.lock = (PostgresTableLock(with_driver(url), "balance_snapshots",
                                           mode="EXCLUSIVE")
                         if request.param == "postgresql"
                         else SqliteWriteLock(app.config["SQLALCHEMY_DATABASE_URI"]))

        def page(self):
            resp = session.get(base + "/billing", timeout=20)
            assert resp.status_code == 200
            return resp.text

        def rows(self):
            with app.app_context():
                db.session.expire_all()
                return [r.total_balance for r in
                        BalanceSnapshot.query.order_by(BalanceSnapshot.first_seen_at)]

        def alerts(self):
            with app.app_context():
                return [a.rule for a in Alert.query.order_by(Alert.id)]

    yield Served()
    server.shutdown()


def _used(html) -> Decimal:
    return Decimal(re.search(r'id="used-this-period"><strong>\$([\d,.]+)', html)
                   .group(1).replace(",", ""))


def test_the_page_is_answered_before_its_reading_is_recorded_and_shows_it(served, sandbox):
    used_before = _used(served.page())
    settle(served.app)
    kept = served.rows()
    assert kept[-1] == Decimal("124.50") and served.alerts() == []
    with sandbox.state.edit() as account:  # $10.00 of plan credits used since
        account["planCreditsRemaining"] = "64.50"
    served.lock.take()
    try:
        html = served.page()  # would wait out the lock if the page recorded its reading
        # the new balance, and usage that counts it, though the reading is not kept yet
        assert "$114.50" in html
        assert _used(html) == used_before + Decimal("10.00")
        assert served.rows() == kept  # not recorded while the lock holds
        assert served.alerts() == []  # and not checked before it is recorded
    finally:
        served.lock.release()
    settle(served.app)
    assert served.rows() == kept + [Decimal("114.50")]
    assert served.alerts() == ["balance below"]  # checked once it was recorded, once
    assert _used(served.page()) == used_before + Decimal("10.00")  # the same, kept


def _balance_reads(sandbox) -> int:
    return sum(1 for method, path in list(sandbox.calls) if path == "/api/billing")


def test_each_reading_is_recorded_and_checked_once_in_the_order_read(
        served, sandbox, monkeypatch):
    import webapp.services.alerting.deliveries as deliveries

    checked = []
    real = deliveries.evaluate

    def counted(app, billing, now):
        if app is served.app:  # an earlier test's app may still be handling its own
            checked.append(now)
        return real(app, billing, now)
    monkeypatch.setattr(deliveries, "evaluate", counted)
    before = _balance_reads(sandbox)

    def viewer():
        for _ in range(3):
            served.page()
    threads = [threading.Thread(target=viewer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    settle(served.app)
    reads = _balance_reads(sandbox) - before
    assert len(checked) == reads > 1  # one check a reading: none twice, none missed
    assert checked == sorted(checked)  # in the order they were read
    assert served.alerts() == []  # $124.50 is above the rule's $120.00


def test_a_quiet_process_holds_no_thread_and_the_next_reading_starts_one(
        app, sandbox, monkeypatch):
    import time

    from webapp.services import arrivals as module

    monkeypatch.setattr(module, "LOOK_EVERY", 0.05)
    monkeypatch.setattr(module, "IDLE_LOOKS", 2)
    gateway = app.extensions["giga_gateway"]

    def read_and_wait_until(done):
        with app.app_context():  # outside a request: handled at once, by the thread
            gateway.billing(time.monotonic() + 5, fresh=True)
        for _ in range(200):
            if done():
                return
            time.sleep(0.025)
        raise AssertionError("not done in 5 s")

    def recorded():
        with app.app_context():
            db.session.expire_all()
            return BalanceSnapshot.query.order_by(BalanceSnapshot.first_seen_at.desc()) \
                .first().total_balance
    read_and_wait_until(lambda: not module.arrivals(app).running)  # quiet: it ended
    with sandbox.state.edit() as account:
        account["planCreditsRemaining"] = "64.50"
    read_and_wait_until(lambda: recorded() == Decimal("114.50"))  # a new thread did it
