"""The alert rules, and firing each one exactly once per crossing.

Built in (on as soon as a channel is configured): plan credits 50 %, 80 % and
100 % used in the current period, one state per threshold per period, so a
new period re-arms them. Set by an admin: total balance below an amount,
and "runs out within N days" from the forecast.

A rule fires when its condition becomes true while it is armed, and re-arms
when the condition is false again (a top-up, a new period). The armed
state is a database row flipped with one conditional UPDATE, so however
many processes or hosts evaluate the same reading, one of them fires; the
row also keeps when the newest reading that acted on it was read, and the
same UPDATE ignores older ones, so a reading checked late by a slower
process can neither fire nor re-arm a rule a newer reading has acted on.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from ...database import UNAVAILABLE, mark_busy
from ...extensions import db
from ...formatting import day, moment, money, short_day
from ...giga import Billing
from ...models import Alert, AlertDelivery, AlertSettings, AlertState, User
from ..spikes import HOUR, runs_out_at_pace
from ..zone import display_zone

log = logging.getLogger(__name__)

PLAN_THRESHOLDS = (50, 80, 100)
BUDGET_THRESHOLDS = (50, 80, 100)


@dataclass(frozen=True)
class Crossing:
    """A condition that is true now: which rule, its state key, and what to say."""

    rule: str
    state_key: str
    title: str
    body: str
    figures: dict
    #: crossed together with a higher threshold of the same rule: marked fired, unsent
    quiet: bool = False


def settings() -> AlertSettings:
    """The one settings row (created with the defaults on first use; while the database
    will not take it, the defaults unsaved, so reading the rules never needs a write)."""
    row = db.session.get(AlertSettings, 1)
    if row is None:  # first use: the rules the environment seeds
        db.session.add(_seeded())
        try:
            db.session.commit()
        except IntegrityError:  # another process made it first
            db.session.rollback()
        except UNAVAILABLE:
            db.session.rollback()
            mark_busy(current_app)
            return _seeded()  # not in the session: saving the rules adds it
        row = db.session.get(AlertSettings, 1)
    return row


def _seeded() -> AlertSettings:
    cfg = current_app.config
    return AlertSettings(id=1, email_roles="finance,admin", extra_emails="",
                         balance_below=cfg["ALERT_BALANCE_BELOW"],
                         runs_out_within_days=cfg["ALERT_RUNS_OUT_DAYS"])


def describe(rules: AlertSettings) -> str:
    """The rules in a few words, for the audit trail: ``below $100.00; runs out within 30
    days; email finance, admin; also a@x.com`` (extra addresses counted when many)."""
    extra = [e for e in (rules.extra_emails or "").split(",") if e]
    also = ", ".join(extra)
    if len(also) > 120:
        also = f"{len(extra)} addresses"
    parts = [f"below {money(rules.balance_below)}" if rules.balance_below is not None
             else "no balance rule",
             f"runs out within {rules.runs_out_within_days} days"
             if rules.runs_out_within_days else "no run-out rule",
             "email " + (rules.email_roles.replace(",", ", ") if rules.email_roles else "no role")]
    if also:
        parts.append(f"also {also}")
    return "; ".join(parts)


def _day(value) -> str:
    """A date as the team reads it: in the zone its days and times are shown in."""
    return day(value, display_zone())


def _figures(billing: Billing, **more) -> dict:
    return {"plan": billing.plan, "planCreditsRemaining": str(billing.plan_credits_remaining),
            "prepaidBalance": str(billing.prepaid_balance),
            "totalBalance": str(billing.total_balance),
            "periodStart": billing.period_start.isoformat(),
            "periodEnd": billing.period_end.isoformat(),
            **{k: str(v) for k, v in more.items()}}


def outlook_sentence(outlook) -> str:
    """What the forecast says, as the billing page says it: the pace, its basis and the
    run-out date named against the period's end."""
    if outlook is None or outlook.pace_per_day is None:
        return ""
    if outlook.pace_per_day == 0:
        return " No credits are being used at the current pace."
    at_pace = f" At the current pace ({money(outlook.pace_per_day)} a day, from {outlook.basis})"
    if outlook.balance_runs_out is None:
        if outlook.never_runs_out:
            return (f"{at_pace} the balance does not run out: a period uses about "
                    f"{money(outlook.use_per_period)} of its {money(outlook.allowance)} plan "
                    f"credits, which come back on {_day(outlook.period_end)}.")
        return f"{at_pace} the balance lasts more than ten years."
    pace = f"{at_pace} the balance runs out around {_day(outlook.balance_runs_out)}"
    past = outlook.days_past_period_end
    if past > 0:
        return f"{pace}, {past} day{'s' if past != 1 else ''} after the period ends " \
               f"{_day(outlook.period_end)}."
    if past < 0:
        return f"{pace}, {-past} day{'s' if past != -1 else ''} before the period ends " \
               f"{_day(outlook.period_end)}."
    return f"{pace}, the day the period ends."


