"""Usage worked out from balance readings: the rules, in one place.

The API has no usage endpoint, only the balance now. Between two readings
``a`` and ``b`` the usage is the fall in total balance, corrected for what
is not usage. Plan credits are drawn before prepaid credit.

1. **Plain use** (same period, same plan, prepaid did not grow): usage is
   the fall in plan credits plus the fall in prepaid credit.
2. **Top-up during use** (prepaid grew): while plan credits remain at ``b``
   prepaid was not drawn, so usage is the fall in plan credits and the
   growth is the top-up. If plan credits ran out, prepaid may have been
   drawn as well, and only a known top-up amount (a checkout reconciled to
   this interval) can tell usage from credit; without one, usage is unknown.
3. **Period reset** (a new period started): the plan's monthly credits were
   granted, so usage since the reset is the monthly credits less what is
   left, plus prepaid drawn. Plan credits left at ``a`` expired at the reset,
   and how much of them was used first the readings cannot tell: the
   interval is marked partial, by up to that much.
4. **Plan change** mid-period (upgrade or downgrade): the new plan's credits
   were granted on terms the API does not state, so the interval's usage is
   unknown (say so); readings after it follow rule 1 again.
5. **Credits added** mid-period without a reset or a plan change: unknown.
6. **Gap** in polling (more than ``MAX_INTERVAL`` between readings): the
   usage is computed as above but cannot be placed on a day, so it is kept
   apart from the days it spans, which show as gaps.
7. **Opening**: when the history begins within a period (no reading before
   it), plan credits used between the period's start and the first reading
   are the plan's monthly credits less what that reading shows left. When
   the first reading came more than ``MAX_INTERVAL`` after the start, that
   usage is a gap's (rule 6): the period's, on no day.

Usage of an interval counts on the day of its later reading, and in the
period of its later reading: a reset's usage (since the reset) is the new
period's, while what it cannot tell (plan credits left at the old period's
last reading, used before the reset or expired at it) is the old period's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from ...formatting import clock, money

#: readings further apart than this are a gap: their usage is not put on a day
MAX_INTERVAL = timedelta(hours=6)
ZERO = Decimal(0)
UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Snapshot:
    """The figures of one reading, unchanged from ``first_seen`` to ``last_seen``."""

    first_seen: datetime
    last_seen: datetime
    plan: str
    plan_credits: Decimal
    prepaid: Decimal
    total: Decimal
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class Interval:
    """What happened between two readings."""

    start: datetime
    end: datetime
    kind: str  # "use" | "top-up" | "reset" | "plan change" | "credits added" | "opening"
    usage: Decimal | None  # None: the readings cannot tell
    top_up: Decimal = ZERO
    #: why the usage is unknown, or (rule 3) what more there may have been, in words
    note: str | None = None
    gap: bool = False
    #: the period of the later reading: the one this interval's usage belongs to
    period_start: datetime | None = None
    #: rule 3: plan credits left at the old period's last reading, used before the reset
    #: or expired at it -- the old period's unknown, at most this much
    before_reset_up_to: Decimal = ZERO
    #: the part of ``usage`` drawn from prepaid credit (the rest drew plan credits);
    #: ``None`` when the usage cannot be told
    prepaid_used: Decimal | None = ZERO


def interval(a: Snapshot, b: Snapshot, monthly_credits: Decimal | str | None,
             known_top_up: Decimal | None = None, plan_name=str) -> Interval:
    """Usage between readings ``a`` and ``b`` (rules 1-6 above).

    ``monthly_credits`` is ``b``'s plan allowance (a word when custom, ``None``
    when unknown); ``known_top_up`` a top-up credited between them, if any;
    ``plan_name(plan_id)`` names a plan in words.
    """
    start, end = a.last_seen, b.first_seen
    gap = end - start > MAX_INTERVAL
    plan_used = a.plan_credits - b.plan_credits
    prepaid_delta = b.prepaid - a.prepaid
    prepaid_drawn = max(ZERO, -prepaid_delta)
    common = dict(start=start, end=end, gap=gap, period_start=b.period_start,
                  top_up=max(ZERO, prepaid_delta))

    if b.period_start > a.period_start:  # rule 3 (a plan change at a reset counts as one)
        if not isinstance(monthly_credits, Decimal) or b.plan_credits > monthly_credits:
            return Interval(kind="reset", usage=None, prepaid_used=None,
                            note="a new period began on a plan whose allowance is not known, "
                                 "so usage across the reset cannot be told", **common)
        left = max(ZERO, a.plan_credits)
        return Interval(kind="reset", usage=monthly_credits - b.plan_credits + prepaid_drawn,
                        prepaid_used=prepaid_drawn, before_reset_up_to=left,
                        note=(f"up to {money(left)} more: the plan credits left at the last "
                              "reading before the reset, used before it or expired at it (the "
                              "readings cannot tell which)" if left > 0 else None), **common)
    if b.plan != a.plan:  # rule 4
        return Interval(kind="plan change", usage=None, prepaid_used=None,
                        note=f"the plan changed from {plan_name(a.plan)} to "
                             f"{plan_name(b.plan)} and its credits were granted again, so "
                             "usage at the change cannot be told", **common)
    if plan_used < 0:  # rule 5
        return Interval(kind="credits added", usage=None, prepaid_used=None,
                        note="plan credits were added mid-period, so usage then cannot be "
                             "told", **common)
    if prepaid_delta <= 0:  # rule 1
        return Interval(kind="use", usage=plan_used + prepaid_drawn, prepaid_used=prepaid_drawn,
                        **common)
    # rule 2: prepaid grew
    if b.plan_credits > 0:  # plan credits left: none of the usage drew prepaid credit
        return Interval(kind="top-up", usage=plan_used, **common)
    if known_top_up is not None and known_top_up >= prepaid_delta:
        return Interval(kind="top-up", usage=plan_used + known_top_up - prepaid_delta,
                        prepaid_used=known_top_up - prepaid_delta,
                        **{**common, "top_up": known_top_up})
    return Interval(kind="top-up", usage=None, prepaid_used=None,
                    note="a top-up arrived after plan credits ran out, so prepaid use and new "
                         "credit cannot be told apart", **common)


def opening(first: Snapshot, monthly_credits: Decimal | str | None) -> Interval | None:
    """Rule 7: usage from the period's start to ``first``, its first reading, when no
    reading came before it (a gap when that is more than ``MAX_INTERVAL``); ``None``
    when the plan's allowance is not known."""
    if not isinstance(monthly_credits, Decimal) or first.plan_credits > monthly_credits:
        return None
    common = dict(start=first.period_start, end=first.first_seen,
                  period_start=first.period_start, kind="opening",
                  gap=first.first_seen - first.period_start > MAX_INTERVAL)
    if first.plan_credits > 0:  # plan credits are drawn first: no prepaid was used
        return Interval(usage=monthly_credits - first.plan_credits, **common)
    return Interval(usage=None, prepaid_used=None,
                    note="the plan credits ran out before the first reading of "
                    "the period, so prepaid use before it cannot be told", **common)


