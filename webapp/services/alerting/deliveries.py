"""Checking the rules on each fresh reading, and delivering what fired.

Evaluation only writes rows (an alert and one delivery per channel target),
so no page waits for a mail server or a webhook; each time some are written,
``deliveries_due`` says so (``services.background`` wakes its worker, started
on first use, on it). Each process's background worker delivers what is due: a delivery is claimed
with one conditional UPDATE, so two processes never send the same one at once
(each attempt ends well inside its claim); a failure is recorded and tried
again with backoff; a success is never sent again. A sender that dies
mid-send leaves its claim to run out, and the delivery goes again: at least
once, under the same delivery id (``channels.delivery_id``).
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

from blinker import Namespace
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..forecast import account_forecast
from ..zone import display_zone
from ...database import mark_busy, missing_schema, say_schema_missing, unavailable
from ...extensions import db
from ...formatting import day, money
from ...giga import GigaError
from ...giga import Billing, Plan
from ...models import Alert, AlertAttempt, AlertDelivery, AlertState
from . import channels
from .. import spikes
from ..budget import budget_settings, status as budget_status
from .rules import (PLAN_THRESHOLDS, Crossing, conditions, email_recipients, fire_crossings,
                    held_twice, settings, spike_crossings)

log = logging.getLogger(__name__)

#: sent with the app whenever deliveries were written that are due at once
deliveries_due = Namespace().signal("alert-deliveries-due")

MAX_ATTEMPTS = 12
BATCH = 20


def configured(cfg) -> bool:
    return bool(cfg["SMTP_URL"] or cfg["ALERT_WEBHOOK_URL"])


def targets(cfg, rules) -> list[tuple[str, str]]:
    """``(channel, target)`` for every place an alert goes now."""
    out = []
    if cfg["ALERT_WEBHOOK_URL"]:
        out.append(("webhook", urlsplit(cfg["ALERT_WEBHOOK_URL"]).hostname or "webhook"))
    if cfg["SMTP_URL"]:
        out += [("email", address) for address in email_recipients(rules)]
    return out


def plans_for_rules(app) -> list[Plan] | None:
    """The plan list the percentage and run-out rules need: from the shared cache, or
    read through the gateway (budget, breaker and single flight apply), so a reading
    in a process that never served a page (the poller) can check every rule.

    Returns ``None`` when it cannot be had now; says so in the log once until it can.
    """
    gateway = app.extensions["giga_gateway"]
    plans = gateway.known_plans()
    if plans is None:
        clock = app.extensions["clock"]
        try:
            plans = gateway.plans(clock.monotonic() + app.config["UPSTREAM_DEADLINE"]).value
        except GigaError as exc:
            if not app.extensions.get("alert_plans_missing"):
                app.extensions["alert_plans_missing"] = True
                log.warning("the plan list could not be read (%s); the plan-credit and "
                            "run-out alert rules wait for the next reading", exc)
            return None
    if app.extensions.pop("alert_plans_missing", None):
        log.info("the plan list is back; every alert rule is checked again")
    return plans


def _rule_inputs(app, billing: Billing, read_at: datetime):
    """What the rules check ``billing`` (read at ``read_at``) against: ``(plans,
    monthly, rules, outlook, budget)`` -- the plan list (``None`` when it cannot be had
    now), the plan's monthly credits, the rules, the page's forecast worked out the
    page's way (the same pace and dates), and the budget's status as the page shows it
    (``None``: no budget). Raises ``SQLAlchemyError``."""
    plans = plans_for_rules(app)
    plan = next((p for p in plans or [] if p.id == billing.plan), None)
    monthly = plan.monthly_credits if plan is not None else None
    rules = settings()
    zone = display_zone()
    outlook = account_forecast(billing, plans, read_at, read_at=read_at, zone=zone)
    budget = budget_status(budget_settings(), billing, outlook, plans, read_at,
                           read_at=read_at, zone=zone)
    return plans, monthly, rules, outlook, budget


def evaluate(app, billing: Billing, read_at: datetime) -> list[Alert]:
    """Check every rule against ``billing``, read upstream at ``read_at``; fire what
    crossed. Never raises.

    A rule only heeds readings newer than the newest one that acted on it: one
    checked late (a slower process's older reading) neither fires nor re-arms it
    (``rules.fire_crossings``). Without the plan list (see ``plans_for_rules``)
    the rules that need it are neither fired nor re-armed; the others still run.
    """
    cfg = app.config
    if not configured(cfg):
        return []
    try:
        plans, monthly, rules, outlook, budget = _rule_inputs(app, billing, read_at)
        held = budget is not None and held_twice(
            budget.window.key, budget.forecast_ready and budget.forecast_over, read_at)
        crossed, rearm = conditions(billing, monthly, outlook, read_at, rules,
                                    forecast_known=plans is not None, budget=budget,
                                    forecast_held=held)
        crossed += spike_crossings(billing, spikes.due(
            billing, read_at, budget_settings().spike_sensitivity, cfg["SPIKE_MIN_AMOUNT"],
            display_zone()), outlook, read_at)
        fired = fire_crossings(crossed, rearm, read_at, targets(cfg, rules))
    except SQLAlchemyError as exc:
        db.session.rollback()
        if unavailable(exc):
            mark_busy(app)
            log.warning("alert rules could not be checked: the database is busy; the next "
                        "reading checks them")
        elif missing_schema(exc):
            say_schema_missing(app, exc)
        else:
            log.exception("alert rules could not be checked")
        return []
    if fired:
        deliveries_due.send(app)
    return fired


def why_nothing_fired(app, billing: Billing, read_at: datetime) -> str:
    """Why ``billing`` (read at ``read_at``) fired no alert, in one line (the poller says
    it): how far this period's plan credits are used and where the next built-in
    alert is, what the admin's rules saw -- or that no alert channel is configured,
    so no rule is checked at all. Never raises."""
    if not configured(app.config):
        return ("no alert checked: no alert channel is configured (set ALERT_WEBHOOK_URL or "
                "SMTP_URL, as the README's Alerts section shows), so no rule is checked")
    try:
        plans, monthly, rules, outlook, budget = _rule_inputs(app, billing, read_at)
        crossed, _ = conditions(billing, monthly, outlook, read_at, rules,
                                forecast_known=plans is not None, budget=budget)
        fired = set(db.session.scalars(select(AlertState.key).where(
            AlertState.key.in_([c.state_key for c in crossed]), AlertState.armed.is_(False))))
    except SQLAlchemyError:
        db.session.rollback()
        return "no alert fired (what the rules saw could not be read: the database did not answer)"
    seen = [_plan_credits_seen(billing, plans, monthly, crossed, fired)]
    if rules.balance_below is not None:
        seen.append(_balance_seen(billing, rules.balance_below, crossed, fired))
    if rules.runs_out_within_days:
        seen.append(_runs_out_seen(outlook, rules.runs_out_within_days, plans is not None,
                                   crossed, fired))
    if budget is not None:
        seen.append(f"the budget: {budget.words()}")
    return "no alert fired: " + "; ".join(seen)


def _crossing(crossed: list[Crossing], rule: str) -> Crossing | None:
    """The last of ``crossed`` of ``rule`` (for the plan credits: the highest threshold)."""
    return next((c for c in reversed(crossed) if c.rule == rule), None)


def _fired_or_due(crossing: Crossing, fired: set[str]) -> str:
    if crossing.state_key in fired:
        return "fired already"
    return "was not checked on this reading (the next fresh one checks it)"


def _plan_credits_seen(billing, plans, monthly, crossed, fired) -> str:
    """``6% of this period's $500.00 plan credits used; the next built-in alert is at 50%``."""
    if plans is None:
        return ("the plan list could not be read, so the plan-credit alerts wait for the next "
                "reading")
    if not isinstance(monthly, Decimal) or monthly <= 0:
        return f"the {billing.plan} plan's credits are not a set amount: no plan-credit alert"
    used = max(Decimal(0), (monthly - billing.plan_credits_remaining) / monthly * 100)
    # whole percents, rounded down: "50%" only once the 50 % alert's line is crossed
    said = f"{int(min(used, Decimal(100)))}% of this period's {money(monthly)} plan credits used"
    ahead = next((t for t in PLAN_THRESHOLDS if used < t), None)
    passed = _crossing(crossed, "plan credits")
    if passed is None:
        return f"{said}; the next built-in alert is at {ahead}%"
    said = f"{said}: the {passed.figures['threshold']}% alert {_fired_or_due(passed, fired)}"
    if ahead is None:
        return f"{said} (a new period re-arms the built-in alerts)"
    return f"{said}; the next is at {ahead}%"


def _balance_seen(billing, below, crossed, fired) -> str:
    passed = _crossing(crossed, "balance below")
    if passed is None:
        return f"the total balance {money(billing.total_balance)} is not below the " \
               f"{money(below)} alert"
    return (f"the total balance {money(billing.total_balance)} is below the {money(below)} "
            f"alert, which {_fired_or_due(passed, fired)} (it re-arms once the balance is back "
            "above it)")


def _runs_out_seen(outlook, days, forecast_known, crossed, fired) -> str:
    if not forecast_known:
        return f"the {days}-day run-out alert waits for the plan list too"
    passed = _crossing(crossed, "runs out soon")
    runs_out = outlook.balance_runs_out if outlook is not None else None
    if passed is not None:
        return (f"the forecast says the balance runs out around {day(runs_out, display_zone())}, within the "
                f"{days}-day alert, which {_fired_or_due(passed, fired)}")
    if runs_out is None:
        return f"the forecast sees no run-out within the {days} days the alert looks ahead"
    return f"the forecast's run-out, around {day(runs_out, display_zone())}, is beyond the {days}-day alert"


def send_test(app, now: datetime, user_id: int, who: str) -> Alert:
    """A test alert to every configured channel (the Alerts page's button), sent by
    user ``user_id`` (named ``who`` in its text; its key holds the id, which fits the
    key's column whatever the address's length)."""
    rules = settings()
    alert = Alert(key=f"test#{now.isoformat()}#{user_id}", rule="test",
                  title="Test alert", body=f"A test alert sent by {who} from the Alerts page. "
                  "If you can read this, alerts reach you here.",
                  figures=json.dumps({"threshold": None}), fired_at=now)
    db.session.add(alert)
    db.session.flush()
    for channel, target in targets(app.config, rules):
        db.session.add(AlertDelivery(alert_id=alert.id, channel=channel, target=target,
                                     next_attempt_at=now))
    db.session.commit()
    deliveries_due.send(app)
    return alert


def _deliver(app, delivery: AlertDelivery) -> None:
    """One attempt, over well within the claim (so no other process takes the
    delivery over while this one may still send it): a webhook's whole exchange
    ends by its deadline however slowly the receiver answers. Raises
    ``channels.DeliveryFailed``."""
    cfg = app.config
    public = cfg["PUBLIC_URL"]
    seconds = cfg["ALERT_CLAIM_SECONDS"] / 4
    if delivery.channel == "webhook":
        if not cfg["ALERT_WEBHOOK_URL"]:
            raise channels.DeliveryFailed("no webhook is configured any more")
        clock = app.extensions["clock"]
        did = channels.delivery_id(delivery)
        body = channels.webhook_body(delivery.alert, public, did)
        headers = channels.webhook_headers(body, did, int(clock.time()),
                                           cfg["ALERT_WEBHOOK_SECRET"])
        channels.send_webhook(cfg["ALERT_WEBHOOK_URL"], body, headers,
                              seconds=min(10.0, seconds), clock=clock)
    else:
        if not cfg["SMTP_URL"]:
            raise channels.DeliveryFailed("no mail server is configured any more")
        channels.send_email(cfg["SMTP_URL"], channels.email_message(
            delivery.alert, cfg["ALERT_EMAIL_FROM"], delivery.target, public),
            timeout=min(15.0, seconds))


def deliver_due(app, now: datetime) -> int:
    """Send every delivery that is due and not taken by another process; returns how
    many were sent.

    A delivery is claimed for ``ALERT_CLAIM_SECONDS`` from the moment it is
    claimed: one whose claim has run out (its process died mid-send) is due
    again and taken over here.
    """
    clock = app.extensions["clock"]
    started = clock.monotonic()

    def at() -> datetime:
        # ``now`` moved on by the time this batch has taken: the last claim of a long
        # batch must not start out already run out (and be taken over while sent)
        return now + timedelta(seconds=clock.monotonic() - started)

    claim = timedelta(seconds=app.config["ALERT_CLAIM_SECONDS"])
    due = db.session.scalars(select(AlertDelivery.id).where(
        AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now,
        or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now))
        .order_by(AlertDelivery.id).limit(BATCH)).all()
    sent = 0
    for delivery_id in due:
        claimed_at = at()
        claimed = db.session.execute(update(AlertDelivery).where(
            AlertDelivery.id == delivery_id, AlertDelivery.status == "pending",
            or_(AlertDelivery.claimed_until.is_(None),
                AlertDelivery.claimed_until < claimed_at))
            .values(claimed_until=claimed_at + claim)).rowcount == 1
        db.session.commit()
        if not claimed:
            continue
        delivery = db.session.get(AlertDelivery, delivery_id)
        try:
            _deliver(app, delivery)
        except channels.DeliveryFailed as exc:
            _failed(app, delivery, exc, claimed_at, at())
        else:
            delivery.attempts += 1
            delivery.status, delivery.sent_at, delivery.last_error = "sent", at(), None
            db.session.add(AlertAttempt(delivery_id=delivery.id, at=claimed_at, ok=True,
                                        detail="delivered"))
            sent += 1
        db.session.commit()
    return sent


