"""Spend spikes: an hour's usage well above the same hour on the previous 7 days.

The rule (``is_spike``): the usual for an hour is the median of the same hour of the
account's zone on the 7 days before it, and its spread the median absolute deviation
(MAD): one odd day moves neither. An hour is a spike when its usage is at least

- the usual plus K robust deviations (1.4826 × MAD), K by the sensitivity chosen on
  the Alerts page (low 6, medium 4, high 3),
- twice the usual, and
- ``SPIKE_MIN_AMOUNT`` (a quiet account's 2-cent hour never pages anyone),

and the usual is above zero (with nothing usual, there is nothing to be above: the
balance and run-out alerts speak for an idle account). An hour the readings do not
tell -- fewer than 3 of its 4 quarter hours have a reading -- is skipped, never
guessed, and so is a baseline with fewer than 5 such days; nothing is said in the
first 7 days of history.

Episodes (``episodes``): spike hours in a row are one episode. It is told once when
it starts and again only when an hour doubles what was told; for 6 hours after an
episode that was told, a new one is not. Which hours those are follows from the
history alone, so every process that checks a reading finds the same alert keys,
and ``rules.fire_crossings`` fires each once, across processes and hosts.

Hours are usage from the quarter hours kept (``rollups``) and, for the quarter
hours not kept yet, from the readings themselves with the one being checked.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from statistics import median
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from ..extensions import db
from ..giga import Billing
from ..models import UsageQuarter
from .forecast import runs_out
from .history.readings import first_reading_at, with_reading
from .history.rollups import (QUARTER, lazy_top_ups, quarter_of, quarter_start, tail,
                              worked_out)

#: robust deviations above the usual, by sensitivity
DEVIATIONS = {"low": Decimal(6), "medium": Decimal(4), "high": Decimal(3)}
#: MAD to a standard deviation, for normally spread usage
MAD_SCALE = Decimal("1.4826")
BASELINE_DAYS = 7
#: of the 7, how many must be told by the readings
BASELINE_MIN = 5
#: of an hour's 4 quarter hours, how many need a reading
QUARTERS_MIN = 3
COOL_DOWN = timedelta(hours=6)
HOUR = timedelta(hours=1)
#: how far back episodes are walked (the cool-down and a long episode's start in it)
LOOK_BACK = timedelta(hours=36)


@dataclass(frozen=True)
class Verdict:
    spike: bool
    usual: Decimal
    threshold: Decimal


def is_spike(usage: Decimal, baseline: list[Decimal], sensitivity: str,
             least: Decimal) -> Verdict | None:
    """Whether ``usage`` is a spike against ``baseline`` (the readable same hours of the
    days before); ``None`` when the baseline has too few days to say."""
    if len(baseline) < BASELINE_MIN:
        return None
    usual = Decimal(median(baseline))
    spread = Decimal(median([abs(x - usual) for x in baseline])) * MAD_SCALE
    threshold = max(usual + DEVIATIONS[sensitivity] * spread, 2 * usual, least)
    return Verdict(usual > 0 and usage >= threshold, usual, threshold)


@dataclass(frozen=True)
class Hour:
    """One hour of the zone: its start (UTC), its usage so far, and how many of its
    quarter hours had a reading."""

    start: datetime
    usage: Decimal
    quarters: int


def hour_start(when: datetime, zone: ZoneInfo) -> datetime:
    """The start (UTC) of the hour of ``zone`` that ``when`` falls in."""
    local = when.astimezone(zone)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(ZoneInfo("UTC"))


def same_hour_before(start: datetime, days: int, zone: ZoneInfo) -> datetime:
    """The same wall-clock hour of ``zone`` ``days`` days before the hour at ``start``."""
    local = start.astimezone(zone)
    earlier = datetime.combine(local.date() - timedelta(days=days),
                               time(local.hour), tzinfo=zone)
    return earlier.astimezone(ZoneInfo("UTC"))


def quarter_usage(since: datetime, now: datetime, billing: Billing,
                  read_at: datetime) -> dict[int, Decimal]:
    """Usage of each quarter hour from ``since`` to ``now`` that a reading covers (a
    quarter hour without one is not in it): the kept ones in one grouped query, the rest
    from the readings since, with the reading of ``billing`` at ``read_at``. Raises
    ``SQLAlchemyError``."""
    found = tail(now)
    lo = quarter_of(since)
    cut = quarter_of(found.through) if found.through is not None else lo
    out: dict[int, Decimal] = {}
    if cut > lo:
        q = UsageQuarter.__table__
        for quarter, usage in db.session.execute(
                select(q.c.quarter, func.sum(q.c.usage)).where(
                    q.c.quarter >= lo, q.c.quarter < cut).group_by(q.c.quarter)):
            out[quarter] = Decimal(usage).scaleb(-6)
    snaps = with_reading(list(found.snaps), billing, read_at)
    start = max(lo, cut)
    parts, _ = worked_out(snaps, start, None,
                          lazy_top_ups(quarter_start(start) - timedelta(days=40),
                                       now + timedelta(days=1)))
    for (quarter, _), part in parts.items():
        if quarter >= start:
            out[quarter] = out.get(quarter, Decimal(0)) + part.usage
    return out


def hours_of(quarters: dict[int, Decimal], zone: ZoneInfo) -> dict[datetime, Hour]:
    """The quarter hours gathered into the hours of ``zone``."""
    hours: dict[datetime, Hour] = {}
    for quarter, usage in quarters.items():
        start = hour_start(quarter_start(quarter), zone)
        had = hours.get(start)
        hours[start] = Hour(start, usage + (had.usage if had else 0),
                            1 + (had.quarters if had else 0))
    return hours


@dataclass(frozen=True)
class Told:
    """An hour whose alert is due: the start of its episode, the hour, and why."""

    key: str
    hour: Hour
    verdict: Verdict
    doubling: bool
    #: the hour is not over yet: its usage is so far
    running: bool


def verdict_of(hour: Hour, hours: dict[datetime, Hour], now: datetime, sensitivity: str,
               least: Decimal, zone: ZoneInfo) -> Verdict | None:
    """The rule for ``hour`` (``None``: the readings do not tell it or its baseline)."""
    running = hour.start + HOUR > now
    begun = (now - hour.start) // QUARTER + 1  # its quarter hours begun so far
    needed = QUARTERS_MIN if not running else max(1, begun - 1)
    if hour.quarters < needed:
        return None
    baseline = []
    for days in range(1, BASELINE_DAYS + 1):
        before = hours.get(same_hour_before(hour.start, days, zone))
        if before is not None and before.quarters >= QUARTERS_MIN:
            baseline.append(before.usage)
    return is_spike(hour.usage, baseline, sensitivity, least)


def episodes(hours: dict[datetime, Hour], now: datetime, sensitivity: str, least: Decimal,
             zone: ZoneInfo) -> list[Told]:
    """Walk the hours of the last ``LOOK_BACK`` in order: the alerts episodes call for,
    oldest first (see the module's docstring)."""
    first = hour_start(now - LOOK_BACK, zone)
    told: list[Told] = []
    episode = level = cooled_until = None
    told_episode = False
    at = first
    while at <= now:
        hour = hours.get(at)
        verdict = verdict_of(hour, hours, now, sensitivity, least, zone) if hour else None
        if verdict is not None and verdict.spike:
            running = at + HOUR > now
            if episode is None:
                episode, level = at, hour.usage
                told_episode = cooled_until is None or at >= cooled_until
                if told_episode:
                    told.append(Told(f"spike:{at.isoformat()}", hour, verdict, False, running))
            elif told_episode and hour.usage >= 2 * level:
                level = hour.usage
                told.append(Told(f"spike:{episode.isoformat()}:{at.isoformat()}", hour,
                                 verdict, True, running))
        elif episode is not None:
            if told_episode:
                cooled_until = at + COOL_DOWN
            episode = None
        at = (at.astimezone(zone) + HOUR).astimezone(ZoneInfo("UTC"))
    return told


def due(billing: Billing, read_at: datetime, sensitivity: str, least: Decimal,
        zone: ZoneInfo) -> list[Told]:
    """The spike alerts due on the reading of ``billing`` at ``read_at``: those of the
    hour it is in and the hour before (an older one had its own readings to be told
    by). None in the first 7 days of history. Raises ``SQLAlchemyError``."""
    began = first_reading_at()
    if began is None or read_at - began < timedelta(days=BASELINE_DAYS):
        return []
    since = same_hour_before(hour_start(read_at - LOOK_BACK, zone), BASELINE_DAYS, zone)
    hours = hours_of(quarter_usage(since, read_at, billing, read_at), zone)
    recent = hour_start(read_at, zone) - HOUR
    return [t for t in episodes(hours, read_at, sensitivity, least, zone)
            if t.hour.start >= recent]


def runs_out_at_pace(billing: Billing, outlook, pace_per_day: Decimal,
                     now: datetime) -> datetime | None:
    """When the balance is gone at ``pace_per_day`` (plan credits coming back each
    period, as the forecast plays it); ``None``: never, or without a plan allowance."""
    if outlook is None or outlook.allowance is None or pace_per_day <= 0:
        return None
    _, gone, _ = runs_out(now, max(billing.period_end, now),
                          billing.period_end - billing.period_start,
                          max(Decimal(0), billing.plan_credits_remaining),
                          max(Decimal(0), billing.prepaid_balance), outlook.allowance,
                          pace_per_day)
    return gone