def day_start(d: date, zone: ZoneInfo = UTC) -> datetime:
    """The instant (UTC) day ``d`` begins in ``zone``: its midnight localised, so a day
    is 23 or 25 hours long when the clocks change (never midnight plus 24 hours)."""
    return datetime.combine(d, time.min, tzinfo=zone).astimezone(timezone.utc)


def local_day(when: datetime, zone: ZoneInfo = UTC) -> date:
    """The day of ``zone`` that ``when`` falls in: the ``d`` with ``day_start(d) <= when <
    day_start(d + 1)`` (where midnight itself is skipped or repeated, the day is the
    stretch from one localised midnight to the next)."""
    d = when.astimezone(zone).date()
    if when < day_start(d, zone):
        return d - timedelta(days=1)
    if when >= day_start(d + timedelta(days=1), zone):
        return d + timedelta(days=1)
    return d


@dataclass
class Day:
    """One calendar day of ``zone`` (or, for a long chart, one week: ``day`` to ``last``)
    of usage. ``usage`` is ``None`` on a day with no readings.

    ``usage`` is what the readings tell, ``prepaid_usage`` the part of it drawn from
    prepaid credit (``plan_usage`` the rest); ``up_to`` how much more there may have
    been (rule 3, plan credits); ``unknown`` whether some of it cannot be told at all;
    ``notes`` say why, in words. ``since`` / ``until``: the day is cut at a
    period's start or end (the rest of it belongs to the other period).
    ``start`` / ``end``: the instants (UTC) the row covers, cut included.
    """

    day: date
    usage: Decimal | None = None
    prepaid_usage: Decimal = ZERO
    top_ups: Decimal = ZERO
    closing: Decimal | None = None
    readings: bool = False
    up_to: Decimal = ZERO
    unknown: bool = False
    notes: list[str] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    #: a week's row: its last day, and how many of its days had readings
    last: date | None = None
    days_read: int = 0
    days: int = 1

    @property
    def partial(self) -> bool:
        return self.unknown or self.up_to > 0

    @property
    def plan_usage(self) -> Decimal | None:
        """The part of ``usage`` that drew plan credits."""
        return None if self.usage is None else self.usage - self.prepaid_usage

    @property
    def at_most(self) -> Decimal | None:
        """The most the day's usage can have been; ``None`` when it cannot be bounded."""
        if self.usage is None or self.unknown:
            return None
        return self.usage + self.up_to

    @property
    def hours(self) -> Decimal:
        """How long the row is: 24 hours, 23 or 25 on the day the clocks change, less
        where a period cuts it."""
        return Decimal(int((self.end - self.start).total_seconds())) / 3600


