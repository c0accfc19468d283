"""Who is calling the API and how often: the bearer token checked on every request, its
owner's role read with it, the per-token and per-address limits on the shared store
(Redis with ``REDIS_URL``: every process counts together), and the refusals as JSON."""
from __future__ import annotations

from functools import wraps

from flask import current_app, g, request

from ..clock import app_clock
from ..errors import json_error
from ..services import tokens

#: the windows each token is held to, by name: (setting, seconds)
WINDOWS = (("minute", "API_REQUESTS_PER_MINUTE", 60), ("hour", "API_REQUESTS_PER_HOUR", 3600))


def _store():
    return current_app.extensions["giga_store"]


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    return value.strip() if kind.lower() == "bearer" else None


def _failures_key() -> str:
    return f"api-failures:{request.remote_addr}"


def authenticate():
    """Run before every API view: the token's grant in ``g.grant``, or the refusal (401,
    or 429 for an address that keeps failing, or for a token past its limits)."""
    limit = current_app.config["API_FAILURES_PER_MINUTE"]
    if _store().count(_failures_key(), 60) >= limit:
        return json_error(429, "rate_limited", "Too many requests with a bad token from this "
                          "address in the last minute. Wait and try again.",
                          headers={"Retry-After": "60"})
    now = app_clock().now()
    try:
        grant = tokens.authenticate(_bearer(), now)
    except tokens.Refused as refused:
        _store().take(_failures_key(), limit, 60)
        return json_error(401, refused.kind, str(refused), headers={
            "WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'})
    refusal = _spend(grant)
    if refusal is not None:
        return refusal
    g.grant = grant
    tokens.touch(grant, request.remote_addr or "", now)
    return None


def _spend(grant):
    """Count this request against the token's windows; a 429 when one is full. The
    headers of the tightest window go on the answer (``rate_headers``)."""
    store, cfg = _store(), current_app.config
    tightest = None
    for name, setting, seconds in WINDOWS:
        limit = cfg[setting]
        taken, wait = store.take(f"api:{name}:{grant.id}", limit, seconds)
        if not taken:
            return json_error(429, "rate_limited", f"This token made {limit} requests in the "
                              f"last {name}, its limit. Wait {int(wait) + 1} seconds.",
                              headers={"Retry-After": str(int(wait) + 1),
                                       "X-RateLimit-Limit": str(limit),
                                       "X-RateLimit-Remaining": "0",
                                       "X-RateLimit-Reset": str(int(wait) + 1)})
        left = limit - store.count(f"api:{name}:{grant.id}", seconds)
        if tightest is None or left < tightest[1]:
            tightest = (limit, max(0, left), seconds)
    g.rate = tightest
    return None


def rate_headers(answer):
    """``X-RateLimit-*`` of the tightest window, on every answer to a token."""
    if "rate" in g:
        limit, left, seconds = g.rate
        answer.headers["X-RateLimit-Limit"] = str(limit)
        answer.headers["X-RateLimit-Remaining"] = str(left)
        answer.headers["X-RateLimit-Reset"] = str(seconds)
    return answer


def needs(scope: str):
    """The view reads ``scope``: the token must carry it, and its owner's role allow it
    now (403 ``insufficient_scope`` naming it otherwise)."""
    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            grant = g.grant
            if scope not in grant.scopes:
                return json_error(403, "insufficient_scope", f"This token lacks the {scope} "
                                  "scope. Make one that has it in Settings › API tokens.")
            if scope not in grant.rights:
                return json_error(403, "insufficient_scope", f"{scope} needs the finance or "
                                  f"admin role, and the token's owner is now "
                                  f"{grant.owner_role}.")
            return view(*args, **kwargs)
        return guarded
    return decorate
