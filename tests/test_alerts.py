"""Alerts: a real SMTP server and a real webhook receiver on loopback, the sandbox's
balance moved across each threshold."""
import hashlib
import hmac
import json
import threading
import time

import pytest

from webapp.models import Alert, AlertAttempt, AlertDelivery
from webapp.settings import ConfigError, load_settings
from webapp.services.users import create_user

from .conftest import AuthActions, deliver_all, make_app

SECRET = "whsec-test-secret"


@pytest.fixture
def alert_app(tmp_path, sandbox, mailbox, receiver):
    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0", SMTP_URL=mailbox.url,
                   ALERT_WEBHOOK_URL=receiver.url, ALERT_WEBHOOK_SECRET=SECRET,
                   PUBLIC_URL="https://billing.example.com", ALERT_SEND_EVERY="3600")
    with app.app_context():
        create_user("money@example.com", "finance", "a-long-password-1")
    return app


@pytest.fixture
def viewer(alert_app):
    client = alert_app.test_client()
    AuthActions(client).login("viewer")
    client.get("/billing")  # the plan list is read (and cached) once
    return client


def _set(sandbox, **fields):
    with sandbox.state.edit() as account:
        account.update({k: str(v) for k, v in fields.items()})


def _read_and_deliver(app, client, later=0):
    """A page view (a fresh reading), then whatever is due is delivered."""
    client.get("/billing")
    deliver_all(app, later)


def test_each_crossing_sends_one_email_and_one_webhook(alert_app, viewer, sandbox, mailbox,
                                                       receiver):
    _set(sandbox, planCreditsRemaining="40.00")  # 60 % used
    _read_and_deliver(alert_app, viewer)
    assert len(mailbox.messages) == 1 and len(receiver.received) == 1
    mail = mailbox.messages[0]
    assert mail["Subject"] == "WithGiga billing: 50% of this period's plan credits used"
    assert mail["To"] == "money@example.com"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "$40.00" in text and "https://billing.example.com" in text and "<h1>" in html
    assert "At the current pace ($" in text and "the balance runs out around" in text
    doc = json.loads(receiver.received[0][1])
    assert doc["text"].startswith("WithGiga billing: 50%") and doc["rule"] == "plan credits"
    assert doc["threshold"] == "50" and doc["figures"]["planCreditsRemaining"] == "40.00"

    _read_and_deliver(alert_app, viewer)  # the next reading: nothing new
    assert len(mailbox.messages) == 1 and len(receiver.received) == 1

    _set(sandbox, planCreditsRemaining="15.00")  # 85 %: the 80 % alert
    _read_and_deliver(alert_app, viewer)
    _set(sandbox, planCreditsRemaining="0")  # 100 %
    _read_and_deliver(alert_app, viewer)
    subjects = [m["Subject"].split(": ", 1)[1] for m in mailbox.messages]
    assert subjects == ["50% of this period's plan credits used",
                        "80% of this period's plan credits used",
                        "100% of this period's plan credits used"]
    assert len(receiver.received) == 3


def test_a_new_period_rearms_the_plan_credit_alerts(alert_app, viewer, sandbox, mailbox):
    _set(sandbox, planCreditsRemaining="45.00")
    _read_and_deliver(alert_app, viewer)
    with sandbox.state.edit() as account:  # the next period: credits granted again
        account["periodStart"], account["periodEnd"] = "2099-01-01T00:00:00.000Z", \
            "2099-01-31T00:00:00.000Z"
        account["planCreditsRemaining"] = "100"
    _read_and_deliver(alert_app, viewer)
    assert len(mailbox.messages) == 1
    _set(sandbox, planCreditsRemaining="45.00")
    _read_and_deliver(alert_app, viewer)
    assert len(mailbox.messages) == 2


def test_balance_below_fires_once_rearms_after_a_top_up_and_fires_again(
        alert_app, sandbox, mailbox, receiver):
    admin = alert_app.test_client()
    AuthActions(admin).login("admin")
    resp = admin.post("/alerts", data={"balance_below": "100", "email_roles": ["finance"],
                                       "extra_emails": "ops@example.com"})
    assert resp.status_code == 303
    admin.get("/billing")
    _set(sandbox, planCreditsRemaining="74.50", prepaidBalance="10.00")  # total 84.50
    _read_and_deliver(alert_app, admin)
    below = [m for m in mailbox.messages if "below" in m["Subject"]]
    assert {m["To"] for m in below} == {"money@example.com", "ops@example.com"}
    _read_and_deliver(alert_app, admin)
    _set(sandbox, prepaidBalance="60.00")  # a top-up: recovered
    _read_and_deliver(alert_app, admin)
    _set(sandbox, prepaidBalance="5.00")  # crossed again
    _read_and_deliver(alert_app, admin)
    below = [m for m in mailbox.messages if "below" in m["Subject"]]
    assert len(below) == 4  # two crossings, two addresses each
    assert sum(1 for _, body in receiver.received if b"below" in body) == 2


