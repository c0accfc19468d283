"""Twelve web processes (six gunicorn servers of two workers) on one database, one
Redis and one outbox folder, as the issue measured them: the database locked while
upstream takes 3 s to answer a top-up, one earlier settlement already in the outbox,
and every process's background flush trying it every second.

The top-up still answers (303 to the checkout) within ``UPSTREAM_DEADLINE`` + 2 x
``DATABASE_WAIT_SECONDS``, and both settlements reach the trail once the lock goes.
"""
from __future__ import annotations

import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests

from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.services.checkouts.settlement import outbox
from webapp.services.users import create_user

from .conftest import make_app
from .support.dblocks import PostgresTableLock, SqliteWriteLock
from .support.faultserver import Respond, healthy
from .support.postgres import PG_URL, emptied_postgres, with_driver
from .support.processes import Gunicorn

SERVERS, WORKERS = 6, 2
UPSTREAM_SECONDS = 3
UPSTREAM_DEADLINE = 5
DATABASE_WAIT_SECONDS = 2
CHECKOUT = "https://checkout.stripe.com/c/pay/cs_test_twelve"
EARLIER = "https://checkout.stripe.com/c/pay/cs_test_earlier"
PASSWORD = "twelve-processes-password"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """``(url, lock)``: the shared database and a second connection's lock on its trail."""
    if request.param == "postgresql":
        return emptied_postgres(), PostgresTableLock(with_driver(PG_URL))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    return url, SqliteWriteLock(url)


@pytest.fixture
def servers(tmp_path, database, fault_server, redis_server):
    """Six gunicorn servers, started side by side, all on ``tmp_path / "instance"``."""
    url, _ = database
    env = {"GIGA_API_URL": fault_server.url, "GIGA_API_KEY": "giga_sk_twelve",
           "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32), "DATABASE_URL": url,
           "REDIS_URL": redis_server.url, "INSTANCE_PATH": str(tmp_path / "instance"),
           "DATABASE_WAIT_SECONDS": str(DATABASE_WAIT_SECONDS),
           "UPSTREAM_DEADLINE": str(UPSTREAM_DEADLINE), "ALERT_SEND_EVERY": "1",
           "BREAKER_THRESHOLD": "100"}
    with ThreadPoolExecutor(SERVERS) as pool:
        started = list(pool.map(lambda i: Gunicorn(env, tmp_path / f"gunicorn-{i}.log",
                                                   workers=WORKERS), range(SERVERS)))
    yield started
    for server in started:
        server.stop()


def _field(page: str, name: str) -> str:
    return re.search(rf'name="{name}" type="hidden" value="([^"]+)"', page).group(1)


def _top_up_form(base: str) -> tuple[requests.Session, dict]:
    """A finance user signed in at ``base``, and the billing page's top-up form."""
    session = requests.Session()
    page = session.get(base + "/signin", timeout=10).text
    session.post(base + "/signin", timeout=10, data={
        "email": "finance@example.com", "password": PASSWORD,
        "csrf_token": _field(page, "csrf_token")})
    page = session.get(base + "/billing", timeout=10).text
    form = page[page.index('action="/billing/topup'):]
    return session, {"amount": "30", "csrf_token": _field(form, "csrf_token"),
                     "nonce": _field(form, "nonce")}


def _settled(app) -> list[tuple[str, str | None]]:
    with app.app_context():
        db.session.expire_all()
        return [(r.outcome, r.checkout_url) for r in AuditEntry.query.filter(
            AuditEntry.action == "top-up").order_by(AuditEntry.id)]


def test_a_top_up_answers_in_time_while_twelve_processes_flush_a_locked_database(
        tmp_path, database, fault_server, request):
    _, lock = database
    here = make_app(tmp_path / "instance", GIGA_API_URL=fault_server.url,
                    GIGA_API_KEY="giga_sk_twelve", DATABASE_URL=database[0])
    with here.app_context():
        create_user("finance@example.com", "finance", PASSWORD)
        earlier = AuditEntry(at=datetime.now(timezone.utc), user_email="finance@example.com",
                             user_role="finance", action="top-up", amount=Decimal("20.00"),
                             outcome="pending", nonce="e" * 24)
        db.session.add(earlier)
        db.session.commit()
        earlier_id = earlier.id
    servers = request.getfixturevalue("servers")

    def upstream(method, path, body):
        if method != "POST":
            return healthy(method, path, body)
        lock.take()  # after the claim: the settling write will wait, and so will every flush
        outbox(here).keep(earlier_id, {"outcome": "sent to checkout", "checkout_url": EARLIER})
        time.sleep(UPSTREAM_SECONDS)  # the billing API is slow today
        return Respond(200, '{"success": true, "data": {"checkoutUrl": "%s"}}' % CHECKOUT)

    fault_server.handler = upstream
    session, form = _top_up_form(servers[0].base)
    try:
        started = time.monotonic()
        resp = session.post(servers[0].base + "/billing/topup", data=form, timeout=60,
                            allow_redirects=False)
        took = time.monotonic() - started
    finally:
        lock.release()
    assert resp.status_code == 303 and resp.headers["Location"] == CHECKOUT
    assert took < UPSTREAM_DEADLINE + 2 * DATABASE_WAIT_SECONDS, took
    give_up = time.monotonic() + 30
    # A flush writes the row, then takes its line out of the file: the row may be
    # settled a moment before the outbox is empty, so both are waited for.
    while time.monotonic() < give_up and (_settled(here) != [
            ("sent to checkout", EARLIER), ("sent to checkout", CHECKOUT)]
            or outbox(here).waiting()):
        time.sleep(0.2)  # a flush comes every second in each process
    assert _settled(here) == [("sent to checkout", EARLIER), ("sent to checkout", CHECKOUT)]
    assert outbox(here).waiting() == []
    for log in tmp_path.glob("gunicorn-*.log"):  # the flush never failed outright
        assert "task 'checkout settlements' failed" not in log.read_text(), log
