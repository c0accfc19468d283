"""Usage worked out once: per quarter hour (UTC), as soon as the quarter hour is over.

Every zone in use today is a whole number of quarter hours from UTC, so the days of
any zone (+05:30 and +05:45 too, and a day of 23 or 25 hours when the clocks change)
are whole quarter hours: built from quarter hours, they are exact.

What is kept (``models``):

- ``usage_quarters``: for each quarter hour a reading of a period covers, the
  *plain* intervals ending in it -- rules 1 and 2 of ``usage``, told exactly, no
  gap -- added up (usage, top-ups, the earliest start) and the balance of its
  newest reading. Those rules need no plan list, so the sums never go stale.
- ``usage_intervals``: every other interval, one by one, with both readings'
  figures: resets and plan changes (worked out again with the plan list when
  shown: their figures and words depend on it), usage the readings cannot tell,
  gaps; and the first reading kept, with nothing before it (a period's "before
  the first reading" is worked out from it).
- ``usage_state.through``: every quarter hour before it is in those two tables.

When: each recording (``readings.record``), holding the history's lock, moves
``through`` on to the quarter hour of its newest reading, working out the quarter
hours it passes, in its own transaction. A quarter hour behind the newest reading
can no longer change: a reading read before it and recorded after it (by a slower
process) either has the newest snapshot's figures and moves nothing, or is
dropped (``readings``: the newer one stands). So each quarter hour is written once,
by one process, and right.

A page reads the quarter hours of its days in one grouped query (``day_sums``), the
intervals kept one by one in a second (``kept_apart``), and from ``through`` on --
the quarter hour not over yet -- the readings themselves, with its own in them.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, func, insert, literal, select, update

from ...extensions import db
from ...models import (MICROS, BalanceSnapshot, UsageInterval, UsageQuarter, UsageState,
                       UTCDateTime)
from ..checkouts.reconcile import credited_top_ups
from .usage import ZERO, Day, Interval, Snapshot, day_start, interval, new_days, place_spans

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
QUARTER = timedelta(minutes=15)
QUARTERS_A_DAY = 96
#: the readings a rebuild works out at a time (a month every 5 minutes: 8,640 rows)
CHUNK = 30 * QUARTERS_A_DAY
#: the one row of ``usage_state``
STATE = 1

#: a snapshot's figures, as ``usage.Snapshot`` takes them (the table's own columns: plain
#: rows, no ORM objects, for tens of thousands of them)
_T = BalanceSnapshot.__table__
COLUMNS = (_T.c.first_seen_at, _T.c.last_seen_at, _T.c.plan, _T.c.plan_credits_remaining,
           _T.c.prepaid_balance, _T.c.total_balance, _T.c.period_start, _T.c.period_end)


def quarter_of(when: datetime) -> int:
    """The quarter hour ``when`` falls in, counted from 1970-01-01 00:00 UTC."""
    delta = when - EPOCH
    return (delta.days * 86400 + delta.seconds) // 900


def quarter_start(quarter: int) -> datetime:
    return EPOCH + QUARTER * quarter


def _micros(value: Decimal) -> int:
    return int(value * MICROS)


def _dollars(value: int) -> Decimal:
    return Decimal(value).scaleb(-6)


def plain(span: Interval) -> bool:
    """Whether the quarter hours add ``span`` up: told exactly without the plan list, and
    on a day (no gap). Every other interval is kept apart."""
    return span.kind in ("use", "top-up") and span.usage is not None and not span.gap


@dataclass
class Part:
    """Usage of one period over quarter hours: one quarter hour's, or a day's of them."""

    period_start: datetime
    usage: Decimal = ZERO
    #: the part of ``usage`` drawn from prepaid credit
    prepaid_usage: Decimal = ZERO
    top_ups: Decimal = ZERO
    #: the start of the earliest plain interval in it (``None``: none ends in it)
    first_start: datetime | None = None
    #: the total of the newest reading covering it, when that was first seen, and the
    #: quarter hour it was taken at (the newest quarter hour's stands)
    closing: Decimal | None = None
    closing_at: datetime | None = None
    last: int = -1

    def add(self, other: Part) -> None:
        """Add ``other``'s sums to this one's; the newer closing balance stands."""
        self.usage += other.usage
        self.prepaid_usage += other.prepaid_usage
        self.top_ups += other.top_ups
        starts = [s for s in (self.first_start, other.first_start) if s is not None]
        self.first_start = min(starts) if starts else None
        if (other.last, other.closing_at or EPOCH) > (self.last, self.closing_at or EPOCH):
            self.closing, self.closing_at, self.last = \
                other.closing, other.closing_at, other.last


@dataclass(frozen=True)
class Apart:
    """An interval kept one by one: the readings on either side of it (``before`` is
    ``None`` for the first reading kept) and the top-up credited within it."""

    before: Snapshot | None
    after: Snapshot
    known_top_up: Decimal | None = None

    def span(self, monthly_credits_of, plan_name=str) -> Interval | None:
        """The interval by the rules, with the plan list's allowances and names."""
        if self.before is None:
            return None
        return interval(self.before, self.after, monthly_credits_of(self.after.plan),
                        self.known_top_up, plan_name)


