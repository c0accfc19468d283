"""Top-up and plan change end in a 303 to an allowed checkout, exactly once."""
import re
import threading
import time

import pytest

from webapp.models import AuditEntry
from webapp.checks import checkout_url_allowed

from .support.net import closed_port
from .support.faultserver import Hang, Reset, error, healthy, ok

HOSTS = ("checkout.stripe.com",)


@pytest.mark.parametrize("url", [
    "https://checkout.stripe.com/c/pay/cs_test_1",
    "https://checkout.stripe.com:443/c/pay/cs_test_1",
    "https://CHECKOUT.STRIPE.COM/pay",
])
def test_allowlist_accepts_the_real_checkout(url):
    assert checkout_url_allowed(url, HOSTS)


@pytest.mark.parametrize("url", [
    "http://checkout.stripe.com/c/pay",               # not https
    "https://checkout.stripe.com.evil.example/pay",   # look-alike suffix
    "https://evilcheckout.stripe.com/pay",
    "https://checkout.stripe.com@evil.example/pay",   # userinfo
    "https://user:pw@checkout.stripe.com/pay",
    "https://evil.example\\@checkout.stripe.com/",    # backslash trick
    "https://evil.example\\checkout.stripe.com/",
    "https://checkout.stripe.com:8443/pay",           # other port
    "https://checkout.stripe.com:/pay",
    "https://checkout.stripe.com:99999/pay",
    "javascript:alert(1)//checkout.stripe.com",
    "//checkout.stripe.com/pay",                      # scheme-relative
    "/billing",
    "https://checkout.stripe.com./pay",               # trailing dot is another name
    "https://checkout.stripe.com\t.evil/pay",
    " https://checkout.stripe.com/pay",
    "https://xn--checkout-stripe.com/pay",
    "data:text/html,checkout.stripe.com",
    "", None, 42,
])
def test_allowlist_refuses_everything_else(url):
    assert not checkout_url_allowed(url, HOSTS)


def test_sandbox_origin_is_allowed_only_exactly():
    origins = ("http://127.0.0.1:5001",)
    assert checkout_url_allowed("http://127.0.0.1:5001/checkout/x", HOSTS, origins)
    assert not checkout_url_allowed("http://127.0.0.1:5002/checkout/x", HOSTS, origins)
    assert not checkout_url_allowed("http://127.0.0.1:5001/checkout/x", HOSTS)


def test_top_up_redirects_to_checkout_and_paying_adds_prepaid(client, auth, sandbox):
    auth.login("finance")
    resp = client.post("/billing/topup", data={"amount": "25.75", "nonce": "t" * 24})
    assert resp.status_code == 303
    location = resp.headers["Location"]
    assert location.startswith(sandbox.url + "/checkout/cs_test_")
    page = sandbox.app.test_client().get(location[len(sandbox.url):]).get_data(as_text=True)
    assert "$25.75" in page and "Pay" in page
    sandbox.state.settle(location.rsplit("/", 1)[1], pay=True)
    html = client.get("/billing?checkout=success").get_data(as_text=True)
    assert 'id="prepaid-balance">$75.75' in html


def test_plan_change_confirms_then_redirects(client, auth, sandbox):
    auth.login("admin")
    page = client.get("/billing/plans/pro").get_data(as_text=True)
    assert "Upgrade to Pro?" in page
    for fact in ("$29.00", "$99.00", "100", "500", "5", "20", "8", "12"):
        assert fact in page
    assert "upgrade" in page
    down = client.get("/billing/plans/free").get_data(as_text=True)
    assert "Downgrade to Free?" in down and "downgrade" in down
    resp = client.post("/billing/plans/pro", data={"nonce": "p" * 24})
    assert resp.status_code == 303 and "/checkout/" in resp.headers["Location"]
    sandbox.state.settle(resp.headers["Location"].rsplit("/", 1)[1], pay=True)
    html = client.get("/billing?checkout=success").get_data(as_text=True)
    current = html.split('class="plan plan-current"')[1].split("</li>")[0]
    assert "<h3>Pro</h3>" in current
    assert "$500.00 <span class=\"of\">of $500.00</span>" in html


