"""Sign-in through the company's identity provider, against a real OpenID provider on
loopback (``support.mock_oidc``): the dashboard's own Authlib client discovers it,
sends the browser there, exchanges the code and checks the ID token over HTTP."""
from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import AuditEntry, User, UserSession
from webapp.services import users as service
from webapp.settings import ConfigError, load_settings

from .conftest import make_app, sso_settings

PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def sso_app(tmp_path, sandbox, oidc):
    return make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc))


def start(client, next_page=None):
    """Click the provider's button: the redirect to the provider's authorization page."""
    resp = client.get("/signin/sso" + (f"?next={next_page}" if next_page else ""))
    assert resp.status_code == 302, resp.data
    return resp.headers["Location"]


def at_provider(authorize_url):
    """The browser at the provider, which answers with the way back to the dashboard."""
    resp = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert resp.status_code == 302, resp.text
    back = urlsplit(resp.headers["Location"])
    return f"{back.path}?{back.query}"


def sign_in(client):
    """The whole round trip; the dashboard's answer to the callback."""
    return client.get(at_provider(start(client)))


def trail(app, action=None):
    with app.app_context():
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            query = query.where(AuditEntry.action == action)
        return db.session.scalars(query).all()


def user(app, email):
    with app.app_context():
        return db.session.scalar(select(User).where(User.email == email))


def refused(resp, status, words):
    page = html.unescape(resp.get_data(as_text=True))
    assert resp.status_code == status, page
    assert "Sign-in did not go through" in page and words in page, page
    assert "Traceback" not in page


def signed_in_as(client):
    """The email and role the header shows, or None on the sign-in page."""
    page = client.get("/billing", follow_redirects=True).get_data(as_text=True)
    if 'class="who-name"' not in page:
        return None
    who = page.split('class="who-name">', 1)[1].split("</span>", 1)[0]
    email, _, role = who.partition(' <span class="role">')
    return email.strip(), role.strip()


# -- first sign-in, roles from groups --------------------------------------------------

def test_the_sign_in_page_offers_the_provider_first(sso_app):
    page = sso_app.test_client().get("/signin").get_data(as_text=True)
    assert page.index("Sign in with SSO") < page.index('name="password"')
    assert 'href="/signin/sso"' in page


def test_the_first_sign_in_creates_the_user_with_the_role_their_groups_give(sso_app, oidc):
    client = sso_app.test_client()
    resp = sign_in(client)
    assert resp.status_code == 302 and resp.headers["Location"] == "/billing"
    assert signed_in_as(client) == ("ada@example.com", "finance")
    ada = user(sso_app, "ada@example.com")
    assert (ada.oidc_issuer, ada.oidc_subject, ada.has_password) == (oidc.issuer, "u-1", False)
    added, = trail(sso_app, "user added")
    assert added.subject == "ada@example.com" and added.role_to == "finance"
    assert "billing-finance" in added.detail
    came_in, = trail(sso_app, "signed in")
    assert (came_in.user_email, came_in.detail) == ("ada@example.com", "SSO from 127.0.0.1")


