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

Usage of an interval counts on the day of its later reading.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

#: readings further apart than this are a gap: their usage is not put on a day
MAX_INTERVAL = timedelta(hours=6)
ZERO = Decimal(0)


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
    kind: str  # "use" | "top-up" | "reset" | "plan change" | "credits added"
    usage: Decimal | None  # None: the readings cannot tell
    top_up: Decimal = ZERO
    #: how much more usage there may have been (rule 3), or a reason it is unknown
    note: str | None = None
    partial: bool = False
    gap: bool = False


def interval(a: Snapshot, b: Snapshot, monthly_credits: Decimal | str | None,
             known_top_up: Decimal | None = None) -> Interval:
    """Usage between readings ``a`` and ``b`` (rules 1-6 above).

    ``monthly_credits`` is ``b``'s plan allowance (a word when custom, ``None``
    when unknown); ``known_top_up`` a top-up credited between them, if any.
    """
    start, end = a.last_seen, b.first_seen
    gap = end - start > MAX_INTERVAL
    plan_used = a.plan_credits - b.plan_credits
    prepaid_delta = b.prepaid - a.prepaid
    prepaid_drawn = max(ZERO, -prepaid_delta)
    common = dict(start=start, end=end, gap=gap)

    if b.period_start > a.period_start:  # rule 3 (a plan change at a reset counts as one)
        if not isinstance(monthly_credits, Decimal) or b.plan_credits > monthly_credits:
            return Interval(kind="reset", usage=None, top_up=max(ZERO, prepaid_delta),
                            note="A new period began on a plan whose allowance is not known, "
                                 "so usage across the reset cannot be told.", **common)
        usage = monthly_credits - b.plan_credits + prepaid_drawn
        left = a.plan_credits
        return Interval(kind="reset", usage=usage, top_up=max(ZERO, prepaid_delta),
                        partial=left > 0,
                        note=(f"Plus up to {left} of the old period's plan credits, used "
                              "before the reset or expired at it." if left > 0 else None),
                        **common)
    if b.plan != a.plan:  # rule 4
        return Interval(kind="plan change", usage=None, top_up=max(ZERO, prepaid_delta),
                        note=f"The plan changed from {a.plan} to {b.plan}; its credits were "
                             "granted again, so usage at the change cannot be told.", **common)
    if plan_used < 0:  # rule 5
        return Interval(kind="credits added", usage=None, top_up=max(ZERO, prepaid_delta),
                        note="Plan credits were added mid-period, so usage cannot be told.",
                        **common)
    if prepaid_delta <= 0:  # rule 1
        return Interval(kind="use", usage=plan_used + prepaid_drawn, **common)
    # rule 2: prepaid grew
    if b.plan_credits > 0:
        return Interval(kind="top-up", usage=plan_used, top_up=prepaid_delta, **common)
    if known_top_up is not None and known_top_up >= prepaid_delta:
        return Interval(kind="top-up", usage=plan_used + known_top_up - prepaid_delta,
                        top_up=known_top_up, **common)
    return Interval(kind="top-up", usage=None, top_up=prepaid_delta,
                    note="A top-up arrived after plan credits ran out, so prepaid use and "
                         "new credit cannot be told apart.", **common)


@dataclass
class Day:
    """One calendar day (UTC) of usage. ``usage`` is ``None`` on a day with no readings."""

    day: date
    usage: Decimal | None = None
    top_ups: Decimal = ZERO
    closing: Decimal | None = None
    readings: bool = False
    partial: bool = False
    notes: list[str] = field(default_factory=list)


def _day_bounds(d: date) -> tuple[datetime, datetime]:
    start = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def intervals(snapshots: list[Snapshot], monthly_credits_of,
              known_top_ups=None) -> list[Interval]:
    """Every interval between consecutive ``snapshots`` (oldest first).

    ``monthly_credits_of(plan_id)`` gives a plan's allowance;
    ``known_top_ups(start, end)`` the credited top-ups in a span, if known.
    """
    out = []
    for a, b in zip(snapshots, snapshots[1:]):
        known = known_top_ups(a.last_seen, b.first_seen) if known_top_ups else None
        out.append(interval(a, b, monthly_credits_of(b.plan), known))
    return out


def daily(snapshots: list[Snapshot], spans: list[Interval], first: date,
          last: date) -> list[Day]:
    """Days ``first``..``last`` with the usage of ``spans`` placed on them.

    A day is known when a reading covers any of it; a day with none is a gap.
    """
    days = {first + timedelta(days=i): Day(first + timedelta(days=i))
            for i in range((last - first).days + 1)}
    for snap in snapshots:  # readings cover every day from first to last seen
        d = max(snap.first_seen.date(), first)
        while d <= min(snap.last_seen.date(), last):
            days[d].readings = True
            d += timedelta(days=1)
    in_force = 0  # the newest snapshot seen before the day ends (snapshots are in order)
    for day in days.values():
        _, end = _day_bounds(day.day)
        while in_force < len(snapshots) and snapshots[in_force].first_seen < end:
            in_force += 1
        if day.readings and in_force:
            day.closing = snapshots[in_force - 1].total
            day.usage = ZERO
    for span in spans:
        day = days.get(span.end.date())
        if day is None or span.gap:
            continue
        day.readings = True
        day.usage = day.usage or ZERO
        day.top_ups += span.top_up
        if span.usage is None:
            day.partial = True
        else:
            day.usage += span.usage
        if span.partial:
            day.partial = True
        if span.note:
            day.notes.append(span.note)
    return [days[d] for d in sorted(days)]


@dataclass(frozen=True)
class Pace:
    """Usage a day observed over a recent window of readings."""

    per_day: Decimal
    days: Decimal
    basis: str


def recent_pace(spans: list[Interval], now: datetime, window=timedelta(days=7),
                minimum=timedelta(days=1)) -> Pace | None:
    """The observed pace over the last ``window``, or ``None`` with less than ``minimum``
    of readings in it. Intervals whose usage is unknown, and gaps, are left out."""
    since = now - window
    usable = [s for s in spans if s.end > since and s.usage is not None and not s.gap]
    if not usable:
        return None
    # the whole span counts: between readings, unchanged figures mean nothing was used
    first = min(max(s.start, since) for s in usable)
    if now - first < minimum:
        return None
    days = Decimal((now - first).total_seconds()) / Decimal(86400)
    used = sum((s.usage for s in usable), ZERO)
    whole = int(days)
    return Pace(per_day=used / days, days=days,
                basis=f"the last {whole} day{'' if whole == 1 else 's'} of readings")
