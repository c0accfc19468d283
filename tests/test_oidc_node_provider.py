"""The certified OpenID provider the strict sign-in tests run against (node
``oidc-provider``), with Authlib's plain OAuth 2 session as the client: what it refuses
and what it serves where, so a client that passes against it passes against the strict
providers teams run."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from .support.node_oidc import deny_at_node_provider, sign_in_at_node_provider

CALLBACK = "http://127.0.0.1:9/signin/sso/callback"
ALICE = {"sub": "00u1alice", "email": "alice@corp.test", "email_verified": True,
         "groups": ["billing-admins", "everyone"], "name": "Alice Admin"}


@pytest.fixture
def provider(node_oidc):
    provider = node_oidc([CALLBACK], accounts={"alice": ALICE})
    provider.meta = requests.get(provider.discovery_url, timeout=5).json()
    return provider


def client_for(provider, **more) -> OAuth2Session:
    client = provider.client
    return OAuth2Session(client["client_id"], client["client_secret"], redirect_uri=CALLBACK,
                         scope="openid email profile groups", **more)


def query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def sign_in(provider, login="alice", http=None):
    """A full code flow with PKCE: (client with its token, ID token claims)."""
    rp = client_for(provider, code_challenge_method="S256")
    verifier, nonce = generate_token(48), generate_token(20)
    url, _ = rp.create_authorization_url(provider.meta["authorization_endpoint"],
                                         code_verifier=verifier, nonce=nonce)
    back = sign_in_at_node_provider(http or requests.Session(), url, login)
    assert back.startswith(CALLBACK) and "code" in query(back)
    token = rp.fetch_token(provider.meta["token_endpoint"], authorization_response=back,
                           code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(provider.meta["jwks_uri"], timeout=5).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
    assert claims["nonce"] == nonce and claims["iss"] == provider.issuer
    return rp, claims


def refused_at_once(url: str) -> dict:
    """The provider's answer to an authorization request it refuses before any page."""
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(CALLBACK)
    return query(location)


def test_pkce_is_required_with_s256_only(provider):
    assert provider.meta["code_challenge_methods_supported"] == ["S256"]
    endpoint = provider.meta["authorization_endpoint"]

    without, _ = client_for(provider).create_authorization_url(endpoint)
    back = refused_at_once(without)
    assert back["error"] == "invalid_request" and "PKCE" in back["error_description"]

    plain, _ = client_for(provider).create_authorization_url(
        endpoint, code_challenge="a" * 43, code_challenge_method="plain")
    assert refused_at_once(plain)["error"] == "invalid_request"


def test_code_flow_email_and_groups_come_from_userinfo_only(provider):
    rp, id_token = sign_in(provider)

    assert id_token["sub"] == "00u1alice" and id_token["aud"] == provider.client["client_id"]
    assert not {"email", "email_verified", "groups", "name"} & set(id_token)

    userinfo = rp.get(provider.meta["userinfo_endpoint"], timeout=5).json()
    assert userinfo == {"sub": "00u1alice", "email": "alice@corp.test", "email_verified": True,
                        "groups": ["billing-admins", "everyone"], "name": "Alice Admin"}


def test_a_code_is_good_once_and_only_with_its_verifier(provider):
    rp = client_for(provider, code_challenge_method="S256")
    verifier = generate_token(48)
    url, _ = rp.create_authorization_url(provider.meta["authorization_endpoint"],
                                         code_verifier=verifier, nonce="n")
    back = sign_in_at_node_provider(requests.Session(), url, "alice")

    with pytest.raises(OAuthError, match="invalid_grant"):
        rp.fetch_token(provider.meta["token_endpoint"], authorization_response=back,
                       code_verifier=generate_token(48))
    assert "id_token" in rp.fetch_token(provider.meta["token_endpoint"],
                                        authorization_response=back, code_verifier=verifier)
    with pytest.raises(OAuthError, match="invalid_grant"):  # the same code again
        rp.fetch_token(provider.meta["token_endpoint"], authorization_response=back,
                       code_verifier=verifier)


def test_groups_follow_the_accounts_file_at_the_next_sign_in(provider):
    http = requests.Session()
    rp, _ = sign_in(provider, http=http)
    assert rp.get(provider.meta["userinfo_endpoint"], timeout=5).json()["groups"] \
        == ["billing-admins", "everyone"]

    provider.set_account("alice", groups=["everyone"])
    # still signed in at the provider (its cookies in ``http``): no page, straight back
    rp, _ = sign_in(provider, http=http)
    assert rp.get(provider.meta["userinfo_endpoint"], timeout=5).json()["groups"] == ["everyone"]


def test_cancel_and_unknown_logins_come_back_as_access_denied(provider):
    rp = client_for(provider, code_challenge_method="S256")
    url, state = rp.create_authorization_url(provider.meta["authorization_endpoint"],
                                             code_verifier=generate_token(48), nonce="n")

    cancelled = query(deny_at_node_provider(requests.Session(), url))
    assert cancelled["error"] == "access_denied" and cancelled["state"] == state

    stranger = query(sign_in_at_node_provider(requests.Session(), url, "mallory"))
    assert stranger["error"] == "access_denied" and "code" not in stranger
    assert provider.proc.poll() is None