def test_custom_plan_has_no_checkout(client, auth, sandbox):
    auth.login("admin")
    resp = client.get("/billing/plans/max")
    assert resp.status_code == 400 and "Contact sales" in resp.get_data(as_text=True)
    resp = client.post("/billing/plans/max", data={"nonce": "m" * 24})
    assert resp.status_code == 400
    assert sandbox.api_calls("/api/billing/subscribe") == 0


def test_current_and_unknown_plans(client, auth, sandbox):
    auth.login("admin")
    assert client.get("/billing/plans/starter-pro").status_code == 400
    assert client.get("/billing/plans/nope").status_code == 404
    assert sandbox.api_calls("/api/billing/subscribe") == 0


def test_disallowed_checkout_host_is_refused_logged_and_recorded(fault_server, fault_client,
                                                                  fault_app, caplog):
    fault_server.handler = lambda m, p, b: (ok({"checkoutUrl": "https://checkout.stripe.com.evil.example/x"})
                                             if p.endswith("recharge") else healthy(m, p, b))
    resp = fault_client.post("/billing/topup", data={"amount": "50", "nonce": "e" * 24})
    assert resp.status_code == 502
    assert "not sent there" in resp.get_data(as_text=True) or "not on this dashboard" in resp.get_data(as_text=True)
    assert "Location" not in resp.headers
    assert any("refused checkout redirect" in r.message for r in caplog.records)
    with fault_app.app_context():
        entry = AuditEntry.query.filter_by(action="top-up").one()
        assert entry.outcome == "refused: checkout host not allowed"


def test_stripe_checkout_is_followed_with_a_real_key(fault_server, fault_client):
    resp = fault_client.post("/billing/topup", data={"amount": "50", "nonce": "s" * 24})
    assert resp.status_code == 303
    assert resp.headers["Location"] == "https://checkout.stripe.com/c/pay/cs_test_123"


def test_sandbox_checkout_host_is_not_allowed_outside_sandbox_mode(fault_server, fault_client,
                                                                     sandbox):
    fault_server.handler = lambda m, p, b: (ok({"checkoutUrl": sandbox.url + "/checkout/x"})
                                             if p.endswith("recharge") else healthy(m, p, b))
    resp = fault_client.post("/billing/topup", data={"amount": "50", "nonce": "x" * 24})
    assert resp.status_code == 502


# -- CSRF ----------------------------------------------------------------------------

def _csrf_login(client):
    html = client.get("/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    client.post("/signin", data={"email": "finance@demo.test", "password": "demo",
                                 "csrf_token": token})


def test_post_without_csrf_token_is_refused_and_reaches_nothing(csrf_app, sandbox):
    client = csrf_app.test_client()
    _csrf_login(client)
    assert client.get("/billing").status_code == 200
    resp = client.post("/billing/topup", data={"amount": "50", "nonce": "c" * 24})
    assert resp.status_code == 400
    assert "form has expired" in resp.get_data(as_text=True)
    assert sandbox.api_calls("/api/billing/recharge") == 0


def test_post_with_csrf_token_goes_through(csrf_app, sandbox):
    client = csrf_app.test_client()
    _csrf_login(client)
    html = client.get("/billing").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    nonce = re.search(r'name="nonce" type="hidden" value="([^"]+)"', html).group(1)
    resp = client.post("/billing/topup", data={"amount": "50", "nonce": nonce,
                                               "csrf_token": token})
    assert resp.status_code == 303


def test_sign_in_without_token_is_refused(csrf_app):
    resp = csrf_app.test_client().post("/signin", data={"email": "finance@demo.test",
                                                        "password": "demo"})
    assert resp.status_code == 400


# -- exactly once -----------------------------------------------------------------------

def test_replayed_form_starts_no_second_checkout(client, auth, sandbox):
    auth.login("finance")
    first = client.post("/billing/topup", data={"amount": "50", "nonce": "r" * 24})
    second = client.post("/billing/topup", data={"amount": "50", "nonce": "r" * 24})
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert sandbox.api_calls("/api/billing/recharge") == 1


def test_double_click_while_in_flight_starts_one_checkout(fault_server, fault_app):
    started = threading.Event()

    def slow(method, path, body):
        if path.endswith("recharge"):
            started.set()
            time.sleep(0.8)
        return healthy(method, path, body)
    fault_server.handler = slow
    results = []

    def click():
        c = fault_app.test_client()
        c.post("/signin", data={"email": "finance@example.com", "password": "correct-horse-battery"})
        results.append(c.post("/billing/topup", data={"amount": "50", "nonce": "d" * 24}))
    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fault_server.count("/api/billing/recharge") == 1
    assert sorted(r.status_code for r in results) == [303, 303]