def test_the_provider_is_asked_with_pkce_state_and_nonce(sso_app):
    query = parse_qs(urlsplit(start(sso_app.test_client())).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == ["http://localhost/signin/sso/callback"]


def test_groups_and_email_given_only_by_userinfo_count(sso_app, oidc):
    oidc.claims_in_userinfo_only = True
    oidc.account = {**oidc.account, "groups": ["billing-admins"]}
    client = sso_app.test_client()
    sign_in(client)
    assert signed_in_as(client) == ("ada@example.com", "admin")
    assert ("GET", "/userinfo") in oidc.requests


def test_leaving_the_group_demotes_at_the_next_sign_in(sso_app, oidc):
    oidc.account = {**oidc.account, "groups": ["billing-admins", "billing-finance"]}
    first = sso_app.test_client()
    sign_in(first)
    assert signed_in_as(first) == ("ada@example.com", "admin")  # the highest match wins
    with sso_app.app_context():  # another admin, so the demotion is allowed
        service.create_user("boss@example.com", "admin", PASSWORD)
    oidc.account = {**oidc.account, "groups": ["everyone"]}
    later = sso_app.test_client()
    sign_in(later)
    assert signed_in_as(later) == ("ada@example.com", "viewer")
    assert signed_in_as(first) == ("ada@example.com", "viewer")  # roles are read each request
    change, = trail(sso_app, "role changed")
    assert (change.subject, change.role_from, change.role_to) == ("ada@example.com", "admin",
                                                                  "viewer")
    assert change.user_email == "(identity provider)" and "groups: everyone" in change.detail


def test_the_last_admin_is_not_demoted_by_the_provider(sso_app, oidc):
    oidc.account = {**oidc.account, "groups": ["billing-admins"]}
    sign_in(sso_app.test_client())
    with sso_app.app_context():  # the sandbox's demo admin goes: ada is the only admin
        service.delete_user("admin@demo.test")
    oidc.account = {**oidc.account, "groups": ["everyone"]}
    client = sso_app.test_client()
    refused(sign_in(client), 403, "last admin")
    assert signed_in_as(client) is None
    assert user(sso_app, "ada@example.com").role == "admin"


def test_a_user_in_no_mapped_group_is_refused_and_the_refusal_is_on_the_trail(
        tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(
        oidc, OIDC_ROLE_MAP="billing-admins=admin,billing-finance=finance"))
    oidc.account = {**oidc.account, "groups": ["marketing"]}
    client = app.test_client()
    refused(sign_in(client), 403, "none of the groups that give access")
    assert user(app, "ada@example.com") is None and signed_in_as(client) is None
    row, = trail(app, "sign-in refused")
    assert row.outcome == "refused: in no mapped group" and "groups: marketing" in row.detail
    assert row.user_email == "ada@example.com" and row.repeats == 1


def test_without_a_role_map_sso_users_start_as_viewers_and_admins_set_roles(
        tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, OIDC_ROLE_MAP=""))
    sign_in(app.test_client())
    assert user(app, "ada@example.com").role == "viewer"
    admin = app.test_client()
    admin.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    ada = user(app, "ada@example.com")
    admin.post(f"/users/{ada.id}/role", data={f"u{ada.id}-role": "finance"})
    assert user(app, "ada@example.com").role == "finance"


def test_the_users_page_shows_roles_from_the_provider_as_managed_and_will_not_change_them(
        sso_app):
    sign_in(sso_app.test_client())
    admin = sso_app.test_client()
    admin.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    page = admin.get("/users").get_data(as_text=True)
    row = page.split("ada@example.com", 1)[1].split("</tr>", 1)[0]
    assert "managed by SSO" in row and "Save role" not in row
    ada = user(sso_app, "ada@example.com")
    resp = admin.post(f"/users/{ada.id}/role", data={f"u{ada.id}-role": "admin"},
                      follow_redirects=True)
    assert "change it there" in resp.get_data(as_text=True)
    assert user(sso_app, "ada@example.com").role == "finance"


# -- linking an existing user ------------------------------------------------------------

def test_an_unverified_email_matching_a_password_user_is_refused_and_not_linked(sso_app, oidc):
    with sso_app.app_context():
        service.create_user("ada@example.com", "viewer", PASSWORD)
    oidc.account = {**oidc.account, "email_verified": False}
    client = sso_app.test_client()
    refused(sign_in(client), 403, "has not verified ada@example.com")
    assert user(sso_app, "ada@example.com").oidc_subject is None
    assert signed_in_as(client) is None


def test_a_verified_email_links_a_password_user_only_when_linking_is_on(
        tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc))
    with app.app_context():
        service.create_user("ada@example.com", "viewer", PASSWORD)
    refused(sign_in(app.test_client()), 403, "ask a dashboard admin to switch linking on")
    assert user(app, "ada@example.com").oidc_subject is None
    linking = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, OIDC_LINK_BY_EMAIL="1"))
    client = linking.test_client()
    sign_in(client)
    assert signed_in_as(client) == ("ada@example.com", "finance")
    assert user(linking, "ada@example.com").oidc_subject == "u-1"
    assert [r.subject for r in trail(linking, "SSO linked")] == ["ada@example.com"]


