"""Sign-in throttling that cannot be turned against an account's owner.

Failures are counted per client address and per (address, account) pair:
past either limit that address is refused for a while. An account's
failures from everywhere never refuse it; they only slow each further
*failed* attempt down, so its owner, with the right password, from an
address without recent failures, is let in at once.
"""
from __future__ import annotations

import math
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, select

from ..clock import app_clock
from ..extensions import db
from ..models import LoginFailure

#: the slow-down of a failed attempt on an account under attack: doubling, at most this
MAX_SLOWDOWN_SECONDS = 4.0
FIRST_SLOWDOWN_SECONDS = 0.25


def _window() -> timedelta:
    return timedelta(minutes=current_app.config["LOGIN_FAILURE_WINDOW_MINUTES"])


def _failures(*conditions):
    """``(count, oldest)`` of the failures in the window matching ``conditions``."""
    since = app_clock().now() - _window()
    return db.session.execute(select(func.count(), func.min(LoginFailure.at))
                              .where(LoginFailure.at > since, *conditions)).one()


def seconds_blocked(email: str, address: str) -> int:
    """How long sign-in stays refused for ``email`` from ``address`` (0 = not refused):
    too many failures from this address, or for this account from this address."""
    cfg = current_app.config
    now = app_clock().now()
    waits = []
    for conditions, limit in (
            ((LoginFailure.address == address,), cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"]),
            ((LoginFailure.address == address, LoginFailure.email == email),
             cfg["LOGIN_MAX_FAILURES"])):
        count, oldest = _failures(*conditions)
        if count >= limit and oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
            waits.append(math.ceil((oldest + _window() - now).total_seconds()))
    return max(waits, default=0)


def slowdown_seconds(email: str) -> float:
    """How long a failed attempt on ``email`` waits before its answer: nothing until the
    account has ``LOGIN_MAX_FAILURES`` failures (from anywhere) in the window, then
    doubling up to ``MAX_SLOWDOWN_SECONDS``. A right password never waits."""
    count, _ = _failures(LoginFailure.email == email)
    over = count - current_app.config["LOGIN_MAX_FAILURES"]
    if over < 0:
        return 0.0
    return min(MAX_SLOWDOWN_SECONDS, FIRST_SLOWDOWN_SECONDS * 2 ** min(over, 10))


def record_failure(email: str, address: str):
    """Count one failure, and forget those too old to matter (the table stays small)."""
    now = app_clock().now()
    db.session.execute(delete(LoginFailure).where(LoginFailure.at < now - _window()))
    db.session.add(LoginFailure(email=email, address=address, at=now))
    db.session.commit()


def clear_failures(email: str, address: str):
    """A right password from ``address``: forget that pair's failures (an attacker's
    failures from elsewhere still count against their own addresses)."""
    db.session.execute(delete(LoginFailure).where(LoginFailure.email == email,
                                                  LoginFailure.address == address))
    db.session.commit()
