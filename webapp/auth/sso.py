"""The identity provider's side of single sign-on, through Authlib's Flask client.

Authlib does the protocol: discovery from ``OIDC_ISSUER``, the authorization
code flow with PKCE (S256), state and nonce kept in the signed session cookie
(so the callback may reach any of our servers), the code exchanged for
tokens, the ID token's signature checked against the provider's keys. This
module adds what Authlib leaves to us: the callback's state is checked
(present, ours, under an hour old) before anything it carries is believed;
the ID token's algorithm is pinned to asymmetric ones (never ``none`` or an
HMAC, whatever the discovery document lists), its issuer and audience are
required to be ours, and an ID token is required at all; userinfo is merged
in (some providers give email and groups only there) and must name the same
subject; and every way it can go wrong, a malformed answer included, becomes a
``SignInRefused`` with a sentence.
"""
from __future__ import annotations

import logging
import time

import requests
from flask import current_app, request, session

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
#: the algorithms an ID token may be signed with: public-key ones only
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")
#: what a discovery document must name for the code flow to work at all
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")
#: the longest issuer or subject kept (the ``users`` columns)
IDENTIFIER_MAX = 255
#: after the provider did not answer, sign-ins are refused at once this long rather than
#: each holding a thread for the whole timeout
RECHECK_SECONDS = 10


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
    """The provider's discovery document, its signing algorithms pinned to
    ``ASYMMETRIC``. Raises ``SignInRefused`` when it cannot be read, or names another
    issuer (a provider answering for someone else) or no keys."""
    app = current_app._get_current_object()
    if time.monotonic() < app.extensions.get("sso_down_until", 0):
        raise _unreachable()
    try:
        metadata = _client().load_server_metadata()
    except (requests.RequestException, ValueError, TypeError) as exc:
        # TypeError: a document that is JSON but not an object
        app.extensions["sso_down_until"] = time.monotonic() + RECHECK_SECONDS
        log.warning("the identity provider's discovery document could not be read: %s", exc)
        raise _unreachable() from exc
    expected = app.config["OIDC_ISSUER"]
    if not _same_issuer(metadata.get("issuer"), expected) or not all(
            isinstance(metadata.get(name), str) for name in ENDPOINTS):
        log.error("the discovery document at %s names issuer %r and endpoints %r", expected,
                  metadata.get("issuer"), {name: metadata.get(name) for name in ENDPOINTS})
        raise _misconfigured(app)
    listed = metadata.get("id_token_signing_alg_values_supported")
    algorithms = [a for a in (listed if isinstance(listed, list) else ["RS256"])
                  if a in ASYMMETRIC]
    if not algorithms:
        log.error("the identity provider signs ID tokens only with %r", listed)
        raise _misconfigured(app)
    # Authlib accepts what this lists: never "none" or an HMAC keyed by something public
    metadata["id_token_signing_alg_values_supported"] = algorithms
    return metadata


def _misconfigured(app) -> SignInRefused:
    """The refusal for a discovery document we cannot use; Authlib keeps a document once
    read, so this one is dropped (read again after ``RECHECK_SECONDS``: the provider's
    fix is seen without a restart)."""
    _client().server_metadata.pop("_loaded_at", None)
    app.extensions["sso_down_until"] = time.monotonic() + RECHECK_SECONDS
    return SignInRefused("provider misconfigured",
                         "The identity provider's settings do not match this dashboard's "
                         "(OIDC_ISSUER). Tell a dashboard admin.")


def _same_issuer(found, expected) -> bool:
    return isinstance(found, str) and found.rstrip("/") == expected.rstrip("/")


def _unreachable() -> SignInRefused:
    return SignInRefused("provider unreachable",
                         "Your identity provider did not answer. Try again in a minute; if it "
                         "keeps happening, tell a dashboard admin.")


def authorization_url(redirect_uri: str, next_page: str | None) -> str:
    """Where to send the browser to sign in at the provider; the state, nonce, PKCE
    verifier and the page to land on (``next_page``, already checked) are kept in the
    session for the callback. Raises ``SignInRefused``."""
    _metadata()
    client = _client()
    try:
        found = client.create_authorization_url(redirect_uri)
    except requests.RequestException as exc:
        raise _unreachable() from exc
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        log.error("no sign-in address could be made from the discovery document: %r", exc)
        raise _misconfigured(current_app._get_current_object()) from exc
    _forget_older_attempts()
    # the address itself is not kept: it would only fill the cookie
    client.save_authorize_data(redirect_uri=redirect_uri, state=found["state"],
                               code_verifier=found["code_verifier"], nonce=found["nonce"],
                               next=next_page)
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