def worked_out(snaps: list[Snapshot], lo: int, hi: int | None, known_top_ups
               ) -> tuple[dict[tuple[int, datetime], Part], list[Apart]]:
    """The quarter hours ``lo``..``hi - 1`` (``None``: no end) of ``snaps``, oldest first,
    led by the one in force at ``lo`` if there is one: each period's plain usage and
    closing balance a quarter hour, and the intervals kept apart (the first reading
    kept among them, when nothing leads it). ``known_top_ups(start, end)``: the
    credited top-ups in a span (asked only where prepaid credit grew)."""
    parts: dict[tuple[int, datetime], Part] = {}
    for snap in snaps:  # in order: the newest reading covering a quarter hour stands
        first = max(quarter_of(snap.first_seen), lo)
        end = quarter_of(snap.last_seen) + 1 if hi is None else \
            min(quarter_of(snap.last_seen) + 1, hi)
        for q in range(first, end):
            part = parts.get((q, snap.period_start))
            if part is None:
                part = parts[(q, snap.period_start)] = Part(snap.period_start, last=q)
            part.closing, part.closing_at = snap.total, snap.first_seen
    apart = []
    if snaps and quarter_of(snaps[0].first_seen) >= lo:  # nothing before it: the first kept
        apart.append(Apart(None, snaps[0]))
    for a, b in zip(snaps, snaps[1:]):
        known = known_top_ups(a.last_seen, b.first_seen) if b.prepaid > a.prepaid else None
        span = interval(a, b, None, known)
        if not plain(span):
            apart.append(Apart(a, b, known))
            continue
        part = parts[(quarter_of(span.end), span.period_start)]  # ``b`` covers it
        part.usage += span.usage
        part.prepaid_usage += span.prepaid_used
        part.top_ups += span.top_up
        part.first_start = span.start if part.first_start is None else \
            min(part.first_start, span.start)
    return parts, apart


def lazy_top_ups(since: datetime, until: datetime):
    """``reconcile.credited_top_ups(since, until)``, read from the database only when
    first asked."""
    found = []

    def lookup(start: datetime, end: datetime) -> Decimal | None:
        if not found:
            found.append(credited_top_ups(since, until))
        return found[0](start, end)
    return lookup


# -- kept: written under the history's lock -------------------------------------------

def rows_seen(since: datetime, until: datetime | None = None, *, in_force=True):
    """Snapshot rows ``(id, *COLUMNS)`` first seen in ``[since, until)`` (``None``: no
    end), oldest first, led by the one in force at ``since`` when ``in_force``."""
    columns = (_T.c.id, *COLUMNS)
    before = db.session.execute(select(*columns).where(_T.c.first_seen_at < since)
                                .order_by(_T.c.first_seen_at.desc(), _T.c.id.desc())
                                .limit(1)).all() if in_force else []
    seen = select(*columns).where(_T.c.first_seen_at >= since)
    if until is not None:
        seen = seen.where(_T.c.first_seen_at < until)
    return before + db.session.execute(seen.order_by(_T.c.first_seen_at, _T.c.id)).all()


