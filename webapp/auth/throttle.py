"""Sign-in throttling that cannot be turned against an account's owner.

Failures are counted per client address and per (address, account) pair:
past either limit that address is refused for a while. An account's
failures from everywhere never refuse it; past ``LOGIN_MAX_FAILURES`` they
space its attempts out (¼ s after the last failure, doubling, at most 4 s)
for addresses that have failed recently: such an attempt is answered at
once with a 429 and ``Retry-After``, never by holding a request thread. Its
owner, with the right password, from an address without recent failures,
is let in at once.

An attempt is counted before its password is checked (``reserve``): its
row is written first, as a failure, and the counts are taken after it, so
of any number of attempts made at once no more than the limit are checked
(the k-th to be written sees at least k). A refused attempt's row is taken
back (``release``); a right password clears its address's rows for the
account; a wrong one leaves its row as the failure it is.

An IPv6 client is counted by its /64 network, which one host usually has
whole: otherwise each of its millions of addresses would be a clean one.
"""
from __future__ import annotations

import ipaddress
import math
from datetime import timedelta, timezone

from flask import current_app
from sqlalchemy import delete, func, select

from ..clock import app_clock
from ..extensions import db
from ..models import LoginFailure

#: what failed sign-ins through the identity provider are counted under (by address:
#: each costs the provider a code exchange)
SSO = "(single sign-on)"
#: the slow-down of a failed attempt on an account under attack: doubling, at most this
MAX_SLOWDOWN_SECONDS = 4.0
FIRST_SLOWDOWN_SECONDS = 0.25


def _window() -> timedelta:
    return timedelta(minutes=current_app.config["LOGIN_FAILURE_WINDOW_MINUTES"])


def client_key(address: str | None) -> str:
    """What failures are counted by: the IPv4 address, an IPv6 address's /64 network,
    or (no address: a unix socket's peer) the text, cut to the column's length. A
    forwarded address is an IP address by now (``security.init_security``)."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return (address or "unknown")[:64]
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def _failures(*conditions):
    """``(count, oldest, newest)`` of the failures in the window matching ``conditions``."""
    since = app_clock().now() - _window()
    count, oldest, newest = db.session.execute(
        select(func.count(), func.min(LoginFailure.at), func.max(LoginFailure.at))
        .where(LoginFailure.at > since, *conditions)).one()
    return count, _aware(oldest), _aware(newest)


def _aware(when):
    """SQLite hands back aggregates of stored times without their zone: they are UTC."""
    return when if when is None or when.tzinfo else when.replace(tzinfo=timezone.utc)


def reserve(email: str, address: str) -> int:
    """Count this attempt as a failure before its password is checked (and forget
    failures too old to matter: the table stays small); returns its row's id."""
    now = app_clock().now()
    db.session.execute(delete(LoginFailure).where(LoginFailure.at < now - _window()))
    attempt = LoginFailure(email=email, address=address, at=now)
    db.session.add(attempt)
    db.session.commit()
    return attempt.id


def release(attempt: int) -> None:
    """An attempt refused before its password was checked: it is not a failure."""
    db.session.execute(delete(LoginFailure).where(LoginFailure.id == attempt))
    db.session.commit()


def seconds_blocked(email: str, address: str) -> int:
    """How long sign-in stays refused for ``email`` from ``address`` (0 = not refused):
    more failures than the limit from this address, or for this account from this
    address, counting the attempt ``reserve`` has just written."""
    cfg = current_app.config
    waits = []
    for conditions, limit in (
            ((LoginFailure.address == address, LoginFailure.email != SSO),
             cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"]),
            ((LoginFailure.address == address, LoginFailure.email == email),
             cfg["LOGIN_MAX_FAILURES"])):
        count, oldest, _ = _failures(*conditions)
        if count > limit and oldest is not None:
            waits.append(math.ceil((oldest + _window() - app_clock().now()).total_seconds()))
    return max(waits, default=0)


def seconds_blocked_sso(address: str) -> int:
    """How long ``address`` stays refused sign-ins through the identity provider: past
    ``LOGIN_MAX_FAILURES_PER_ADDRESS`` of them failed in the window (0 = not refused).
    They are counted apart from password failures, so neither way in locks the other
    (a local admin's break-glass password stays usable)."""
    count, oldest, _ = _failures(LoginFailure.address == address, LoginFailure.email == SSO)
    if count < current_app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] or oldest is None:
        return 0
    return max(1, math.ceil((oldest + _window() - app_clock().now()).total_seconds()))


def seconds_slowed(email: str, address: str, attempt: int) -> int:
    """How long ``email`` is spaced out for ``address`` (0 = check the password now).

    Nothing until the account has ``LOGIN_MAX_FAILURES`` failures (from anywhere,
    this ``attempt`` left out) in the window; then its next attempt from an address
    that failed recently comes ¼ s after its last failure, doubling up to
    ``MAX_SLOWDOWN_SECONDS``. An address without recent failures is never spaced out.
    """
    others = LoginFailure.id != attempt
    count, _, last = _failures(LoginFailure.email == email, others)
    over = count - current_app.config["LOGIN_MAX_FAILURES"]
    if over < 0 or last is None:
        return 0
    spacing = min(MAX_SLOWDOWN_SECONDS, FIRST_SLOWDOWN_SECONDS * 2 ** min(over, 10))
    left = (last + timedelta(seconds=spacing) - app_clock().now()).total_seconds()
    if left <= 0 or not _failures(LoginFailure.address == address, others)[0]:
        return 0
    return math.ceil(left)


def clear_failures(email: str, address: str):
    """A right password from ``address``: forget that pair's failures, this attempt's
    included (an attacker's failures from elsewhere still count against their own
    addresses)."""
    db.session.execute(delete(LoginFailure).where(LoginFailure.email == email,
                                                  LoginFailure.address == address))
    db.session.commit()
