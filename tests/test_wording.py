"""What a finance person reads: nothing that is not so, and every way on a page that
should have one."""
import re
from html import unescape

from .support.faultserver import Hang, error, healthy


def test_sandbox_pages_never_say_stripe(client, auth, sandbox):
    auth.login("admin")
    for path in ("/billing", "/billing/plans/pro"):
        html = unescape(client.get(path).get_data(as_text=True))
        assert "Stripe" not in html and "sandbox's checkout page" in html
    checkout = client.post("/billing/topup", data={"amount": "20", "nonce": "s" * 24}).location
    page = sandbox.app.test_client().get(checkout[len(sandbox.url):]).get_data(as_text=True)
    assert "Stripe" not in page


def test_live_pages_name_stripe_checkout(fault_client):
    html = fault_client.get("/billing").get_data(as_text=True)
    assert "You will pay on Stripe Checkout." in html


def test_plan_change_confirmation_says_what_is_known_about_the_charge(client, auth):
    auth.login("admin")
    html = client.get("/billing/plans/pro").get_data(as_text=True)
    text = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))
    assert "Pro is $99.00 a month." in text
    assert "WithGiga's checkout" in text and "exact amount due today" in text
    assert "You have $74.50 of plan credits left this period." in text
    assert "allowance of 500 credits a month" in text
    assert "$50.00 of prepaid credit is not affected" in text


def test_contact_sales_is_a_link_to_sales_url(tmp_path, sandbox):
    from .conftest import make_app
    app = make_app(tmp_path, SANDBOX=sandbox, SALES_URL="https://sales.example.com/talk")
    client = app.test_client()
    client.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    card = client.get("/billing").get_data(as_text=True)
    assert '<a href="https://sales.example.com/talk" rel="noopener">Contact sales</a>' in card
    refused = client.post("/billing/plans/max", data={"nonce": "x" * 24}).get_data(as_text=True)
    assert 'href="https://sales.example.com/talk"' in refused


def test_finance_is_told_why_plan_cards_have_no_button(client, auth):
    auth.login("finance")
    html = client.get("/billing").get_data(as_text=True)
    assert html.count("Plan changes are made by an account admin.") == 2  # Free and Pro
    assert "/billing/plans/" not in html


def test_a_failed_read_offers_try_again_and_no_empty_request_id(fault_server, fault_client):
    fault_server.handler = lambda *a: error(500, "INTERNAL_ERROR", "db down", request_id="rid-1")
    html = fault_client.get("/billing?range=7d").get_data(as_text=True)
    assert '<a class="button" href="/billing?range=7d">Try again</a>' in html
    assert "Back to billing" not in html and "rid-1" in html
    fault_server.handler = Hang(10)
    timed_out = fault_client.get("/billing").get_data(as_text=True)
    assert "Try again</a>" in timed_out
    assert "Request ID" not in timed_out and "none given" not in timed_out


def test_a_failed_action_goes_back_to_billing(fault_server, fault_client):
    fault_server.handler = lambda m, p, b: (error(500, "INTERNAL_ERROR", request_id="rid-2")
                                            if p == "/api/billing/recharge" else healthy(m, p, b))
    html = fault_client.post("/billing/topup", data={"amount": "20", "nonce": "f" * 24}) \
        .get_data(as_text=True)
    assert "Back to billing" in html and "Try again</a>" not in html
