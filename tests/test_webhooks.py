"""The alert webhook against receivers that misbehave, over real loopback HTTP: one
that drips its answer a byte a second, one that answers 200 MB, one whose sender is
killed mid-send; what it signs and how a receiver checks it (the README's own
snippet); the try-it receiver; and "Send test alert" by an admin with a long email."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from webapp.extensions import db
from webapp.models import Alert, AlertAttempt, AlertDelivery
from webapp.services.alerting.deliveries import deliver_due
from webapp.services.users import create_user

from .conftest import AuthActions, deliver_all, make_app
from .support.net import closed_port
from .support.postgres import emptied_postgres
from .support.processes import ROOT, Gunicorn, flask_started
from .support.receivers import DrippingReceiver, HugeAnswerReceiver, WebhookReceiver

SECRET = "whsec-test-secret"
PASSWORD = "webhook-admin-password-1"
#: a valid address of 200 characters: a 64-character local part, three domain labels
LONG_EMAIL = f"{'a' * 64}@{'b' * 63}.{'c' * 63}.abc.com"


def _signed(headers, body: bytes, secret: str = SECRET) -> bool:
    """The signature check a receiver does, written out here rather than taken from
    the code under test: HMAC-SHA256 of ``<timestamp>.<body>``."""
    stamp = headers["x-giga-timestamp"]
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-giga-signature"], f"v1={mac}")


def _sign(stamp: str, body: bytes, secret: str = SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), stamp.encode() + b"." + body,
                            hashlib.sha256).hexdigest()


def _set(sandbox, **fields):
    with sandbox.state.edit() as account:
        account.update({k: str(v) for k, v in fields.items()})


def _until(condition, seconds: float, what: str):
    """Wait for ``condition()`` to hold, checking every 0.1 s; fail naming ``what``."""
    stop = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > stop:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.1)


# -- the signature, the timestamp and the delivery id -----------------------------

@pytest.fixture
def signed_app(tmp_path, sandbox, receiver):
    return make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0",
                    ALERT_WEBHOOK_URL=receiver.url, ALERT_WEBHOOK_SECRET=SECRET,
                    ALERT_SEND_EVERY="3600")


def _two_alerts(app, sandbox):
    """The 50 % and the 80 % plan-credit alerts, each read on a page and delivered."""
    viewer = app.test_client()
    AuthActions(viewer).login("viewer")
    viewer.get("/billing")  # the plan list is read (and cached) once
    for left in ("40.00", "15.00"):
        _set(sandbox, planCreditsRemaining=left)
        viewer.get("/billing")
        deliver_all(app)


def test_the_signature_covers_the_timestamp_and_the_body(signed_app, sandbox, receiver):
    _two_alerts(signed_app, sandbox)
    assert len(receiver.received) == 2
    for headers, body in receiver.received:
        assert _signed(headers, body)
        assert abs(int(headers["x-giga-timestamp"]) - time.time()) < 60
        changed_body = body.replace(b'"rule":"plan credits"', b'"rule":"plan credit"')
        assert changed_body != body and not _signed(headers, changed_body)
        for moved in (-1, 1, 3600):
            stamp = str(int(headers["x-giga-timestamp"]) + moved)
            assert not _signed({**headers, "x-giga-timestamp": stamp}, body)
        assert json.loads(body)["delivery"] == headers["x-giga-delivery"]
    ids = [headers["x-giga-delivery"] for headers, _ in receiver.received]
    assert len(set(ids)) == 2 and all(len(i) >= 16 for i in ids)  # one per delivery


def _readme_verifier():
    """The README's Python snippet for checking a webhook, run as a reader would paste it."""
    readme = (ROOT / "README.md").read_text()
    alerts = readme[readme.index("### Alerts"):readme.index("### Metrics")]
    code, = re.findall(r"```python\n(.*?)\n\s*```", alerts, re.S)
    scope: dict = {}
    exec(compile(textwrap.dedent(code), "README.md", "exec"), scope)  # noqa: S102 -- ours
    return scope["verified"]


def test_the_readmes_snippet_accepts_a_real_delivery_and_refuses_a_changed_or_old_one(
        signed_app, sandbox, receiver):
    verified = _readme_verifier()
    _two_alerts(signed_app, sandbox)
    headers, body = receiver.received[0]
    headers = CaseInsensitiveDict(headers)
    assert verified(SECRET, headers, body)
    assert not verified("another-secret", headers, body)
    assert not verified(SECRET, headers, body + b" ")
    stale = str(int(time.time()) - 301)  # signed right, but older than five minutes
    assert not verified(SECRET, CaseInsensitiveDict(
        {**headers, "X-Giga-Timestamp": stale, "X-Giga-Signature": _sign(stale, body)}), body)
    recent = str(int(time.time()) - 200)
    assert verified(SECRET, CaseInsensitiveDict(
        {**headers, "X-Giga-Timestamp": recent, "X-Giga-Signature": _sign(recent, body)}), body)