def test_with_signup_off_only_users_an_admin_added_get_in(tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, OIDC_ALLOW_SIGNUP="0"))
    stranger = app.test_client()
    refused(sign_in(stranger), 403, "has no access to this dashboard yet")
    assert user(app, "ada@example.com") is None
    admin = app.test_client()
    admin.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    resp = admin.post("/users", data={"email": "ada@example.com", "role": "viewer",
                                      "password": ""})
    assert resp.status_code == 302
    client = app.test_client()
    sign_in(client)
    assert signed_in_as(client) == ("ada@example.com", "finance")  # the groups decide


def test_another_identity_with_the_same_email_is_refused(sso_app, oidc):
    sign_in(sso_app.test_client())
    oidc.account = {**oidc.account, "sub": "someone-else"}
    refused(sign_in(sso_app.test_client()), 403, "already linked to a different company")


def test_a_domain_outside_the_allowed_ones_is_refused(tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox,
                   **sso_settings(oidc, OIDC_ALLOWED_DOMAINS="example.org"))
    refused(sign_in(app.test_client()), 403, "This dashboard is for @example.org accounts")
    assert user(app, "ada@example.com") is None
    oidc.account = {**oidc.account, "email": "ada@example.org", "email_verified": False}
    refused(sign_in(app.test_client()), 403, "has not verified ada@example.org")
    oidc.account = {**oidc.account, "email_verified": True}
    client = app.test_client()
    sign_in(client)
    assert signed_in_as(client) == ("ada@example.org", "finance")


# -- every failure is a sentence ---------------------------------------------------------

def test_a_denial_at_the_provider_is_a_plain_refusal(sso_app, oidc):
    oidc.deny = True
    client = sso_app.test_client()
    refused(sign_in(client), 403, "cancelled or refused at your identity provider")
    row, = trail(sso_app, "sign-in refused")
    assert row.outcome == "refused: refused at the provider" and row.user_email == "(unknown)"


def test_a_replayed_callback_is_refused(sso_app):
    client = sso_app.test_client()
    callback = at_provider(start(client))
    client.get(callback)
    replay = sso_app.test_client()  # the same URL, in a browser that never started it
    refused(replay.get(callback), 400, "could not be matched to one started in this browser")
    assert signed_in_as(replay) is None


def test_a_reused_code_is_refused_by_the_provider(sso_app):
    client = sso_app.test_client()
    started = start(client)
    cookie = client.get_cookie("giga_session").value  # the state, before the callback
    callback = at_provider(started)
    client.get(callback)
    thief = sso_app.test_client()
    thief.set_cookie("giga_session", cookie)
    refused(thief.get(callback), 400, "did not accept this sign-in's code")
    assert signed_in_as(thief) is None


@pytest.mark.parametrize("fault, words", [
    ("forged", "could not be verified"),
    ("expired", "could not be verified"),
    ("wrong audience", "could not be verified"),
    ("wrong issuer", "could not be verified"),
    ("wrong nonce", "could not be verified"),
    ("none", "did not send an ID token"),
])
def test_a_bad_id_token_is_a_plain_refusal(sso_app, oidc, fault, words):
    oidc.id_token_fault = fault
    client = sso_app.test_client()
    refused(sign_in(client), 400, words)
    assert signed_in_as(client) is None and user(sso_app, "ada@example.com") is None
    row, = trail(sso_app, "sign-in refused")
    assert row.outcome in ("refused: ID token refused", "refused: no ID token")


def test_a_provider_that_does_not_answer_is_a_page_not_a_500(tmp_path, sandbox):
    from .support.net import closed_port

    app = make_app(tmp_path, SANDBOX=sandbox, OIDC_ISSUER=f"http://127.0.0.1:{closed_port()}",
                   OIDC_CLIENT_ID="dashboard", OIDC_CLIENT_SECRET="x")
    refused(app.test_client().get("/signin/sso"), 503, "did not answer")