def _roll(lo: int, hi: int) -> None:
    """Work out quarter hours ``lo``..``hi - 1`` from the readings and keep them."""
    since, until = quarter_start(lo), quarter_start(hi)
    snaps = [Snapshot(*row[1:]) for row in rows_seen(since, until)]
    parts, apart = worked_out(snaps, lo, hi, lazy_top_ups(since - timedelta(days=400), until))
    if parts:
        db.session.execute(insert(UsageQuarter.__table__), [
            dict(quarter=q, period_start=p.period_start, usage=_micros(p.usage),
                 prepaid_usage=_micros(p.prepaid_usage), top_ups=_micros(p.top_ups), first_start=p.first_start,
                 closing=_micros(p.closing), closing_at=p.closing_at)
            for (q, _), p in parts.items()])
    if apart:
        db.session.execute(insert(UsageInterval.__table__), [_apart_row(a) for a in apart])


def _apart_row(kept: Apart) -> dict:
    a, b = kept.before, kept.after
    return dict(starts_at=a and a.last_seen, ends_at=b.first_seen,
                before_plan=a and a.plan, before_plan_credits=a and a.plan_credits,
                before_prepaid=a and a.prepaid, before_period_start=a and a.period_start,
                plan=b.plan, plan_credits=b.plan_credits, prepaid=b.prepaid, total=b.total,
                period_start=b.period_start, period_end=b.period_end,
                known_top_up=kept.known_top_up)


def _roll_between(lo: int, hi: int) -> None:
    """``_roll`` a month at a time, from the first reading on (memory stays bounded)."""
    oldest = db.session.scalar(select(func.min(BalanceSnapshot.first_seen_at)))
    if oldest is None:
        return
    lo = max(lo, quarter_of(oldest))
    while lo < hi:
        _roll(lo, min(hi, lo + CHUNK))
        lo += CHUNK


def through() -> tuple[bool, datetime | None]:
    """Whether the state row is there, and how far the rollups reach (``None``: not built)."""
    row = db.session.execute(select(UsageState.through).where(UsageState.id == STATE)).first()
    return (row is not None, row[0] if row is not None else None)


def advance(newest_seen: datetime) -> None:
    """Work out every quarter hour before the one the newest reading, last seen at
    ``newest_seen``, is in (the caller holds the history's lock). Nothing while the
    rollups are not built: the next start, or ``rebuild``, builds them."""
    _, reached = through()
    if reached is None:
        return
    lo, hi = quarter_of(reached), quarter_of(newest_seen)
    if hi <= lo:
        return
    _roll_between(lo, hi)
    db.session.execute(update(UsageState).where(UsageState.id == STATE)
                       .values(through=quarter_start(hi)))


def forget_before(oldest: datetime) -> None:
    """The readings before ``oldest`` (now the first one kept) were dropped: so are their
    quarter hours, and the quarter hour ``oldest`` is in is worked out again without
    them, as from the first reading kept (the caller holds the history's lock)."""
    _, reached = through()
    if reached is None:
        return
    q, end = quarter_of(oldest), quarter_of(reached)
    cut = min(q + 1, end)
    db.session.execute(delete(UsageQuarter).where(UsageQuarter.quarter < cut))
    db.session.execute(delete(UsageInterval).where(UsageInterval.ends_at < quarter_start(cut)))
    if q < end:
        _roll(q, q + 1)


def rebuild(newest_seen: datetime | None) -> int:
    """Work every quarter hour out again from the readings, up to the one the newest
    reading (last seen at ``newest_seen``; ``None``: no readings) is in; the caller
    holds the history's lock and commits. Returns how many quarter hours are kept."""
    db.session.execute(delete(UsageQuarter))
    db.session.execute(delete(UsageInterval))
    end = quarter_of(newest_seen) if newest_seen is not None else 0
    if newest_seen is not None:
        _roll_between(0, end)
    state = dict(through=quarter_start(end), rebuilds=UsageState.rebuilds + 1)
    if not db.session.execute(update(UsageState).where(UsageState.id == STATE)
                              .values(**state)).rowcount:
        db.session.add(UsageState(id=STATE, through=quarter_start(end), rebuilds=1))
        db.session.flush()
    return db.session.scalar(select(func.count()).select_from(UsageQuarter))


# -- read: a page's days --------------------------------------------------------------