def _failed(app, delivery: AlertDelivery, exc: Exception, started: datetime,
            ended: datetime) -> None:
    """Record a failed attempt (made at ``started``) and when to try again (backoff,
    doubling, from ``ended``), or give up after ``MAX_ATTEMPTS``."""
    delivery.attempts += 1
    delivery.last_error = str(exc)[:500]
    delivery.claimed_until = None
    wait = min(3600, app.config["ALERT_RETRY_SECONDS"] * 2 ** (delivery.attempts - 1))
    delivery.next_attempt_at = ended + timedelta(seconds=wait)
    if delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = "failed"
    db.session.add(AlertAttempt(delivery_id=delivery.id, at=started, ok=False,
                                detail=str(exc)[:500]))
    log.warning("alert delivery %s by %s failed: %s", delivery.id, delivery.channel, exc)


def last_alert_id() -> int:
    """The newest alert's id (0 for none): what fires after it is new."""
    return db.session.scalar(select(func.max(Alert.id))) or 0


def deliver_fired_since(app, after_id: int, wait: float) -> list[AlertDelivery]:
    """Deliver the alerts fired after alert ``after_id`` (a one-shot poll's), waiting
    at most ``wait`` seconds for any still due or being sent by another process;
    returns their deliveries as they stand. A failed one is left to the retries of
    whichever process runs a background worker."""
    clock = app.extensions["clock"]
    until = clock.monotonic() + wait
    while True:
        deliver_due(app, clock.now())
        db.session.expire_all()
        rows = db.session.scalars(select(AlertDelivery).where(AlertDelivery.alert_id > after_id)
                                  .order_by(AlertDelivery.id)).all()
        now, left = clock.now(), until - clock.monotonic()
        waiting = [d for d in rows if d.status == "pending" and (
            (d.claimed_until is not None and d.claimed_until > now)
            or d.next_attempt_at <= now + timedelta(seconds=max(0.0, left)))]
        if not waiting or left <= 0:
            return rows
        clock.sleep(min(0.2, left))


def recent(limit=50) -> list[Alert]:
    return db.session.scalars(select(Alert).order_by(Alert.fired_at.desc(), Alert.id.desc())
                              .limit(limit)).all()


def deliveries_of(alert_ids) -> dict[int, list[AlertDelivery]]:
    out: dict[int, list[AlertDelivery]] = {}
    for d in db.session.scalars(select(AlertDelivery).where(
            AlertDelivery.alert_id.in_(alert_ids)).order_by(AlertDelivery.id)):
        out.setdefault(d.alert_id, []).append(d)
    return out
