"""The run-out forecast: how fast credits are going and when the balance
would really be gone at that pace.

The pace: with at least a day of recorded readings, the usage observed over
the last 7 days (``history.usage``); without it, the period's average (usage
so far over the days elapsed). Usage so far is the period's usage as its
"This period" table adds it up (plan credits and prepaid credit,
``history.report.period_usage``) when the readings reach back to the
period's start, else the plan credits used (the plan's monthly credits less
what is left).

From the pace, the periods are played forward by the contract's rules:
usage draws plan credits first and prepaid credit after; at each period's
end plan credits come back to the plan's monthly credits (later periods as
long as this one); prepaid credit never expires. So the balance runs out
only if prepaid credit is drawn each period faster than it lasts: when the
allowance covers the pace, it never runs out, and the forecast says how much
of each period's allowance the pace uses instead. All money stays Decimal;
only the resulting *time* becomes a timedelta.

``account_forecast`` is the one forecast: the billing page and every alert
read it, so they say the same pace and the same dates.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from ..giga import Billing, Plan
from .history.report import figures

UTC = ZoneInfo("UTC")
#: below this much of the period there is too little history for a pace
MIN_ELAPSED = timedelta(hours=6)
SECONDS_PER_DAY = Decimal(86400)
#: no run-out date is told further ahead than this; a slower pace "lasts" past it
HORIZON = timedelta(days=3650)


@dataclass(frozen=True)
class Forecast:
    """``pace_per_day`` is None when there is no pace to tell; ``reason`` says why.

    ``balance_runs_out`` is when the whole balance is gone at this pace, plan
    credits coming back each period; ``None`` when it never is (the allowance
    covers the pace, or it lasts past ``HORIZON``).
    """

    pace_per_day: Decimal | None
    used: Decimal | None
    elapsed_fraction: Decimal
    days_left: int
    #: when this period's plan credits are used up, if that happens before it ends
    plan_credits_run_out: datetime | None = None
    balance_runs_out: datetime | None = None
    #: the balance lasts past this period's end
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
    #: the plan's monthly credits, and what the pace uses in a whole period
    allowance: Decimal | None = None
    use_per_period: Decimal | None = None
    #: prepaid credit this period draws before it ends, at this pace
    prepaid_this_period: Decimal = Decimal(0)
    #: the plan changed this period: the gauge counts the new plan's credits only
    plan_changed: bool = False

    @property
    def days_past_period_end(self) -> int | None:
        """Whole days from the period's end to the run-out date (negative: before it)."""
        if self.balance_runs_out is None or self.period_end is None:
            return None
        return (self.balance_runs_out.date() - self.period_end.date()).days

    @property
    def never_runs_out(self) -> bool:
        """Each period's plan credits cover the pace: the balance lasts at this pace."""
        return (self.pace_per_day is not None and self.allowance is not None
                and self.use_per_period is not None and self.use_per_period <= self.allowance)

    @property
    def prepaid_per_period(self) -> Decimal:
        """Prepaid credit a whole later period draws at this pace (use above the allowance)."""
        if self.use_per_period is None or self.allowance is None:
            return Decimal(0)
        return max(Decimal(0), self.use_per_period - self.allowance)


def _days(amount: Decimal, pace: Decimal) -> timedelta:
    """How long ``amount`` lasts at ``pace`` a day (whole seconds)."""
    return timedelta(seconds=int(amount / pace * SECONDS_PER_DAY))


def runs_out(now: datetime, period_end: datetime, length: timedelta, plan_credits: Decimal,
             prepaid: Decimal, allowance: Decimal, pace: Decimal
             ) -> tuple[datetime | None, datetime | None, Decimal]:
    """Play the periods forward at ``pace`` (a day, > 0) from ``now``: returns when
    this period's plan credits run out (``None`` if they last to its end), when
    the whole balance does (``None``: never, or past ``HORIZON``) and the prepaid
    credit this period draws.

    This period draws its ``plan_credits`` first and ``prepaid`` after; each
    later period, ``length`` long, starts with ``allowance`` plan credits and
    draws prepaid only for use above it.
    """
    left = Decimal((period_end - now).total_seconds()) / SECONDS_PER_DAY
    this_period = pace * left
    plan_gone = now + _days(plan_credits, pace) if this_period > plan_credits else None
    if this_period >= plan_credits + prepaid:
        return plan_gone, now + _days(plan_credits + prepaid, pace), prepaid
    drawn = max(Decimal(0), this_period - plan_credits)
    prepaid -= drawn
    per_period = pace * Decimal(length.total_seconds()) / SECONDS_PER_DAY
    over = per_period - allowance
    if over <= 0:
        return plan_gone, None, drawn
    whole_periods = prepaid // over  # later periods whose overage prepaid still covers
    if whole_periods * Decimal(length.total_seconds()) > Decimal(HORIZON.total_seconds()):
        return plan_gone, None, drawn
    whole_periods = int(whole_periods)
    start = period_end + length * whole_periods
    gone = start + _days(allowance + prepaid - over * whole_periods, pace)
    return plan_gone, (gone if gone - now <= HORIZON else None), drawn


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
    allowance = base["allowance"] = plan.monthly_credits
    used = base["plan_credits_used"] = max(Decimal(0), allowance
                                            - billing.plan_credits_remaining)
    if this_period is not None and this_period.whole:
        used = this_period.used
        base.update(used_is_partial=this_period.unknown, used_from_readings=True,
                    plan_changed=this_period.plan_changed)
    if observed is not None:
        pace, base["basis"] = observed.per_day, observed.basis
    elif now < start or now - start < MIN_ELAPSED:
        return Forecast(None, used, reason="The period has only just begun; a pace needs a "
                        "few more hours of use.", **base)
    else:
        pace = used / (elapsed / SECONDS_PER_DAY)
    length = end - start
    base["use_per_period"] = pace * Decimal(length.total_seconds()) / SECONDS_PER_DAY
    if pace == 0:
        return Forecast(Decimal(0), used, lasts_past_period=True,
                        reason="No credits used yet.", **base)
    plan_gone, balance_gone, drawn = runs_out(
        now, max(end, now), length, max(Decimal(0), billing.plan_credits_remaining),
        max(Decimal(0), billing.prepaid_balance), allowance, pace)
    return Forecast(pace, used, plan_credits_run_out=plan_gone, balance_runs_out=balance_gone,
                    lasts_past_period=balance_gone is None or balance_gone >= end,
                    prepaid_this_period=drawn, **base)


def account_forecast(billing: Billing, plans, now: datetime, *,
                     read_at: datetime, zone: ZoneInfo = UTC) -> Forecast | None:
    """The forecast the page and the alerts share, from ``billing`` read at ``read_at``:
    ``plans`` is the plan list (``None`` when it could not be read, and then there is
    no forecast); the pace's week is the last 7 days of ``zone``. Raises
    ``SQLAlchemyError``."""
    if plans is None:
        return None
    plan = next((p for p in plans if p.id == billing.plan), None)
    pace, this_period = figures(billing, now, plans, read_at=read_at, zone=zone)
    return forecast(billing, plan, now, observed=pace, this_period=this_period)