def test_the_webhook_is_signed_with_its_timestamp(alert_app, viewer, sandbox, receiver):
    _set(sandbox, planCreditsRemaining="40.00")
    _read_and_deliver(alert_app, viewer)
    headers, body = receiver.received[0]
    signed = headers["x-giga-timestamp"].encode() + b"." + body
    expected = "v1=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["x-giga-signature"] == expected
    assert headers["content-type"] == "application/json"


def test_nothing_is_lost_when_the_receiver_was_down(alert_app, viewer, sandbox, receiver,
                                                    mailbox):
    receiver.stop()
    _set(sandbox, planCreditsRemaining="40.00")
    _read_and_deliver(alert_app, viewer)
    with alert_app.app_context():
        hook = AlertDelivery.query.filter_by(channel="webhook").one()
        assert (hook.status, hook.attempts) == ("pending", 1) and "reach" in hook.last_error
    receiver.start()
    _read_and_deliver(alert_app, viewer, later=10)  # not due yet: backoff
    assert receiver.received == []
    _read_and_deliver(alert_app, viewer, later=31)
    assert len(receiver.received) == 1 and len(mailbox.messages) == 1
    _read_and_deliver(alert_app, viewer, later=3600)  # sent once, never again
    assert len(receiver.received) == 1
    with alert_app.app_context():
        attempts = AlertAttempt.query.order_by(AlertAttempt.id).all()
        assert [a.ok for a in attempts if a.delivery_id == hook.id] == [False, True]


def test_redirects_are_not_followed(alert_app, viewer, sandbox, receiver):
    receiver.status = 302
    _set(sandbox, planCreditsRemaining="40.00")
    _read_and_deliver(alert_app, viewer)
    assert len(receiver.received) == 1
    with alert_app.app_context():
        assert "HTTP 302" in AlertDelivery.query.filter_by(channel="webhook").one().last_error


@pytest.mark.parametrize("url,ok", [
    ("https://hooks.slack.com/services/T/B/X", True), ("http://127.0.0.1:9000/hook", True),
    ("http://localhost/hook", True), ("http://hooks.example.com/hook", False),
    ("http://10.0.0.5/hook", False), ("ftp://127.0.0.1/hook", False), ("https://", False)])
def test_webhook_urls_must_be_https_except_loopback(url, ok):
    env = {"GIGA_API_KEY": "k", "ALERT_WEBHOOK_URL": url}
    if ok:
        assert load_settings(env, {"TESTING": True})["ALERT_WEBHOOK_URL"] == url
    else:
        with pytest.raises(ConfigError, match="ALERT_WEBHOOK_URL"):
            load_settings(env, {"TESTING": True})


