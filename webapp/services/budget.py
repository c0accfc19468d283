"""The team's budget: an amount per plan period or per calendar month of the account's
zone, what is used of it so far, where the forecast puts the window's end, and the
words the page and the alerts say it in.

Spending is usage, a dollar a credit, plan credits and prepaid credit together. For a
plan period it is the period's "used" figure the forecast card shows (the "This
period" table's); for a calendar month, the usage of the month's days as the usage
table adds them up. The forecast at the window's end is what is used plus the
forecast's pace (the page's, the alerts') for the time left. A budget stops nothing:
the API has no cap.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy.exc import IntegrityError

from . import trail
from ..database import UNAVAILABLE, mark_busy
from ..extensions import db
from ..formatting import day, money, short_day
from ..giga import Billing
from ..models import BudgetSettings
from .history.report import MONTH, chart
from .history.usage import day_start, local_day
from .recent import recently, remember

BASES = {"period": "a plan period", "month": "a calendar month"}
SENSITIVITIES = ("low", "medium", "high")
#: the forecast-over-budget alert waits for this much of the window behind it
FORECAST_AFTER_DAYS = 3
FORECAST_AFTER_SHARE = Decimal("0.10")
SECONDS_PER_DAY = Decimal(86400)
#: how stale a process's copy of the settings row may be: a save shows at once in the
#: process that made it, and in every other within this
REFRESH_SECONDS = 5.0


def budget_settings(*, fresh: bool = False) -> BudgetSettings:
    """The one settings row, as a copy attached to no session; the defaults (no budget,
    medium spikes) unsaved while there is none, so reading it never needs a write. Each
    process reads the row again at most every ``REFRESH_SECONDS`` (``fresh``: now), so
    a page costs no query for it most of the time. Raises ``SQLAlchemyError``."""
    return recently("budget", None, REFRESH_SECONDS,
                    lambda: _copy(db.session.get(BudgetSettings, 1) or _defaults()),
                    fresh=fresh)


def _copy(row: BudgetSettings) -> BudgetSettings:
    """``row``'s figures in a row attached to no session (kept across requests)."""
    return BudgetSettings(id=1, amount=row.amount, basis=row.basis,
                          spike_sensitivity=row.spike_sensitivity,
                          updated_by=row.updated_by, updated_at=row.updated_at)


def _defaults() -> BudgetSettings:
    return BudgetSettings(id=1, amount=None, basis="period", spike_sensitivity="medium")


def describe(row: BudgetSettings) -> str:
    """For the audit trail: ``budget $500.00 a plan period; spike alerts medium``."""
    budget = f"budget {money(row.amount)} {BASES.get(row.basis, row.basis)}" \
        if row.amount is not None else "no budget"
    return f"{budget}; spike alerts {row.spike_sensitivity}"


def save(amount: Decimal | None, basis: str, sensitivity: str, by: str,
         at: datetime) -> tuple[str, str]:
    """Keep the budget and the spike sensitivity, on the audit trail from → to in the same
    transaction. Returns ``(before, after)`` in words. Raises ``SQLAlchemyError``."""
    row = db.session.get(BudgetSettings, 1)
    if row is None:
        db.session.add(_defaults())
        try:
            db.session.commit()
        except IntegrityError:  # another process made it first
            db.session.rollback()
        row = db.session.get(BudgetSettings, 1)
    before = describe(row)
    row.amount, row.basis, row.spike_sensitivity = amount, basis, sensitivity
    row.updated_by, row.updated_at = by, at
    after = describe(row)
    trail.stage(trail.BUDGET_CHANGED, "done" if after != before else "done, unchanged",
                subject="budget", detail=f"from: {before} → to: {after}")
    db.session.commit()
    remember("budget", None, _copy(row))
    return before, after


@dataclass(frozen=True)
class Window:
    """What a budget is measured over: ``start`` to ``end``, named ``key`` (the alert
    states' key: one set of alerts a window) and in words."""

    start: datetime
    end: datetime
    key: str
    name: str


def window(basis: str, billing: Billing, now: datetime, zone: ZoneInfo) -> Window:
    """The window the budget of ``basis`` is measured over at ``now``."""
    if basis == "month":
        first = local_day(now, zone).replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
        return Window(day_start(first, zone), day_start(after, zone),
                      f"month:{first:%Y-%m}", f"{first:%B %Y}")
    return Window(billing.period_start, billing.period_end,
                  f"period:{billing.period_start.isoformat()}",
                  f"the period {day(billing.period_start, zone)} – "
                  f"{day(billing.period_end, zone)}")


