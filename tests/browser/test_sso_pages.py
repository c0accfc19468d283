"""The sign-in page with single sign-on set up, in a real Chromium: the provider's button
first, axe-clean in light and dark, whole at 375 px; and the round trip through a real
(mock) provider on loopback, which lands on the billing page with the groups' role."""
import pytest
from playwright.sync_api import expect

from ..conftest import make_app, sso_settings
from .conftest import Live
from .test_accessibility import axe_violations

pytestmark = pytest.mark.browser


@pytest.fixture(params=["on", "admins", "off"])
def sso_live(request, tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, WTF_CSRF_ENABLED=True,
                   **sso_settings(oidc, PASSWORD_SIGNIN=request.param,
                                  OIDC_BUTTON_LABEL="Sign in with Acme"))
    server = Live(app, sandbox)
    yield server
    server.stop()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_sso_sign_in_page_passes_axe(new_page, sso_live, scheme):
    page = new_page(bypass_csp=True, color_scheme=scheme)
    page.goto(sso_live.url + "/signin")
    button = page.get_by_role("link", name="Sign in with Acme")
    expect(button).to_be_visible()
    assert axe_violations(page) == []
    if page.locator("details.break-glass").count():
        page.get_by_text("Sign in with password (local admins only)").click()
        expect(page.get_by_label("Password")).to_be_visible()
        assert axe_violations(page) == [], "break-glass open"


def test_the_sso_sign_in_page_fits_a_375px_phone(new_page, sso_live):
    page = new_page(viewport={"width": 375, "height": 812}, is_mobile=True)
    page.goto(sso_live.url + "/signin")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    box = page.get_by_role("link", name="Sign in with Acme").bounding_box()
    assert box["y"] < 300 and box["width"] > 250  # first, and a thumb-sized target


def test_the_button_signs_in_through_the_provider_with_the_groups_role(
        new_page, sso_live, oidc):
    oidc.account = {**oidc.account, "groups": ["billing-admins"]}
    page = new_page()
    page.goto(sso_live.url + "/audit")  # where they were going
    page.get_by_role("link", name="Sign in with Acme").click()
    page.wait_for_url("**/audit")
    expect(page.locator(".who-name")).to_contain_text("ada@example.com")
    expect(page.locator(".who-name .role")).to_have_text("admin")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(oidc.issuer + "/logout**")
    page.goto(sso_live.url + "/billing")
    page.wait_for_url("**/signin**")