def test_a_retry_carries_the_same_delivery_id_and_is_signed_again(signed_app, sandbox,
                                                                   receiver):
    receiver.status = 503
    viewer = signed_app.test_client()
    AuthActions(viewer).login("viewer")
    viewer.get("/billing")
    _set(sandbox, planCreditsRemaining="40.00")
    viewer.get("/billing")
    deliver_all(signed_app)
    receiver.status = 200
    deliver_all(signed_app, later=31)  # the retry, after its backoff
    (first, body1), (second, body2) = receiver.received
    assert first["x-giga-delivery"] == second["x-giga-delivery"]
    assert json.loads(body1)["delivery"] == json.loads(body2)["delivery"]
    assert _signed(first, body1) and _signed(second, body2)
    with signed_app.app_context():
        hook = AlertDelivery.query.one()
        assert (hook.status, hook.attempts) == ("sent", 2)


# -- a receiver that drips, one that answers 200 MB -------------------------------

def test_one_attempt_ends_by_its_deadline_however_slowly_the_answer_comes(tmp_path, sandbox):
    hook = DrippingReceiver(drips=1)
    try:
        app = make_app(tmp_path, SANDBOX=sandbox, ALERT_WEBHOOK_URL=hook.url,
                       ALERT_CLAIM_SECONDS="8", ALERT_SEND_EVERY="3600")
        admin = app.test_client()
        AuthActions(admin).login("admin")
        started = time.monotonic()
        assert admin.post("/alerts/test").status_code == 303
        deliver_all(app)
        with app.app_context():
            _until(lambda: AlertAttempt.query.count() == 1, 15, "the first attempt")
            attempt = AlertAttempt.query.one()
        took = time.monotonic() - started
        assert took < 2 + 4  # a quarter of the 8 s claim, and room (not the drip's 38 s)
        assert not attempt.ok and "did not answer within 2 s" in attempt.detail
        assert hook.wait_quiet(5)  # the sender hung up: the drip ended too
    finally:
        hook.close()


def test_a_long_batch_claims_each_delivery_from_when_it_is_taken(tmp_path, sandbox):
    """One process sends eight deliveries in a row to a receiver that drips (1 s each
    with 4 s claims); a second looks for due work when the first is on its seventh:
    that one's claim, taken 6 s into the batch, still stands."""
    hook = DrippingReceiver(drips=100)
    try:
        config = dict(SANDBOX=sandbox, ALERT_WEBHOOK_URL=hook.url, ALERT_CLAIM_SECONDS="4",
                      ALERT_SEND_EVERY="3600",
                      DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}")
        first, second = make_app(tmp_path, **config), make_app(tmp_path, **config)
        now = first.extensions["clock"].now()
        with first.app_context():
            for i in range(8):
                alert = Alert(key=f"batch#{i}", rule="test", title=f"Batch {i}", body="-",
                              figures='{"threshold": null}', fired_at=now)
                db.session.add(alert)
                db.session.flush()
                db.session.add(AlertDelivery(alert_id=alert.id, channel="webhook",
                                             target="127.0.0.1", next_attempt_at=now))
            db.session.commit()

        def batch():
            with first.app_context():
                deliver_due(first, first.extensions["clock"].now())
        sender = threading.Thread(target=batch)
        sender.start()
        assert hook.wait_received(7, 30)
        with second.app_context():
            deliver_due(second, second.extensions["clock"].now())
        sender.join(30)
        assert hook.wait_quiet(10)
        ids = [headers["x-giga-delivery"] for headers, _ in hook.received]
        assert len(ids) == 8 and len(set(ids)) == 8  # none sent twice
        with first.app_context():
            assert [d.attempts for d in AlertDelivery.query.order_by(AlertDelivery.id)] == [1] * 8
    finally:
        hook.close()


class PeakMemory:
    """The most this process's resident memory grew while it was watched (bytes)."""

    def __init__(self):
        self._stop = threading.Event()
        self._start = self._peak = self._resident()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @staticmethod
    def _resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def _watch(self):
        while not self._stop.wait(0.01):
            self._peak = max(self._peak, self._resident())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self._peak - self._start


