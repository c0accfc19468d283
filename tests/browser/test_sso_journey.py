"""Signing in with the company account in Chromium: the SSO button on our sign-in page,
the certified provider's own sign-in and consent pages (node ``oidc-provider``, on
``localhost``: another site than the dashboard, as a real provider is), and back on the
dashboard with the role the groups give."""
import pytest
from playwright.sync_api import expect

from ..conftest import make_app
from ..support.net import closed_port
from .conftest import Live

pytestmark = pytest.mark.browser

FINN = {"sub": "00u8finn", "email": "finn@corp.test", "email_verified": True,
        "groups": ["billing-finance", "everyone"], "name": "Finn Finance"}
BUTTON = "Sign in with Corp SSO"


@pytest.fixture
def sso_live(tmp_path, sandbox, node_oidc):
    port = closed_port()
    base = f"http://127.0.0.1:{port}"
    provider = node_oidc([base + "/signin/sso/callback"], accounts={"finn": FINN},
                         post_logout_redirect_uris=[base + "/signin"], host="localhost")
    client = provider.client
    app = make_app(tmp_path, SANDBOX=sandbox, WTF_CSRF_ENABLED=True, BILLING_CACHE_TTL="0",
                   UPSTREAM_GET_RETRIES="0", OIDC_ISSUER=provider.issuer,
                   OIDC_CLIENT_ID=client["client_id"], OIDC_CLIENT_SECRET=client["client_secret"],
                   OIDC_SCOPES="openid email profile groups", OIDC_BUTTON_LABEL=BUTTON,
                   OIDC_ROLE_MAP="billing-admins=admin,billing-finance=finance,*=viewer")
    server = Live(app, sandbox, port=port)
    server.provider = provider
    yield server
    server.stop()


def test_sign_in_with_the_company_account_lands_with_the_mapped_role(page, sso_live):
    page.goto(sso_live.url + "/signin")
    page.get_by_role("link", name=BUTTON).click()

    # the provider's pages: sign in (any password), then allow the dashboard
    expect(page.get_by_role("heading", name="Sign-in")).to_be_visible()
    assert page.url.startswith(sso_live.provider.issuer + "/interaction/")
    page.get_by_placeholder("Enter any login").fill("finn")
    page.get_by_placeholder("and password").fill("correct horse")
    page.get_by_role("button", name="Sign-in").click()
    expect(page.get_by_role("heading", name="Authorize")).to_be_visible()
    expect(page.get_by_text("groups", exact=True)).to_be_visible()  # the scopes it asks for
    page.get_by_role("button", name="Continue").click()

    page.wait_for_url(sso_live.url + "/billing")
    expect(page.locator(".who-name")).to_contain_text("finn@corp.test")
    expect(page.locator(".who-name .role")).to_have_text("finance")
    expect(page.get_by_label("Amount (USD)")).to_be_visible()  # finance may top up
