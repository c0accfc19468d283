"""axe-core on every page, phone width, dark mode, no third-party requests, page weight."""
import re
import json

import pytest
from playwright.sync_api import expect

from .conftest import AXE, sign_in

pytestmark = pytest.mark.browser


def axe_violations(page):
    """Serious and critical axe-core violations on the page as it is now."""
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => JSON.stringify(await axe.run(document, "
                           "{resultTypes: ['violations']}))")
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in json.loads(result)["violations"] if v["impact"] in ("serious", "critical")]


def _pages(live, role):
    """The pages a role meets, as (name, path)."""
    pages = [("dashboard", "/billing"), ("not found", "/nope"), ("API tokens", "/settings/tokens"),
             ("API reference", "/api/v1/reference"), ("password", "/account/password")]
    if role in ("finance", "admin"):
        pages += [("audit trail", "/audit"), ("alerts", "/alerts"),
                  ("usage, 90 days", "/billing?range=90"), ("settings", "/settings")]
    if role == "admin":
        pages += [("confirmation", "/billing/plans/pro"), ("users", "/users"),
                  ("contact sales", "/billing/plans/max")]
    if role == "viewer":
        pages.append(("forbidden", "/audit"))
    return pages


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("role", ["viewer", "finance", "admin"])
def test_no_serious_violations_on_any_page(new_page, live, role, scheme):
    page = new_page(bypass_csp=True, color_scheme=scheme)  # axe is injected as a script
    page.goto(live.url + "/signin")
    assert axe_violations(page) == [], "sign-in"
    sign_in(page, live, role)
    for name, path in _pages(live, role):
        page.goto(live.url + path)
        assert axe_violations(page) == [], name


def test_no_violations_on_checkout_error_and_degraded_pages(new_page, live):
    page = new_page(bypass_csp=True)
    sign_in(page, live, "finance")
    page.get_by_label("Amount (USD)").fill("abc")
    page.get_by_role("button", name="Continue to checkout").click()
    assert axe_violations(page) == [], "field error"
    page.get_by_label("Amount (USD)").fill("10")
    page.get_by_role("button", name="Continue to checkout").click()
    assert axe_violations(page) == [], "sandbox checkout"
    page.goto(live.url + "/billing")  # a good read: the last figures to fall back on
    live.sandbox.outage = True
    page.goto(live.url + "/billing")
    expect(page.get_by_text("not answering")).to_be_visible()
    assert axe_violations(page) == [], "degraded"
    live.app.extensions["giga_gateway"].forget_billing()
    page.goto(live.url + "/billing")
    expect(page.get_by_role("heading", name="The billing service had a problem")).to_be_visible()
    assert axe_violations(page) == [], "upstream error"


@pytest.mark.parametrize("role,paths", [
    ("admin", ["/billing", "/billing/plans/pro", "/audit", "/users", "/nope", "/alerts",
               "/billing?range=90", "/settings", "/settings/tokens", "/api/v1/reference"]),
    ("viewer", ["/billing", "/settings/tokens", "/account/password"])])
def test_fits_a_375px_phone_without_horizontal_scroll(new_page, live, role, paths):
    page = new_page(viewport={"width": 375, "height": 812}, is_mobile=True)
    page.goto(live.url + "/signin")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    sign_in(page, live, role)
    page.goto(live.url + "/billing")
    page.get_by_role("link", name="Audit trail").count()
    if role == "admin":
        page.get_by_label("Amount (USD)").fill("5")  # leave a row in the audit trail
        page.get_by_role("button", name="Continue to checkout").click()
    for path in paths:
        page.goto(live.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{path} is {width}px wide"


@pytest.mark.parametrize("width", [1280, 375])
def test_a_viewer_changes_their_password_and_axe_finds_nothing(
        new_page, live, width):
    """The password page of a user with a password of their own (the demo accounts keep
    theirs): reached from the header, its errors by the fields, then the change."""
    from webapp.services.users import create_user

    with live.app.app_context():
        create_user("pat@example.com", "viewer", "correct-horse-battery")
    page = new_page(bypass_csp=True, viewport={"width": width, "height": 900})
    page.goto(live.url + "/signin")
    page.get_by_label("Email").fill("pat@example.com")
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Password").click()
    expect(page.get_by_role("heading", name="Your password")).to_be_visible()
    assert axe_violations(page) == [], "password"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.get_by_label("Current password").fill("wrong-password")
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("Repeat the new password").fill("other")
    page.keyboard.press("Enter")
    expect(page.get_by_text("The two new passwords differ")).to_be_visible()
    assert axe_violations(page) == [], "password in error"
    page.get_by_label("Current password").fill("correct-horse-battery")
    page.get_by_label("New password", exact=True).fill("violet-anchor-meadow-42")
    page.get_by_label("Repeat the new password").fill("violet-anchor-meadow-42")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password has been changed.")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_follows_dark_mode(new_page, live):
    light = new_page(color_scheme="light")
    dark = new_page(color_scheme="dark")
    colours = []
    for page in (light, dark):
        sign_in(page, live, "viewer")
        colours.append(page.evaluate("getComputedStyle(document.body).backgroundColor"))
    assert colours[0] != colours[1]
    r, g, b = [int(x) for x in colours[1][4:-1].split(",")[:3]]
    assert r + g + b < 150  # dark background


def test_no_third_party_requests_and_small_pages(new_page, live):
    page = new_page()
    seen = []
    page.on("request", lambda r: seen.append(r.url))
    sizes = {}
    page.on("response", lambda r: sizes.__setitem__(r.url, len(r.body())) if r.ok and r.request.method == "GET" else None)
    sign_in(page, live, "admin")
    page.reload()
    allowed = (live.url, live.sandbox.url, "data:")
    assert [u for u in seen if not u.startswith(allowed)] == []
    css = next(u for u in sizes if re.search(r"/static/app\.[0-9a-f]{12}\.css$", u))
    weight = sizes[live.url + "/billing"] + sizes[css]
    assert weight < 40_000, weight


def test_gauge_states_values_in_text(new_page, live):
    page = new_page(java_script_enabled=False)
    sign_in(page, live, "viewer")
    meter = page.locator("meter")
    expect(meter).to_have_attribute("aria-labelledby", "gauge-text")
    expect(page.locator("#gauge-text")).to_contain_text("74% of this period's $100.00 plan credits left")
    expect(page.get_by_text("Does not run out")).to_be_visible()  # a word, not only a colour


def test_the_chart_reads_on_a_390px_phone(new_page, live):
    """The chart is drawn to the card's width: on a phone its labels must still be text a
    person can read (at least 11 px), whole, inside the chart."""
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    sign_in(page, live, "viewer")
    page.goto(live.url + "/billing?range=7")
    labels = page.eval_on_selector_all(".chart text", """els => els.map(e => {
        const box = e.getBoundingClientRect(), chart = e.ownerSVGElement.getBoundingClientRect();
        const scale = chart.width / e.ownerSVGElement.viewBox.baseVal.width;
        return {text: e.textContent, px: parseFloat(getComputedStyle(e).fontSize) * scale,
                inside: box.left >= chart.left - 0.5 && box.right <= chart.right + 0.5
                        && box.top >= chart.top - 0.5 && box.bottom <= chart.bottom + 0.5};
    })""")
    assert labels, "the chart has axis labels"
    for label in labels:
        assert label["px"] >= 11, label
        assert label["inside"], label
