"""When the dashboard's own database falters: a top-up or a plan change with the database
locked (SQLite: another writer; PostgreSQL: a table lock) or its connections dropped
(``pg_terminate_backend``) at each point of the money path; page views during a lock.

Expected everywhere: exactly one upstream call, the user sent to the checkout that
exists or told the truth, the row settled once the database is back, never a 500.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy

from webapp.services.checkouts.settlement import outbox, settle_kept
from webapp.services.checkouts.start import PENDING_WAIT_SECONDS
from webapp.extensions import db
from webapp.services.history.readings import record
from webapp.models import AuditEntry
from webapp.services.users import create_user

from .conftest import make_app
from .support.dblocks import PostgresTableLock, SqliteWriteLock, terminate_other_connections
from .support.faultserver import BILLING, Respond, healthy
from .support.postgres import PG_URL, emptied_postgres, with_driver as _pg

CHECKOUT = "https://checkout.stripe.com/c/pay/cs_test_kept"
PASSWORD = "correct-horse-battery"
#: a request ID longer than the column (100): cut to fit before the write can fail on it
LONG_RID = "req-" + "x" * 300


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, fault_server):
    """The dashboard against the fault server, on SQLite or PostgreSQL, waiting at most
    one second for its database; ``store.lock`` is a second connection's lock."""
    url = (emptied_postgres() if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'dashboard.db'}")
    app = make_app(tmp_path, GIGA_API_URL=fault_server.url, GIGA_API_KEY="giga_sk_test_fault",
                   DATABASE_URL=url, DATABASE_WAIT_SECONDS="1", BILLING_CACHE_TTL="0",
                   UPSTREAM_DEADLINE="3", BREAKER_THRESHOLD="100")
    with app.app_context():
        for role in ("finance", "admin"):
            create_user(f"{role}@example.com", role, PASSWORD)
    lock = (PostgresTableLock(_pg(PG_URL)) if request.param == "postgresql"
            else SqliteWriteLock(app.config["SQLALCHEMY_DATABASE_URI"]))

    class Store:
        kind = request.param

        def __init__(self):
            self.app, self.lock, self.url = app, lock, url

        def client(self, role):
            client = app.test_client()
            client.post("/signin", data={"email": f"{role}@example.com", "password": PASSWORD})
            return client

        def rows(self):
            with app.app_context():
                db.session.expire_all()
                return AuditEntry.query.filter(AuditEntry.action.in_(
                    ("top-up", "plan change"))).order_by(AuditEntry.id).all()

        def settle(self, later=0):
            with app.app_context():
                settle_kept(app, datetime.now(timezone.utc) + timedelta(seconds=later))

    yield Store()
    lock.release()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


ACTIONS = {
    "top-up": ("finance", "/billing/topup", {"amount": "30"}, "/api/billing/recharge"),
    "plan change": ("admin", "/billing/plans/free", {}, "/api/billing/subscribe"),
}


def _checkout_answer(fault_server, on_post=None):
    """Upstream answers each POST with a checkout (request ID ``LONG_RID``), after
    ``on_post()`` -- the moment between the claim and the settling write."""
    def handler(method, path, body):
        if method == "POST":
            if on_post is not None:
                on_post()
            return Respond(200, json.dumps({"success": True, "data": {"checkoutUrl": CHECKOUT}}),
                           {"X-Request-Id": LONG_RID})
        return healthy(method, path, body)
    fault_server.handler = handler


def _post(store, action, nonce):
    role, path, form, _ = ACTIONS[action]
    client = store.client(role)
    client.get("/billing")  # the plans are read (and cached) as a page view would
    return client, client.post(path, data={**form, "nonce": nonce})


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_lock_after_the_claim_still_sends_the_user_to_the_checkout_and_keeps_it(
        store, fault_server, action):
    _checkout_answer(fault_server, on_post=store.lock.take)
    client, resp = _post(store, action, "k" * 24)
    assert resp.status_code == 303 and resp.headers["Location"] == CHECKOUT
    upstream = ACTIONS[action][3]
    assert fault_server.count(upstream) == 1
    if store.kind == "sqlite":  # readers go on under a writer (WAL): a replay follows it
        replay = client.post(ACTIONS[action][1], data={**ACTIONS[action][2], "nonce": "k" * 24})
        assert replay.status_code == 303 and replay.headers["Location"] == CHECKOUT
        assert fault_server.count(upstream) == 1
    (kept_id, kept), = outbox(store.app).waiting()
    assert kept["outcome"] == "sent to checkout" and kept["checkout_url"] == CHECKOUT
    store.settle()  # still locked: nothing written, nothing lost
    store.lock.release()
    store.settle()
    row, = store.rows()
    assert row.id == kept_id
    assert row.outcome == "sent to checkout" and row.checkout_url == CHECKOUT
    assert row.request_id == LONG_RID[:100]
    assert outbox(store.app).waiting() == []
    assert fault_server.count(upstream) == 1


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_lock_before_the_claim_sends_nothing_and_says_so(store, fault_server, action):
    _checkout_answer(fault_server)
    role, path, form, upstream = ACTIONS[action]
    client = store.client(role)
    client.get("/billing")
    store.lock.take()
    started = time.monotonic()
    resp = client.post(path, data={**form, "nonce": "b" * 24})
    assert time.monotonic() - started < 5
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert "did not send anything to checkout" in resp.get_data(as_text=True)
    assert fault_server.count(upstream) == 0
    store.lock.release()
    again = client.post(path, data={**form, "nonce": "b" * 24})  # the same form, sent again
    assert again.status_code == 303 and again.headers["Location"] == CHECKOUT
    assert fault_server.count(upstream) == 1
    assert [r.outcome for r in store.rows()] == ["sent to checkout"]


