"""The usage chart and its table: days of usage for a chosen range, with the
geometry of a server-rendered SVG (Decimal all the way: pixels are worked
out from money without passing through float)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_CEILING, Decimal

from ...giga import Billing
from ..checkouts.reconcile import credited_top_ups
from . import kept
from . import readings as service
from .kept import Recorded
from .usage import ZERO, Day, Interval, Pace, daily, intervals, opening, recent_pace

RANGES = {"period": "This period", "last-period": "Last period", "7": "Last 7 days",
          "30": "Last 30 days", "90": "Last 90 days"}
DEFAULT_RANGE = "period"
#: the range whose usage the forecast's pace is: one stretch, one figure, one label
PACE_RANGE = "7"
#: no chart is longer than this, however long a period the API reports
MAX_DAYS = 92
#: how far before a range a credited top-up may be matched to its first interval
SPAN = timedelta(days=400)

#: the SVG's coordinate box; CSS scales it to the width of the card
WIDTH, HEIGHT = Decimal(720), Decimal(260)
#: room for the axis labels, at the phone's larger type too (static/app.css)
LEFT, RIGHT, TOP, BOTTOM = Decimal(100), Decimal(44), Decimal(24), Decimal(40)


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
    #: for a period's range: its start and end, and whether the readings reach its start
    period: tuple[datetime, datetime] | None = None
    whole: bool | None = None
    #: for a period's range: the plan changed during it (its credits granted again)
    plan_changed: bool = False

    @property
    def days_total(self) -> Decimal:
        """What the days' bars add up to."""
        return sum((d.usage for d in self.days if d.usage is not None), ZERO)

    @property
    def total(self) -> Decimal:
        """The range's usage as the readings tell it: its days and its stretches without
        readings (the table's last line, the CSV's rows, a period's "used")."""
        return self.days_total + self.gap_usage

    @property
    def top_ups(self) -> Decimal:
        return sum((d.top_ups for d in self.days), ZERO) + \
            sum((g.top_up for g in self.gaps), ZERO)

    @property
    def has_readings(self) -> bool:
        return any(d.readings for d in self.days)

    @property
    def partial(self) -> bool:
        return any(d.partial for d in self.days) or bool(self.gaps)

    @property
    def gap_usage(self) -> Decimal:
        """What the readings tell of stretches without readings (shown apart from days)."""
        return sum((g.usage for g in self.gaps if g.usage is not None), ZERO)

    @property
    def unknown(self) -> bool:
        """Some usage in the range cannot be told at all (not even bounded)."""
        return any(d.unknown for d in self.days) or any(g.usage is None for g in self.gaps)

    @property
    def at_most(self) -> Decimal | None:
        """The most the range's usage can have been; ``None`` when it cannot be bounded."""
        if self.unknown:
            return None
        return self.total + sum((d.up_to for d in self.days), ZERO)

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


class PlanBook:
    """What the history needs of the plan list: each plan's allowance and name."""

    def __init__(self, plans):
        self._plans = {p.id: p for p in plans or ()}

    def monthly_credits(self, plan_id: str) -> Decimal | str | None:
        plan = self._plans.get(plan_id)
        return None if plan is None else plan.monthly_credits

    def name(self, plan_id: str) -> str:
        plan = self._plans.get(plan_id)
        return plan_id if plan is None else plan.name


def _period_of(key: str, billing: Billing) -> tuple[datetime, datetime] | None:
    """The period range ``key`` shows (its start and end), or ``None`` for whole days."""
    if key == DEFAULT_RANGE:
        return billing.period_start, billing.period_end
    if key == "last-period":
        return billing.period_start - (billing.period_end - billing.period_start), \
            billing.period_start
    return None


def _history(recorded: Recorded, since: datetime, until: datetime, now: datetime,
             billing: Billing, read_at: datetime):
    """The snapshots seen in ``[since, until)``, with the reading of ``billing`` at
    ``read_at`` in them as recording it will put it (when the range reaches now)."""
    snaps = recorded.between(since, min(until, now + timedelta(seconds=1)))
    return service.with_reading(snaps, billing, read_at) if until > now else snaps