def test_refusals_from_one_place_fold_into_one_row_and_then_wait(tmp_path, sandbox, oidc,
                                                                 still_clock):
    """Every callback costs the provider a code exchange: an address whose sign-ins keep
    failing waits (LOGIN_MAX_FAILURES_PER_ADDRESS, 20), as at the password form."""
    sso_app = make_app(tmp_path, SANDBOX=sandbox, CLOCK=still_clock, **sso_settings(oidc))
    oidc.id_token_fault = "forged"
    for _ in range(20):
        assert sign_in(sso_app.test_client()).status_code == 400
    row, = trail(sso_app, "sign-in refused")
    assert row.repeats == 20
    exchanges = oidc.requests.count(("POST", "/token"))
    oidc.id_token_fault = None
    resp = sign_in(sso_app.test_client())
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 60
    assert "Too many sign-ins from here did not go through" in resp.get_data(as_text=True)
    assert oidc.requests.count(("POST", "/token")) == exchanges  # the provider not asked
    client = sso_app.test_client()  # a password sign-in from there still works
    client.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    assert signed_in_as(client) == ("admin@demo.test", "admin")


# -- password sign-in, switched down ---------------------------------------------------

def test_password_sign_in_off_refuses_the_right_password_on_the_server(
        tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, PASSWORD_SIGNIN="off"))
    client = app.test_client()
    page = client.get("/signin").get_data(as_text=True)
    assert 'name="password"' not in page and "Password sign-in is switched off" in page
    resp = client.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    assert resp.status_code == 403
    assert signed_in_as(client) is None
    row, = trail(app, "sign-in refused")
    assert row.outcome == "refused: password sign-in off" and row.detail.startswith(
        "via password")


def test_password_sign_in_for_admins_lets_a_local_admin_in_and_no_one_else(
        tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, PASSWORD_SIGNIN="admins"))
    page = app.test_client().get("/signin").get_data(as_text=True)
    assert "Sign in with password (local admins only)" in page
    finance = app.test_client()
    right = finance.post("/signin", data={"email": "finance@demo.test", "password": "demo"})
    wrong = finance.post("/signin", data={"email": "finance@demo.test", "password": "nope"})
    assert signed_in_as(finance) is None
    # the same answer either way: it never tells whether a non-admin's password was right
    assert right.status_code == wrong.status_code == 401
    words = "or not a local admin: password sign-in is kept for local admins"
    assert words in right.get_data(as_text=True) and words in wrong.get_data(as_text=True)
    refusals = {r.outcome for r in trail(app, "sign-in refused")}
    assert refusals == {"refused: password sign-in is for local admins",
                        "refused: wrong email or password"}
    admin = app.test_client()
    admin.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    assert signed_in_as(admin) == ("admin@demo.test", "admin")


def test_password_sign_in_switched_down_needs_a_provider():
    with pytest.raises(ConfigError, match="PASSWORD_SIGNIN=off needs OIDC_ISSUER"):
        load_settings({"GIGA_SANDBOX": "1"}, {"TESTING": True, "PASSWORD_SIGNIN": "off"})


@pytest.mark.parametrize("overrides, words", [
    ({"OIDC_ISSUER": "http://login.example.com"}, "https address"),
    ({"OIDC_ISSUER": "https://login.example.com"}, "OIDC_CLIENT_ID is required"),
    ({"OIDC_ROLE_MAP": "admins=owner"}, "OIDC_ROLE_MAP must be group=role pairs"),
    ({"OIDC_ROLE_MAP": "admins"}, "OIDC_ROLE_MAP must be group=role pairs"),
    ({"OIDC_SCOPES": "email profile"}, "OIDC_SCOPES must include openid"),
    ({"OIDC_ALLOWED_DOMAINS": "not a domain"}, "OIDC_ALLOWED_DOMAINS"),
    ({"PASSWORD_SIGNIN": "sometimes"}, "PASSWORD_SIGNIN must be on, admins"),
    ({"OIDC_ALLOW_SIGNUP": "maybe"}, "OIDC_ALLOW_SIGNUP must be 1 or 0"),
])
def test_sso_settings_are_checked_at_start(overrides, words):
    with pytest.raises(ConfigError, match=words):
        load_settings({"GIGA_SANDBOX": "1"}, {"TESTING": True, **overrides})


# -- signing out -------------------------------------------------------------------------

