"""The run-out forecast: how fast credits are going and when the balance
would be gone at that pace.

With at least a day of recorded readings the pace is the usage observed
over the last 7 days (``history.usage``). Without it, the pace is the
period's average: plan credits used so far (the plan's monthly credits -
plan credits left, or what the readings show when the plan changed
mid-period and its credits were granted again) over the days elapsed. The
total balance (plan credits left plus prepaid) lasts ``total / pace`` days.
All money stays Decimal; only the resulting *time* becomes a timedelta.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from ..giga import Billing, Plan

#: below this much of the period there is too little history for a pace
MIN_ELAPSED = timedelta(hours=6)
SECONDS_PER_DAY = Decimal(86400)


@dataclass(frozen=True)
class Forecast:
    """``pace_per_day`` is None when there is no pace to tell; ``reason`` says why."""

    pace_per_day: Decimal | None
    used: Decimal | None
    elapsed_fraction: Decimal
    days_left: int
    plan_credits_run_out: datetime | None = None
    balance_runs_out: datetime | None = None
    lasts_past_period: bool = False
    reason: str | None = None
    #: what the pace is worked out from, in words for the page
    basis: str = "this period's average"
    #: part of the usage so far could not be told from the readings
    used_is_partial: bool = False


def forecast(billing: Billing, plan: Plan | None, now: datetime, *, observed=None,
             used_so_far: tuple[Decimal, bool] | None = None) -> Forecast:
    """The forecast for ``billing`` on ``plan`` (``None`` if the plan is unknown) at ``now``.

    ``observed`` is a recent pace from the history (``usage.Pace``);
    ``used_so_far`` the period's usage as the readings show it, with whether
    part of it is unknown.
    """
    start, end = billing.period_start, billing.period_end
    period = Decimal((end - start).total_seconds())
    elapsed = Decimal(max(0.0, min((now - start).total_seconds(), float(period))))
    fraction = (elapsed / period) if period > 0 else Decimal(0)
    days_left = max(0, -(-int((end - now).total_seconds()) // 86400))
    base = dict(elapsed_fraction=fraction, days_left=days_left)

    if plan is None or isinstance(plan.monthly_credits, str):
        return Forecast(None, None, reason="The plan's allowance is custom, so usage so far "
                        "cannot be worked out from the balance.", **base)
    used = max(Decimal(0), plan.monthly_credits - billing.plan_credits_remaining)
    partial = False
    if used_so_far is not None:
        used, partial = used_so_far
    base["used_is_partial"] = partial
    if observed is not None:
        pace, base["basis"] = observed.per_day, observed.basis
    elif now < start or now - start < MIN_ELAPSED:
        return Forecast(None, used, reason="The period has only just begun; a pace needs a "
                        "few more hours of use.", **base)
    else:
        pace = used / (elapsed / SECONDS_PER_DAY)
    if pace == 0:
        return Forecast(Decimal(0), used, lasts_past_period=True,
                        reason="No credits used yet.", **base)

    def when_gone(amount: Decimal) -> datetime:
        if amount <= 0:
            return now
        seconds = amount / pace * SECONDS_PER_DAY
        # a slow pace can point centuries ahead; no page needs that far
        return now + timedelta(seconds=int(min(seconds, Decimal(86400 * 3650))))

    balance_gone = when_gone(billing.total_balance)
    return Forecast(pace, used, plan_credits_run_out=when_gone(billing.plan_credits_remaining),
                    balance_runs_out=balance_gone, lasts_past_period=balance_gone >= end, **base)