@pytest.mark.parametrize("action", list(ACTIONS))
def test_dropped_connections_at_each_point_cost_no_request(store, fault_server, action):
    if store.kind != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    _checkout_answer(fault_server, on_post=lambda: terminate_other_connections(_pg(PG_URL)))
    terminate_other_connections(_pg(PG_URL))  # before the claim, too
    _, resp = _post(store, action, "d" * 24)
    assert resp.status_code == 303 and resp.headers["Location"] == CHECKOUT
    assert fault_server.count(ACTIONS[action][3]) == 1
    row, = store.rows()  # settled at once: the dead connections were replaced
    assert row.outcome == "sent to checkout" and row.checkout_url == CHECKOUT


def test_a_row_left_pending_becomes_status_unknown_and_can_still_be_credited(store):
    """A process that died between its call and its write leaves a pending row and no
    outbox line: past the limit it is 'status unknown', and a reading can credit it."""
    app = store.app
    then = datetime.now(timezone.utc) - timedelta(minutes=10)
    with app.app_context():
        db.session.add(AuditEntry(at=then, user_email="finance@example.com",
                                  user_role="finance", action="top-up",
                                  amount=Decimal("30.00"), outcome="pending", nonce="p" * 24))
        db.session.commit()
    store.settle()
    row, = store.rows()
    assert row.outcome == "status unknown: not recorded"
    assert "check the balance" in row.detail
    finance = store.client("finance")
    trail = finance.get("/audit").get_data(as_text=True)
    assert "status unknown: not recorded" in trail
    assert "status unknown: not recorded" in finance.get("/audit/export.csv").get_data(
        as_text=True)
    from webapp.giga.client import parse_billing
    doc = json.loads(json.dumps(BILLING), parse_float=Decimal)  # as the client parses it
    billing = parse_billing(doc)
    grown = parse_billing({"billing": {**doc["billing"], "prepaidBalance": Decimal("80.00"),
                                       "totalBalance": Decimal("154.50")}})
    with app.app_context():
        record(billing, then + timedelta(minutes=1), keep_days=400)
        record(grown, then + timedelta(minutes=5), keep_days=400)
    row, = store.rows()
    assert row.seen == "credited"


def test_page_views_during_a_long_lock_answer_in_seconds_without_a_500(store, fault_server):
    client = store.client("finance")
    assert client.get("/billing").status_code == 200  # a balance is read and kept
    store.lock.take()
    statuses = {}
    try:
        for path in ("/billing", "/billing", "/audit", "/alerts"):
            started = time.monotonic()
            resp = client.get(path)
            statuses[path] = resp.status_code
            took = time.monotonic() - started
            assert took < 5, (path, took)
            assert resp.status_code in (200, 503), (path, resp.status_code)
            if resp.status_code == 503:
                text = resp.get_data(as_text=True)
                assert resp.headers["Retry-After"] == "5"
                assert "The dashboard&#39;s own store is busy" in text
                assert "$124.50" in text  # the balance, as last read
    finally:
        store.lock.release()
    if store.kind == "sqlite":  # a writer's lock does not stop readers (WAL)
        assert statuses == {"/billing": 200, "/audit": 200, "/alerts": 200}
    else:  # the trail's table is locked: its page says so; the others answer
        assert statuses == {"/billing": 503, "/audit": 503, "/alerts": 200}
    assert client.get("/billing").status_code == 200
    assert client.get("/audit").status_code == 200