def conditions(billing: Billing, monthly: Decimal | None, outlook, now: datetime,
               rules: AlertSettings, *, forecast_known: bool = True, budget=None,
               forecast_held: bool = False) -> tuple[list[Crossing], list[str]]:
    """The crossings true now, and the state keys of rules whose condition is false.

    ``outlook`` is the account's forecast (``services.forecast.account_forecast``),
    the one the page shows. With ``forecast_known`` false (no plan list to
    forecast from) the run-out rule is in neither list: it is left as it is for
    the next reading. ``budget`` is the budget's status (``services.budget.status``,
    ``None``: no budget); its alerts fire once a window each and never re-arm within
    it, the forecast's only when ``forecast_held`` (``held_twice``).
    """
    true, false = [], []
    summary = (f"Plan credits left {money(billing.plan_credits_remaining)}, prepaid "
               f"{money(billing.prepaid_balance)}, total {money(billing.total_balance)}; the "
               f"period ends {moment(billing.period_end, display_zone())}."
               ) + outlook_sentence(outlook)
    if isinstance(monthly, Decimal) and monthly > 0:
        used = (monthly - billing.plan_credits_remaining) / monthly * 100
        for threshold in PLAN_THRESHOLDS:
            key = f"plan-credits:{threshold}:{billing.period_start.isoformat()}"
            if used >= threshold:
                true.append(Crossing(
                    "plan credits", key, f"{threshold}% of this period's plan credits used",
                    f"{min(used, Decimal(100)):.0f}% of the {money(monthly)} plan credits for "
                    f"this period are used. {summary}",
                    _figures(billing, threshold=threshold, usedPercent=f"{used:.1f}")))
            else:
                false.append(key)
    if rules.balance_below is not None:
        key = f"balance-below:{rules.balance_below}"
        if billing.total_balance < rules.balance_below:
            true.append(Crossing(
                "balance below", key, f"Balance below {money(rules.balance_below)}",
                f"The total balance is {money(billing.total_balance)}, below the alert at "
                f"{money(rules.balance_below)}. {summary}",
                _figures(billing, threshold=rules.balance_below)))
        else:
            false.append(key)
    if rules.runs_out_within_days and forecast_known:
        key = f"runs-out:{rules.runs_out_within_days}"
        horizon = now + timedelta(days=rules.runs_out_within_days)
        runs_out_at = outlook.balance_runs_out if outlook is not None else None
        if runs_out_at is not None and runs_out_at <= horizon:
            within = max(0, (runs_out_at - now).days)
            true.append(Crossing(
                "runs out soon", key,
                f"Balance runs out within {rules.runs_out_within_days} days",
                f"The forecast says the balance runs out around {_day(runs_out_at)}, in "
                f"{within} day{'s' if within != 1 else ''}: within the alert's "
                f"{rules.runs_out_within_days} days. {summary}",
                _figures(billing, threshold=rules.runs_out_within_days,
                         runsOutAt=runs_out_at.isoformat(),
                         pacePerDay=outlook.pace_per_day)))
        else:
            false.append(key)
    if budget is not None:
        true += budget_crossings(billing, budget, forecast_held)
    return true, false


