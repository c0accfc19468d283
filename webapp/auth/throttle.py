"""Throttle sign-in failures per account and per client address."""
from __future__ import annotations

import math
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, select

from ..extensions import db
from ..models import LoginFailure, utcnow


def seconds_blocked(email: str, address: str) -> int:
    """How long sign-in stays refused for this account or address (0 = not blocked)."""
    cfg = current_app.config
    window = timedelta(minutes=cfg["LOGIN_FAILURE_WINDOW_MINUTES"])
    since = utcnow() - window
    waits = []
    for column, value, limit in ((LoginFailure.email, email, cfg["LOGIN_MAX_FAILURES"]),
                                 (LoginFailure.address, address,
                                  cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"])):
        count, oldest = db.session.execute(
            select(func.count(), func.min(LoginFailure.at))
            .where(column == value, LoginFailure.at > since)).one()
        if count >= limit and oldest is not None:
            waits.append(math.ceil((oldest + window - utcnow()).total_seconds()))
    return max(waits, default=0)


def record_failure(email: str, address: str):
    """Count one failure, and forget those too old to matter (the table stays small)."""
    window = timedelta(minutes=current_app.config["LOGIN_FAILURE_WINDOW_MINUTES"])
    db.session.execute(delete(LoginFailure).where(LoginFailure.at < utcnow() - window))
    db.session.add(LoginFailure(email=email, address=address))
    db.session.commit()


def clear_failures(email: str):
    db.session.execute(delete(LoginFailure).where(LoginFailure.email == email))
    db.session.commit()
