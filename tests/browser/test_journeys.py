"""Every role's journey through the real UI in headless Chromium, with and without JS."""
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from .conftest import sign_in

pytestmark = pytest.mark.browser


def prepaid(page) -> Decimal:
    text = page.locator("#prepaid-balance").inner_text()
    return Decimal(re.search(r"\$([\d,]+\.\d\d)", text).group(1).replace(",", ""))


def test_finance_tops_up_pays_and_sees_it(page, live):
    sign_in(page, live, "finance")
    before = prepaid(page)
    page.get_by_label("Amount (USD)").fill("123.45")
    page.get_by_role("button", name="Continue to checkout").click()
    expect(page.get_by_role("heading", name="Add prepaid credit")).to_be_visible()
    assert page.url.startswith(live.sandbox.url + "/checkout/")
    expect(page.get_by_text("$123.45").first).to_be_visible()
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(re.compile(r".*/billing\?checkout=success$"))
    # the notice and the figures under it agree: credited, and in the balance
    expect(page.get_by_role("status").filter(
        has_text="Your $123.45 top-up is credited: the figures below include it")).to_be_visible()
    assert prepaid(page) == before + Decimal("123.45")
    page.get_by_role("link", name="Audit trail").click()
    row = page.get_by_role("row").filter(has_text="$123.45")
    expect(row).to_contain_text("finance@demo.test")
    expect(row).to_contain_text("sent to checkout")


def test_finance_cancels_and_nothing_changes(page, live):
    sign_in(page, live, "finance")
    before = prepaid(page)
    page.get_by_role("link", name="$50", exact=True).click()
    expect(page.get_by_label("Amount (USD)")).to_have_value("50")
    page.get_by_role("button", name="Continue to checkout").click()
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(re.compile(r".*/billing\?checkout=cancel$"))
    expect(page.get_by_text("Checkout of your $50.00 top-up was cancelled. Nothing was "
                            "charged")).to_be_visible()
    assert prepaid(page) == before


def _change_plan(page, live, button, name):
    page.get_by_role("link", name=button).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{button}?")
    expect(page.get_by_role("table")).to_contain_text(name)
    page.get_by_role("button", name="Continue to checkout").click()
    assert page.url.startswith(live.sandbox.url + "/checkout/")
    expect(page.get_by_text(f"{name}")).to_be_visible()
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(re.compile(r".*/billing\?checkout=success$"))


def test_admin_upgrades_then_downgrades(page, live):
    sign_in(page, live, "admin")
    _change_plan(page, live, "Upgrade to Pro", "Pro")
    current = page.locator(".plan-current")
    expect(current.get_by_role("heading")).to_have_text("Pro")
    expect(current).to_contain_text("Current plan")
    expect(page.locator("#plan-credits")).to_contain_text("$500.00 of $500.00")
    _change_plan(page, live, "Downgrade to Free", "Free")
    expect(page.locator(".plan-current").get_by_role("heading")).to_have_text("Free")
    expect(page.locator("#plan-credits")).to_contain_text("$10.00 of $10.00")


def test_viewer_sees_everything_and_can_spend_nothing(page, live):
    sign_in(page, live, "viewer")
    expect(page.locator("#total-balance")).to_have_text("$124.50")
    expect(page.get_by_role("heading", name="Run-out forecast")).to_be_visible()
    expect(page.get_by_role("heading", name="Plans")).to_be_visible()
    expect(page.get_by_label("Amount (USD)")).to_have_count(0)
    expect(page.get_by_role("button", name="Continue to checkout")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("^(Upgrade|Downgrade|Switch)"))).to_have_count(0)
    expect(page.get_by_role("link", name="Audit trail")).to_have_count(0)
    page.goto(live.url + "/billing/plans/pro")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_bad_amount_shows_message_by_the_field_and_keeps_it(page, live):
    sign_in(page, live, "finance")
    calls = live.sandbox.api_calls("/api/billing/recharge")
    field = page.get_by_label("Amount (USD)")
    field.fill("12.345")
    page.get_by_role("button", name="Continue to checkout").click()
    expect(page.get_by_text("Use at most two decimal places")).to_be_visible()
    expect(page.get_by_label("Amount (USD)")).to_have_value("12.345")
    expect(page.get_by_label("Amount (USD)")).to_have_attribute("aria-invalid", "true")
    assert live.sandbox.api_calls("/api/billing/recharge") == calls