def _links() -> str:
    """Where to act on a budget alert: the billing page's top-up form and plan cards."""
    public = current_app.config["PUBLIC_URL"]
    if not public:
        return "Top up or change plan on the dashboard's billing page."
    base = public.rstrip("/")
    return f"Top up: {base}/billing#topup · Plans: {base}/billing#plans-title"


def budget_crossings(billing: Billing, budget, forecast_held: bool) -> list[Crossing]:
    """The budget's thresholds crossed (lower ones crossed with a higher one are quiet:
    lowering the budget below what is spent sends one alert, not three), and the
    forecast over budget once it has held (``held_twice``)."""
    out = []
    said = budget.words()
    stops = "A budget does not stop usage: the API has no cap."
    crossed = [t for t in BUDGET_THRESHOLDS if budget.percent_used >= t]
    figures = dict(budget=budget.amount, budgetBasis=budget.basis,
                   budgetWindow=budget.window.key, used=budget.used,
                   forecast=budget.forecast if budget.forecast is not None else "unknown")
    for threshold in crossed:
        out.append(Crossing(
            "budget", f"budget:{threshold}:{budget.window.key}",
            f"{threshold}% of the budget used",
            f"{money(budget.used)} of the {money(budget.amount)} budget for "
            f"{budget.window.name} is used: {said}. {stops} {_links()}",
            _figures(billing, threshold=threshold, **figures),
            quiet=threshold != crossed[-1]))
    if budget.forecast_ready and budget.forecast_over and forecast_held and not budget.over:
        out.append(Crossing(
            "budget forecast", f"budget-forecast:{budget.window.key}",
            "Forecast over budget",
            f"At the current pace ({money(budget.pace_per_day)} a day) {budget.window.name} "
            f"comes to {money(budget.forecast)} against a {money(budget.amount)} budget: "
            f"{said}. {stops} {_links()}",
            _figures(billing, threshold="forecast", **figures)))
    return out


def _hhmm(when: datetime) -> str:
    return f"{when.astimezone(display_zone()):%H:%M}"


def spike_crossings(billing: Billing, told: list, outlook, now: datetime) -> list[Crossing]:
    """The spend-spike alerts due (``spikes.due``), in words: ``14:00–15:00: $8.20 against
    a usual $1.20; at this pace the balance runs out Mar 21 instead of Apr 2``."""
    out = []
    for t in told:
        hour = t.hour
        until = min(now, hour.start + HOUR) if t.running else hour.start + HOUR
        hours = Decimal(int((until - hour.start).total_seconds())) / 3600
        pace = hour.usage / max(hours, Decimal(1) / 60) * 24
        gone = runs_out_at_pace(billing, outlook, pace, now)
        usual_gone = outlook.balance_runs_out if outlook is not None else None
        if gone is None:
            then = "at this pace the balance still lasts"
        elif gone - now < timedelta(days=1):
            then = f"at this pace the balance runs out around {_hhmm(gone)} " \
                   f"({short_day(gone, display_zone())})"
        else:
            then = f"at this pace the balance runs out {short_day(gone, display_zone())}"
            then += f" instead of {short_day(usual_gone, display_zone())}" if usual_gone is not None else \
                " instead of lasting"
        so_far = " so far" if t.running else ""
        said = (f"{_hhmm(hour.start)}–{_hhmm(until)}: {money(hour.usage)}{so_far} against a "
                f"usual {money(t.verdict.usual)}; {then}")
        minutes = int((until - hour.start).total_seconds()) // 60
        within = "in an hour" if minutes >= 60 else f"in {minutes} minutes"
        title = f"Spend spike{' doubled' if t.doubling else ''}: {money(hour.usage)} {within}"
        out.append(Crossing(
            "spend spike", t.key, title,
            f"{said}. The usual is the median of the same hour on the 7 days before; an "
            f"alert needs at least {money(t.verdict.threshold)} in the hour. "
            f"Check for a runaway agent. {_links()}",
            _figures(billing, threshold=t.verdict.threshold, hourStart=hour.start.isoformat(),
                     hourUsage=hour.usage, usual=t.verdict.usual, pacePerDay=pace,
                     runsOutAtPace=gone.isoformat() if gone else "never")))
    return out


