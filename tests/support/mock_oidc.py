"""A small OpenID provider on loopback, for the fast sign-in cases.

It speaks the protocol for real over HTTP (discovery, authorization with
PKCE S256 required, a one-time code, the token endpoint with client
authentication, RS256 ID tokens, userinfo, JWKS, end-session), and can be told
to misbehave the ways a test needs: deny at its sign-in page, put email and
groups only in userinfo, issue an expired, forged or foreign ID token.

The person who "signs in" at it is ``provider.account`` (set by the test);
``authorize`` answers at once with a redirect, as a provider does for
someone already signed in there.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

#: what an ID token may be made to be: a good one, or one of the ways it can be wrong
ID_TOKEN_FAULTS = ("expired", "forged", "wrong audience", "foreign audience", "wrong issuer",
                   "wrong nonce", "unsigned", "none")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class MockProvider:
    def __init__(self, client_id="dashboard", client_secret="s3cret-for-tests"):
        self.client_id, self.client_secret = client_id, client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.account = {"sub": "u-1", "email": "ada@example.com", "email_verified": True,
                        "groups": ["billing-finance"]}
        self.claims_in_userinfo_only = False
        self.deny = False
        #: one of ``ID_TOKEN_FAULTS``, or None for a good ID token
        self.id_token_fault = None
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        #: raw bodies to answer with instead of the right ones (odd data from a provider)
        self.bodies: dict[str, bytes] = {}
        self.signed_out: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    # -- the protocol ---------------------------------------------------------------------

    def discovery(self) -> dict:
        base = self.issuer
        return {"issuer": base, "authorization_endpoint": base + "/authorize",
                "token_endpoint": base + "/token", "userinfo_endpoint": base + "/userinfo",
                "jwks_uri": base + "/jwks", "end_session_endpoint": base + "/logout",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "none"]
                if self.id_token_fault == "unsigned" else ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile", "groups"]}

    def authorize(self, query: dict) -> tuple[int, dict, str]:
        """The redirect back to the client (or a 400 for a malformed request)."""
        q = {k: v[0] for k, v in query.items()}
        if q.get("client_id") != self.client_id or not q.get("redirect_uri"):
            return 400, {}, "unknown client"
        back = q["redirect_uri"]
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" \
                or not q.get("code_challenge") or "openid" not in q.get("scope", "").split():
            return 400, {}, "PKCE (S256), response_type=code and the openid scope are required"
        if self.deny:
            params = {"error": "access_denied", "error_description": "The user said no",
                      "state": q.get("state", "")}
        else:
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"redirect_uri": back, "nonce": q.get("nonce"),
                                "challenge": q["code_challenge"], "account": dict(self.account)}
            params = {"code": code, "state": q.get("state", "")}
        return 302, {"Location": back + ("&" if "?" in back else "?") + urlencode(params)}, ""

    def token(self, form: dict, authorization: str | None) -> tuple[int, dict]:
        f = {k: v[0] for k, v in form.items()}
        if not self._client_authenticated(f, authorization):
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(f.get("code", ""), None)  # a code works once
        if grant is None or grant["redirect_uri"] != f.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "code unknown or used"}
        verifier = f.get("code_verifier", "")
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        if challenge != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier wrong"}
        access = secrets.token_urlsafe(16)
        self.tokens[access] = grant["account"]
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": 300}
        if self.id_token_fault != "none":
            answer["id_token"] = self._id_token(grant["account"], grant["nonce"])
        return 200, answer

    def _client_authenticated(self, form, authorization) -> bool:
        if authorization and authorization.startswith("Basic "):
            pair = base64.b64decode(authorization[6:]).decode()
            return pair == f"{self.client_id}:{self.client_secret}"
        return form.get("client_id") == self.client_id and \
            form.get("client_secret") == self.client_secret

    def _id_token(self, account: dict, nonce: str | None) -> str:
        now = int(time.time())
        fault = self.id_token_fault
        claims = {"iss": self.issuer if fault != "wrong issuer" else "https://evil.example",
                  "sub": account["sub"],
                  "aud": self.client_id if fault not in ("wrong audience", "foreign audience")
                  else "someone-else",
                  "iat": now - (7200 if fault == "expired" else 0),
                  "exp": now + (300 if fault != "expired" else -3600),
                  "nonce": nonce if fault != "wrong nonce" else "not-the-nonce"}
        if fault == "foreign audience":  # issued to another client, naming us as its party
            claims["azp"] = self.client_id
        if not self.claims_in_userinfo_only:
            claims.update({k: v for k, v in account.items() if k != "sub"})
        if fault == "unsigned":  # made by hand: the JOSE library rightly warns against it
            return ".".join(_b64(json.dumps(part).encode()) for part in
                            ({"alg": "none", "typ": "JWT"}, claims)) + "."
        key = self.key if fault != "forged" else RSAKey.generate_key(
            2048, parameters={"kid": "k1"})  # same key id, someone else's key
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)

    def userinfo(self, authorization: str | None) -> tuple[int, dict]:
        account = self.tokens.get((authorization or "").removeprefix("Bearer "))
        if account is None:
            return 401, {"error": "invalid_token"}
        return 200, dict(account)

    # -- the HTTP server --------------------------------------------------------------------

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None, kind="application/json"):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status, doc):
                self._send(status, json.dumps(doc).encode())

            def do_GET(self):
                parts = urlsplit(self.path)
                provider.requests.append(("GET", parts.path))
                if parts.path in provider.bodies:
                    self._send(200, provider.bodies[parts.path])
                elif parts.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif parts.path == "/jwks":
                    self._json(200, {"keys": [provider.key.as_dict(private=False)]})
                elif parts.path == "/authorize":
                    status, headers, text = provider.authorize(parse_qs(parts.query))
                    self._send(status, text.encode(), headers, "text/plain")
                elif parts.path == "/userinfo":
                    self._json(*provider.userinfo(self.headers.get("Authorization")))
                elif parts.path == "/logout":
                    provider.signed_out.append({k: v[0] for k, v in
                                                parse_qs(parts.query).items()})
                    self._send(200, b"signed out", kind="text/plain")
                else:
                    self._send(404, b"not found", kind="text/plain")

            def do_POST(self):
                parts = urlsplit(self.path)
                provider.requests.append(("POST", parts.path))
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if parts.path == "/token":
                    self._json(*provider.token(form, self.headers.get("Authorization")))
                else:
                    self._send(404, b"not found", kind="text/plain")

        return Handler