def intervals(snapshots: list[Snapshot], monthly_credits_of, known_top_ups=None,
              plan_name=str) -> list[Interval]:
    """Every interval between consecutive ``snapshots`` (oldest first).

    ``monthly_credits_of(plan_id)`` gives a plan's allowance;
    ``known_top_ups(start, end)`` the credited top-ups in a span, if known (asked only
    where prepaid credit grew: nowhere else does rule 2 need it).
    """
    out = []
    for a, b in zip(snapshots, snapshots[1:]):
        known = known_top_ups(a.last_seen, b.first_seen) \
            if known_top_ups and b.prepaid > a.prepaid else None
        out.append(interval(a, b, monthly_credits_of(b.plan), known, plan_name))
    return out


def _place(day: Day, span: Interval, *, usage: bool, bound: bool) -> None:
    """Put ``span`` on ``day``: its usage (and top-up), and/or the old period's bounded
    unknown of a reset."""
    day.readings = True
    day.usage = day.usage or ZERO
    if usage:
        day.top_ups += span.top_up
        if span.usage is None:
            day.unknown = True
            day.notes.append(span.note)
        else:
            day.usage += span.usage
            day.prepaid_usage += span.prepaid_used
    if bound and span.before_reset_up_to > 0:
        day.up_to += span.before_reset_up_to
        day.notes.append(span.note)


def new_days(first: date, last: date, zone: ZoneInfo = UTC, *,
             period: tuple[datetime, datetime] | None = None) -> dict[date, Day]:
    """Empty days ``first``..``last`` of ``zone``, each with the instants it covers; with
    ``period``, the days it begins and ends on cut there."""
    days = {}
    d, start = first, day_start(first, zone)
    while d <= last:
        after = d + timedelta(days=1)
        days[d] = Day(d, start=start, end=(end := day_start(after, zone)))
        d, start = after, end
    if period is not None:
        for day in days.values():
            if day.start < period[0] < day.end:
                day.since = day.start = period[0]
            if day.start < period[1] < day.end:
                day.until = day.end = period[1]
    return days


def place_spans(days: dict[date, Day], spans: list[Interval], last: date, zone: ZoneInfo, *,
                period: tuple[datetime, datetime] | None = None) -> None:
    """Put each interval of ``spans`` (gaps excepted) on the day of its later reading;
    with ``period``, only that period's usage, and a reset into the next period leaves
    the old period's bounded unknown on the day of its last reading."""
    for span in spans:
        if span.gap:
            continue
        if period is None:
            if (day := days.get(local_day(span.end, zone))) is not None:
                _place(day, span, usage=True, bound=True)
                if span.kind == "reset":
                    day.notes.append(f"the period reset at {clock(span.period_start, zone)}")
        elif span.period_start == period[0]:
            if (day := days.get(local_day(span.end, zone))) is not None:
                _place(day, span, usage=True, bound=False)
        elif span.kind == "reset" and span.period_start == period[1]:
            if (day := days.get(min(local_day(span.start, zone), last))) is not None:
                _place(day, span, usage=False, bound=True)


def place_on_hours(hours: list[Day], spans: list[Interval]) -> None:
    """Put each interval of ``spans`` (gaps excepted) on the hour of its later reading,
    as ``place_spans`` puts them on days (``hours``: consecutive, oldest first)."""
    for span in spans:
        if span.gap:
            continue
        i = int((span.end - hours[0].start).total_seconds()) // 3600
        if 0 <= i < len(hours):
            _place(hours[i], span, usage=True, bound=True)
            if span.kind == "reset":
                hours[i].notes.append(f"the period reset at {clock(span.period_start, UTC)}")