def test_a_database_refusing_connections_gets_the_503_page_then_recovers(store):
    if store.kind != "postgresql":
        pytest.skip("connection limits are PostgreSQL's")
    client = store.client("finance")
    assert client.get("/billing").status_code == 200
    admin = sqlalchemy.create_engine(_pg(PG_URL), poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:  # opened first: it stays while new ones are refused
        name = conn.execute(sqlalchemy.text("SELECT quote_ident(current_database())")).scalar()
        conn.execute(sqlalchemy.text(f"ALTER DATABASE {name} CONNECTION LIMIT 0"))
        conn.commit()
        try:
            conn.execute(sqlalchemy.text(  # the app's pooled connections go, as in a restart
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                "current_database() AND pid <> pg_backend_pid()"))
            for path in ("/billing", "/audit", "/signin"):
                resp = client.get(path)
                assert resp.status_code == 503, (path, resp.status_code)
                assert resp.headers["Retry-After"] == "5"
        finally:
            conn.execute(sqlalchemy.text(f"ALTER DATABASE {name} CONNECTION LIMIT -1"))
            conn.commit()
    admin.dispose()
    assert client.get("/billing").status_code == 200


def _reads_go_on(store):
    """A lock on the trail that still lets it be read (so a replay finds its row):
    SQLite's write lock (WAL), or PostgreSQL's ``EXCLUSIVE`` table lock."""
    if store.kind == "sqlite":
        return store.lock
    return PostgresTableLock(_pg(PG_URL), mode="EXCLUSIVE")


def _signed_in(app, role="finance"):
    client = app.test_client()
    client.post("/signin", data={"email": f"{role}@example.com", "password": PASSWORD})
    client.get("/billing")
    return client


def test_an_unreadable_outbox_costs_a_replay_no_500_and_stops_no_expiry(
        store, fault_server, caplog):
    """The outbox's path is a folder (EISDIR on every read and write, as root too):
    the user is still sent to the checkout, a replay waits its time and answers in
    words, rows left pending are still marked, and the log says so once."""
    outbox(store.app).path.mkdir()
    lock = _reads_go_on(store)
    _checkout_answer(fault_server, on_post=lock.take)
    try:
        client, resp = _post(store, "top-up", "u" * 24)
        assert resp.status_code == 303 and resp.headers["Location"] == CHECKOUT
        started = time.monotonic()
        replay = client.post("/billing/topup", data={"amount": "30", "nonce": "u" * 24})
        took = time.monotonic() - started
    finally:
        lock.release()
    assert replay.status_code == 409, replay.status_code
    assert "already being processed" in replay.get_data(as_text=True)
    assert PENDING_WAIT_SECONDS <= took < PENDING_WAIT_SECONDS + 3
    assert fault_server.count("/api/billing/recharge") == 1
    for _ in range(3):  # three turns of the background flush
        store.settle(later=600)
    row, = store.rows()
    assert row.outcome == "status unknown: not recorded"
    lost = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(lost) == 1 and CHECKOUT in lost[0]  # every field, in the log at least
    assert len([r for r in caplog.records if "cannot be kept in" in r.getMessage()]) == 1
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_a_sandbox_run_from_the_same_folder_never_takes_this_databases_settlement(
        store, fault_server, sandbox, tmp_path):
    _checkout_answer(fault_server, on_post=store.lock.take)
    _, resp = _post(store, "top-up", "s" * 24)
    assert resp.status_code == 303
    store.lock.release()
    (kept_id, kept), = outbox(store.app).waiting()
    sandboxed = make_app(tmp_path, SANDBOX=sandbox,
                         DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.db'}")
    assert outbox(sandboxed).path == outbox(store.app).path  # one folder, two databases
    now = datetime.now(timezone.utc)
    with sandboxed.app_context():  # the sandbox's own attempt with the same id
        db.session.add(AuditEntry(id=kept_id, at=now, user_email="finance@demo.test",
                                  user_role="finance", action="top-up",
                                  amount=Decimal("30.00"), outcome="pending", nonce="t" * 24))
        db.session.commit()
        settle_kept(sandboxed, now)
        assert db.session.get(AuditEntry, kept_id).outcome == "pending"
        assert outbox(sandboxed).find(kept_id) is None
    assert outbox(store.app).waiting() == [(kept_id, kept)]
    store.settle()
    row, = store.rows()
    assert row.outcome == "sent to checkout" and row.checkout_url == CHECKOUT


def test_a_settlement_kept_on_one_host_is_found_and_written_by_another(
        store, fault_server, redis_server, tmp_path):
    """Two hosts (their own folders) on one database and one Redis: a replay that
    reaches the other host follows the checkout, and when the first host is gone
    for good the other writes its settlement."""
    hosts = [make_app(tmp_path / name, GIGA_API_URL=fault_server.url,
                      GIGA_API_KEY="giga_sk_test_fault", DATABASE_URL=store.url,
                      DATABASE_WAIT_SECONDS="1", BILLING_CACHE_TTL="0", UPSTREAM_DEADLINE="3",
                      BREAKER_THRESHOLD="100", REDIS_URL=redis_server.url)
             for name in ("host-a", "host-b")]
    first, other = (_signed_in(host) for host in hosts)
    lock = _reads_go_on(store)
    _checkout_answer(fault_server, on_post=lock.take)
    try:
        resp = first.post("/billing/topup", data={"amount": "30", "nonce": "h" * 24})
        assert resp.status_code == 303 and resp.headers["Location"] == CHECKOUT
        replay = other.post("/billing/topup", data={"amount": "30", "nonce": "h" * 24})
        assert replay.status_code == 303 and replay.headers["Location"] == CHECKOUT
    finally:
        lock.release()
    assert fault_server.count("/api/billing/recharge") == 1
    outbox(hosts[0]).path.unlink()  # the first host and its disk are gone
    with hosts[1].app_context():
        settle_kept(hosts[1], datetime.now(timezone.utc))
    row, = store.rows()
    assert row.outcome == "sent to checkout" and row.checkout_url == CHECKOUT
    assert outbox(hosts[1]).waiting() == []
