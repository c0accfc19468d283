"""Usage worked out the slow way, from the readings themselves, as the page did before
it kept quarter hours: every reading of a range read back, every interval worked out
(``usage.intervals``) and put on its day (``usage.daily``). The tests hold what the
page builds from the rollups to this, to the cent."""
from __future__ import annotations

from datetime import timedelta

from webapp.services.checkouts.reconcile import credited_top_ups
from webapp.services.history.readings import snapshots, with_reading
from webapp.services.history.report import (PACE_RANGE, RANGES, SPAN, _period_of,
                                            range_days)
from webapp.services.history.usage import (day_start, daily, intervals, opening,
                                           recent_pace)


def raw_report(key, billing, now, book, *, read_at, zone):
    """``(days, gaps, whole, plan_changed)`` of range ``key`` in ``zone``, from the
    readings with the reading of ``billing`` at ``read_at`` in them (``book``: a
    ``report.PlanBook``)."""
    first, last = range_days(key, billing, now, zone=zone)
    period = _period_of(key, billing)
    since, until = day_start(first, zone), day_start(last + timedelta(days=1), zone)
    fetch_until = max(until, period[1] + timedelta(days=1)) if period else until
    snaps = snapshots(since, min(fetch_until, now + timedelta(seconds=1)))
    if fetch_until > now:
        snaps = with_reading(snaps, billing, read_at)
    spans = intervals(snaps, book.monthly_credits, credited_top_ups(since - SPAN, fetch_until),
                      book.name)
    whole = None
    if period is not None:
        mine = [s for s in spans if s.period_start == period[0]]
        begun = [s for s in snaps if s.period_start == period[0]]
        whole = any(s.kind == "reset" and not s.gap for s in mine)
        if not whole and begun and not any(s.end <= begun[0].first_seen for s in mine):
            opened = opening(begun[0], book.monthly_credits(begun[0].plan))
            if opened is not None:
                spans.insert(0, opened)
                whole = True
    spans = [s for s in spans if s.end >= since]
    gaps = [s for s in spans if s.gap and (period is None or s.period_start == period[0])]
    plan_changed = period is not None and any(
        s.kind == "plan change" and s.period_start == period[0] for s in spans)
    return (daily(snaps, spans, first, last, period=period, zone=zone), gaps, whole,
            plan_changed)


def raw_pace(now, book, billing, *, read_at, zone):
    """The pace over the "Last 7 days" range of ``zone``, from the readings."""
    since = day_start(range_days(PACE_RANGE, billing, now, zone=zone)[0], zone)
    until = now + timedelta(seconds=1)
    snaps = with_reading(snapshots(since, until), billing, read_at)
    return recent_pace(intervals(snaps, book.monthly_credits,
                                 credited_top_ups(since - SPAN, until)),
                       now, since, f"the {RANGES[PACE_RANGE].lower()}", zone=zone)
