"""The balance as the dashboard last knew it, for readers that must never call upstream
(the JSON API): the shared cache's reading, else the history's newest."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..giga import Billing
from . import account
from .history.readings import latest


@dataclass(frozen=True)
class KnownBalance:
    """The balance as the dashboard last knew it, read without calling upstream: the
    shared cache's reading, else the newest one recorded in the history."""

    billing: Billing
    read_at: datetime
    #: the cache kept it because the last read upstream failed (the page says so too)
    fell_back: bool
    source: str  # "cache" | "history"


def known_balance() -> KnownBalance | None:
    """The newest balance the dashboard knows, from the shared cache or the history;
    ``None`` when it has never read one. Never calls upstream. Raises ``SQLAlchemyError``."""
    reading = account.gateway().known_billing()
    if reading is not None:
        return KnownBalance(reading.value, reading.fetched_at, reading.stale, "cache")
    row = latest()
    if row is None:
        return None
    return KnownBalance(Billing(plan=row.plan, plan_credits_remaining=row.plan_credits_remaining,
                                prepaid_balance=row.prepaid_balance,
                                total_balance=row.total_balance, period_start=row.period_start,
                                period_end=row.period_end), row.last_seen_at, False, "history")