def test_signing_out_ends_our_session_and_the_providers(sso_app, oidc):
    client = sso_app.test_client()
    sign_in(client)
    resp = client.post("/signout")
    assert resp.status_code == 303
    there = urlsplit(resp.headers["Location"])
    assert f"{there.scheme}://{there.netloc}{there.path}" == oidc.issuer + "/logout"
    query = parse_qs(there.query)
    assert query["post_logout_redirect_uri"] == ["http://localhost/signin"]
    assert query["client_id"] == ["dashboard"] and query["id_token_hint"][0].count(".") == 2
    assert signed_in_as(client) is None
    with sso_app.app_context():
        assert db.session.scalar(select(UserSession)) is None
    assert "form-action 'self' https://checkout.stripe.com" in \
        client.get("/signin").headers["Content-Security-Policy"]
    assert oidc.issuer in client.get("/signin").headers["Content-Security-Policy"]


def test_a_password_session_signs_out_here_only(sso_app):
    client = sso_app.test_client()
    client.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    resp = client.post("/signout")
    assert resp.status_code == 302 and resp.headers["Location"] == "/signin"


def test_a_user_without_a_password_cannot_sign_in_with_one(sso_app):
    sign_in(sso_app.test_client())
    client = sso_app.test_client()
    for guess in ("", "demo", "None", PASSWORD):
        resp = client.post("/signin", data={"email": "ada@example.com", "password": guess})
        assert resp.status_code in (400, 401)
    assert signed_in_as(client) is None


def test_the_page_asked_for_is_where_the_sign_in_lands(sso_app):
    client = sso_app.test_client()
    resp = client.get(at_provider(start(client, next_page="/audit")))
    assert resp.headers["Location"] == "/audit"
    client = sso_app.test_client()
    resp = client.get(at_provider(start(client, next_page="//evil.example/")))
    assert resp.headers["Location"] == "/billing"


def test_the_command_line_adds_an_sso_only_user_and_says_whose_role_follows_groups(sso_app):
    runner = sso_app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "ada@example.com", "--role", "viewer",
                                 "--sso-only"])
    assert result.exit_code == 0, result.output
    assert "ada@example.com\tviewer\tSSO" in runner.invoke(args=["users", "list"]).output
    client = sso_app.test_client()
    sign_in(client)  # takes the account over by its verified email
    assert signed_in_as(client) == ("ada@example.com", "finance")
    result = runner.invoke(args=["users", "set-role", "ada@example.com", "admin"])
    assert result.exit_code == 0 and "next sign-in there sets it again" in result.output
    both = runner.invoke(args=["users", "create", "bo@example.com", "--role", "viewer",
                               "--sso-only", "--password", PASSWORD])
    assert both.exit_code == 1 and "not both" in both.output


def test_starting_again_and_again_keeps_the_cookie_small_and_the_last_start_works(sso_app):
    client = sso_app.test_client()
    starts = [start(client) for _ in range(25)]
    assert len(client.get_cookie("giga_session").value) < 2000  # browsers drop past 4 KB
    resp = client.get(at_provider(starts[-1]))
    assert resp.status_code == 302 and resp.headers["Location"] == "/billing"
    assert signed_in_as(client) == ("ada@example.com", "finance")


def test_leaving_every_mapped_group_ends_the_sessions_and_tokens_already_open(sso_app, oidc):
    open_elsewhere = sso_app.test_client()
    sign_in(open_elsewhere)
    made = open_elsewhere.post("/settings/tokens", data={
        "name": "nightly", "scopes": ["balance:read"], "days": "30"})
    token = re.search(r'value="(wgb_[^"]+)"', made.get_data(as_text=True)).group(1)
    api = sso_app.test_client()
    read = lambda: api.get("/api/v1/tokens/self",  # noqa: E731
                           headers={"Authorization": f"Bearer {token}"}).status_code
    assert read() == 200
    oidc.account = {**oidc.account, "groups": ["marketing"]}
    refused(sign_in(sso_app.test_client()), 403, "none of the groups")
    assert signed_in_as(open_elsewhere) is None
    assert read() == 401
    row, = trail(sso_app, "sign-in refused")
    assert "1 open session(s) ended, 1 personal API token(s) revoked" in row.detail