def test_timeout_on_post_is_status_unknown_and_not_retried(fault_server, fault_client, fault_app):
    fault_server.handler = lambda m, p, b: Hang(6) if p.endswith("recharge") else healthy(m, p, b)
    started = time.monotonic()
    resp = fault_client.post("/billing/topup", data={"amount": "50", "nonce": "u" * 24})
    assert time.monotonic() - started < 5
    html = resp.get_data(as_text=True)
    assert resp.status_code == 504 and "Check your balance before trying again" in html
    assert fault_server.count("/api/billing/recharge") == 1
    with fault_app.app_context():
        assert AuditEntry.query.filter_by(action="top-up").one().outcome == "status unknown: timeout"


def test_reset_on_post_is_status_unknown_and_not_retried(fault_server, fault_client):
    fault_server.handler = lambda m, p, b: Reset() if p.endswith("recharge") else healthy(m, p, b)
    resp = fault_client.post("/billing/topup", data={"amount": "50", "nonce": "v" * 24})
    assert resp.status_code == 504
    assert fault_server.count("/api/billing/recharge") == 1


def test_refused_post_is_retried_once_because_it_never_left():
    """A POST whose connection was refused provably never left; one retry is safe."""
    import requests

    from webapp.gateway import BillingGateway, MemoryStore
    from webapp.giga import ConnectionFailed, GigaClient

    class CountingSession(requests.Session):
        attempts = 0

        def request(self, *args, **kwargs):
            CountingSession.attempts += 1
            return super().request(*args, **kwargs)
    client = GigaClient(f"http://127.0.0.1:{closed_port()}", "k", session=CountingSession())
    gw = BillingGateway(client, MemoryStore())
    with pytest.raises(ConnectionFailed) as info:
        gw.top_up(__import__("decimal").Decimal(5), time.monotonic() + 5)
    assert info.value.never_sent and CountingSession.attempts == 2


def test_typos_do_not_use_up_the_checkout_limit(client, auth, sandbox, app):
    """Two top-ups, three mistyped amounts, then three more top-ups: all five go to
    checkout; the typos are on the trail, and only a flood of them meets a 429."""
    auth.login("finance")
    codes = []
    for i, amount in enumerate(["10", "1O", "10", "ten", "-5", "10", "10", "10"]):
        codes.append(client.post("/billing/topup", data={"amount": amount,
                                                         "nonce": f"t{i:023d}"}).status_code)
    assert codes == [303, 422, 303, 422, 422, 303, 303, 303]
    assert sandbox.api_calls("/api/billing/recharge") == 5
    with app.app_context():
        assert AuditEntry.query.filter_by(outcome="refused: invalid input").count() == 3
    floods = [client.post("/billing/topup", data={"amount": "x", "nonce": f"f{i:023d}"})
              .status_code for i in range(20)]
    assert floods[:17] == [422] * 17 and set(floods[17:]) == {429}  # 20 typos a minute
    assert sandbox.api_calls("/api/billing/recharge") == 5


def test_per_user_checkout_limit(client, auth, sandbox):
    auth.login("finance")
    codes = [client.post("/billing/topup", data={"amount": "10", "nonce": f"{i:024d}"}).status_code
             for i in range(7)]
    assert codes[:5] == [303] * 5 and codes[5:] == [429, 429]
    assert sandbox.api_calls("/api/billing/recharge") == 5
    resp = client.post("/billing/topup", data={"amount": "10", "nonce": "z" * 24})
    assert "Too many attempts" in resp.get_data(as_text=True) and resp.headers["Retry-After"]


def test_action_during_cool_down_is_refused_fast_and_says_nothing_was_sent(fault_server,
                                                                           fault_client):
    fault_server.handler = lambda m, p, b: (
        error(429, "RATE_LIMITED", headers={"Retry-After": "30"})
        if p == "/api/billing" else healthy(m, p, b))
    fault_client.get("/billing")  # the 429 starts the cool-down
    calls = fault_server.count()
    resp = fault_client.post("/billing/topup", data={"amount": "50", "nonce": "w" * 24})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 503 and "Try again in" in html
    assert "Nothing was sent, so nothing was charged" in html
    assert fault_server.count() == calls
