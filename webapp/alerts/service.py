"""Checking the rules on each fresh reading, and delivering what fired.

Evaluation only writes rows (an alert and one delivery per channel target),
so no page waits for a mail server or a webhook. A sender thread in each
process delivers what is due: a delivery is claimed with one conditional
UPDATE, so two processes never send the same one; a failure is recorded and
tried again with backoff; a success is never sent again.
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..giga import Billing
from ..models import Alert, AlertAttempt, AlertDelivery
from . import channels
from .rules import conditions, email_recipients, fire_crossings, settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
CLAIM = timedelta(seconds=90)
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


def evaluate(app, billing: Billing, now: datetime) -> list[Alert]:
    """Check every rule against a fresh ``billing``; fire what crossed. Never raises."""
    cfg = app.config
    if not configured(cfg):
        return []
    from ..billing.forecast import forecast
    from ..history.report import observed_pace

    try:
        plans = app.extensions["giga_gateway"].known_plans()
        plan = next((p for p in plans or [] if p.id == billing.plan), None)
        monthly = plan.monthly_credits if plan is not None else None
        rules = settings()
        runs_out_at = None
        if plan is not None:  # every alert says what the forecast says
            pace = observed_pace(billing, now, lambda pid: next(
                (p.monthly_credits for p in plans if p.id == pid), None))
            f = forecast(billing, plan, now, observed=pace)
            if f.pace_per_day:
                runs_out_at = f.balance_runs_out
        crossed, rearm = conditions(billing, monthly, runs_out_at, now, rules)
        fired = fire_crossings(crossed, rearm, now, targets(cfg, rules))
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("alert rules could not be checked")
        return []
    if fired:
        sender(app).wake()
    return fired


def send_test(app, now: datetime, who: str) -> Alert:
    """A test alert to every configured channel (the Alerts page's button)."""
    rules = settings()
    alert = Alert(key=f"test#{now.isoformat()}#{who}", rule="test",
                  title="Test alert", body=f"A test alert sent by {who} from the Alerts page. "
                  "If you can read this, alerts reach you here.",
                  figures=json.dumps({"threshold": None}), fired_at=now)
    db.session.add(alert)
    db.session.flush()
    for channel, target in targets(app.config, rules):
        db.session.add(AlertDelivery(alert_id=alert.id, channel=channel, target=target,
                                     next_attempt_at=now))
    db.session.commit()
    sender(app).wake()
    return alert


def _deliver(app, delivery: AlertDelivery) -> None:
    """One attempt. Raises ``channels.DeliveryFailed``."""
    cfg = app.config
    public = cfg["PUBLIC_URL"]
    if delivery.channel == "webhook":
        if not cfg["ALERT_WEBHOOK_URL"]:
            raise channels.DeliveryFailed("no webhook is configured any more")
        channels.send_webhook(cfg["ALERT_WEBHOOK_URL"],
                              channels.webhook_body(delivery.alert, public),
                              cfg["ALERT_WEBHOOK_SECRET"])
    else:
        if not cfg["SMTP_URL"]:
            raise channels.DeliveryFailed("no mail server is configured any more")
        channels.send_email(cfg["SMTP_URL"], channels.email_message(
            delivery.alert, cfg["ALERT_EMAIL_FROM"], delivery.target, public))


def deliver_due(app, now: datetime) -> int:
    """Send every delivery that is due and not taken by another process; returns how
    many were sent."""
    due = db.session.scalars(select(AlertDelivery.id).where(
        AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now,
        or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now))
        .order_by(AlertDelivery.id).limit(BATCH)).all()
    sent = 0
    for delivery_id in due:
        claimed = db.session.execute(update(AlertDelivery).where(
            AlertDelivery.id == delivery_id, AlertDelivery.status == "pending",
            or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now))
            .values(claimed_until=now + CLAIM)).rowcount == 1
        db.session.commit()
        if not claimed:
            continue
        delivery = db.session.get(AlertDelivery, delivery_id)
        try:
            _deliver(app, delivery)
        except channels.DeliveryFailed as exc:
            delivery.attempts += 1
            delivery.last_error = str(exc)[:500]
            delivery.claimed_until = None
            wait = min(3600, app.config["ALERT_RETRY_SECONDS"] * 2 ** (delivery.attempts - 1))
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = "failed"
            db.session.add(AlertAttempt(delivery_id=delivery.id, at=now, ok=False,
                                        detail=str(exc)[:500]))
            log.warning("alert delivery %s by %s failed: %s", delivery.id, delivery.channel, exc)
        else:
            delivery.attempts += 1
            delivery.status, delivery.sent_at, delivery.last_error = "sent", now, None
            db.session.add(AlertAttempt(delivery_id=delivery.id, at=now, ok=True,
                                        detail="delivered"))
            sent += 1
        db.session.commit()
    return sent


def recent(limit=50) -> list[Alert]:
    return db.session.scalars(select(Alert).order_by(Alert.fired_at.desc(), Alert.id.desc())
                              .limit(limit)).all()


def deliveries_of(alert_ids) -> dict[int, list[AlertDelivery]]:
    out: dict[int, list[AlertDelivery]] = {}
    for d in db.session.scalars(select(AlertDelivery).where(
            AlertDelivery.alert_id.in_(alert_ids)).order_by(AlertDelivery.id)):
        out.setdefault(d.alert_id, []).append(d)
    return out


class Sender:
    """The process's delivery thread: wakes when an alert fires, and every few seconds."""

    def __init__(self, app, every: float = 5.0):
        self.app = app
        self.every = every
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self._thread.start()

    def wake(self):
        self._wake.set()

    def _run(self):
        clock = self.app.extensions["clock"]
        while True:
            self._wake.wait(self.every)
            self._wake.clear()
            try:
                with self.app.app_context():
                    deliver_due(self.app, clock.now())
            except Exception:  # the thread must outlive a bad moment of the database
                log.exception("alert sender failed; trying again shortly")


_sender_lock = threading.Lock()


def sender(app) -> Sender:
    """The app's sender, started on first use."""
    with _sender_lock:
        found = app.extensions.get("alert_sender")
        if found is None:
            found = app.extensions["alert_sender"] = Sender(app, app.config["ALERT_SEND_EVERY"])
        return found
