"""Readings that race: several processes recording and checking balance readings at the
same moment, on one database (SQLite and PostgreSQL).

Each "process" here is an app of its own (its own engine and connections) on one
thread; a barrier lets them go at the same instant, so the database, not the
test's timing, decides who goes first. The last test does it with real processes:
three gunicorn servers on one Redis.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests

from webapp.extensions import db
from webapp.gateway.codec import Reading
from webapp.giga.client import parse_billing
from webapp.models import Alert, AlertState, AuditEntry, BalanceSnapshot
from webapp.services.alerting.deliveries import evaluate
from webapp.services.arrivals import reading_arrived, settle
from webapp.services.checkouts import record as checkout_record
from webapp.services.checkouts.statuses import CREDITED, SENT
from webapp.services.history.readings import record
from webapp.services.trail import TOP_UP
from webapp.services.users import create_user

from .conftest import deliver_all, make_app
from .support.dblocks import PostgresTableLock, SqliteWriteLock
from .support.faultserver import BILLING, Respond, healthy
from .support.postgres import emptied_postgres, with_driver
from .support.processes import Gunicorn

D = Decimal
PROCESSES = 3
TRIALS = 50


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "postgresql":
        return emptied_postgres()
    return f"sqlite:///{tmp_path / 'shared.db'}"


def _apps(tmp_path, sandbox, url, n, **settings):
    """``n`` dashboards on one database, as ``n`` processes would run."""
    return [make_app(tmp_path, SANDBOX=sandbox, DATABASE_URL=url, **settings)
            for _ in range(n)]


def _at_once(apps, work) -> None:
    """``work(app, i)`` in each app's context, on a thread each, released together."""
    barrier = threading.Barrier(len(apps))
    failures = []

    def run(i, app):
        with app.app_context():
            barrier.wait(timeout=30)
            try:
                work(app, i)
            except BaseException as exc:  # reported by the test, not lost in the thread
                failures.append(exc)
    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(apps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures


def _sent_top_up(amount: Decimal, nonce: str) -> None:
    """A top-up's audit row as ``services.checkouts`` leaves it once the user is sent to
    checkout: claimed ``pending``, then settled."""
    entry_id, earlier = checkout_record.claim(TOP_UP, nonce, amount=amount)
    assert earlier is None
    checkout_record.settle(entry_id, SENT, request_id=f"req_{nonce}",
                           checkout_url=f"https://checkout.stripe.com/c/pay/{nonce}")


# -- one payment, one top-up credited ------------------------------------------------

def test_one_payment_credits_one_top_up_whoever_records_it_first(tmp_path, sandbox,
                                                                  database_url):
    """Two $25 top-ups sent to checkout, one paid; three processes record the reading that
    shows it in the same millisecond, 50 times: one top-up credited each time, and what
    is credited is what prepaid grew by."""
    apps = _apps(tmp_path, sandbox, database_url, PROCESSES)
    before = parse_billing({"billing": sandbox.state.billing()})
    paid = replace(before, prepaid_balance=before.prepaid_balance + 25,
                   total_balance=before.total_balance + 25)
    outcomes = []
    for trial in range(TRIALS):
        with apps[0].app_context():
            db.session.query(AuditEntry).delete()
            db.session.query(BalanceSnapshot).delete()
            db.session.commit()
            record(before, datetime.now(timezone.utc), keep_days=400)
            _sent_top_up(D(25), f"first-{trial}")
            _sent_top_up(D(25), f"second-{trial}")
        seen = datetime.now(timezone.utc)
        # one millisecond, three readings of it a microsecond apart
        _at_once(apps, lambda app, i: record(paid, seen + timedelta(microseconds=i),
                                             keep_days=400))
        with apps[0].app_context():
            credited = db.session.query(AuditEntry.amount).filter(
                AuditEntry.seen == CREDITED).all()
            snaps = db.session.query(BalanceSnapshot.prepaid_balance).order_by(
                BalanceSnapshot.first_seen_at).all()
        outcomes.append((len(credited), sum((a for a, in credited), D(0)),
                         [p for p, in snaps]))
    growth = paid.prepaid_balance - before.prepaid_balance
    wrong = [(trial, o) for trial, o in enumerate(outcomes)
             if o != (1, growth, [before.prepaid_balance, paid.prepaid_balance])]
    assert wrong == [], f"{len(wrong)} of {TRIALS} trials wrong: {wrong[:5]}"


# -- a stale reading checked after a newer one -------------------------------------------

def _readings(sandbox, first: datetime, *plan_credits) -> list[Reading]:
    """The sandbox's balance with each of ``plan_credits`` left, read a second apart from
    ``first`` on, as the gateway hands readings on."""
    base = parse_billing({"billing": sandbox.state.billing()})
    return [Reading(replace(base, plan_credits_remaining=D(left),
                            total_balance=D(left) + base.prepaid_balance),
                    first + timedelta(seconds=i))
            for i, left in enumerate(plan_credits)]


@pytest.fixture
def alerting(tmp_path, sandbox, receiver, database_url):
    """Three dashboards (three processes) on one database, with the built-in plan-credit
    rules and "balance below $120" sent to a webhook; each knows the plan list."""
    apps = _apps(tmp_path, sandbox, database_url, PROCESSES, ALERT_WEBHOOK_URL=receiver.url,
                 ALERT_BALANCE_BELOW="120", ALERT_SEND_EVERY="3600")
    for app in apps:
        with app.app_context():
            app.extensions["giga_gateway"].plans(app.extensions["clock"].monotonic() + 5)
    return apps


def _handled(app, reading) -> None:
    """``reading`` recorded and checked by ``app``, as its arrivals thread does it."""
    reading_arrived(app, reading)
    settle(app)


def test_a_stale_reading_checked_after_a_newer_one_neither_rearms_nor_fires(
        alerting, sandbox, receiver):
    """$124.50 (25 % of the plan credits used), then $90.00 (60 %): the 50 % rule and
    "below $120" fire once. A slower process then checks the older, higher reading,
    and the next reading is lower still: nothing fires again."""
    slow, fast, _ = alerting
    higher, crossed, lower = _readings(sandbox, datetime.now(timezone.utc) - timedelta(
        seconds=3), "74.50", "40.00", "38.00")
    _handled(fast, crossed)
    _handled(slow, higher)  # read before the crossing, checked after it
    _handled(fast, lower)
    deliver_all(fast)
    with fast.app_context():
        assert sorted(a.title for a in Alert.query) == [
            "50% of this period's plan credits used", "Balance below $120.00"]
        # the stale reading left no mark: each rule last acted on by the newest reading
        assert {s.reading_at for s in AlertState.query} == {lower.fetched_at}
    assert len(receiver.received) == 2


def test_readings_checked_at_once_fire_each_rule_once(alerting, sandbox):
    """A reading that re-arms every rule, then three readings -- above, across, below --
    checked by three processes at the same instant, 20 times: whichever order the
    database takes them in, each rule fires once each time."""
    trials = 20
    start, fired = datetime.now(timezone.utc) - timedelta(seconds=10 * trials), []
    for trial in range(trials):
        recovered, *readings = _readings(sandbox, start + timedelta(seconds=10 * trial),
                                         "74.50", "74.50", "40.00", "38.00")
        with alerting[0].app_context():
            evaluate(alerting[0], recovered.value, recovered.fetched_at)
            last = db.session.query(db.func.max(Alert.id)).scalar() or 0
        _at_once(alerting, lambda app, i: evaluate(app, readings[i].value,
                                                   readings[i].fetched_at))
        with alerting[0].app_context():
            fired.append(sorted(a.title for a in Alert.query.filter(Alert.id > last)))
    deliver_all(alerting[0])  # nothing left sending when the receiver closes
    assert all(titles == ["50% of this period's plan credits used",
                          "Balance below $120.00"] for titles in fired), fired


# -- the same on three gunicorn servers on one Redis --------------------------------------

SERVER_TRIALS = 10
PASSWORD = "reading-races-password-1"


class Upstream:
    """The billing API as the fault server plays it, with figures a test can move (as
    strings of cents, so no float ever carries money)."""

    def __init__(self, server):
        self.plan_credits, self.prepaid = D("74.50"), D("50.00")
        server.handler = self._answer

    def _answer(self, method, path, body):
        if path != "/api/billing":
            return healthy(method, path, body)
        figures = {**BILLING["billing"], "planCreditsRemaining": "PLAN",
                   "prepaidBalance": "PREPAID", "totalBalance": "TOTAL"}
        text = json.dumps({"success": True, "data": {"billing": figures}})
        for name, value in (("PLAN", self.plan_credits), ("PREPAID", self.prepaid),
                            ("TOTAL", self.plan_credits + self.prepaid)):
            text = text.replace(f'"{name}"', str(value))
        return Respond(200, text)


def _signed_in(base: str, email: str) -> requests.Session:
    """A new session signed in at ``base`` (its "last seen" is fresh, so no page of it
    writes to the database for a minute)."""
    session = requests.Session()
    page = session.get(base + "/signin", timeout=20).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    resp = session.post(base + "/signin", data={"email": email, "password": PASSWORD,
                                                "csrf_token": token},
                        allow_redirects=False, timeout=20)
    assert resp.headers.get("Location", "").endswith("/billing"), resp.status_code
    return session


def _history_lock(url: str):
    """Another connection holding the balance history's writes (reads go on)."""
    if url.startswith("postgresql"):
        return PostgresTableLock(with_driver(url), "balance_snapshots", mode="EXCLUSIVE")
    return SqliteWriteLock(url)


def _recorded(app, plan_credits: Decimal, within: float = 30) -> None:
    """Wait until a snapshot with ``plan_credits`` left is in the history."""
    stop = time.monotonic() + within
    while time.monotonic() < stop:
        with app.app_context():
            if db.session.query(BalanceSnapshot.id).filter(
                    BalanceSnapshot.plan_credits_remaining == plan_credits).first():
                return
            db.session.remove()
        time.sleep(0.05)
    raise AssertionError(f"no reading of {plan_credits} recorded in {within} s")


@pytest.mark.slow
def test_one_payment_credits_one_top_up_on_three_servers(tmp_path, database_url, fault_server,
                                                         redis_server):
    """Three gunicorn servers on one Redis and one database. Each trial: two $25 top-ups
    sent to checkout, one paid; a page view on each server, each reading the balance
    afresh; their three readings wait for the history's writes (held by another
    connection) and go at once when it lets go. One top-up is credited each time."""
    upstream = Upstream(fault_server)
    app = make_app(tmp_path, DATABASE_URL=database_url, GIGA_API_KEY="giga_sk_races",
                   GIGA_API_URL=fault_server.url)
    with app.app_context():
        for i in range(PROCESSES):
            create_user(f"viewer{i}@example.com", "viewer", PASSWORD)
    env = {"GIGA_API_URL": fault_server.url, "GIGA_API_KEY": "giga_sk_races",
           "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32), "DATABASE_URL": database_url,
           "REDIS_URL": redis_server.url, "INSTANCE_PATH": str(tmp_path),
           "BILLING_CACHE_TTL": "0", "UPSTREAM_BUDGET_PER_MINUTE": "1000",
           "DATABASE_WAIT_SECONDS": "30"}
    servers = []
    try:
        for i in range(PROCESSES):
            servers.append(Gunicorn(env, tmp_path / f"gunicorn-{i}.log"))
        # the history's first reading, for the payments to show against
        _signed_in(servers[0].base, "viewer0@example.com").get(servers[0].base + "/billing")
        _recorded(app, upstream.plan_credits)
        outcomes = [_server_trial(app, servers, upstream, database_url, trial)
                    for trial in range(SERVER_TRIALS)]
    finally:
        for server in servers:
            server.stop()
    wrong = [(trial, o) for trial, o in enumerate(outcomes) if o != (1, D(25))]
    assert wrong == [], f"{len(wrong)} of {SERVER_TRIALS} trials wrong: {wrong}"


def _server_trial(app, servers, upstream: Upstream, url: str, trial: int):
    """One trial (see the test); returns how many top-ups were credited, and their sum."""
    with app.app_context():
        db.session.query(AuditEntry).delete()
        db.session.commit()
        _sent_top_up(D(25), f"first-{trial}")
        _sent_top_up(D(25), f"second-{trial}")
    viewers = [_signed_in(s.base, f"viewer{i}@example.com") for i, s in enumerate(servers)]
    upstream.prepaid += 25  # one of them paid
    lock = _history_lock(url)
    lock.take()
    try:
        for server, viewer in zip(servers, viewers):  # one after another: each reads afresh
            assert viewer.get(server.base + "/billing", timeout=20).status_code == 200
    finally:
        lock.release()
    # a later reading on each server, recorded after the one before it there
    for server, viewer in zip(servers, viewers):
        upstream.plan_credits -= D("0.01")
        assert viewer.get(server.base + "/billing", timeout=20).status_code == 200
        _recorded(app, upstream.plan_credits)
    with app.app_context():
        credited = [a for a, in db.session.query(AuditEntry.amount).filter(
            AuditEntry.seen == CREDITED)]
    return len(credited), sum(credited, D(0))