def finish() -> tuple[Identity, str, str | None]:
    """The identity the callback request carries, the raw ID token (for signing out at
    the provider) and the page the sign-in was started for. Raises ``SignInRefused``
    for every way it can fail."""
    from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
    from joserfc.errors import JoseError

    next_page = _started(request.args.get("state"))
    metadata = _metadata()
    cfg = current_app.config
    try:
        token = _client().authorize_access_token(leeway=LEEWAY_SECONDS, claims_options={
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": cfg["OIDC_CLIENT_ID"]}})
        claims = token.get("userinfo")
        if not claims or not isinstance(token.get("id_token"), str):
            raise SignInRefused("no ID token",
                                "The identity provider did not send an ID token, so who "
                                f"signed in cannot be checked. {START_AGAIN}")
        claims = dict(claims)
        _check_identifiers(claims)
        if metadata.get("userinfo_endpoint"):
            claims.update(_userinfo(token, claims["sub"]))
    except MismatchingStateError:
        raise _state_mismatch() from None
    except OAuthError as exc:
        raise _provider_said(exc) from None
    except JoseError as exc:
        log.warning("an ID token was refused: %s", exc)
        raise SignInRefused("ID token refused",
                            "The identity provider's answer could not be verified "
                            f"({_words(exc.description or exc.error)}). {START_AGAIN}") from None
    except requests.RequestException as exc:
        log.warning("the identity provider could not be reached: %s", exc)
        raise _unreachable() from exc
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        # JSON that is not what the protocol says (a list for keys, a number for userinfo)
        log.warning("the identity provider's answer could not be read: %r", exc)
        raise SignInRefused("unreadable answer",
                            "The identity provider answered in a way this dashboard could not "
                            f"read. {START_AGAIN} If it keeps happening, tell a dashboard "
                            "admin.") from None
    email = claims.get("email")
    return Identity(issuer=claims["iss"], subject=claims["sub"],
                    email=email if isinstance(email, str) else None,
                    email_verified=is_verified(claims),
                    groups=groups_from(claims, cfg["OIDC_GROUPS_CLAIM"])), \
        token["id_token"], next_page


def _started(state) -> str | None:
    """The page the sign-in ``state`` names was started for, when this browser started
    it less than an hour ago. Checked before anything else the callback carries is
    believed (an ``error`` and its words included). Raises ``SignInRefused``.

    The hour is on the wall clock, as Authlib stamps it (``exp``)."""
    kept = session.get(STATE_KEY + state) if isinstance(state, str) and state else None
    if not isinstance(kept, dict) or not isinstance(kept.get("data"), dict) \
            or not kept.get("exp", 0) > time.time():
        raise _state_mismatch()
    return kept["data"].get("next")


def _state_mismatch() -> SignInRefused:
    return SignInRefused("state did not match",
                         "This sign-in could not be matched to one started in this browser "
                         "(it was already used, it is too old, or the browser did not keep "
                         f"its cookie). {START_AGAIN}")


def _check_identifiers(claims: dict):
    """Raises ``ValueError`` for an issuer or subject that is not a string we can keep."""
    for name in ("iss", "sub"):
        if not isinstance(claims.get(name), str) or not 0 < len(claims[name]) <= IDENTIFIER_MAX:
            raise ValueError(f"the ID token's {name} is not a string of at most "
                             f"{IDENTIFIER_MAX} characters")


def _userinfo(token, subject: str) -> dict:
    """The userinfo endpoint's claims (they fill in what the ID token left out). Raises
    ``SignInRefused`` when it cannot be reached or names another subject, ``ValueError``
    when it is not a JSON object."""
    from authlib.integrations.base_client.errors import OAuthError

    try:
        info = _client().userinfo(token=token)
    except (requests.RequestException, OAuthError) as exc:
        log.warning("the identity provider's userinfo could not be read: %s", exc)
        raise _unreachable() from exc
    if not isinstance(info, dict):
        raise ValueError("userinfo is not a JSON object")
    info = dict(info)
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
    endpoint on its own address (the sign-out form may redirect there); else None
    (signed out here; the provider's session ends on its own)."""
    try:
        metadata = _metadata()
    except SignInRefused:
        return None
    endpoint = metadata.get("end_session_endpoint")
    if not isinstance(endpoint, str) or origin(endpoint) != origin(
            current_app.config["OIDC_ISSUER"]):
        return None
    return _client().create_logout_url(post_logout_redirect_uri=signed_out_to,
                                       id_token_hint=id_token,
                                       client_id=current_app.config["OIDC_CLIENT_ID"])["url"]
