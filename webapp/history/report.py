"""The usage chart and its table: days of usage for a chosen range, with the
geometry of a server-rendered SVG (Decimal all the way: pixels are worked
out from money without passing through float)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_CEILING, Decimal

from ..giga import Billing
from . import service
from .usage import ZERO, Day, Interval, Pace, daily, intervals, recent_pace

RANGES = {"period": "This period", "last-period": "Last period", "7": "Last 7 days",
          "30": "Last 30 days", "90": "Last 90 days"}
DEFAULT_RANGE = "period"
#: no chart is longer than this, however long a period the API reports
MAX_DAYS = 92
#: how far before a range a credited top-up may be matched to its first interval
SPAN = timedelta(days=400)

#: the SVG's coordinate box; CSS scales it to the width of the card
WIDTH, HEIGHT = Decimal(720), Decimal(260)
LEFT, RIGHT, TOP, BOTTOM = Decimal(84), Decimal(30), Decimal(14), Decimal(36)


@dataclass(frozen=True)
class Bar:
    x: Decimal
    y: Decimal
    width: Decimal
    height: Decimal
    day: Day


@dataclass
class UsageReport:
    key: str
    label: str
    first: date
    last: date
    days: list[Day]
    gaps: list[Interval] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    gap_marks: list[Bar] = field(default_factory=list)
    y_max: Decimal = Decimal(1)
    ticks: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    x_labels: list[tuple[Decimal, date]] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((d.usage for d in self.days if d.usage is not None), ZERO)

    @property
    def top_ups(self) -> Decimal:
        return sum((d.top_ups for d in self.days), ZERO)

    @property
    def has_readings(self) -> bool:
        return any(d.readings for d in self.days)

    @property
    def partial(self) -> bool:
        return any(d.partial for d in self.days) or bool(self.gaps)

    @property
    def plot(self) -> dict:
        return {"left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": HEIGHT - BOTTOM,
                "width": WIDTH, "height": HEIGHT}


def _start_of(d: date) -> datetime:
    return datetime.combine(d, time.min, timezone.utc)


def range_days(key: str, billing: Billing, now: datetime) -> tuple[date, date]:
    """The first and last day of range ``key`` (see ``RANGES``), at most ``MAX_DAYS`` long
    whatever odd period the API reports."""
    today = now.date()
    if key == "last-period":
        length = billing.period_end - billing.period_start
        first, last = (billing.period_start - length).date(), \
            (billing.period_start - timedelta(seconds=1)).date()
    elif key in ("7", "30", "90"):
        first, last = today - timedelta(days=int(key) - 1), today
    else:
        first = billing.period_start.date()
        last = min(today, (billing.period_end - timedelta(seconds=1)).date())
    last = max(first, last)
    return max(first, last - timedelta(days=MAX_DAYS - 1)), last


def _nice_ceiling(value: Decimal) -> Decimal:
    """A round number at or above ``value`` for the top of the axis (1, 2, 5 × 10^n)."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        candidate = Decimal(step).scaleb(exponent)
        if candidate >= value:
            return candidate
    return Decimal(10).scaleb(exponent)


def _q(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.1"), rounding=ROUND_CEILING)


def _layout(report: UsageReport) -> None:
    n = len(report.days)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_usage = max((d.usage for d in report.days if d.usage is not None), default=ZERO)
    report.y_max = _nice_ceiling(top_usage)
    slot = plot_w / n
    width = max(Decimal(1), slot * Decimal("0.72"))
    base = HEIGHT - BOTTOM
    for i, day in enumerate(report.days):
        x = LEFT + slot * i + (slot - width) / 2
        if day.usage is None:
            report.gap_marks.append(Bar(_q(x), base - 3, _q(width), Decimal(3), day))
            continue
        height = day.usage / report.y_max * plot_h
        report.bars.append(Bar(_q(x), _q(base - height), _q(width), _q(height), day))
    report.ticks = [(_q(base - plot_h * f), report.y_max * f)
                    for f in (Decimal(0), Decimal("0.5"), Decimal(1))]
    every = max(1, -(-n // 6))
    report.x_labels = [(_q(LEFT + slot * i + slot / 2), report.days[i].day)
                       for i in range(0, n, every)]


def usage_report(key: str, billing: Billing, now: datetime, monthly_credits_of) -> UsageReport:
    """Usage a day over range ``key`` from the recorded history (an unknown key
    falls back to the current period)."""
    if key not in RANGES:
        key = DEFAULT_RANGE
    first, last = range_days(key, billing, now)
    since, until = _start_of(first), _start_of(last + timedelta(days=1))
    snaps = service.snapshots(since, until)
    spans = intervals(snaps, monthly_credits_of, service.credited_top_ups(since - SPAN, until))
    spans = [s for s in spans if s.end >= _start_of(first)]
    report = UsageReport(key=key, label=RANGES[key], first=first, last=last,
                         days=daily(snaps, spans, first, last),
                         gaps=[s for s in spans if s.gap])
    _layout(report)
    return report


def observed_pace(billing: Billing, now: datetime, monthly_credits_of) -> Pace | None:
    """The pace of the last 7 days of readings, if there is at least a day of them."""
    since, until = now - timedelta(days=7), now + timedelta(seconds=1)
    snaps = service.snapshots(since, until)
    return recent_pace(intervals(snaps, monthly_credits_of,
                                 service.credited_top_ups(since - SPAN, until)), now)


def used_this_period(billing: Billing, now: datetime,
                     monthly_credits_of) -> tuple[Decimal, bool] | None:
    """Usage since the period began as the readings show it, and whether any of it is
    unknown; ``None`` when the history does not reach back to the period's start."""
    snaps = service.snapshots(billing.period_start, now + timedelta(seconds=1))
    in_period = [s for s in snaps if s.period_start == billing.period_start]
    if not in_period or in_period[0].first_seen - billing.period_start > timedelta(hours=6):
        return None
    spans = intervals(in_period, monthly_credits_of,
                      service.credited_top_ups(billing.period_start - SPAN, now))
    monthly = monthly_credits_of(in_period[0].plan)
    if not isinstance(monthly, Decimal):
        return None
    before_first = max(ZERO, monthly - in_period[0].plan_credits)
    used = before_first + sum((s.usage for s in spans if s.usage is not None), ZERO)
    return used, any(s.usage is None for s in spans)


@dataclass(frozen=True)
class PageHistory:
    """What the billing page draws from the history."""

    report: UsageReport
    pace: Pace | None
    used_so_far: tuple[Decimal, bool] | None


#: page histories kept per process; a new reading or a new minute makes a new key
KEPT = 32


def page_history(key: str, billing: Billing, now: datetime, monthly_credits_of,
                 plans_known: bool) -> PageHistory:
    """The chart for range ``key``, the observed pace and the period's usage.

    Worked out once per range, newest reading and minute in each process and
    then reused: a range can span tens of thousands of readings, and however
    often anyone reloads, the work is bounded by how often a reading arrives.
    """
    from flask import current_app

    key = key if key in RANGES else DEFAULT_RANGE
    cache = current_app.extensions.setdefault("history_pages", {})
    marker = (key, service.newest_marker(), billing, now.replace(second=0, microsecond=0),
              plans_known)
    found = cache.get(marker)
    if found is None:
        found = PageHistory(
            report=usage_report(key, billing, now, monthly_credits_of),
            pace=observed_pace(billing, now, monthly_credits_of) if plans_known else None,
            used_so_far=(used_this_period(billing, now, monthly_credits_of)
                         if plans_known else None))
        if len(cache) >= KEPT:
            cache.clear()
        cache[marker] = found
    return found