def test_several_processes_fire_exactly_once(tmp_path, sandbox, mailbox, receiver):
    """Four apps (as four processes) on one database evaluate the same crossing at once."""
    config = dict(SANDBOX=sandbox, SMTP_URL=mailbox.url, ALERT_WEBHOOK_URL=receiver.url,
                  ALERT_SEND_EVERY="3600", DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}")
    apps = [make_app(tmp_path, **config) for _ in range(4)]
    from webapp.services.alerting.deliveries import evaluate
    from webapp.giga.client import parse_billing

    for app in apps:  # each knows the plan list
        with app.app_context():
            app.extensions["giga_gateway"].plans(app.extensions["clock"].monotonic() + 3)
    _set(sandbox, planCreditsRemaining="10.00")
    billing = parse_billing({"billing": sandbox.state.billing()})
    fired = []

    def run(app):
        with app.app_context():
            fired.extend(evaluate(app, billing, app.extensions["clock"].now()))
    threads = [threading.Thread(target=run, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with apps[0].app_context():
        assert sorted(a.title for a in Alert.query.all()) == [
            "50% of this period's plan credits used", "80% of this period's plan credits used"]


def test_send_test_alert_from_the_page(alert_app, mailbox, receiver):
    admin = alert_app.test_client()
    AuthActions(admin).login("admin")
    assert admin.post("/alerts/test").status_code == 303
    deliver_all(alert_app)
    assert mailbox.messages[0]["Subject"] == "WithGiga billing: Test alert"
    assert len(receiver.received) == 1
    page = admin.get("/alerts").get_data(as_text=True)
    assert "Test alert" in page and "webhook 127.0.0.1: sent" in page
    again = admin.post("/alerts/test")
    assert again.status_code == 429  # one a minute: a button cannot flood an inbox


@pytest.mark.parametrize("role,sees,edits", [("viewer", False, False),
                                             ("finance", True, False), ("admin", True, True)])
def test_only_admins_edit_alerts_finance_sees_them(alert_app, role, sees, edits):
    client = alert_app.test_client()
    AuthActions(client).login(role)
    page = client.get("/alerts")
    assert page.status_code == (200 if sees else 403)
    if sees:
        assert ("Save alert rules" in page.get_data(as_text=True)) is edits
    saved = client.post("/alerts", data={"balance_below": "55"})
    assert saved.status_code == (303 if edits else 403)
    assert client.post("/alerts/test").status_code in ((303,) if edits else (403,))


@pytest.mark.parametrize("field,value,message", [
    ("balance_below", "abc", "Enter"), ("balance_below", "-5", "positive"),
    ("runs_out_within_days", "0", "1 to 365"), ("extra_emails", "not-an-email", "not an email")])
def test_bad_rule_input_is_refused_by_the_field(alert_app, field, value, message):
    client = alert_app.test_client()
    AuthActions(client).login("admin")
    resp = client.post("/alerts", data={field: value})
    assert resp.status_code == 422 and message in resp.get_data(as_text=True)
    with alert_app.app_context():
        from webapp.services.alerting.rules import settings
        assert settings().balance_below is None


def test_no_channel_no_alerts(client, auth, sandbox, app):
    auth.login("admin")
    _set(sandbox, planCreditsRemaining="1.00")
    client.get("/billing")
    app.extensions["giga_gateway"].forget_billing()
    client.get("/billing")
    with app.app_context():
        assert Alert.query.count() == 0
    assert "No channel is configured" in client.get("/alerts").get_data(as_text=True)


def test_a_page_never_waits_for_a_slow_receiver(tmp_path, sandbox, receiver):
    receiver.delay = 4
    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0",
                   ALERT_WEBHOOK_URL=receiver.url, ALERT_SEND_EVERY="1")
    client = app.test_client()
    AuthActions(client).login("viewer")
    client.get("/billing")
    _set(sandbox, planCreditsRemaining="40.00")
    started = time.monotonic()
    assert client.get("/billing").status_code == 200
    assert time.monotonic() - started < 2  # the alert is queued, its delivery is not awaited
    deadline = time.monotonic() + 10
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.received) == 1  # the sender thread delivered it meanwhile


def test_without_the_plan_list_the_other_rules_still_run_and_it_is_said_once(
        tmp_path, fault_server, receiver, caplog):
    from .support.faultserver import BILLING, error, healthy, ok

    billing = {"billing": {**BILLING["billing"], "planCreditsRemaining": 40.00}}
    plans_up = {"yes": False}

    def handler(method, path, body):
        if path == "/api/billing/plans" and not plans_up["yes"]:
            return error(500, "INTERNAL_ERROR")
        return ok(billing) if path == "/api/billing" else healthy(method, path, body)
    fault_server.handler = handler
    app = make_app(tmp_path, GIGA_API_URL=fault_server.url, GIGA_API_KEY="giga_sk_test_fault",
                   BILLING_CACHE_TTL="0", UPSTREAM_GET_RETRIES="0", BREAKER_THRESHOLD="100",
                   ALERT_WEBHOOK_URL=receiver.url, ALERT_BALANCE_BELOW="200",
                   ALERT_POLL_WAIT="5")
    runner = app.test_cli_runner()
    with caplog.at_level("WARNING", logger="webapp.services.alerting.deliveries"):
        assert runner.invoke(args=["billing", "poll"]).exit_code == 0
        assert runner.invoke(args=["billing", "poll"]).exit_code == 0
    titles = [json.loads(body)["title"] for _, body in receiver.received]
    assert titles == ["Balance below $200.00"]  # 60 % used, but no plan list to tell
    said = [r for r in caplog.records if "plan list could not be read" in r.getMessage()]
    assert len(said) == 1

    plans_up["yes"] = True  # the next reading has it: the 50 % rule fires then
    assert runner.invoke(args=["billing", "poll"]).exit_code == 0
    titles = [json.loads(body)["title"] for _, body in receiver.received]
    assert titles == ["Balance below $200.00", "50% of this period's plan credits used"]


