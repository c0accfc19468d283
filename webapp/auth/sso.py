"""The identity provider's side of single sign-on, through Authlib's Flask client.

Authlib does the protocol: discovery from ``OIDC_ISSUER``, the authorization
code flow with PKCE (S256), state and nonce kept in the signed session cookie
(so the callback may reach any of our servers), the code exchanged for
tokens, the ID token checked against the provider's keys (signature, issuer,
audience, expiry, nonce). This module adds what Authlib leaves to us: an ID
token is required, userinfo is merged in (some providers give email and
groups only there) and must name the same subject, and every way it can go
wrong becomes a ``SignInRefused`` with a sentence.
"""
from __future__ import annotations

import logging

import requests
from flask import current_app, session

from ..security import origin
from ..services.sso import Identity, SignInRefused, groups_from, is_verified

log = logging.getLogger(__name__)

CLIENT = "sso_client"
#: each call to the provider: (connect, read) seconds
TIMEOUT = (3.05, 10)
#: clock difference allowed between the provider and us when checking an ID token
LEEWAY_SECONDS = 60
#: how much of the provider's own words a refusal page repeats
PROVIDER_WORDS = 200
START_AGAIN = "Start again from the sign-in page."
#: how the Flask client names a started sign-in in the session (``_state_<name>_<state>``)
STATE_KEY = "_state_idp_"
#: sign-ins started in one browser that may be finished (other tabs, a back button)
ATTEMPTS_KEPT = 3


def init_sso(app):
    """Register the provider when ``OIDC_ISSUER`` is set (nothing is fetched yet: the
    discovery document is read at the first sign-in, then kept)."""
    cfg = app.config
    if not cfg["OIDC_ISSUER"]:
        return
    # loaded only here: Authlib and its JOSE library are 11 MB a process without single
    # sign-on would carry for nothing
    from authlib.integrations.flask_client import OAuth

    oauth = OAuth(app)
    app.extensions[CLIENT] = oauth.register(
        "idp", client_id=cfg["OIDC_CLIENT_ID"], client_secret=cfg["OIDC_CLIENT_SECRET"],
        server_metadata_url=cfg["OIDC_ISSUER"].rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": cfg["OIDC_SCOPES"], "code_challenge_method": "S256",
                       "default_timeout": TIMEOUT})


def enabled(app=None) -> bool:
    return CLIENT in (app or current_app).extensions


def _client():
    return current_app.extensions[CLIENT]


def _metadata() -> dict:
    """The provider's discovery document. Raises ``SignInRefused`` when it cannot be read
    or names another issuer (a provider answering for someone else)."""
    try:
        metadata = _client().load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        log.warning("the identity provider's discovery document could not be read: %s", exc)
        raise _unreachable() from exc
    if _same_issuer(metadata.get("issuer"), current_app.config["OIDC_ISSUER"]) is False:
        log.error("the discovery document at %s names issuer %r", current_app.config[
            "OIDC_ISSUER"], metadata.get("issuer"))
        raise SignInRefused("provider misconfigured",
                            "The identity provider's settings do not match this dashboard's "
                            "(OIDC_ISSUER). Tell a dashboard admin.")
    return metadata


def _same_issuer(found, expected) -> bool:
    return isinstance(found, str) and found.rstrip("/") == expected.rstrip("/")


def _unreachable() -> SignInRefused:
    return SignInRefused("provider unreachable",
                         "Your identity provider did not answer. Try again in a minute; if it "
                         "keeps happening, tell a dashboard admin.")


def authorization_url(redirect_uri: str) -> str:
    """Where to send the browser to sign in at the provider; the state, nonce and PKCE
    verifier are kept in the session for the callback. Raises ``SignInRefused``."""
    _metadata()
    client = _client()
    try:
        found = client.create_authorization_url(redirect_uri)
    except requests.RequestException as exc:
        raise _unreachable() from exc
    _forget_older_attempts()
    # the address itself is not kept: it would only fill the cookie
    client.save_authorize_data(redirect_uri=redirect_uri, state=found["state"],
                               code_verifier=found["code_verifier"], nonce=found["nonce"])
    return found["url"]


def _forget_older_attempts():
    """Keep the newest ``ATTEMPTS_KEPT`` - 1 sign-ins started in this browser (and not
    finished) before another is added: each is kept in the cookie, which a browser
    drops past 4 KB, and a person clicking the button again and again would otherwise
    end up unable to sign in at all."""
    started = sorted((key for key in session if key.startswith(STATE_KEY)),
                     key=lambda key: (session[key] or {}).get("exp", 0))
    for key in started[:max(0, len(started) - ATTEMPTS_KEPT + 1)]:
        session.pop(key, None)