@dataclass(frozen=True)
class BudgetStatus:
    """Where spending stands against the budget."""

    amount: Decimal
    basis: str
    window: Window
    used: Decimal
    #: part of the usage could not be told from the readings (``used`` is a floor)
    used_is_partial: bool
    #: what the window comes to at the forecast's pace (``None``: no pace yet)
    forecast: Decimal | None
    pace_per_day: Decimal | None
    #: when the budget is reached at that pace (``None``: not within the window)
    reached_on: datetime | None
    #: enough of the window behind the forecast to alert on it
    forecast_ready: bool
    zone: ZoneInfo

    @property
    def percent_used(self) -> Decimal:
        return self.used / self.amount * 100

    @property
    def percent_forecast(self) -> Decimal | None:
        return None if self.forecast is None else self.forecast / self.amount * 100

    @property
    def over(self) -> bool:
        return self.used >= self.amount

    @property
    def forecast_over(self) -> bool:
        return self.forecast is not None and self.forecast > self.amount

    @property
    def per_day(self) -> Decimal:
        """The budget's even share a day of its window (the chart's line)."""
        days = Decimal(int((self.window.end - self.window.start).total_seconds())) \
            / SECONDS_PER_DAY
        return self.amount / days if days > 0 else self.amount

    @property
    def days_early(self) -> int | None:
        """Whole days between the budget being reached and the window's end."""
        if self.reached_on is None:
            return None
        return (self.window.end.astimezone(self.zone).date()
                - self.reached_on.astimezone(self.zone).date()).days

    def words(self) -> str:
        """``62 % used · on pace for 114 % · budget reached Mar 26, 5 days early``."""
        parts = [f"{percent(self.percent_used)} used"]
        if self.forecast is None:
            parts.append("no forecast yet")
        else:
            parts.append(f"on pace for {percent(self.percent_forecast)}")
        if self.over:
            parts.append(f"budget reached, {money(self.used - self.amount)} over")
        elif self.reached_on is not None:
            early = self.days_early
            when = f"budget reached {short_day(self.reached_on, self.zone)}"
            parts.append(f"{when}, {early} day{'s' if early != 1 else ''} early" if early
                         else f"{when}, the window's last day")
        elif self.forecast is not None:
            parts.append("within budget")
        return " · ".join(parts)


def percent(value: Decimal) -> str:
    """``62 %``: whole percents, rounded down (``100 %`` only once it is reached)."""
    return f"{int(value.to_integral_value(rounding=ROUND_FLOOR))} %"


def status(row: BudgetSettings, billing: Billing, outlook, plans, now: datetime, *,
           read_at: datetime, zone: ZoneInfo) -> BudgetStatus | None:
    """The budget of ``row`` against the spending so far (``None``: no budget, or for a
    plan period no forecast to read "used" from). ``outlook`` is the account's forecast
    (``forecast.account_forecast``). Raises ``SQLAlchemyError``."""
    if row.amount is None or row.amount <= 0:
        return None
    win = window(row.basis, billing, now, zone)
    if row.basis == "month":
        report = chart(MONTH, billing, now, plans, read_at=read_at, zone=zone)
        used, partial = report.total, report.unknown
    else:
        if outlook is None or outlook.used is None:
            return None
        used, partial = outlook.used, outlook.used_is_partial
    pace = outlook.pace_per_day if outlook is not None else None
    forecast = reached = None
    if pace is not None:
        left = Decimal(max(0, int((win.end - max(now, win.start)).total_seconds()))) \
            / SECONDS_PER_DAY
        forecast = (used + pace * left).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if used < row.amount and pace > 0 and forecast > row.amount:
            reached = now + timedelta(seconds=int((row.amount - used) / pace * SECONDS_PER_DAY))
    elapsed = now - win.start
    ready = elapsed >= timedelta(days=FORECAST_AFTER_DAYS) and \
        Decimal(int(elapsed.total_seconds())) >= \
        FORECAST_AFTER_SHARE * Decimal(int((win.end - win.start).total_seconds()))
    return BudgetStatus(row.amount, row.basis, win, used, partial, forecast, pace, reached,
                        ready, zone)


def budget_for_page(billing: Billing, outlook, plans, now: datetime, *, read_at: datetime,
                    zone: ZoneInfo) -> tuple[BudgetSettings, BudgetStatus | None]:
    """The settings and the status the billing page shows; the settings' defaults and no
    status while the database is busy (a page never fails for it)."""
    try:
        row = budget_settings()
        return row, status(row, billing, outlook, plans, now, read_at=read_at, zone=zone)
    except UNAVAILABLE:
        db.session.rollback()
        mark_busy(current_app)
        return _defaults(), None
