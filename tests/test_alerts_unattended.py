"""Alerts with nobody looking: the README's cron set-up (gunicorn plus ``flask billing
poll`` run once a step), real processes, a real SMTP server and webhook receiver on
loopback, and not one page view anywhere in these tests."""
from __future__ import annotations

import json
import os
import secrets
import signal
import time
from datetime import datetime, timezone

import pytest

from webapp.extensions import db
from webapp.models import AlertDelivery
from webapp.services.users import create_user

from .conftest import make_app
from .support.processes import Gunicorn, flask, flask_started
from .support.receivers import BlackHole


@pytest.fixture
def deployment(tmp_path, sandbox, mailbox, receiver):
    """The environment of a production deployment against the sandbox's API (as a real
    key would be used), with one finance user to email; what it started is stopped."""
    env = {"GIGA_API_URL": sandbox.url, "GIGA_API_KEY": sandbox.api_key,
           "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'dashboard.db'}",
           "ALERT_WEBHOOK_URL": receiver.url, "SMTP_URL": mailbox.url,
           "ALERT_SEND_EVERY": "1", "ALERT_RETRY_SECONDS": "1", "ALERT_POLL_WAIT": "10",
           "BILLING_CACHE_TTL": "0", "REDIS_URL": ""}
    app = make_app(tmp_path, **{k: env[k] for k in ("GIGA_API_URL", "GIGA_API_KEY",
                                                     "DATABASE_URL")})
    with app.app_context():
        create_user("money@example.com", "finance", "a-long-password-1")
    started: list[Gunicorn] = []

    class Deployment:
        def __init__(self):
            self.env, self.app, self.log = env, app, tmp_path / "gunicorn.log"

        def server(self, **more) -> Gunicorn:
            started.append(Gunicorn({**env, **more}, self.log))
            return started[-1]

        def poll(self, **more):
            result = flask({**env, **more}, "billing", "poll")
            assert result.returncode == 0, result.stderr
            return result

        def deliveries(self) -> list[AlertDelivery]:
            with app.app_context():
                db.session.expire_all()
                return AlertDelivery.query.order_by(AlertDelivery.id).all()

    yield Deployment()
    for server in started:
        server.stop()


def _used(sandbox, percent):
    """Move the sandbox's balance to ``percent`` of its 100 plan credits used."""
    with sandbox.state.edit() as account:
        account["planCreditsRemaining"] = str(100 - percent)


def _titles(receiver) -> list[str]:
    return [json.loads(body)["title"] for _, body in receiver.received]


def _settle(seconds=1.5):
    """Give any web process's sender a turn, so a second delivery would have shown."""
    time.sleep(seconds)


def test_the_cron_set_up_sends_each_crossing_once_with_nobody_looking(
        deployment, sandbox, receiver, mailbox):
    deployment.server()  # one gunicorn process, no Redis, nobody viewing it
    _used(sandbox, 55)
    result = deployment.poll()
    assert "alert sent: 50% of this period's plan credits used (webhook to 127.0.0.1)" \
        in result.stdout
    _settle()
    assert _titles(receiver) == ["50% of this period's plan credits used"]
    assert [m["To"] for m in mailbox.messages] == ["money@example.com"]

    _used(sandbox, 56)  # the next poll: still past 50 %, nothing new
    assert "alert sent" not in deployment.poll().stdout
    _settle()
    assert len(receiver.received) == 1 and len(mailbox.messages) == 1

    _used(sandbox, 85)
    deployment.poll()
    _settle()
    assert _titles(receiver) == ["50% of this period's plan credits used",
                                 "80% of this period's plan credits used"]
    assert [m["Subject"].split(": ", 1)[1] for m in mailbox.messages] == [
        "50% of this period's plan credits used", "80% of this period's plan credits used"]
    assert all(d.status == "sent" and d.attempts == 1 for d in deployment.deliveries())


def test_three_servers_on_redis_and_a_poller_send_each_crossing_once(
        deployment, sandbox, receiver, mailbox, redis_server):
    for _ in range(3):
        deployment.server(REDIS_URL=redis_server.url)
    _used(sandbox, 55)
    deployment.poll(REDIS_URL=redis_server.url)
    _used(sandbox, 56)
    deployment.poll(REDIS_URL=redis_server.url)
    _used(sandbox, 85)
    deployment.poll(REDIS_URL=redis_server.url)
    _settle(2.5)
    assert _titles(receiver) == ["50% of this period's plan credits used",
                                 "80% of this period's plan credits used"]
    assert len(mailbox.messages) == 2


def test_a_retry_is_sent_by_a_web_process_that_fired_nothing(deployment, sandbox, receiver):
    receiver.stop()  # the receiver is down when the alert fires
    deployment.server()
    _used(sandbox, 55)
    result = deployment.poll(ALERT_POLL_WAIT="1", SMTP_URL="")
    assert "alert not sent yet: 50% of this period's plan credits used" in result.stderr
    assert "the dashboard's web processes and the next poll keep trying" in result.stderr
    assert receiver.received == []
    receiver.start()  # back up: the web process's sender retries (backoff 1 s, doubling)
    stop = time.monotonic() + 40
    while not receiver.received and time.monotonic() < stop:
        time.sleep(0.2)
    _settle()
    assert _titles(receiver) == ["50% of this period's plan credits used"]
    webhook, = [d for d in deployment.deliveries() if d.channel == "webhook"]
    assert webhook.status == "sent" and webhook.attempts >= 2


def test_a_claim_left_by_a_killed_sender_is_taken_over_once_it_expires(
        deployment, sandbox, receiver):
    hole = BlackHole()  # the first sender hangs here, mid-delivery
    try:
        _used(sandbox, 55)
        poller = flask_started({**deployment.env, "ALERT_WEBHOOK_URL": hole.url,
                                "SMTP_URL": "", "ALERT_CLAIM_SECONDS": "8"},
                               "billing", "poll")
        assert hole.connected.wait(60), poller.communicate(timeout=5)
        os.killpg(poller.pid, signal.SIGKILL)  # dies mid-send, its claim left behind
        poller.communicate(timeout=10)  # reaped, its pipes closed
    finally:
        hole.close()
    webhook, = deployment.deliveries()
    assert webhook.status == "pending" and webhook.attempts == 0
    claimed_until = webhook.claimed_until
    assert claimed_until > datetime.now(timezone.utc)

    deployment.server(SMTP_URL="", ALERT_CLAIM_SECONDS="8")
    stop = time.monotonic() + 30
    while not receiver.received and time.monotonic() < stop:
        time.sleep(0.1)
    arrived = datetime.now(timezone.utc)
    _settle(2)
    assert _titles(receiver) == ["50% of this period's plan credits used"]
    assert arrived >= claimed_until  # not while the dead sender's claim stood
    webhook, = deployment.deliveries()
    assert webhook.status == "sent" and webhook.attempts == 1
