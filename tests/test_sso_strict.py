"""Single sign-on against a certified OpenID provider (node ``oidc-provider``: PKCE
required, email and groups from userinfo only, a code good once), with the dashboard
served by gunicorn as deployed, and a person going through the provider's own pages.

The role comes from the groups userinfo gives, again at every sign-in; a replayed
callback is a refusal in words; with two servers the callback is finished by the other.
"""
from __future__ import annotations

import csv
import html
import io
import os
import re
import secrets

import pytest
import requests

from .conftest import make_app
from .support.net import closed_port
from .support.node_oidc import (deny_at_node_provider, sign_in_at_node_provider,
                                sign_out_at_node_provider)
from .support.postgres import emptied_postgres
from .support.processes import Gunicorn

ROLE_MAP = "billing-admins=admin,billing-finance=finance,*=viewer"
ALICE = {"sub": "00u8alice", "email": "alice@corp.test", "email_verified": True,
         "groups": ["billing-admins", "everyone"], "name": "Alice Admin"}
#: a local admin with a password (the break-glass way in), so that Alice's demotion
#: does not leave the dashboard without an admin
ROOT_ADMIN = ("root@corp.test", "violet-anchor-meadow-42")


class Deployment:
    """The node provider and ``count`` gunicorn servers sharing SECRET_KEY and a database;
    the provider sends people back to the last server (``PUBLIC_URL``)."""

    def __init__(self, tmp_path, node_oidc, upstream_url: str, database_url: str, count: int):
        ports = [closed_port() for _ in range(count)]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        self.public = bases[-1]
        self.provider = node_oidc([self.public + "/signin/sso/callback"],
                                  accounts={"alice": ALICE},
                                  post_logout_redirect_uris=[self.public + "/signin"])
        client = self.provider.client
        env = {k: v for k, v in os.environ.items()
               if k not in ("REDIS_URL", "WEB_CONCURRENCY", "GIGA_SANDBOX")}
        env.update({"GIGA_API_URL": upstream_url, "GIGA_API_KEY": "giga_sk_sso_strict",
                    "SECRET_KEY": secrets.token_hex(32),
                    "API_TOKEN_PEPPER": secrets.token_hex(32), "DATABASE_URL": database_url,
                    "PUBLIC_URL": self.public, "OIDC_ISSUER": self.provider.issuer,
                    "OIDC_CLIENT_ID": client["client_id"],
                    "OIDC_CLIENT_SECRET": client["client_secret"],
                    "OIDC_SCOPES": "openid email profile groups", "OIDC_ROLE_MAP": ROLE_MAP})
        here = make_app(tmp_path / "here", GIGA_API_URL=upstream_url,
                        GIGA_API_KEY="giga_sk_sso_strict", DATABASE_URL=database_url)
        with here.app_context():
            from webapp.services.users import create_user
            create_user(ROOT_ADMIN[0], "admin", ROOT_ADMIN[1])
        self.servers = []
        for i, port in enumerate(ports):
            self.servers.append(Gunicorn(env, tmp_path / f"gunicorn-{i}.log", port=port))

    def stop(self):
        for server in self.servers:
            server.stop()


@pytest.fixture
def deploy(tmp_path, node_oidc, fault_server):
    """``deploy(count=1, database_url=None)``: a ``Deployment`` (on SQLite unless told),
    stopped after the test."""
    made = []

    def start(count=1, database_url=None):
        made.append(Deployment(tmp_path, node_oidc, fault_server.url,
                               database_url or f"sqlite:///{tmp_path / 'shared.db'}", count))
        return made[-1]
    yield start
    for deployment in made:
        deployment.stop()


@pytest.fixture
def http(deploy):
    """One browser's cookies, at the provider and at every server."""
    with requests.Session() as session:
        yield session