def test_saving_the_rules_is_on_the_audit_trail_who_from_and_to(alert_app):
    from webapp.models import AuditEntry
    admin = alert_app.test_client()
    AuthActions(admin).login("admin")
    assert admin.post("/alerts", data={"balance_below": "100", "runs_out_within_days": "30",
                                       "email_roles": ["finance"],
                                       "extra_emails": "ops@example.com"}).status_code == 303
    with alert_app.app_context():
        row = AuditEntry.query.filter_by(action="alert rules saved").one()
    assert (row.user_email, row.user_role, row.outcome) == ("admin@demo.test", "admin", "done")
    assert row.detail == ("from: no balance rule; no run-out rule; email finance, admin → to: "
                          "below $100.00; runs out within 30 days; email finance; "
                          "also ops@example.com")
    trail = admin.get("/audit?action=alert+rules+saved").get_data(as_text=True)
    assert "below $100.00; runs out within 30 days" in trail


@pytest.mark.parametrize("addresses, message", [
    ("ops\x00@example.com", "is not an email address"),
    ("ops@exam\x1bple.com", "is not an email address"),
    ("\n".join(f"{'a' * 90}{i}@example.com" for i in range(20)), "more than 2,000 characters"),
])
def test_addresses_with_control_characters_or_beyond_the_column_are_refused(
        alert_app, addresses, message):
    admin = alert_app.test_client()
    AuthActions(admin).login("admin")
    resp = admin.post("/alerts", data={"email_roles": ["finance"], "extra_emails": addresses})
    assert resp.status_code == 422 and message in resp.get_data(as_text=True)
    with alert_app.app_context():
        from webapp.services.alerting.rules import settings
        assert settings().extra_emails == ""


def test_without_a_mail_server_email_is_shown_off_and_kept(tmp_path, sandbox, receiver):
    app = make_app(tmp_path, SANDBOX=sandbox, ALERT_WEBHOOK_URL=receiver.url)
    admin = app.test_client()
    AuthActions(admin).login("admin")
    page = admin.get("/alerts").get_data(as_text=True)
    assert '<fieldset class="field" disabled aria-describedby="email-off">' in page
    assert "Email is off: no mail server is set" in page
    resp = admin.post("/alerts", data={"balance_below": "10", "email_roles": ["viewer"],
                                       "extra_emails": "x@example.com"}, follow_redirects=True)
    text = resp.get_data(as_text=True)
    assert "Alert rules saved." in text and "Email is off (no SMTP_URL)" in text
    with app.app_context():
        from webapp.services.alerting.rules import settings
        rules = settings()
        assert (rules.email_roles, rules.extra_emails) == ("finance,admin", "")
        assert rules.balance_below == 10


def test_the_test_alert_limit_page_leads_back_to_alerts(alert_app):
    admin = alert_app.test_client()
    AuthActions(admin).login("admin")
    assert admin.post("/alerts/test").status_code == 303
    refused = admin.post("/alerts/test")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 429
    assert 'href="/alerts">Back to Alerts</a>' in html and "Back to billing" not in html


def _said(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line.startswith("no alert")]


def test_a_poll_that_fires_nothing_says_why_in_one_line(tmp_path, sandbox, receiver):
    """The README's walkthrough after a plan change (Pro: 500 credits a period): spending
    30 crosses nothing, and the poll says so and why -- with what the admin's rules saw
    -- where it used to say nothing; once a rule has fired, that it fired already."""
    from decimal import Decimal

    app = make_app(tmp_path, SANDBOX=sandbox, ALERT_WEBHOOK_URL=receiver.url,
                   ALERT_BALANCE_BELOW="100", ALERT_RUNS_OUT_DAYS="30", ALERT_POLL_WAIT="5",
                   BILLING_CACHE_TTL="0")
    runner = app.test_cli_runner()
    _set(sandbox, plan="pro", planCreditsRemaining="500")
    sandbox.state.spend(Decimal(30))
    line, = _said(runner.invoke(args=["billing", "poll"]))
    assert line.startswith("no alert fired: 6% of this period's $500.00 plan credits used; "
                           "the next built-in alert is at 50%; ")
    assert "the total balance $520.00 is not below the $100.00 alert" in line
    assert "30-day alert" in line or "30 days the alert looks ahead" in line
    assert receiver.received == []

    sandbox.state.spend(Decimal(250))  # 56 %: the 50 % alert fires, and says so
    fired = runner.invoke(args=["billing", "poll"])
    assert "alert sent: 50% of this period's plan credits used" in fired.output
    assert _said(fired) == []
    line, = _said(runner.invoke(args=["billing", "poll"]))
    assert line.startswith("no alert fired: 56% of this period's $500.00 plan credits used: "
                           "the 50% alert fired already; the next is at 80%; ")


def test_a_poll_without_an_alert_channel_says_so_plainly(runner, sandbox):
    line, = _said(runner.invoke(args=["billing", "poll"]))
    assert line.startswith("no alert checked: no alert channel is configured")
    assert "ALERT_WEBHOOK_URL" in line and "SMTP_URL" in line
