"""The usage chart and its table: days of usage for a chosen range, in the team's time
zone, with the geometry of a server-rendered SVG (Decimal all the way: pixels are
worked out from money without passing through float).

Days are built from the usage worked out per quarter hour (``rollups``): the kept
quarter hours of the page's days in one grouped query, the intervals kept one by one
in a second, and the quarter hour not over yet from the readings themselves, with
the page's own reading in it. The history stays in UTC; a day is bucketed when it is
read, so another zone re-buckets the past and a range's total stays the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from zoneinfo import ZoneInfo

from flask import current_app, g, has_request_context

from ...formatting import clock, moment, zone_label
from ...giga import Billing
from . import readings as service
from ..recent import recently
from .rollups import (Apart, Grid, Part, Tail, day_sums, days_from, kept_apart,
                      lazy_top_ups, quarter_of, quarter_parts, quarter_start, tail, worked_out)
from .usage import (UTC, ZERO, Day, Interval, Pace, Snapshot, day_start, local_day, opening,
                    pace_over, place_on_hours, weekly)

RANGES = {"period": "This period", "last-period": "Last period", "7": "Last 7 days",
          "30": "Last 30 days", "90": "Last 90 days", "365": "Last 12 months"}
DEFAULT_RANGE = "period"
#: the calendar month so far, a budget's window when it is set per month (not a chip)
MONTH = "month"
LABELS = {**RANGES, MONTH: "This month"}
#: the range whose usage the forecast's pace is: one stretch, one figure, one label
PACE_RANGE = "7"
#: the year: drawn a week a bar, since a day's bar would be thinner than a pixel on a
#: phone (365 bars in the chart's 576 units, drawn about 330 px wide)
YEAR = "365"
#: no other chart is longer than this, however long a period the API reports
MAX_DAYS = 92
#: how far before the history's tail a credited top-up may be matched to an interval
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
    #: what the chart and the table show a row each: the days, or for the year its weeks
    buckets: list[Day] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    gap_marks: list[Bar] = field(default_factory=list)
    y_max: Decimal = Decimal(1)
    ticks: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    #: the x axis's labels: where, and what (a day, or for the year a month)
    x_labels: list[tuple[Decimal, str]] = field(default_factory=list)
    #: for a period's range: its start and end, and whether the readings reach its start
    period: tuple[datetime, datetime] | None = None
    whole: bool | None = None
    #: for a period's range: the plan changed during it (its credits granted again)
    plan_changed: bool = False
    #: the zone the days are the days of, named as the page shows it
    zone: ZoneInfo = UTC
    zone_name: str = "UTC"
    #: a budget's even share a day, drawn as a line across the bars, and where
    budget_per_day: Decimal | None = None
    budget_y: Decimal | None = None

    @property
    def weekly(self) -> bool:
        return self.buckets is not self.days

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

    def clock(self, when: datetime) -> str:
        """``14:05 PST``: a time of day in the report's zone."""
        return clock(when, self.zone)

    def moment(self, when: datetime) -> str:
        """``Dec 3, 2026, 14:05 PST``: an instant in the report's zone."""
        return moment(when, self.zone)