def to_provider_and_back(http: requests.Session, base: str, login: str = "alice") -> str:
    """Press the SSO button at ``base`` and sign in at the provider: the callback URL the
    provider sends the browser to (not followed yet)."""
    start = http.get(base + "/signin/sso", allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text[:300]
    return sign_in_at_node_provider(http, start.headers["Location"], login)


def who(page: requests.Response) -> tuple[str, str]:
    """The email and role the page's header shows for the person signed in."""
    found = re.search(r'class="who-name">([^<]+?) <span class="role">(\w+)</span>', page.text)
    assert found, page.text[:500]
    return found.group(1), found.group(2)


def trail_rows(http: requests.Session, base: str, action: str) -> list[dict]:
    """The audit trail's CSV export, filtered to ``action``, as the person downloads it."""
    resp = http.get(base + "/audit/export.csv", params={"action": action}, timeout=10)
    assert resp.status_code == 200, resp.text[:300]
    return list(csv.DictReader(io.StringIO(resp.text)))


def sign_out(http: requests.Session, deployment: Deployment, page: requests.Response):
    """The header's sign-out button: our session ends, then the provider's (it asks first)."""
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    out = http.post(deployment.public + "/signout", data={"csrf_token": token},
                    allow_redirects=False, timeout=10)
    assert out.status_code == 303
    assert out.headers["Location"].startswith(deployment.provider.issuer + "/session/end")
    back = sign_out_at_node_provider(http, out.headers["Location"])
    assert back.partition("?")[0] == deployment.public + "/signin"  # with Authlib's state


def test_first_sign_in_creates_the_user_with_the_role_userinfo_groups_give(deploy, http):
    deployment = deploy()
    callback = to_provider_and_back(http, deployment.public)
    assert callback.startswith(deployment.public + "/signin/sso/callback?")

    page = http.get(callback, timeout=10)

    assert page.status_code == 200 and page.url == deployment.public + "/billing"
    assert who(page) == ("alice@corp.test", "admin")
    added = [r for r in trail_rows(http, deployment.public, "user added")
             if r["user changed"] == "alice@corp.test"]
    assert [(r["email"], r["role to"]) for r in added] == [("(identity provider)", "admin")]
    assert "groups: billing-admins, everyone" in added[0]["detail"]


def test_leaving_the_group_demotes_at_the_next_sign_in_on_the_trail(deploy, http):
    deployment = deploy()
    page = http.get(to_provider_and_back(http, deployment.public), timeout=10)
    assert who(page) == ("alice@corp.test", "admin")
    sign_out(http, deployment, page)

    deployment.provider.set_account("alice", groups=["billing-finance", "everyone"])
    page = http.get(to_provider_and_back(http, deployment.public), timeout=10)

    assert who(page) == ("alice@corp.test", "finance")
    assert http.get(deployment.public + "/users", timeout=10).status_code == 403
    changed = trail_rows(http, deployment.public, "role changed")
    assert [(r["user changed"], r["role from"], r["role to"]) for r in changed] \
        == [("alice@corp.test", "admin", "finance")]
    assert "groups: billing-finance, everyone" in changed[0]["detail"]


def test_a_replayed_callback_is_a_plain_refusal_and_signs_nobody_in(deploy, http):
    deployment = deploy()
    callback = to_provider_and_back(http, deployment.public)
    before = http.cookies.copy()  # the cookies the callback first came with
    assert who(http.get(callback, timeout=10))[1] == "admin"

    replay = requests.Session()
    replay.cookies = before
    again = replay.get(callback, allow_redirects=False, timeout=10)
    assert again.status_code == 400
    assert "did not accept this sign-in's code (it was already used" in html.unescape(again.text)
    assert replay.get(deployment.public + "/billing", allow_redirects=False,
                      timeout=10).status_code == 302  # to the sign-in page

    stranger = requests.get(callback, allow_redirects=False, timeout=10)  # the URL alone
    assert stranger.status_code == 400
    assert "could not be matched to one started in this browser" in html.unescape(stranger.text)
    refused = trail_rows(http, deployment.public, "sign-in refused")
    assert {r["outcome"] for r in refused} \
        == {"refused: code refused", "refused: state did not match"}, refused


def test_a_denial_at_the_provider_is_a_plain_refusal(deploy, http):
    deployment = deploy()
    start = http.get(deployment.public + "/signin/sso", allow_redirects=False, timeout=10)
    cancelled = deny_at_node_provider(http, start.headers["Location"])  # "[ Cancel ]"
    unknown = to_provider_and_back(http, deployment.public, login="mallory")

    for callback in (cancelled, unknown):
        page = http.get(callback, allow_redirects=False, timeout=10)
        assert page.status_code == 403
        assert "The sign-in was cancelled or refused at your identity provider" \
            in html.unescape(page.text)
    assert http.get(deployment.public + "/billing", allow_redirects=False,
                    timeout=10).status_code == 302


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_sign_in_started_on_one_server_is_finished_by_the_other(deploy, http, database):
    url = emptied_postgres() if database == "postgresql" else None
    deployment = deploy(count=2, database_url=url)
    first, second = deployment.servers

    callback = to_provider_and_back(http, first.base)  # started on server 1
    assert callback.startswith(second.base + "/signin/sso/callback?")
    page = http.get(callback, timeout=10)  # finished by server 2

    assert page.url == second.base + "/billing" and who(page) == ("alice@corp.test", "admin")
    assert who(http.get(first.base + "/billing", timeout=10)) == ("alice@corp.test", "admin")