def held_twice(window_key: str, over: bool, read_at: datetime) -> bool:
    """Whether the forecast has been over budget on this reading and the one before it
    (readings in order: a reading older than the newest counted changes nothing). The
    count is an alert state row's ``crossings``, moved by one conditional UPDATE, so
    however many processes check one reading it counts once. Raises ``SQLAlchemyError``."""
    key = f"budget-forecast-held:{window_key}"
    _states([key])
    db.session.execute(update(AlertState).where(AlertState.key == key, _acts(read_at))
                       .values(crossings=(AlertState.crossings + 1) if over else 0,
                               reading_at=read_at))
    db.session.commit()
    return over and db.session.scalar(select(AlertState.crossings).where(
        AlertState.key == key)) >= 2


def _states(keys: list[str]) -> None:
    """Make sure a rule state exists (armed) for each of ``keys``, racing other processes
    safely: one read, and an insert only for a key never seen before."""
    known = set(db.session.scalars(select(AlertState.key).where(AlertState.key.in_(keys))))
    for key in keys:
        if key in known:
            continue
        db.session.add(AlertState(key=key, armed=True, crossings=0))
        try:
            db.session.commit()
        except IntegrityError:  # another process made it first
            db.session.rollback()


def _acts(read_at: datetime):
    """A state that a reading read at ``read_at`` may act on: none newer has."""
    return or_(AlertState.reading_at.is_(None), AlertState.reading_at < read_at)


def fire_crossings(crossings: list[Crossing], rearm: list[str], read_at: datetime,
                   channels: list[tuple[str, str]]) -> list[Alert]:
    """Fire each armed crossing once (queueing a delivery per channel target) and
    re-arm the rest, for a reading read at ``read_at``. Returns the alerts this call
    fired.

    Each rule state keeps when the newest reading that acted on it was read, and
    each change is one conditional UPDATE that moves it on: a reading older than
    that (a slower process checking an earlier reading) neither fires nor re-arms
    the rule, so it cannot re-arm what a newer reading fired. A reading whose rule
    has fired already moves the time on too. Raises ``SQLAlchemyError``.
    """
    _states([*rearm, *(c.state_key for c in crossings)])
    for key in rearm:
        db.session.execute(update(AlertState).where(AlertState.key == key, _acts(read_at))
                           .values(armed=True, reading_at=read_at))
    db.session.commit()
    fired = []
    for c in crossings:
        won = db.session.execute(update(AlertState).where(
            AlertState.key == c.state_key, AlertState.armed.is_(True), _acts(read_at))
            .values(armed=False, crossings=AlertState.crossings + 1, reading_at=read_at)
        ).rowcount == 1
        if not won or c.quiet:  # fired already, a newer reading acted, or said by a
            # higher threshold: only the time moves on
            db.session.execute(update(AlertState).where(
                AlertState.key == c.state_key, _acts(read_at)).values(reading_at=read_at))
            db.session.commit()
            continue
        crossing_no = db.session.scalar(select(AlertState.crossings).where(
            AlertState.key == c.state_key))
        alert = Alert(key=f"{c.state_key}#{crossing_no}", rule=c.rule, title=c.title,
                      body=c.body, figures=json.dumps(c.figures), fired_at=read_at)
        db.session.add(alert)
        db.session.flush()
        for channel, target in channels:
            db.session.add(AlertDelivery(alert_id=alert.id, channel=channel, target=target,
                                         next_attempt_at=read_at))
        db.session.commit()
        log.info("alert fired: %s", c.title)
        fired.append(alert)
    return fired


def email_recipients(rules: AlertSettings) -> list[str]:
    """Users of the chosen roles, plus the extra addresses, each once."""
    roles = [r for r in (rules.email_roles or "").split(",") if r]
    users = db.session.scalars(select(User.email).where(User.role.in_(roles),
                                                        User.is_demo.is_(False))).all() \
        if roles else []
    extra = [e.strip() for e in (rules.extra_emails or "").split(",") if e.strip()]
    seen, out = set(), []
    for address in [*users, *extra]:
        if address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return out
