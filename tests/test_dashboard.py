"""What the billing page shows: the gauge, the forecast, the plan cards."""
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from webapp.services.forecast import forecast
from webapp.formatting import money
from webapp.giga import Billing, Plan

from .support.faultserver import BILLING, PLANS, ok


def test_anonymous_visitor_sees_no_figures(client):
    resp = client.get("/billing")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/signin")
    assert "$" not in client.get("/signin").get_data(as_text=True).split("Demo accounts")[0]


def test_gauge_figures_from_the_sandbox(client, auth):
    auth.login("viewer")
    html = client.get("/billing").get_data(as_text=True)
    assert '<strong class="figure" id="total-balance">$124.50</strong>' in html
    assert "$74.50 <span class=\"of\">of $100.00</span>" in html
    assert 'id="prepaid-balance">$50.00' in html
    assert '<meter class="gauge" min="0" max="100" value="74.50"' in html
    assert "74% of this period's $100.00 plan credits left" in html
    # the period's end as an instant and a countdown, not a date alone (UTC by default)
    assert re.search(r'Period ends <strong>[A-Z][a-z]{2} \d{1,2}, \d{4}, \d\d:\d\d UTC</strong> — '
                     r'<span id="days-left">in 18 days</span>', html)


def test_current_plan_is_marked_and_cards_come_from_the_api(client, auth):
    auth.login("admin")
    html = client.get("/billing").get_data(as_text=True)
    assert html.count('class="plan plan-current"') == 1
    current = html.split('class="plan plan-current"')[1].split("</li>")[0]
    assert "Starter Pro" in current and "Current plan" in current
    for name in ("Free", "Starter Pro", "Pro", "Max"):
        assert f"<h3>{name}</h3>" in html
    assert "Upgrade to Pro" in html and "Downgrade to Free" in html


def test_custom_plan_reads_as_words_and_is_contact_sales(client, auth):
    auth.login("admin")
    html = client.get("/billing").get_data(as_text=True)
    card = html.split("<h3>Max</h3>")[1].split("</li>")[0]
    assert 'Custom</span> <span class="muted">pricing' in card and "Contact sales" in card
    assert "<dd>Custom</dd>" in card and "<dd>Unlimited</dd>" in card
    assert "/billing/plans/max" not in html


def _serve(fault_server, billing=None, plans=None):
    def handler(method, path, body):
        return ok(plans or PLANS) if path.endswith("/plans") else ok(billing or BILLING)
    fault_server.handler = handler


def test_account_on_custom_plan_shows_figures_without_a_denominator(fault_server, fault_client):
    billing = {"billing": dict(BILLING["billing"], plan="max", planCreditsRemaining=1234.5,
                               totalBalance=1284.5)}
    _serve(fault_server, billing)
    html = fault_client.get("/billing").get_data(as_text=True)
    assert "$1,234.50" in html and "$1,284.50" in html
    assert "<meter" not in html and " of $" not in html
    assert "no fixed allowance" in html
    assert "allowance is custom" in html  # forecast says why it cannot tell


def test_plan_missing_from_list_is_said_not_invented(fault_server, fault_client):
    _serve(fault_server, {"billing": dict(BILLING["billing"], plan="legacy-2019")})
    html = fault_client.get("/billing").get_data(as_text=True)
    assert "legacy-2019" in html and "<meter" not in html


def test_upstream_text_is_escaped(fault_server, fault_client):
    plans = {"plans": [dict(PLANS["plans"][1], name="<script>alert(1)</script>")]}
    _serve(fault_server, plans=plans)
    html = fault_client.get("/billing").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


@pytest.mark.parametrize("value,text", [
    (Decimal("1234.5"), "$1,234.50"), (Decimal("0"), "$0.00"), (Decimal("-3.2"), "-$3.20"),
    (Decimal("0.005"), "$0.01"), (Decimal("1000000"), "$1,000,000.00"), ("custom", "Custom")])
def test_money_format(value, text):
    assert money(value) == text


# -- the forecast -------------------------------------------------------------------

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
END = datetime(2024, 3, 31, tzinfo=timezone.utc)
PLAN = Plan("p", "P", Decimal(100), Decimal(5), Decimal(8), Decimal(29))


def _billing(remaining, prepaid):
    return Billing("p", Decimal(remaining), Decimal(prepaid), Decimal(remaining) + Decimal(prepaid),
                   START, END)


def test_forecast_pace_and_lasting_past_period_end():
    f = forecast(_billing("80", "0"), PLAN, START + timedelta(days=10))
    assert f.pace_per_day == Decimal(2)
    assert f.lasts_past_period and f.days_left == 20
    assert f.elapsed_fraction == Decimal(1) / Decimal(3)


def test_forecast_runs_out_early():
    f = forecast(_billing("40", "10"), PLAN, START + timedelta(days=10))
    assert f.pace_per_day == Decimal(6)
    assert not f.lasts_past_period
    assert f.plan_credits_run_out.date() == (START + timedelta(days=10, hours=160)).date()
    assert f.balance_runs_out == START + timedelta(days=10) + timedelta(seconds=int(50 / 6 * 86400))