def usage_report(key: str, billing: Billing, now: datetime, plans: PlanBook, *,
                 read_at: datetime, recorded: Recorded | None = None) -> UsageReport:
    """Usage a day over range ``key`` from the history (``recorded``, else as the
    database has it now) with the reading of ``billing`` at ``read_at`` in it (an
    unknown key falls back to the current period). A period's range holds that
    period's usage only, its first and last days cut at its start and end
    (``usage.daily``)."""
    recorded = recorded or kept.recorded(now)
    if key not in RANGES:
        key = DEFAULT_RANGE
    first, last = range_days(key, billing, now)
    period = _period_of(key, billing)
    since, until = _start_of(first), _start_of(last + timedelta(days=1))
    # a period's last reset interval ends at the next period's first reading
    fetch_until = max(until, period[1] + timedelta(days=1)) if period else until
    snaps = _history(recorded, since, fetch_until, now, billing, read_at)
    spans = intervals(snaps, plans.monthly_credits,
                      credited_top_ups(since - SPAN, fetch_until), plans.name)
    whole = None
    if period is not None:
        mine = [s for s in spans if s.period_start == period[0]]
        begun = [s for s in snaps if s.period_start == period[0]]
        whole = any(s.kind == "reset" and not s.gap for s in mine)
        if not whole and begun and not any(s.end <= begun[0].first_seen for s in mine):
            opened = opening(begun[0], plans.monthly_credits(begun[0].plan))
            if opened is not None:
                spans.insert(0, opened)
                whole = True
    spans = [s for s in spans if s.end >= since]
    gaps = [s for s in spans if s.gap and (period is None or s.period_start == period[0])]
    report = UsageReport(key=key, label=RANGES[key], first=first, last=last,
                         days=daily(snaps, spans, first, last, period=period), gaps=gaps,
                         period=period, whole=whole,
                         plan_changed=period is not None and any(
                             s.kind == "plan change" and s.period_start == period[0]
                             for s in spans))
    _layout(report)
    return report


def observed_pace(now: datetime, plans: PlanBook, billing: Billing, *, read_at: datetime,
                  recorded: Recorded) -> Pace | None:
    """The pace over the "Last 7 days" range, as its table adds it up, of ``recorded``
    readings (the reading of ``billing`` at ``read_at`` among them), if there is at
    least a day of them."""
    since, until = _start_of(range_days(PACE_RANGE, billing, now)[0]), now + timedelta(seconds=1)
    snaps = _history(recorded, since, until, now, billing, read_at)
    return recent_pace(intervals(snaps, plans.monthly_credits,
                                 credited_top_ups(since - SPAN, until)), now, since,
                       f"the {RANGES[PACE_RANGE].lower()}")


@dataclass(frozen=True)
class PeriodUsage:
    """Usage this period, exactly as the "This period" table adds it up.

    ``used`` is what the readings tell; ``unknown`` whether some of it cannot
    be told; ``whole`` whether the readings reach back to the period's start
    (if not, ``since`` is the first reading's time).
    """

    used: Decimal
    unknown: bool
    whole: bool
    since: datetime
    #: of ``used``, what fell in stretches without readings (not on any day's row)
    in_gaps: Decimal = ZERO
    #: the plan changed this period (so its plan credits were granted again)
    plan_changed: bool = False


def period_usage(report: UsageReport) -> PeriodUsage | None:
    """The figure from the current period's report (``None`` for another range or
    without readings)."""
    if report.key != DEFAULT_RANGE or not report.has_readings:
        return None
    days = [d for d in report.days if d.readings]
    since = report.period[0] if report.whole else max(
        report.period[0], datetime.combine(days[0].day, time.min, timezone.utc))
    return PeriodUsage(used=report.total, unknown=report.unknown, whole=bool(report.whole),
                       since=since, in_gaps=report.gap_usage, plan_changed=report.plan_changed)


@dataclass(frozen=True)
class PageHistory:
    """What the billing page draws from the history: the chosen range's chart, the
    observed pace and this period's usage (the same figures the alerts use)."""

    report: UsageReport
    pace: Pace | None
    period: PeriodUsage | None


#: page histories kept per process; a new reading or a new minute makes a new key
PAGES_KEPT = 32


def page_history(key: str, billing: Billing, now: datetime, plans, *,
                 read_at: datetime) -> PageHistory:
    """The chart for range ``key``, the observed pace and this period's usage, over the
    history with the reading of ``billing`` at ``read_at`` in it, recorded yet or not;
    ``plans`` is the plan list, or ``None`` when it could not be read.

    Worked out once per range, newest reading and minute in each process and
    then reused: a range can span tens of thousands of readings, and however
    often anyone reloads, the work is bounded by how often a reading arrives.
    """
    from flask import current_app

    key = key if key in RANGES else DEFAULT_RANGE
    cache = current_app.extensions.setdefault("history_pages", {})
    book = PlanBook(plans)
    known = plans is not None
    recorded = kept.recorded(now)
    marker = (key, service.marker(recorded.newest, billing, read_at), billing,
              now.replace(second=0, microsecond=0),
              tuple((p.id, p.name, p.monthly_credits) for p in plans or ()), known)
    found = cache.get(marker)
    if found is None:
        drawn = dict(read_at=read_at, recorded=recorded)
        report = usage_report(key, billing, now, book, **drawn)
        this_period = report if key == DEFAULT_RANGE else usage_report(
            DEFAULT_RANGE, billing, now, book, **drawn)
        pace = observed_pace(now, book, billing, **drawn) if known else None
        found = PageHistory(report=report, pace=pace,
                            period=period_usage(this_period) if known else None)
        if len(cache) >= PAGES_KEPT:
            cache.clear()
        cache[marker] = found
    return found