def daily(snapshots: list[Snapshot], spans: list[Interval], first: date, last: date, *,
          period: tuple[datetime, datetime] | None = None, zone: ZoneInfo = UTC) -> list[Day]:
    """Days ``first``..``last`` of ``zone`` with the usage of ``spans`` placed on them,
    worked out from the readings themselves (the rules as they read; the page builds
    the same days from the quarter hours kept in ``rollups``, and a test holds the two
    to the cent).

    A day is known when a reading covers any of it; a day with none is a gap.
    With ``period`` (its start and end), only that period's usage counts and
    the days it begins and ends on are cut there: a reset's usage is the new
    period's, the old period's unknown goes on its own last reading's day.
    """
    days = new_days(first, last, zone, period=period)
    if period is not None:
        snapshots = [s for s in snapshots if s.period_start == period[0]]
    for snap in snapshots:  # readings cover every day from first to last seen
        d = max(local_day(snap.first_seen, zone), first)
        while d <= min(local_day(snap.last_seen, zone), last):
            days[d].readings = True
            d += timedelta(days=1)
    in_force = 0  # the newest snapshot seen before the day ends (snapshots are in order)
    for day in days.values():
        end = day_start(day.day + timedelta(days=1), zone)
        while in_force < len(snapshots) and snapshots[in_force].first_seen < end:
            in_force += 1
        if day.readings and in_force:
            day.closing = snapshots[in_force - 1].total
            day.usage = ZERO
    place_spans(days, spans, last, zone, period=period)
    return [days[d] for d in sorted(days)]


def weekly(days: list[Day]) -> list[Day]:
    """``days`` in weeks, Monday to Sunday (the first and last cut by the range): each
    week's usage, top-ups, bounds and notes added up, its closing balance its last
    known one; ``usage`` is ``None`` for a week without a day of readings."""
    weeks: list[Day] = []
    for d in days:
        if not weeks or d.day.weekday() == 0:
            weeks.append(Day(d.day, start=d.start, days=0))
        week = weeks[-1]
        week.last, week.end, week.days = d.day, d.end, week.days + 1
        if not d.readings:
            continue
        week.readings, week.days_read = True, week.days_read + 1
        week.usage = (week.usage or ZERO) + (d.usage or ZERO)
        week.prepaid_usage += d.prepaid_usage
        week.top_ups += d.top_ups
        week.up_to += d.up_to
        week.unknown = week.unknown or d.unknown
        week.notes += [n for n in d.notes if n not in week.notes]
        week.closing = d.closing if d.closing is not None else week.closing
    return weeks


@dataclass(frozen=True)
class Pace:
    """Usage a day observed over a recent window of readings."""

    per_day: Decimal
    days: Decimal
    basis: str


def recent_pace(spans: list[Interval], now: datetime, since: datetime, label: str,
                minimum=timedelta(days=1), zone: ZoneInfo = UTC) -> Pace | None:
    """The observed pace from ``since`` to ``now``, the range ``label`` names ("the last 7
    days"), or ``None`` with less than ``minimum`` of readings in it. It counts what
    that range's table counts: the usage of every interval ending in it (gaps
    included), over the time from ``since`` (or the first reading after it) to now.
    Intervals whose usage is unknown are left out."""
    usable = [s for s in spans if s.end >= since and s.usage is not None]
    if not usable:
        return None
    # the whole span counts: between readings, unchanged figures mean nothing was used
    first = min(max(s.start, since) for s in usable)
    return pace_over(sum((s.usage for s in usable), ZERO), first, now, since, label,
                     minimum, zone)


def pace_over(used: Decimal, first: datetime, now: datetime, since: datetime, label: str,
              minimum=timedelta(days=1), zone: ZoneInfo = UTC) -> Pace | None:
    """``used`` over the time from ``first`` (the start of the first interval counted, or
    ``since`` when one spans it) to ``now``, in words (the date in ``zone``); ``None``
    when that is less than ``minimum``."""
    if now - first < minimum:
        return None
    days = Decimal((now - first).total_seconds()) / Decimal(86400)
    span = f"{days:.1f} days"
    local = first.astimezone(zone)
    basis = (f"{label} ({money(used)} from {local:%b} {local.day} to now, {span})"
             if first <= since else f"the {span} of readings so far ({money(used)})")
    return Pace(per_day=used / days, days=days, basis=basis)