@pytest.mark.parametrize("status", [200, 500])
def test_a_huge_answer_is_not_read_and_memory_stays_flat(tmp_path, sandbox, status):
    hook = HugeAnswerReceiver(200 << 20, status=status)
    try:
        app = make_app(tmp_path, SANDBOX=sandbox, ALERT_WEBHOOK_URL=hook.url,
                       ALERT_SEND_EVERY="3600")
        admin = app.test_client()
        AuthActions(admin).login("admin")
        with PeakMemory() as memory:
            assert admin.post("/alerts/test").status_code == 303
            deliver_all(app)
            assert hook.wait_quiet(20)
        # what loopback's socket buffers hold, and far from the 200 MB on offer
        assert hook.bytes_written < 16 << 20
        assert memory.growth < 64 << 20
        with app.app_context():
            hook_row = AlertDelivery.query.one()
        if status == 200:
            assert hook_row.status == "sent"
        else:
            assert hook_row.status == "pending"
            assert hook_row.last_error.startswith("the webhook answered HTTP 500: xxxx")
            assert len(hook_row.last_error) < 300
    finally:
        hook.close()


# -- real processes: claims taken over, a sender killed ---------------------------

def _environment(tmp_path, sandbox, url, **more) -> dict:
    """A deployment against the sandbox's API (as with a real key), on one SQLite file,
    with one admin who can press "Send test alert"."""
    env = {"GIGA_API_URL": sandbox.url, "GIGA_API_KEY": sandbox.api_key,
           "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'dashboard.db'}",
           "ALERT_WEBHOOK_URL": url, "ALERT_WEBHOOK_SECRET": SECRET, "SMTP_URL": "",
           "ALERT_SEND_EVERY": "1", "ALERT_RETRY_SECONDS": "1", "ALERT_CLAIM_SECONDS": "4",
           "BILLING_CACHE_TTL": "0", "REDIS_URL": "", **more}
    app = make_app(tmp_path, **{k: env[k] for k in ("GIGA_API_URL", "GIGA_API_KEY",
                                                     "DATABASE_URL")})
    with app.app_context():
        create_user("hooks@example.com", "admin", PASSWORD)
    return env, app


def _press_send_test(base: str) -> None:
    """Sign in as the admin and press "Send test alert", as in a browser."""
    with requests.Session() as browser:
        page = browser.get(base + "/signin", timeout=10).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        browser.post(base + "/signin", data={"email": "hooks@example.com",
                                             "password": PASSWORD, "csrf_token": token},
                     timeout=10)
        page = browser.get(base + "/alerts", timeout=10).text
        token = re.search(r'action="/alerts/test"><input name="csrf_token" type="hidden" '
                          r'value="([^"]+)"', page).group(1)
        resp = browser.post(base + "/alerts/test", data={"csrf_token": token},
                            allow_redirects=False, timeout=10)
        assert resp.status_code == 303, resp.text


def _delivery(app) -> AlertDelivery:
    with app.app_context():
        db.session.expire_all()
        row = AlertDelivery.query.one()
        db.session.expunge(row)
        return row


def _attempts(app) -> list[tuple[bool, str]]:
    with app.app_context():
        return [(a.ok, a.detail) for a in AlertAttempt.query.order_by(AlertAttempt.id)]


@pytest.mark.slow
def test_a_dripping_receiver_has_one_attempt_in_flight_and_gets_the_alert_once(
        tmp_path, sandbox):
    """Two servers send every second with 4 s claims; the receiver drips its first two
    answers (each would take 38 s), then answers at once."""
    hook = DrippingReceiver(drips=2)
    servers: list[Gunicorn] = []
    try:
        env, app = _environment(tmp_path, sandbox, hook.url)
        for _ in range(2):
            servers.append(Gunicorn(env, tmp_path / "gunicorn.log"))
        _press_send_test(servers[0].base)
        _until(lambda: _delivery(app).status == "sent", 60, "the delivery")
        assert hook.wait_quiet(45), "a drip is still being answered"
        assert hook.most_in_flight == 1  # never a second attempt while one was out
        assert len(hook.received) == 3
        assert len({h["x-giga-delivery"] for h, _ in hook.received}) == 1
        assert _delivery(app).attempts == 3
        attempts = _attempts(app)
        assert [ok for ok, _ in attempts] == [False, False, True]
        assert all("did not answer within 1 s" in detail for _, detail in attempts[:2])
    finally:
        for server in servers:
            server.stop()
        hook.close()