def range_days(key: str, billing: Billing, now: datetime, *,
               zone: ZoneInfo = UTC) -> tuple[date, date]:
    """The first and last day of range ``key`` (see ``RANGES``) in ``zone``, "today"
    being today there; at most ``MAX_DAYS`` long whatever odd period the API reports
    (the year, 365 days)."""
    today = local_day(now, zone)
    if key == "last-period":
        length = billing.period_end - billing.period_start
        first = local_day(billing.period_start - length, zone)
        last = local_day(billing.period_start - timedelta(seconds=1), zone)
    elif key == MONTH:
        first, last = today.replace(day=1), today
    elif key in ("7", "30", "90", YEAR):
        first, last = today - timedelta(days=int(key) - 1), today
    else:
        first = local_day(billing.period_start, zone)
        last = min(today, local_day(billing.period_end - timedelta(seconds=1), zone))
    last = max(first, last)
    if key == YEAR:
        return first, last
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
    rows = report.buckets
    n = len(rows)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_usage = max((d.usage for d in rows if d.usage is not None), default=ZERO)
    top_usage = max(top_usage, report.budget_per_day or ZERO)
    report.y_max = _nice_ceiling(top_usage)
    slot = plot_w / n
    width = max(Decimal(1), slot * Decimal("0.72"))
    base = HEIGHT - BOTTOM
    for i, day in enumerate(rows):
        x = LEFT + slot * i + (slot - width) / 2
        if day.usage is None:
            report.gap_marks.append(Bar(_q(x), base - 3, _q(width), Decimal(3), day))
            continue
        height = day.usage / report.y_max * plot_h
        report.bars.append(Bar(_q(x), _q(base - height), _q(width), _q(height), day))
    report.ticks = [(_q(base - plot_h * f), report.y_max * f)
                    for f in (Decimal(0), Decimal("0.5"), Decimal(1))]
    if report.budget_per_day is not None:
        report.budget_y = _q(base - report.budget_per_day / report.y_max * plot_h)
    report.x_labels = _x_labels(rows, report.weekly, slot)