def finish() -> tuple[Identity, str]:
    """The identity the callback request carries, and the raw ID token (for signing
    out at the provider). Raises ``SignInRefused`` for every way it can fail."""
    from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
    from joserfc.errors import JoseError

    metadata = _metadata()
    client = _client()
    try:
        token = client.authorize_access_token(leeway=LEEWAY_SECONDS)
    except MismatchingStateError:
        raise SignInRefused("state did not match",
                            "This sign-in could not be matched to one started in this browser "
                            "(it was already used, it is too old, or the browser did not keep "
                            f"its cookie). {START_AGAIN}") from None
    except OAuthError as exc:
        raise _provider_said(exc) from None
    except JoseError as exc:
        log.warning("an ID token was refused: %s", exc)
        raise SignInRefused("ID token refused",
                            "The identity provider's answer could not be verified "
                            f"({_words(exc.description or exc.error)}). {START_AGAIN}") from None
    except (requests.RequestException, ValueError) as exc:
        log.warning("the identity provider could not be reached: %s", exc)
        raise _unreachable() from exc
    claims = token.get("userinfo")
    if not claims or not isinstance(token.get("id_token"), str):
        raise SignInRefused("no ID token",
                            "The identity provider did not send an ID token, so who signed in "
                            f"cannot be checked. {START_AGAIN}")
    claims = dict(claims)
    if metadata.get("userinfo_endpoint"):
        claims.update(_userinfo(token, claims["sub"]))
    return Identity(issuer=claims["iss"], subject=claims["sub"],
                    email=claims.get("email") if isinstance(claims.get("email"), str) else None,
                    email_verified=is_verified(claims),
                    groups=groups_from(claims, current_app.config["OIDC_GROUPS_CLAIM"])), \
        token["id_token"]


def _userinfo(token, subject: str) -> dict:
    """The userinfo endpoint's claims (they fill in what the ID token left out). Raises
    ``SignInRefused`` when it cannot be read or names another subject."""
    from authlib.integrations.base_client.errors import OAuthError

    try:
        info = dict(_client().userinfo(token=token))
    except (requests.RequestException, ValueError, OAuthError) as exc:
        log.warning("the identity provider's userinfo could not be read: %s", exc)
        raise _unreachable() from exc
    if info.get("sub") != subject:
        raise SignInRefused("userinfo for another subject",
                            "The identity provider described someone other than the person "
                            f"who signed in. {START_AGAIN}")
    info.pop("iss", None)
    info.pop("aud", None)
    return info


def _provider_said(exc) -> SignInRefused:
    """The provider refused (at its sign-in page, or at the code exchange)."""
    words = _words(exc.description or exc.error or "")
    if exc.error == "access_denied":
        return SignInRefused("refused at the provider",
                             "The sign-in was cancelled or refused at your identity provider"
                             + (f" (it said: {words})" if words else "") + f". {START_AGAIN}")
    if exc.error == "invalid_grant":
        return SignInRefused("code refused",
                             "The identity provider did not accept this sign-in's code (it was "
                             f"already used, or it expired). {START_AGAIN}")
    return SignInRefused("provider error",
                         f"The identity provider refused the sign-in ({words or exc.error}). "
                         f"{START_AGAIN}")


def _words(text) -> str:
    """Someone else's words, safe to repeat: printable, one line, cut short."""
    text = "".join(c if c.isprintable() else " " for c in str(text or ""))
    return " ".join(text.split())[:PROVIDER_WORDS]


def logout_url(id_token: str | None, signed_out_to: str) -> str | None:
    """Where to end the session at the provider too, when it advertises an end-session
    endpoint on its own address (the sign-out form may redirect there); else None."""
    try:
        metadata = _client().load_server_metadata()
    except (requests.RequestException, ValueError):
        return None  # signed out here; the provider's session ends on its own
    endpoint = metadata.get("end_session_endpoint")
    if not isinstance(endpoint, str) or origin(endpoint) != origin(
            current_app.config["OIDC_ISSUER"]):
        return None
    return _client().create_logout_url(post_logout_redirect_uri=signed_out_to,
                                       id_token_hint=id_token,
                                       client_id=current_app.config["OIDC_CLIENT_ID"])["url"]
