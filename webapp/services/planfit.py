"""Plan fit: what each plan would have cost on this team's observed usage.

Two windows: the last complete plan period, and the last 90 days as three 30-day
stretches ending today (each stretch a period's worth: the plan's price once and its
monthly credits once, credits not carried over). In a stretch, a plan costs its
price, and the usage above its monthly credits is paid as prepaid credit at one
dollar a credit: ``Starter Pro: $29 + $41.20 prepaid = $70.20``. A plan whose price
or credits are ``custom`` says so instead of a figure (``Max: price on request``).

Usage is what the usage table adds up for the same days (``history.report``), so
the figures agree with the chart. Where the history does not reach back to a
window's start, the window says how many days are missing, and no figure.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from ..formatting import axis_money, money
from ..giga import Billing, Plan
from .history.report import chart
from .history.usage import day_start

STRETCH_DAYS = 30
STRETCHES = 3
ZERO = Decimal(0)


@dataclass(frozen=True)
class Cost:
    """A plan's cost over a window: its price times the stretches, and the prepaid
    credit the usage above its credits takes."""

    plan: Plan
    stretches: int
    prepaid: Decimal

    @property
    def price(self) -> Decimal:
        return self.plan.price * self.stretches

    @property
    def total(self) -> Decimal:
        return self.price + self.prepaid

    def words(self, floor: bool = False) -> str:
        """``$29 + $41.20 prepaid = $70.20`` (``3 × $29 + …`` over three stretches)."""
        times = f"{self.stretches} × " if self.stretches > 1 else ""
        more = " or more" if floor else ""
        return (f"{times}{axis_money(self.plan.price)} + {money(self.prepaid)} prepaid = "
                f"{money(self.total)}{more}")


def custom(plan: Plan) -> bool:
    return isinstance(plan.price, str) or isinstance(plan.monthly_credits, str)


def cost(plan: Plan, usages: list[Decimal]) -> Cost | None:
    """``plan``'s cost for stretches that used ``usages`` (``None``: custom)."""
    if custom(plan):
        return None
    prepaid = sum((max(ZERO, u - plan.monthly_credits) for u in usages), ZERO)
    return Cost(plan, len(usages), prepaid)


def custom_words(plan: Plan) -> str:
    if isinstance(plan.price, str):
        return "price on request"
    return "credits are custom: ask sales"


@dataclass(frozen=True)
class Window:
    """A window's usage: one figure per stretch, or how many days the history lacks."""

    name: str
    start: datetime
    end: datetime
    usages: list[Decimal]
    #: whole days between the window's start and the first reading kept (0: all there)
    missing_days: int
    #: part of the usage cannot be told from the readings: the figures are floors
    unknown: bool

    @property
    def usage(self) -> Decimal:
        return sum(self.usages, ZERO)

    def cost(self, plan: Plan) -> Cost | None:
        return None if self.missing_days else cost(plan, self.usages)

    def said(self, plan: Plan) -> str:
        """What the plan card says for this window: ``$29 + $41.20 prepaid = $70.20``."""
        if custom(plan):
            return custom_words(plan)
        if self.missing_days:
            return (f"the history is {self.missing_days} "
                    f"day{'s' if self.missing_days != 1 else ''} short of it")
        return self.cost(plan).words(self.unknown)

    def line(self, plan: Plan) -> str:
        """``Starter Pro: $29 + $41.20 prepaid = $70.20`` · ``Max: price on request``."""
        return f"{plan.name}: {self.said(plan)}"


def _floor(report) -> bool:
    """The report's usage is a floor: part of it cannot be told, or only bounded."""
    return report.unknown or report.at_most != report.total


def _missing(began: datetime | None, start: datetime) -> int:
    if began is None:
        return -1
    if began <= start:
        return 0
    return -(-int((began - start).total_seconds()) // 86400)


def last_period(billing: Billing, now: datetime, plans, *, read_at: datetime,
                zone: ZoneInfo, began: datetime | None) -> Window:
    """The last complete plan period's usage. Raises ``SQLAlchemyError``."""
    report = chart("last-period", billing, now, plans, read_at=read_at, zone=zone)
    start, end = report.period
    missing = 0 if report.whole else _missing(began, start)
    if missing < 0:  # no readings at all
        missing = -(-int((end - start).total_seconds()) // 86400)
    # readings from before its start that still cannot tell its beginning: a floor
    unknown = _floor(report) or (not report.whole and missing == 0)
    return Window("last period", start, end, [report.total], missing, unknown)


def last_90_days(billing: Billing, now: datetime, plans, *, read_at: datetime,
                 zone: ZoneInfo, began: datetime | None) -> Window:
    """The last 90 days as three 30-day stretches ending today. Raises
    ``SQLAlchemyError``."""
    report = chart("90", billing, now, plans, read_at=read_at, zone=zone)
    start = day_start(report.first, zone)
    usages = []
    for i in range(STRETCHES):
        lo = report.first + timedelta(days=i * STRETCH_DAYS)
        hi = lo + timedelta(days=STRETCH_DAYS)
        days = sum((d.usage for d in report.days if lo <= d.day < hi and d.usage is not None),
                   ZERO)
        gaps = sum((g.usage for g in report.gaps if g.usage is not None
                    and day_start(lo, zone) <= g.end < day_start(hi, zone)), ZERO)
        usages.append(days + gaps)
    missing = _missing(began, start)
    return Window("last 90 days", start, now, usages,
                  missing if missing >= 0 else STRETCHES * STRETCH_DAYS, _floor(report))


@dataclass(frozen=True)
class PlanFit:
    windows: list[Window]
    plans: list[Plan]

    def lines(self, plan: Plan) -> list[tuple[Window, str]]:
        return [(w, w.said(plan)) for w in self.windows]


def plan_fit(billing: Billing, plans: list[Plan] | None, now: datetime, *, read_at: datetime,
             zone: ZoneInfo, began: datetime | None) -> PlanFit | None:
    """Both windows for every plan (``None`` without the plan list); ``began`` is when the
    first reading kept was taken. Raises ``SQLAlchemyError``."""
    if plans is None:
        return None
    windows = [last_period(billing, now, plans, read_at=read_at, zone=zone, began=began),
               last_90_days(billing, now, plans, read_at=read_at, zone=zone, began=began)]
    return PlanFit(windows, list(plans))