def test_upstream_failing_mid_session_degrades_then_recovers(page, live):
    sign_in(page, live, "viewer")
    expect(page.locator("#total-balance")).to_have_text("$124.50")
    live.sandbox.outage = True
    page.reload()
    expect(page.get_by_text(re.compile(r"As of \d\d:\d\d UTC"))).to_be_visible()
    expect(page.get_by_text("the billing service is not answering")).to_be_visible()
    expect(page.locator("#total-balance")).to_have_text("$124.50")
    live.sandbox.outage = False
    page.reload()
    expect(page.get_by_text("the billing service is not answering")).to_have_count(0)
    expect(page.locator("#total-balance")).to_have_text("$124.50")


def test_keyboard_alone_completes_a_top_up_with_visible_focus(new_page, live):
    page = new_page()
    page.goto(live.url + "/signin")
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # brand
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.type("finance@demo.test")
    page.keyboard.press("Tab")
    page.keyboard.type("demo")
    page.keyboard.press("Enter")
    page.wait_for_url("**/billing")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "amount":
            break
    assert page.evaluate("document.activeElement.id") == "amount"
    page.keyboard.type("20")
    page.keyboard.press("Enter")
    page.wait_for_url(live.sandbox.url + "/checkout/**")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Pay"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*checkout=success$"))
    expect(page.locator("#prepaid-balance")).to_contain_text("$70.00")


def test_finance_reads_the_chart_pays_and_reconciles(page, live, tmp_path):
    from datetime import datetime, timedelta, timezone

    from webapp.giga.client import parse_billing
    from webapp.services.history.seed import seed

    with live.app.app_context():
        seed(parse_billing({"billing": live.sandbox.state.billing()}), Decimal(100),
             datetime.now(timezone.utc) - timedelta(minutes=1))
    sign_in(page, live, "finance")
    chart = page.get_by_role("img", name=re.compile("Usage a day"))
    expect(chart).to_be_visible()
    page.get_by_role("link", name="Last 30 days").click()
    expect(page.get_by_role("link", name="Last 30 days")).to_have_attribute("aria-current", "true")
    page.get_by_text("The figures as a table").click()
    expect(page.get_by_role("table").filter(has_text="Closing balance")).to_be_visible()

    page.get_by_label("Amount (USD)").fill("40")
    page.get_by_role("button", name="Continue to checkout").click()
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(re.compile(r".*/billing\?checkout=success$"))
    page.get_by_role("link", name="Audit trail").click()
    row = page.get_by_role("row").filter(has_text="$40.00")
    expect(row).to_contain_text("credited")

    page.goto(live.url + "/billing")
    for name, stem in (("Download usage (CSV)", "usage-"),
                       ("Download every reading (CSV)", "balance-history-")):
        with page.expect_download() as info:
            page.get_by_role("link", name=name).click()
        download = info.value
        assert download.suggested_filename.startswith(stem)
        text = (tmp_path / download.suggested_filename)
        download.save_as(text)
        assert text.read_text().count("\n") > 10


def test_admin_adds_a_user_then_removes_them_after_a_question(page, live):
    sign_in(page, live, "admin")
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Email").fill("temp@example.com")
    page.get_by_label("Password").fill("password1234")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator(".field-error")).to_contain_text("too common or easy to guess")
    page.get_by_label("Password").fill("violet-anchor-meadow-42")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status").filter(has_text="Added temp@example.com")).to_be_visible()
    page.get_by_role("link", name="Remove temp@example.com").click()
    expect(page.get_by_role("heading", name="Remove temp@example.com?")).to_be_visible()
    page.get_by_role("button", name="Remove temp@example.com").click()
    expect(page.get_by_role("status").filter(has_text="Removed temp@example.com")).to_be_visible()
    page.get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("row").filter(has_text="User removed")).to_contain_text(
        "temp@example.com")