@pytest.mark.slow
def test_a_sender_killed_mid_send_sends_again_with_the_same_delivery_id(tmp_path, sandbox):
    """At-least-once, as the README says: the receiver had the request when its sender
    died, so it gets it again from the process that takes the claim over, and tells
    the two apart from two alerts by the delivery id."""
    hook = WebhookReceiver()
    hook.hold = 1  # the first request is still being handled when its sender dies
    server = None
    try:
        # an attempt may last 2 s: time enough to kill its sender in the middle of it
        env, app = _environment(tmp_path, sandbox, hook.url, ALERT_CLAIM_SECONDS="8")
        _set(sandbox, planCreditsRemaining="45")  # 55 % used
        poller = flask_started(env, "billing", "poll", "--every", "60")
        held = hook.holding.wait(60)
        os.killpg(poller.pid, signal.SIGKILL)
        out, err = poller.communicate(timeout=10)
        assert held, f"the poller sent nothing: {out} {err}"
        assert _delivery(app).status == "pending"
        server = Gunicorn(env, tmp_path / "gunicorn.log")  # takes the claim over when it ends
        _until(lambda: _delivery(app).status == "sent", 30, "the second delivery")
        hook.release.set()
        (first, body1), (second, body2) = hook.received
        assert first["x-giga-delivery"] == second["x-giga-delivery"]
        assert json.loads(body1)["delivery"] == json.loads(body2)["delivery"] \
            == first["x-giga-delivery"]
        assert json.loads(body1)["title"] == "50% of this period's plan credits used"
        assert _signed(first, body1) and _signed(second, body2)
        assert _delivery(app).attempts == 1  # the killed attempt was never recorded
    finally:
        if server is not None:
            server.stop()
        hook.close()


# -- the try-it receiver ------------------------------------------------------------

@pytest.mark.slow
def test_the_try_it_receiver_checks_signature_and_time_and_drops_repeats(tmp_path):
    port = closed_port()
    proc = subprocess.Popen([sys.executable, "-m", "webapp.alerts.receiver", "--port",
                             str(port)], cwd=ROOT, env={**os.environ,
                                                         "ALERT_WEBHOOK_SECRET": SECRET},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Listening on" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/hook"

        def post(body: bytes, delivery: str, stamp: int, signature=None) -> int:
            stamp = str(stamp)
            return requests.post(url, data=body, timeout=5, headers={
                "X-Giga-Delivery": delivery, "X-Giga-Timestamp": stamp,
                "X-Giga-Signature": signature or _sign(stamp, body)}).status_code

        now = int(time.time())
        first = json.dumps({"text": "first alert", "delivery": "d-1"}).encode()
        assert post(first, "d-1", now) == 204
        assert post(first, "d-1", now + 1) == 204  # the same delivery sent again: ok, dropped
        assert post(b'{"text": "forged"}', "d-2", now, signature=_sign(str(now), first)) == 401
        old = json.dumps({"text": "replayed", "delivery": "d-3"}).encode()
        assert post(old, "d-3", now - 600) == 401
        second = json.dumps({"text": "second alert", "delivery": "d-4"}).encode()
        assert post(second, "d-4", now) == 204
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    lines = out.splitlines()
    assert sum("first alert" in line for line in lines) == 1
    assert any("repeat of delivery d-1" in line for line in lines)
    assert any("signature does not match" in line.lower() for line in lines)
    assert any("timestamp" in line.lower() and "old" in line.lower() for line in lines)
    assert "forged" not in out and "replayed" not in out
    assert any("second alert" in line and "signature ok" in line for line in lines)


# -- "Send test alert" by an admin with a long address ----------------------------

@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_send_test_alert_by_an_admin_with_a_200_character_email(tmp_path, sandbox, receiver,
                                                                database):
    assert len(LONG_EMAIL) == 200
    url = (emptied_postgres() if database == "postgresql"
           else f"sqlite:///{tmp_path / 'long.db'}")
    app = make_app(tmp_path, SANDBOX=sandbox, DATABASE_URL=url,
                   ALERT_WEBHOOK_URL=receiver.url, ALERT_SEND_EVERY="3600")
    with app.app_context():
        user_id = create_user(LONG_EMAIL, "admin", PASSWORD).id
    admin = app.test_client()
    assert AuthActions(admin).login(LONG_EMAIL, password=PASSWORD).status_code == 302
    assert admin.post("/alerts/test").status_code == 303
    deliver_all(app)
    assert len(receiver.received) == 1
    assert LONG_EMAIL in json.loads(receiver.received[0][1])["text"]  # says who sent it
    with app.app_context():
        alert = Alert.query.one()
        assert LONG_EMAIL not in alert.key and alert.key.endswith(f"#{user_id}")
    assert "webhook 127.0.0.1: sent" in admin.get("/alerts").get_data(as_text=True)