class Grid:
    """Days ``first``..``last`` of ``zone`` as quarter hours: where each begins (its
    midnight localised) and which day a quarter hour is in."""

    def __init__(self, first: date, last: date, zone: ZoneInfo):
        self.first, self.zone = first, zone
        count = (last - first).days + 1
        self.starts = [quarter_of(day_start(first + timedelta(days=i), zone))
                       for i in range(count + 1)]

    def day(self, quarter: int) -> date | None:
        """The day ``quarter`` is in, or ``None`` outside the grid."""
        i = bisect.bisect_right(self.starts, quarter) - 1
        return self.first + timedelta(days=i) if 0 <= i < len(self.starts) - 1 else None

    def ordinal(self, quarter_column):
        """SQL for the day (``date.toordinal``) a quarter hour of ``quarter_column`` is in,
        for quarter hours on the grid: a run of 24-hour days with one offset is one
        division; a day the clocks change on is a constant of its own."""
        whens, i = [], 0
        days = len(self.starts) - 1
        while i < days:
            ordinal = (self.first + timedelta(days=i)).toordinal()
            offset = ordinal * QUARTERS_A_DAY - self.starts[i]
            j = i
            if self.starts[i + 1] - self.starts[i] == QUARTERS_A_DAY:
                while j + 1 < days and self.starts[j + 2] - self.starts[j + 1] == \
                        QUARTERS_A_DAY and (ordinal + j + 1 - i) * QUARTERS_A_DAY \
                        - self.starts[j + 1] == offset:
                    j += 1
                value = (quarter_column + offset) // QUARTERS_A_DAY
            else:
                value = literal(ordinal)
            whens.append((quarter_column < self.starts[j + 1], value))
            i = j + 1
        return case(*whens, else_=literal(0))


def day_sums(grid: Grid, before: int, since: int = 0) -> dict[tuple[date, datetime], Part]:
    """Each day's sums of each period on ``grid``, of the quarter hours kept from
    ``since`` to ``before``: one grouped query."""
    q = UsageQuarter.__table__
    lo, hi = max(grid.starts[0], since), min(grid.starts[-1], before)
    if hi <= lo:
        return {}
    rows = select(grid.ordinal(q.c.quarter).label("day"), q.c.period_start, q.c.quarter,
                  q.c.usage, q.c.prepaid_usage, q.c.top_ups, q.c.first_start) \
        .where(q.c.quarter >= lo, q.c.quarter < hi).subquery()
    days = select(rows.c.day, rows.c.period_start, func.sum(rows.c.usage).label("usage"),
                  func.sum(rows.c.prepaid_usage).label("prepaid_usage"),
                  func.sum(rows.c.top_ups).label("top_ups"),
                  func.min(rows.c.first_start).label("first_start"),
                  func.max(rows.c.quarter).label("last")) \
        .group_by(rows.c.day, rows.c.period_start).subquery()
    found = db.session.execute(
        select(days.c.day, days.c.period_start, days.c.usage, days.c.prepaid_usage,
               days.c.top_ups, days.c.first_start, days.c.last, q.c.closing, q.c.closing_at)
        # the day's newest quarter hour, looked up among the grid's alone (a planner
        # left to itself may read the whole table to join a handful of rows)
        .join(q, and_(q.c.quarter == days.c.last, q.c.period_start == days.c.period_start,
                      q.c.quarter >= lo, q.c.quarter < hi)))
    return {(date.fromordinal(day), period): Part(
        period, usage=_dollars(usage), prepaid_usage=_dollars(prepaid), top_ups=_dollars(top_ups),
        first_start=first_start, closing=_dollars(closing), closing_at=closing_at, last=last)
        for day, period, usage, prepaid, top_ups, first_start, last, closing, closing_at in found}


def quarter_parts(lo: int, hi: int) -> dict[tuple[int, datetime], Part]:
    """The kept quarter hours ``lo``..``hi - 1`` of each period, one by one (the API's
    hours: a few thousand rows at most)."""
    q = UsageQuarter.__table__
    if hi <= lo:
        return {}
    found = db.session.execute(
        select(q.c.quarter, q.c.period_start, q.c.usage, q.c.prepaid_usage, q.c.top_ups,
               q.c.first_start, q.c.closing, q.c.closing_at)
        .where(q.c.quarter >= lo, q.c.quarter < hi))
    return {(quarter, period): Part(period, usage=_dollars(usage),
                                    prepaid_usage=_dollars(prepaid), top_ups=_dollars(top_ups),
                                    first_start=first_start, closing=_dollars(closing),
                                    closing_at=closing_at, last=quarter)
            for quarter, period, usage, prepaid, top_ups, first_start, closing, closing_at
            in found}


