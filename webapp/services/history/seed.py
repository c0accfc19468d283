"""A month of made-up past readings for the sandbox, so its chart is not empty
on the first visit. Sandbox mode only: real accounts' history is only ever
what was read from the API.

The readings end exactly at the sandbox's balance now and follow the usage
rules: this period's plan credits fall from the plan's monthly credits to
what is left today; the previous period ran down on a similar pace; a $30
top-up arrived in it, and the audit trail has that top-up, credited, so the
first thing a newcomer reconciles does reconcile.

``seed_sandbox`` writes them on the sandbox's first start; ``start_over``
(``flask sandbox reset``) puts the sandbox and the dashboard's record of it
back to that first start.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import delete

from ...extensions import db
from ...giga import Billing
from ...giga.client import parse_billing
from ...models import (Alert, AlertAttempt, AlertDelivery, AlertState, AuditEntry,
                       BalanceSnapshot)
from ...sandbox.state import plan_by_id
from .readings import claim_history, latest, rebuild_usage

STEP = timedelta(hours=2)
#: the last 8 days a reading each quarter hour, as a poller takes them: hours the
#: spend-spike rule can tell, a week of them before today (``flask sandbox spike``)
DENSE_STEP = timedelta(minutes=15)
DENSE_DAYS = 8
DAYS = 30
CENT = Decimal("0.01")
TOP_UP = Decimal(30)
#: who made the seeded top-up, and how long before it reached the balance
TOP_UP_BY = ("finance@demo.test", "finance")
PAID_AFTER = timedelta(minutes=20)


def _weights(times: list[datetime]) -> list[Decimal]:
    """A working-week shape: busier in daytime hours and on weekdays, each reading's
    share as long as the time since the one before (readings are denser lately)."""
    out = []
    for i, t in enumerate(times):
        daytime = 1 + math.sin((t.hour - 6) / 24 * 2 * math.pi)
        weekday = 1.0 if t.weekday() < 5 else 0.35
        since = (t - times[i - 1]) if i else STEP
        out.append(Decimal(str(round(0.2 + daytime * weekday, 3)))
                   * Decimal(int(since.total_seconds())) / 3600)
    return out


def _spread(total: Decimal, times: list[datetime]) -> list[Decimal]:
    """``total`` split over ``times`` by weight, in cents, adding up exactly and never
    below zero: each share is where the running total's cents stand after it less
    where they stood before it. A share worth a fraction of a cent is then a cent
    now and then, never always nothing: the quiet night hours of the made-up week
    keep a usual above zero, so the spike rule has something to be above at any
    hour (rounding each share down left every night hour at $0.00, and a newcomer's
    ``flask sandbox spike`` at night fired nothing). A negative share would read as
    credits added."""
    if not times:
        return []
    weights = _weights(times)
    whole = sum(weights)
    parts, running, before = [], Decimal(0), Decimal(0)
    for w in weights:
        running += w
        reached = (total * running / whole).quantize(CENT, rounding=ROUND_DOWN)
        parts.append(reached - before)
        before = reached
    parts[-1] += total - before  # the division's last digit: the total to the cent
    return parts


#: what ``start_over`` empties: the record a first start has none of (children first)
STARTED_OVER = (AlertAttempt, AlertDelivery, Alert, AlertState, AuditEntry, BalanceSnapshot)


def seed_sandbox(sandbox, now: datetime) -> int:
    """The sandbox's made-up month, ending at its account as it is at ``now``, when the
    history is empty (its first start). Returns how many readings were written: none
    when there is history already, or when the plan's credits are not a number.
    Raises ``SQLAlchemyError``."""
    if latest() is not None:
        return 0
    billing = parse_billing({"billing": sandbox.state.billing()})
    plan = plan_by_id(billing.plan)
    monthly = plan["monthlyCredits"] if plan is not None else None
    if not isinstance(monthly, (int, Decimal)):
        return 0
    return seed(billing, Decimal(monthly), now)


def start_over(sandbox, now: datetime) -> int:
    """The sandbox as on its first start: its account back to the demo account, and the
    dashboard's record of it -- the history, the audit trail, the alerts with their
    states and deliveries -- back to the made-up month and its one top-up (users and
    the alert rules stay). Sandbox mode only: the caller's database must be the
    sandbox's own. Returns how many readings were written. Raises ``SQLAlchemyError``
    (then nothing in the database has changed).

    The history's lock row is held first, so a reading being recorded meanwhile (a
    page in a running dashboard) lands before the reset or after it, never between
    its rows; one read before the reset and recorded after it is older than the new
    month's last reading, so the newer one stands.
    """
    claim_history()
    for model in STARTED_OVER:
        db.session.execute(delete(model))
    sandbox.state.reset()
    written = seed_sandbox(sandbox, now)
    if not written:  # no month made up: the history's usage is empty too
        rebuild_usage()
    db.session.commit()
    return written


def seed(billing: Billing, monthly: Decimal, now: datetime) -> int:
    """Write past readings ending at ``billing`` (read at ``now``); returns how many."""
    start = now - timedelta(days=DAYS)
    period = billing.period_end - billing.period_start
    dense = now - timedelta(days=DENSE_DAYS)
    this_period = _steps(max(start, billing.period_start), now, dense)
    used_now = max(Decimal(0), monthly - billing.plan_credits_remaining)
    rows = []
    left = monthly
    for t, used in zip(this_period, _spread(used_now, this_period)):
        left -= used
        rows.append((t, billing.plan_credits_remaining if t == this_period[-1] else left,
                     billing.prepaid_balance, billing.period_start, billing.period_end))
    if start < billing.period_start:
        prev_start = billing.period_start - period
        earlier = _steps(start, billing.period_start - STEP, dense)
        pace = used_now / max(Decimal(1), Decimal((now - billing.period_start).days or 1))
        days_before = Decimal((start - prev_start).total_seconds()) / 86400
        left = max(Decimal(0), monthly - (pace * days_before).quantize(CENT))
        covered = Decimal(int((billing.period_start - start).total_seconds())) / 86400
        usage = _spread(min(left, pace * covered), earlier)
        top_up_at = earlier[len(earlier) // 3] if earlier else None
        prepaid = billing.prepaid_balance - TOP_UP
        for t, used in zip(earlier, usage):
            left -= used
            if t == top_up_at:
                prepaid += TOP_UP
            rows.insert(len(rows) - len(this_period),
                        (t, left, prepaid, prev_start, billing.period_start))
        if top_up_at is not None:
            db.session.add(AuditEntry(
                at=top_up_at - PAID_AFTER, user_email=TOP_UP_BY[0], user_role=TOP_UP_BY[1],
                action="top-up", amount=TOP_UP, outcome="sent to checkout",
                request_id="sandbox-seed", detail="made up with the sandbox's past readings",
                seen="credited", seen_at=top_up_at))
    for t, plan_left, prepaid, p_start, p_end in rows:
        db.session.add(BalanceSnapshot(
            first_seen_at=t, last_seen_at=t, plan=billing.plan,
            plan_credits_remaining=plan_left, prepaid_balance=prepaid,
            total_balance=plan_left + prepaid, period_start=p_start, period_end=p_end))
    rebuild_usage()  # readings written by hand: their quarter hours are worked out anew
    db.session.commit()
    return len(rows)


def _steps(first: datetime, last: datetime, dense: datetime) -> list[datetime]:
    """Times from ``first`` to ``last``: ``STEP`` apart, ``DENSE_STEP`` from ``dense`` on."""
    out, t = [], first
    while t <= last:
        out.append(t)
        t += STEP if t < dense else DENSE_STEP
    return out