def test_a_dashboard_without_single_sign_on_never_loads_authlib(tmp_path):
    """Authlib and its JOSE library are some 11 MB a process would carry for nothing."""
    import subprocess
    import sys

    script = ("import sys; from webapp import create_app; "
              f"app = create_app({{'TESTING': True, 'GIGA_SANDBOX': '1', "
              f"'INSTANCE_PATH': {str(tmp_path)!r}}}); "
              "app.test_client().get('/signin'); "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'authlib', 'joserfc'}))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


# -- what an adversarial review found -----------------------------------------------------

def test_an_unverified_email_creates_no_one(sso_app, oidc):
    """Else anyone at the provider could take an address (the CFO's) before its owner."""
    oidc.account = {"sub": "mallory", "email": "cfo@example.com", "email_verified": False,
                    "groups": ["everyone"]}
    refused(sign_in(sso_app.test_client()), 403, "has not verified cfo@example.com")
    assert user(sso_app, "cfo@example.com") is None


def test_an_address_with_invisible_characters_is_not_taken(sso_app, oidc):
    oidc.account = {**oidc.account, "email": "ada\u200b@example.com"}
    refused(sign_in(sso_app.test_client()), 403, "did not say your email address")
    with sso_app.app_context():
        assert db.session.scalar(select(User).where(User.oidc_subject == "u-1")) is None


def test_unicode_case_folding_does_not_match_another_address(tmp_path, sandbox, oidc):
    """The Kelvin sign lowers to a plain k: ``\u212aate@`` must not be ``kate@``."""
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, OIDC_ALLOW_SIGNUP="0"))
    with app.app_context():
        service.create_user("kate@example.com", "admin", None)
    oidc.account = {"sub": "not-kate", "email": "\u212aate@example.com", "email_verified": True,
                    "groups": ["billing-admins"]}
    refused(sign_in(app.test_client()), 403, "has no access to this dashboard yet")
    assert user(app, "kate@example.com").oidc_subject is None


@pytest.mark.parametrize("fault", ["foreign audience", "unsigned"])
def test_an_id_token_for_another_client_or_unsigned_is_refused(sso_app, oidc, fault):
    oidc.id_token_fault = fault
    client = sso_app.test_client()
    resp = sign_in(client)
    assert resp.status_code in (400, 503) and "Traceback" not in resp.get_data(as_text=True)
    assert signed_in_as(client) is None and user(sso_app, "ada@example.com") is None


@pytest.mark.parametrize("path, body", [
    ("/userinfo", b"null"), ("/userinfo", b"5"), ("/userinfo", b"[1, 2]"),
    ("/jwks", b"[]"), ("/jwks", b'{"keys": 5}'),
])
def test_odd_data_from_the_provider_is_a_sentence_not_a_500(sso_app, oidc, path, body):
    oidc.bodies[path] = body
    client = sso_app.test_client()
    refused(sign_in(client), 400, "answered in a way this dashboard could not read")
    assert signed_in_as(client) is None


@pytest.mark.parametrize("body", [b"[]", b'"hello"', b'{"issuer": 5}', b"not json"])
def test_an_odd_discovery_document_is_a_sentence_not_a_500(sso_app, oidc, body):
    oidc.bodies["/.well-known/openid-configuration"] = body
    resp = sso_app.test_client().get("/signin/sso")
    assert resp.status_code == 503 and "Traceback" not in resp.get_data(as_text=True)
    assert "Sign-in did not go through" in resp.get_data(as_text=True)


def test_a_provider_that_is_down_is_not_asked_again_for_every_click(tmp_path, sandbox,
                                                                    fault_server):
    from .support.faultserver import Respond

    fault_server.handler = lambda method, path, body: Respond(502, "bad gateway")
    app = make_app(tmp_path, SANDBOX=sandbox, OIDC_ISSUER=fault_server.url,
                   OIDC_CLIENT_ID="dashboard", OIDC_CLIENT_SECRET="x")
    client = app.test_client()
    for _ in range(5):
        refused(client.get("/signin/sso"), 503, "did not answer")
    assert fault_server.count("/.well-known/openid-configuration") == 1


