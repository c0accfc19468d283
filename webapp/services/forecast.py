"""The run-out forecast: how fast credits are going and when the balance
would be gone at that pace.

With at least a day of recorded readings the pace is the usage observed
over the last 7 days (``history.usage``). Without it, the pace is the
period's average: usage so far over the days elapsed. Usage so far is the
period's usage as its "This period" table adds it up (plan credits and
prepaid credit, ``history.report.period_usage``) when the readings reach
back to the period's start, else the plan credits used (the plan's monthly
credits less what is left). The total balance (plan credits left plus
prepaid) lasts ``total / pace`` days. All money stays Decimal; only the
resulting *time* becomes a timedelta.

``account_forecast`` is the one forecast: the billing page and every alert
read it, so they say the same pace and the same dates.
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
    #: ``used`` is all usage this period as the readings tell it (else plan credits only)
    used_from_readings: bool = False
    #: plan credits used this period, as the gauge counts them
    plan_credits_used: Decimal | None = None
    #: the period's end, for saying how the run-out date stands against it
    period_end: datetime | None = None

    @property
    def days_past_period_end(self) -> int | None:
        """Whole days from the period's end to the run-out date (negative: before it)."""
        if self.balance_runs_out is None or self.period_end is None:
            return None
        return (self.balance_runs_out.date() - self.period_end.date()).days


def forecast(billing: Billing, plan: Plan | None, now: datetime, *, observed=None,
             this_period=None) -> Forecast:
    """The forecast for ``billing`` on ``plan`` (``None`` if the plan is unknown) at ``now``.

    ``observed`` is a recent pace from the history (``usage.Pace``);
    ``this_period`` this period's usage (``report.PeriodUsage``), if there are readings.
    """
    start, end = billing.period_start, billing.period_end
    period = Decimal((end - start).total_seconds())
    elapsed = Decimal(max(0.0, min((now - start).total_seconds(), float(period))))
    fraction = (elapsed / period) if period > 0 else Decimal(0)
    days_left = max(0, -(-int((end - now).total_seconds()) // 86400))
    base = dict(elapsed_fraction=fraction, days_left=days_left, period_end=end)

    if plan is None or isinstance(plan.monthly_credits, str):
        return Forecast(None, None, reason="The plan's allowance is custom, so usage so far "
                        "cannot be worked out from the balance.", **base)
    used = base["plan_credits_used"] = max(Decimal(0), plan.monthly_credits
                                            - billing.plan_credits_remaining)
    if this_period is not None and this_period.whole:
        used = this_period.used
        base.update(used_is_partial=this_period.unknown, used_from_readings=True)
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


def account_forecast(billing: Billing, plans, now: datetime, *,
                     read_at: datetime) -> Forecast | None:
    """The forecast the page and the alerts share, from ``billing`` read at ``read_at``:
    ``plans`` is the plan list (``None`` when it could not be read, and then there is
    no forecast)."""
    from .history.report import DEFAULT_RANGE, page_history

    if plans is None:
        return None
    plan = next((p for p in plans if p.id == billing.plan), None)
    history = page_history(DEFAULT_RANGE, billing, now, plans, read_at=read_at)
    return forecast(billing, plan, now, observed=history.pace,
                    this_period=history.period)