def days_from(parts: dict[tuple[date, datetime], Part], spans: list[Interval], first: date,
              last: date, zone: ZoneInfo, *,
              period: tuple[datetime, datetime] | None = None) -> list[Day]:
    """Days ``first``..``last`` of ``zone`` from each day's sums of each period (``parts``)
    and the intervals kept apart (``spans``), as ``usage.daily`` builds them from the
    readings: a day with a part has readings; its closing balance is its newest
    reading's; with ``period``, only that period's parts count."""
    days = new_days(first, last, zone, period=period)
    newest: dict[date, tuple] = {}
    for (d, period_start), part in parts.items():
        day = days.get(d)
        if day is None or (period is not None and period_start != period[0]):
            continue
        day.readings = True
        day.usage = (day.usage or ZERO) + part.usage
        day.prepaid_usage += part.prepaid_usage
        day.top_ups += part.top_ups
        order = (part.last, part.closing_at)
        if part.closing is not None and (d not in newest or order > newest[d]):
            newest[d], day.closing = order, part.closing
    place_spans(days, spans, last, zone, period=period)
    return [days[d] for d in sorted(days)]


def kept_apart(since: datetime, until: datetime) -> list[Apart]:
    """The intervals kept one by one that end in ``[since, until)``, oldest first."""
    found = db.session.scalars(select(UsageInterval).where(
        UsageInterval.ends_at >= since, UsageInterval.ends_at < until)
        .order_by(UsageInterval.ends_at, UsageInterval.id))
    return [_apart(row) for row in found]


def _apart(row: UsageInterval) -> Apart:
    after = Snapshot(row.ends_at, row.ends_at, row.plan, row.plan_credits, row.prepaid,
                     row.total, row.period_start, row.period_end)
    before = None if row.starts_at is None else Snapshot(
        row.starts_at, row.starts_at, row.before_plan, row.before_plan_credits,
        row.before_prepaid, row.before_plan_credits + row.before_prepaid,
        row.before_period_start, row.period_start)
    return Apart(before, after, row.known_top_up)


@dataclass(frozen=True)
class Tail:
    """The history from the quarter hour the rollups reach (``through``; ``None``: they
    are not built, and the tail is all of it): the readings from the one in force
    then on, ids beside them."""

    through: datetime | None
    rebuilds: int
    snaps: list[Snapshot]
    ids: list[int]

    @property
    def newest(self) -> tuple[int, Snapshot] | None:
        return (self.ids[-1], self.snaps[-1]) if self.snaps else None


def tail(now: datetime) -> Tail:
    """How far the rollups reach, as of ``now`` (quarter hours after it, of readings
    recorded with a later time by another process, are read as readings), and the
    readings from there on: one query (two when the state row is missing). Raises
    ``SQLAlchemyError``."""
    s, t = UsageState.__table__, BalanceSnapshot.__table__
    cut = literal(quarter_start(quarter_of(now)), UTCDateTime)
    # each a constant of the statement, so the readings are found by their index
    reach = select(case((s.c.through > cut, cut), else_=s.c.through)) \
        .where(s.c.id == STATE).correlate(None).scalar_subquery()
    in_force = select(func.max(t.c.first_seen_at)).where(t.c.first_seen_at < reach) \
        .correlate(None).scalar_subquery()
    start = func.coalesce(in_force, reach, literal(EPOCH, UTCDateTime))
    rows = db.session.execute(
        select(s.c.through, s.c.rebuilds, t.c.id, *COLUMNS)
        .select_from(s.outerjoin(t, t.c.first_seen_at >= start)).where(s.c.id == STATE)
        .order_by(t.c.first_seen_at, t.c.id)).all()
    if not rows:  # the state row is gone: nothing is kept, the readings are all there is
        found = rows_seen(EPOCH)
        return Tail(None, -1, [Snapshot(*r[1:]) for r in found], [r[0] for r in found])
    reached, rebuilds = rows[0][:2]
    kept = [r for r in rows if r[2] is not None]
    return Tail(None if reached is None else min(reached, quarter_start(quarter_of(now))),
                rebuilds,
                [Snapshot(*r[3:]) for r in kept], [r[2] for r in kept])