def test_a_callback_that_no_sign_in_here_started_repeats_nothing_it_carries(sso_app):
    client = sso_app.test_client()
    resp = client.get("/signin/sso/callback?error=access_denied&state=made-up&"
                      "error_description=Your+account+is+locked.+Call+IT+on+555")
    refused(resp, 400, "could not be matched to one started in this browser")
    assert "Call IT" not in resp.get_data(as_text=True)


def test_a_started_sign_in_expires_after_an_hour(sso_app, monkeypatch):
    import time as clock

    client = sso_app.test_client()
    callback = at_provider(start(client))
    later = clock.time() + 3601
    monkeypatch.setattr("webapp.auth.sso.time.time", lambda: later)
    refused(client.get(callback), 400, "could not be matched")
    assert signed_in_as(client) is None


def test_each_tab_lands_where_it_started(sso_app):
    client = sso_app.test_client()
    to_audit = start(client, next_page="/audit")
    to_alerts = start(client, next_page="/alerts")
    assert client.get(at_provider(to_alerts)).headers["Location"] == "/alerts"
    assert to_audit  # the other tab's sign-in is spent: the browser is signed in already


def test_a_linked_password_user_signs_in_through_the_provider_only(tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, OIDC_LINK_BY_EMAIL="1"))
    with app.app_context():
        service.create_user("ada@example.com", "viewer", PASSWORD)
    sign_in(app.test_client())
    client = app.test_client()
    resp = client.post("/signin", data={"email": "ada@example.com", "password": PASSWORD})
    assert resp.status_code == 401 and signed_in_as(client) is None
    linked, = trail(app, "SSO linked")
    assert "its password removed" in linked.detail


def test_an_issuer_anyone_can_sign_in_at_needs_domains_or_no_signup():
    settings = {"OIDC_ISSUER": "https://accounts.google.com", "OIDC_CLIENT_ID": "x",
                "OIDC_CLIENT_SECRET": "y"}
    with pytest.raises(ConfigError, match="signs in anyone with an account there"):
        load_settings({"GIGA_SANDBOX": "1"}, {"TESTING": True, **settings})
    for more in ({"OIDC_ALLOWED_DOMAINS": "example.com"}, {"OIDC_ALLOW_SIGNUP": "0"}):
        load_settings({"GIGA_SANDBOX": "1"}, {"TESTING": True, **settings, **more})


def test_removing_an_sso_user_says_they_can_come_back_through_the_provider(sso_app):
    sign_in(sso_app.test_client())
    admin = sso_app.test_client()
    admin.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    ada = user(sso_app, "ada@example.com")
    page = admin.post(f"/users/{ada.id}/delete", data={"confirm": "ada@example.com"},
                      follow_redirects=True).get_data(as_text=True)
    assert "They can sign in again through SSO" in html.unescape(page)


def test_a_namespaced_groups_claim_is_read_as_it_is(tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(
        oidc, OIDC_GROUPS_CLAIM="https://example.com/groups"))
    oidc.account = {**oidc.account, "groups": [],
                    "https://example.com/groups": ["billing-admins"]}
    client = app.test_client()
    sign_in(client)
    assert signed_in_as(client) == ("ada@example.com", "admin")


def test_callbacks_nobody_started_do_not_lock_an_address_out(sso_app):
    """A web page could make every browser behind the office's address send them."""
    for _ in range(25):
        refused(sso_app.test_client().get("/signin/sso/callback?state=x&code=y"), 400,
                "could not be matched")
    client = sso_app.test_client()
    assert sign_in(client).status_code == 302
    assert signed_in_as(client) == ("ada@example.com", "finance")


def test_a_shut_out_user_loses_the_password_the_command_line_gave_them(sso_app, oidc):
    sign_in(sso_app.test_client())
    runner = sso_app.test_cli_runner()
    assert runner.invoke(args=["users", "set-password", "ada@example.com", "--password",
                               PASSWORD]).exit_code == 0
    oidc.account = {**oidc.account, "groups": ["marketing"]}
    refused(sign_in(sso_app.test_client()), 403, "none of the groups")
    client = sso_app.test_client()
    resp = client.post("/signin", data={"email": "ada@example.com", "password": PASSWORD})
    assert resp.status_code == 401 and signed_in_as(client) is None
    row, = [r for r in trail(sso_app, "sign-in refused") if "no mapped group" in r.outcome]
    assert "password removed" in row.detail