def test_forecast_prepaid_carries_past_period():
    f = forecast(_billing("40", "500"), PLAN, START + timedelta(days=10))
    assert f.lasts_past_period and f.plan_credits_run_out < END


def test_forecast_with_no_use_and_too_early_and_custom():
    assert forecast(_billing("100", "0"), PLAN, START + timedelta(days=3)).lasts_past_period
    assert forecast(_billing("90", "0"), PLAN, START + timedelta(hours=1)).pace_per_day is None
    custom = Plan("m", "M", "custom", "unlimited", Decimal(24), "custom")
    f = forecast(_billing("90", "0"), custom, START + timedelta(days=3))
    assert f.pace_per_day is None and "custom" in f.reason


def test_forecast_on_the_page_runs_out_early(fault_server, fault_client):
    now = datetime.now(timezone.utc)
    billing = {"billing": dict(BILLING["billing"], planCreditsRemaining=10, prepaidBalance=0,
                               totalBalance=10,
                               currentPeriodStart=(now - timedelta(days=9)).isoformat(),
                               currentPeriodEnd=(now + timedelta(days=21)).isoformat())}
    _serve(fault_server, billing)
    html = fault_client.get("/billing").get_data(as_text=True)
    assert "$10.00</span> a day" in html and "Runs out early" in html


def test_return_from_checkout_shows_notice_and_fresh_figures(client, auth, sandbox):
    auth.login("finance")
    client.get("/billing")
    resp = client.post("/billing/topup", data={"amount": "40", "nonce": "a" * 24})
    checkout_id = resp.headers["Location"].rsplit("/", 1)[1]
    assert "$50.00" in client.get("/billing").get_data(as_text=True)
    sandbox.state.settle(checkout_id, pay=True)
    html = client.get("/billing?checkout=success").get_data(as_text=True)
    # the notice says what the figures under it show: the top-up is in them
    assert "Thank you. Your $40.00 top-up is credited: the figures below include it." in html
    assert "being processed" not in html
    assert 'id="prepaid-balance">$90.00' in html
    again = client.get("/billing?checkout=success").get_data(as_text=True)
    assert "credited:" not in again  # once per checkout


def test_a_payment_not_yet_in_the_balance_is_being_processed(client, auth, sandbox):
    auth.login("finance")
    client.get("/billing")
    client.post("/billing/topup", data={"amount": "40", "nonce": "n" * 24})
    # back from checkout before the payment reached the balance
    html = client.get("/billing?checkout=success").get_data(as_text=True)
    assert "Your payment for your $40.00 top-up is being processed; it is not in the " \
           "figures below yet" in html
    assert 'id="prepaid-balance">$50.00' in html


def test_a_paid_plan_change_says_done(client, auth, sandbox):
    auth.login("admin")
    client.get("/billing")
    resp = client.post("/billing/plans/pro", data={"nonce": "q" * 24})
    sandbox.state.settle(resp.headers["Location"].rsplit("/", 1)[1], pay=True)
    html = client.get("/billing?checkout=success").get_data(as_text=True)
    assert "Thank you. The change to Pro is done: the figures below include it." in html


def test_return_after_cancel_says_nothing_was_charged(client, auth):
    auth.login("finance")
    client.post("/billing/topup", data={"amount": "60", "nonce": "c" * 24})
    html = client.get("/billing?checkout=cancel").get_data(as_text=True)
    assert "Checkout of your $60.00 top-up was cancelled. Nothing was charged" in html
    assert 'id="prepaid-balance">$50.00' in html


def test_a_bare_return_link_shows_nothing_and_reads_nothing(client, auth, sandbox):
    """Anyone can type ?checkout=success: no notice, and no fresh upstream read."""
    auth.login("viewer")
    client.get("/billing")
    calls = sandbox.api_calls("/api/billing")
    for _ in range(40):
        html = client.get("/billing?checkout=success").get_data(as_text=True)
    assert "being processed" not in html and "was cancelled" not in client.get(
        "/billing?checkout=cancel").get_data(as_text=True)
    assert sandbox.api_calls("/api/billing") == calls


def test_each_view_gets_fresh_tokens(csrf_app):
    """No two views share a one-time or CSRF token."""
    import re
    client = csrf_app.test_client()
    html = client.get("/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    client.post("/signin", data={"email": "finance@demo.test", "password": "demo",
                                 "csrf_token": token})
    pages = [client.get("/billing").get_data(as_text=True) for _ in range(3)]
    nonces = {re.search(r'name="nonce" type="hidden" value="([^"]+)"', p).group(1) for p in pages}
    tokens = {re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', p).group(1)
              for p in pages}
    assert len(nonces) == 3  # one-time tokens are per view
    assert all("\x00" not in p for p in pages)  # no slot left unfilled
    nonce = nonces.pop()
    resp = client.post("/billing/topup", data={"amount": "50", "nonce": nonce,
                                               "csrf_token": tokens.pop()})
    assert resp.status_code == 303


def test_cached_page_follows_role_changes(client, auth, app):
    auth.login("finance")
    assert 'action="/billing/topup' in client.get("/billing").get_data(as_text=True)
    with app.app_context():
        from webapp.services.users import set_role
        set_role("finance@demo.test", "viewer")
    assert 'action="/billing/topup' not in client.get("/billing").get_data(as_text=True)