def _x_labels(rows: list[Day], weekly: bool, slot: Decimal) -> list[tuple[Decimal, str]]:
    """About six labels under the bars: days ("Nov 19"); for the year's weeks, every
    other month where it begins ("Jan", "Mar"), short enough for a phone (the years
    are in the words above the chart)."""
    def at(i: int) -> Decimal:
        return _q(LEFT + slot * i + slot / 2)
    if not weekly:
        every = max(1, -(-len(rows) // 6))
        return [(at(i), rows[i].day.strftime("%b %-d")) for i in range(0, len(rows), every)]
    labels, month = [], None
    for i, week in enumerate(rows):
        first = week.day if week.day.day <= 7 else None  # the week a month begins in
        if first is not None and first.month != month and first.month % 2 == 1:
            month = first.month
            labels.append((at(i), first.strftime("%b")))
    return labels


def with_budget_line(report: UsageReport, per_day: Decimal | None) -> UsageReport:
    """``report`` drawn again with a budget's share a day as a line (its axis tall enough
    for it); the report itself (kept for other pages) is left as it is. A chart of weeks
    gets no line: its bars are not days."""
    if per_day is None or per_day <= 0 or report.weekly or not report.has_readings:
        return report
    drawn = replace(report, bars=[], gap_marks=[], ticks=[], x_labels=[],
                    budget_per_day=per_day)
    _layout(drawn)
    return drawn


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


# -- the history as one page draws it ---------------------------------------------------

@dataclass(frozen=True)
class Drawn:
    """The history over whole days of a zone, as ranges are built from it: each day's
    sums of each period (the kept quarter hours' and the tail's), the intervals kept
    apart (worked out with the plan list), oldest first, and the first reading kept
    (when it is in these days)."""

    parts: dict[tuple[date, datetime], Part]
    spans: list[Interval]
    firsts: list[Snapshot]


#: what each process keeps of the history, each a few entries (memory stays bounded):
#: the kept quarter hours' day sums while no quarter hour is added, and the reports
#: and figures worked out from them while no reading arrives and the minute lasts
KEPT = {"history_sums": 16, "history_charts": 12, "history_figures": 12}


def _kept(name: str, key, make):
    """``make()``, kept in this process under ``key`` (a few of each ``name``)."""
    cache = current_app.extensions.setdefault(name, {})
    found = cache.get(key)
    if found is None:
        found = make()
        if len(cache) >= KEPT[name]:
            cache.clear()
        cache[key] = found
    return found


class Look:
    """The history looked up once for a page (or an alert check): the rollups' reach and
    the readings since (one query), with the reading of ``billing`` at ``read_at`` in
    them as recording it will put it. Raises ``SQLAlchemyError``."""

    def __init__(self, billing: Billing, now: datetime, plans, read_at: datetime,
                 zone: ZoneInfo, found: Tail | None = None, cached: bool = True):
        self.billing, self.now, self.read_at, self.zone = billing, now, read_at, zone
        self.book, self.known = PlanBook(plans), plans is not None
        self.tail = found or (_recent_tail(read_at, now) if cached else tail(now))
        self.cached = cached
        self._drawn: dict[tuple[date, date], Drawn] = {}
        newest = self.tail.newest
        self.marker = (self.tail.through, self.tail.rebuilds,
                       service.marker(newest, billing, read_at), billing,
                       now.replace(second=0, microsecond=0),
                       tuple((p.id, p.name, p.monthly_credits) for p in plans or ()),
                       self.known, zone.key)

    def drawn(self, keys) -> Drawn:
        """The history over the days of ranges ``keys`` (each with the pace's week)."""
        spans = [range_days(k, self.billing, self.now, zone=self.zone)
                 for k in (*keys, PACE_RANGE)]
        return self.drawn_between(min(f for f, _ in spans), max(last for _, last in spans))

    def drawn_between(self, first: date, last: date) -> Drawn:
        """The history over days ``first``..``last`` of the zone (none after today)."""
        last = max(first, min(last, local_day(self.now, self.zone)))
        for (lo, hi), drawn in self._drawn.items():  # a wider window drawn already serves
            if lo <= first and last <= hi:
                return drawn
        drawn = self._drawn[(first, last)] = self._draw(Grid(first, last, self.zone))
        return drawn

    def _sums(self, grid: Grid) -> tuple[dict, list[Apart]]:
        """The kept quarter hours' day sums and intervals kept apart on ``grid``. The
        days before today are kept in this process until the rollups are rebuilt (their
        quarter hours are all kept, and never change once kept); today's, and the
        intervals kept apart (a handful of rows), until a quarter hour is added."""
        reached = self.tail.through
        if reached is None:
            return {}, []
        cut = quarter_of(reached)
        today = min(cut, quarter_of(day_start(local_day(self.now, self.zone), self.zone)))
        kept = _kept if self.cached else (lambda _name, _key, make: make())
        past = kept("history_sums", ("past", self.tail.rebuilds, self.zone.key, grid.first,
                                     today), lambda: day_sums(grid, today))
        recent = kept("history_sums", ("recent", reached, self.tail.rebuilds, self.zone.key,
                                       grid.first, grid.starts[-1]),
                      lambda: (day_sums(grid, cut, since=today),
                               kept_apart(day_start(grid.first, self.zone), reached)))
        return {**past, **recent[0]}, recent[1]

    def worked_out_tail(self) -> tuple[dict[tuple[int, datetime], Part], list[Apart]]:
        """The quarter hours the rollups do not reach yet, worked out from the readings
        with this look's own in them, and the intervals among them kept apart."""
        lo = quarter_of(self.tail.through) if self.tail.through is not None else 0
        snaps = [s for s in self.tail.snaps if s.first_seen < self.now + timedelta(seconds=1)]
        snaps = service.with_reading(snaps, self.billing, self.read_at)
        start = quarter_start(lo)
        return worked_out(snaps, lo, None,
                          lazy_top_ups(start - SPAN, self.now + timedelta(days=1)))

    def spans_of(self, apart: list[Apart]) -> tuple[list[Interval], list[Snapshot]]:
        """The intervals kept apart, worked out with the plan list, and the first readings
        kept (those with nothing before them)."""
        spans, firsts = [], []
        for kept in apart:
            span = kept.span(self.book.monthly_credits, self.book.name)
            if span is None:
                firsts.append(kept.after)
            else:
                spans.append(span)
        return spans, firsts

    def _draw(self, grid: Grid) -> Drawn:
        sums, apart = self._sums(grid)
        parts = dict(sums)  # the kept ones stay as they are: a day the tail adds to is copied
        fresh, fresh_apart = self.worked_out_tail()
        for (q, period), part in fresh.items():
            if (d := grid.day(q)) is not None:
                merged = replace(parts[(d, period)]) if (d, period) in parts else Part(period)
                merged.add(part)
                parts[(d, period)] = merged
        return Drawn(parts, *self.spans_of([*apart, *fresh_apart]))


def _report(key: str, look: Look) -> UsageReport:
    """Range ``key`` built from ``look``'s history: see ``usage_report``."""
    billing, now, zone, book = look.billing, look.now, look.zone, look.book
    drawn = look.drawn((key, DEFAULT_RANGE))
    first, last = range_days(key, billing, now, zone=zone)
    period = _period_of(key, billing)
    since, until = day_start(first, zone), day_start(last + timedelta(days=1), zone)
    # a period's last reset interval ends at the next period's first reading
    fetch_until = max(until, period[1] + timedelta(days=1)) if period else until
    end = min(fetch_until, now + timedelta(seconds=1))
    spans = [s for s in drawn.spans if since <= s.end < end]
    whole = None
    if period is not None:
        whole = any(s.kind == "reset" and not s.gap and s.period_start == period[0]
                    for s in spans)
        begun = [f for f in drawn.firsts if f.period_start == period[0] and f.first_seen < end]
        if not whole and begun:  # the history begins within the period
            opened = opening(begun[0], book.monthly_credits(begun[0].plan))
            if opened is not None:
                spans.insert(0, opened)
                whole = True
    days = days_from(drawn.parts, spans, first, last, zone, period=period)
    report = UsageReport(
        key=key, label=LABELS[key], first=first, last=last, days=days,
        buckets=weekly(days) if key == YEAR else days,
        gaps=[s for s in spans if s.gap and (period is None or s.period_start == period[0])],
        period=period, whole=whole, zone=zone, zone_name=zone_label(zone, now),
        plan_changed=period is not None and any(
            s.kind == "plan change" and s.period_start == period[0] for s in spans))
    _layout(report)
    return report


def usage_between(first: date, last: date, billing: Billing, now: datetime, plans, *,
                  read_at: datetime, zone: ZoneInfo = UTC) -> UsageReport:
    """Usage a day of ``zone`` from ``first`` to ``last`` (whole days, no period cut),
    built as the page's ranges are (the same quarter hours, intervals and rules): the
    JSON API's days. Its ``gaps`` are the stretches without readings that end in these
    days. Raises ``SQLAlchemyError``."""
    look = _look(billing, now, plans, read_at, zone)
    drawn = look.drawn_between(first, last)
    since, until = day_start(first, zone), day_start(last + timedelta(days=1), zone)
    end = min(until, now + timedelta(seconds=1))
    spans = [s for s in drawn.spans if since <= s.end < end]
    days = days_from(drawn.parts, spans, first, last, zone)
    return UsageReport(key="days", label=f"{first} to {last}", first=first, last=last,
                       days=days, buckets=days, gaps=[s for s in spans if s.gap], zone=zone,
                       zone_name=zone_label(zone, now))


def usage_hours(first: datetime, count: int, billing: Billing, now: datetime, plans, *,
                read_at: datetime) -> tuple[list[Day], list[Interval]]:
    """Usage an hour (UTC hours: in every zone but the few on a half or three-quarter
    hour, its own hours too) for ``count`` hours from ``first`` (on the hour), from the
    same quarter hours and intervals as the page's days, added up the same way; and the
    stretches without readings that end in them. Each hour is a ``Day`` whose ``start``
    and ``end`` are the hour's. Raises ``SQLAlchemyError``."""
    look = _look(billing, now, plans, read_at, UTC)
    lo, hi = quarter_of(first), quarter_of(first) + 4 * count
    reached = look.tail.through
    cut = quarter_of(reached) if reached is not None else lo
    hours = [Day(local_day(first + timedelta(hours=i)), start=first + timedelta(hours=i),
                 end=first + timedelta(hours=i + 1)) for i in range(count)]
    fresh, fresh_apart = look.worked_out_tail()
    parts = [*quarter_parts(lo, min(hi, cut)).items(), *fresh.items()]
    # oldest first: an hour's closing balance is its newest quarter hour's
    for (q, _period), part in sorted(parts, key=lambda item: (item[0][0], item[1].closing_at
                                                               or quarter_start(0))):
        if lo <= q < hi:
            hour = hours[(q - lo) // 4]
            hour.readings = True
            hour.usage = (hour.usage or ZERO) + part.usage
            hour.prepaid_usage += part.prepaid_usage
            hour.top_ups += part.top_ups
            hour.closing = part.closing if part.closing is not None else hour.closing
    apart = kept_apart(quarter_start(lo), reached) if reached is not None else []
    spans, _ = look.spans_of([*apart, *fresh_apart])
    spans = [s for s in spans if first <= s.end < min(hours[-1].end, now + timedelta(seconds=1))]
    place_on_hours(hours, spans)
    return hours, [s for s in spans if s.gap]


def _pace(look: Look) -> Pace | None:
    """The pace over the "Last 7 days" range, as its table adds it up: see
    ``observed_pace``."""
    drawn = look.drawn((DEFAULT_RANGE,))
    first_day = range_days(PACE_RANGE, look.billing, look.now, zone=look.zone)[0]
    since, end = day_start(first_day, look.zone), look.now + timedelta(seconds=1)
    used, starts = ZERO, []
    for (day, _), part in drawn.parts.items():
        if day >= first_day and part.first_start is not None:
            used += part.usage
            starts.append(part.first_start)
    for span in drawn.spans:  # gaps included: the range's table counts them
        if since <= span.end < end and span.usage is not None:
            used += span.usage
            starts.append(span.start)
    if not starts:
        return None
    return pace_over(used, max(min(starts), since), look.now, since,
                     f"the {RANGES[PACE_RANGE].lower()}", zone=look.zone)


def usage_report(key: str, billing: Billing, now: datetime, plans: PlanBook | list | None, *,
                 read_at: datetime, zone: ZoneInfo = UTC) -> UsageReport:
    """Usage a day of ``zone`` over range ``key``, from the history as the database has
    it now with the reading of ``billing`` at ``read_at`` in it (an unknown key falls
    back to the current period); ``plans`` is the plan list (or ``None``). A period's
    range holds that period's usage only, its first and last days cut at its start
    and end (``usage.daily``). Raises ``SQLAlchemyError``."""
    key = key if key in RANGES else DEFAULT_RANGE
    return _report(key, Look(billing, now, _plan_list(plans), read_at, zone, cached=False))


def observed_pace(now: datetime, plans: PlanBook | list | None, billing: Billing, *,
                  read_at: datetime, zone: ZoneInfo = UTC) -> Pace | None:
    """The pace over the "Last 7 days" range of ``zone``, as its table adds it up, of the
    readings (the reading of ``billing`` at ``read_at`` among them), if there is at
    least a day of them. Raises ``SQLAlchemyError``."""
    return _pace(Look(billing, now, _plan_list(plans), read_at, zone, cached=False))


def _plan_list(plans):
    """The plan list behind ``plans`` (a ``PlanBook`` hands its plans back)."""
    return list(plans._plans.values()) if isinstance(plans, PlanBook) else plans


@dataclass(frozen=True)
class PeriodUsage:
    """Usage this period, exactly as the "This period" table adds it up.

    ``used`` is what the readings tell; ``unknown`` whether some of it cannot
    be told; ``whole`` whether the readings reach back to the period's start
    (if not, ``since`` is the start of the first day with readings).
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
        report.period[0], day_start(days[0].day, report.zone))
    return PeriodUsage(used=report.total, unknown=report.unknown, whole=bool(report.whole),
                       since=since, in_gaps=report.gap_usage, plan_changed=report.plan_changed)


@dataclass(frozen=True)
class PageHistory:
    """What the billing page draws from the history: the chosen range's chart, the
    observed pace and this period's usage (the same figures the alerts use)."""

    report: UsageReport
    pace: Pace | None
    period: PeriodUsage | None


#: how long a process reuses the history's tail looked up for a reading: every reading
#: recorded since by any process came with a reading of its own (a new ``read_at``), so
#: only readings written by hand wait this long to show
TAIL_SECONDS = 2.0


def _recent_tail(read_at: datetime, now: datetime) -> Tail:
    """``rollups.tail(now)``, looked up once for pages that show the reading made at
    ``read_at`` within ``TAIL_SECONDS`` of each other (a warm page's history costs no
    query then); whatever this process records starts afresh. Raises
    ``SQLAlchemyError``."""
    key = (read_at, quarter_of(now), service.generation(current_app))
    return recently("history tail", key, TAIL_SECONDS, lambda: tail(now))


def _look(billing: Billing, now: datetime, plans, read_at: datetime, zone: ZoneInfo) -> Look:
    """The history looked up for this request (once, however many figures it draws), or
    now outside one."""
    if not has_request_context():
        return Look(billing, now, plans, read_at, zone)
    looked = g.get("_history_looks")
    if looked is None:
        looked = g._history_looks = {}
    key = (billing, now, read_at, zone.key, plans is not None,
           tuple(p.id for p in plans or ()))
    if key not in looked:
        found = next(iter(looked.values())).tail if looked else None
        looked[key] = Look(billing, now, plans, read_at, zone, found=found)
    return looked[key]


def chart(key: str, billing: Billing, now: datetime, plans, *, read_at: datetime,
          zone: ZoneInfo = UTC) -> UsageReport:
    """``usage_report`` for the page and the usage CSV: worked out once per range,
    newest reading, minute and zone in each process, then reused. Raises
    ``SQLAlchemyError``."""
    key = key if key in LABELS else DEFAULT_RANGE
    look = _look(billing, now, plans, read_at, zone)
    return _kept("history_charts", (key, look.marker), lambda: _report(key, look))


def figures(billing: Billing, now: datetime, plans, *, read_at: datetime,
            zone: ZoneInfo = UTC) -> tuple[Pace | None, PeriodUsage | None]:
    """The observed pace and this period's usage (the forecast's, on the page and in the
    alerts); both ``None`` without the plan list. Worked out as ``chart`` is. Raises
    ``SQLAlchemyError``."""
    if plans is None:
        return None, None
    look = _look(billing, now, plans, read_at, zone)

    def make():
        return _pace(look), period_usage(_report(DEFAULT_RANGE, look))
    return _kept("history_figures", look.marker, make)


def page_history(key: str, billing: Billing, now: datetime, plans, *,
                 read_at: datetime, zone: ZoneInfo = UTC) -> PageHistory:
    """The chart for range ``key`` in ``zone``, the observed pace and this period's usage,
    over the history with the reading of ``billing`` at ``read_at`` in it, recorded yet
    or not; ``plans`` is the plan list, or ``None`` when it could not be read.

    The history is looked up once (``Look``: one query), and what is worked out from
    it is kept per range, newest reading and minute in each process: however often
    anyone reloads, the work is bounded by how often a reading arrives, and a new
    reading costs the quarter hour not over yet. Raises ``SQLAlchemyError``.
    """
    report = chart(key, billing, now, plans, read_at=read_at, zone=zone)
    pace, period = figures(billing, now, plans, read_at=read_at, zone=zone)
    return PageHistory(report=report, pace=pace, period=period)