def test_with_password_sign_in_for_admins_a_local_admin_is_never_linked(
        tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(
        oidc, PASSWORD_SIGNIN="admins", OIDC_LINK_BY_EMAIL="1"))
    oidc.account = {**oidc.account, "email": "admin@demo.test",
                    "groups": ["billing-admins"]}
    refused(sign_in(app.test_client()), 403, "kept to sign in with a password")
    admin = user(app, "admin@demo.test")
    assert admin.has_password and not admin.uses_sso


def test_linking_ends_the_sessions_the_password_opened(tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, OIDC_LINK_BY_EMAIL="1"))
    with app.app_context():
        service.create_user("ada@example.com", "viewer", PASSWORD)
    by_password = app.test_client()
    by_password.post("/signin", data={"email": "ada@example.com", "password": PASSWORD})
    assert signed_in_as(by_password) == ("ada@example.com", "viewer")
    sign_in(app.test_client())
    assert signed_in_as(by_password) is None


def test_a_discovery_document_without_endpoints_is_a_page_and_its_fix_is_seen(
        sso_app, oidc, monkeypatch):
    doc = {k: v for k, v in oidc.discovery().items() if k != "authorization_endpoint"}
    oidc.bodies["/.well-known/openid-configuration"] = __import__("json").dumps(doc).encode()
    refused(sso_app.test_client().get("/signin/sso"), 503, "do not match")
    del oidc.bodies["/.well-known/openid-configuration"]  # the provider is mended
    monkeypatch.setattr("webapp.auth.sso.RECHECK_SECONDS", 0)
    sso_app.extensions["sso_down_until"] = 0
    client = sso_app.test_client()
    assert sign_in(client).status_code == 302


def test_signing_out_while_the_provider_answers_oddly_still_signs_out(sso_app, oidc):
    client = sso_app.test_client()
    sign_in(client)
    oidc.bodies["/.well-known/openid-configuration"] = b"[]"
    sso_app.extensions["sso_client"].server_metadata.pop("_loaded_at")  # a fresh process
    resp = client.post("/signout")
    assert resp.status_code == 302 and resp.headers["Location"] == "/signin"
    assert signed_in_as(client) is None


def test_a_typed_email_is_kept_on_the_trail_without_invisible_characters(
        tmp_path, sandbox, oidc):
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc, PASSWORD_SIGNIN="off"))
    app.test_client().post("/signin", data={"email": "bo\u202e\u200bss@example.com\x00",
                                             "password": "x"})
    row, = trail(app, "sign-in refused")
    assert row.user_email == "bo??ss@example.com?"


def test_a_sign_in_row_says_where_from(sso_app):
    sign_in(sso_app.test_client())
    row, = trail(sso_app, "signed in")
    assert row.detail == "SSO from 127.0.0.1"


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_two_first_sign_ins_at_once_make_one_user(tmp_path, sandbox, oidc, store):
    """The same person finishing their first sign-in in two tabs in the same moment, 50
    times over: one user, one "user added" row, and neither tab sees a 500."""
    import threading

    from .support.postgres import emptied_postgres

    more = {"DATABASE_URL": emptied_postgres()} if store == "postgresql" else {}
    app = make_app(tmp_path, SANDBOX=sandbox, **sso_settings(oidc), **more)
    statuses = []
    for trial in range(50):
        oidc.account = {**oidc.account, "sub": f"tabs-{trial}",
                        "email": f"tabs{trial}@example.com"}
        tabs = [app.test_client() for _ in range(2)]
        callbacks = [at_provider(start(tab)) for tab in tabs]
        barrier = threading.Barrier(2)

        def finish(tab, callback):
            barrier.wait()
            statuses.append(tab.get(callback).status_code)

        threads = [threading.Thread(target=finish, args=pair) for pair in zip(tabs, callbacks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert statuses == [302] * 100, statuses
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User).where(
            User.email.like("tabs%"))) == 50
    assert len([r for r in trail(app, "user added") if r.subject.startswith("tabs")]) == 50
