"""The sandbox account, kept in a JSON file so it survives a restart.

Every operation re-reads the file under an exclusive lock, so several
processes (gunicorn workers each running a sandbox) see one account.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

PERIOD = timedelta(days=30)

#: the plans on offer, as the real API lists them (mixed types included)
PLANS = [
    {"id": "free", "name": "Free", "monthlyCredits": 10, "concurrentAgents": 1,
     "maxDurationHours": 1, "price": 0},
    {"id": "starter-pro", "name": "Starter Pro", "monthlyCredits": 100, "concurrentAgents": 5,
     "maxDurationHours": 8, "price": 29},
    {"id": "pro", "name": "Pro", "monthlyCredits": 500, "concurrentAgents": 20,
     "maxDurationHours": 12, "price": 99},
    {"id": "max", "name": "Max", "monthlyCredits": "custom", "concurrentAgents": "unlimited",
     "maxDurationHours": 24, "price": "custom"},
]


def plan_by_id(plan_id):
    """The sandbox plan with ``plan_id``, or ``None``."""
    return next((p for p in PLANS if p["id"] == plan_id), None)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def iso(when: datetime) -> str:
    """The API's timestamp form: ``2024-03-01T00:00:00.000Z``."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{when.microsecond // 1000:03d}Z"


def fresh_account() -> dict:
    """A starter-pro account twelve days into its period, a quarter of its credits used."""
    start = now_utc().replace(microsecond=0) - timedelta(days=12)
    return {"plan": "starter-pro", "planCreditsRemaining": "74.50", "prepaidBalance": "50.00",
            "periodStart": iso(start), "periodEnd": iso(start + PERIOD), "checkouts": {}}


class SandboxState:
    """The account and its checkout sessions, persisted at ``path``."""

    def __init__(self, path, *, spend_per_hour=0):
        self.path = Path(path)
        self.spend_per_hour = Decimal(spend_per_hour)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_suffix(self.path.suffix + ".lock")

    @contextmanager
    def edit(self):
        """Yield the account dict under an exclusive lock; write it back afterwards."""
        with open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                account = self._load()
                _spend(account, self.spend_per_hour)
                _spike(account)
                _roll_period(account)
                yield account
                self._save(account)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return fresh_account()

    def _save(self, account):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(account, indent=1))
        os.replace(tmp, self.path)

    # -- operations ---------------------------------------------------------

    def billing(self) -> dict:
        """The ``billing`` object of ``GET /api/billing`` (numbers as Decimal)."""
        with self.edit() as a:
            plan_credits = Decimal(a["planCreditsRemaining"])
            prepaid = Decimal(a["prepaidBalance"])
            return {"plan": a["plan"], "planCreditsRemaining": plan_credits,
                    "prepaidBalance": prepaid, "totalBalance": plan_credits + prepaid,
                    "currentPeriodStart": a["periodStart"], "currentPeriodEnd": a["periodEnd"]}

    def open_checkout(self, kind: str, **details) -> str:
        """Start a checkout session for a ``recharge`` or ``subscribe``; returns its id."""
        checkout_id = "cs_test_" + secrets.token_urlsafe(18)
        with self.edit() as a:
            a["checkouts"][checkout_id] = {"kind": kind, "status": "open",
                                           "created": iso(now_utc()), **details}
            # keep the file small: forget settled sessions beyond the newest 200
            if len(a["checkouts"]) > 200:
                for old in list(a["checkouts"])[:-200]:
                    del a["checkouts"][old]
        return checkout_id

    def set_return_url(self, checkout_id, url: str):
        """Where this checkout sends its payer back: the dashboard that started it."""
        with self.edit() as a:
            if checkout_id in a["checkouts"]:
                a["checkouts"][checkout_id]["returnUrl"] = url

    def checkout(self, checkout_id) -> dict | None:
        with self.edit() as a:
            return a["checkouts"].get(checkout_id)

    def settle(self, checkout_id, pay: bool) -> dict | None:
        """Pay or cancel an open checkout once; paying applies its effect."""
        with self.edit() as a:
            session = a["checkouts"].get(checkout_id)
            if session is None or session["status"] != "open":
                return session
            session["status"] = "paid" if pay else "cancelled"
            if pay and session["kind"] == "recharge":
                a["prepaidBalance"] = str(Decimal(a["prepaidBalance"]) + Decimal(session["amount"]))
            elif pay and session["kind"] == "subscribe":
                plan = plan_by_id(session["planId"])
                a["plan"] = plan["id"]
                a["planCreditsRemaining"] = str(Decimal(plan["monthlyCredits"]))
            return session

    def spend(self, amount: Decimal) -> dict:
        """Use ``amount`` of credits now, as the account's agents would (plan credits
        first); returns the account."""
        with self.edit() as a:
            _draw(a, amount)
            return dict(a)

    def spike(self, per_hour: Decimal, minutes: int) -> datetime:
        """Make the account's agents burn ``per_hour`` more for ``minutes`` from now (a
        runaway agent, for watching a spend-spike alert arrive); returns when it ends."""
        now = now_utc()
        until = now + timedelta(minutes=minutes)
        with self.edit() as a:
            a["spike"] = {"perHour": str(per_hour), "spentUntil": iso(now), "until": iso(until)}
        return until

    def reset(self):
        """Back to the demo account (tests and ``flask sandbox reset``)."""
        with self.edit() as a:
            a.clear()
            a.update(fresh_account())


def _spend(account, per_hour: Decimal):
    """Use credits as the account's agents would, ``per_hour`` since it was last done:
    plan credits first, then prepaid, in whole cents (the rest carries over)."""
    now = now_utc()
    since = datetime.fromisoformat(account.get("spentUntil") or iso(now))
    if per_hour <= 0 or since >= now:
        account["spentUntil"] = iso(max(since, now) if per_hour > 0 else now)
        return
    hours = Decimal((now - since).total_seconds()) / Decimal(3600)
    spend = (hours * per_hour).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    if spend <= 0:
        return
    # only the time those whole cents took is used up; a fraction waits for the next read
    account["spentUntil"] = iso(since + timedelta(seconds=int(spend / per_hour * 3600)))
    _draw(account, spend)


def _spike(account):
    """Burn what a spike (``spike``) owes since it was last done; it ends at its end."""
    spike = account.get("spike")
    if not spike:
        return
    now = now_utc()
    since = datetime.fromisoformat(spike["spentUntil"])
    until = datetime.fromisoformat(spike["until"])
    rate = Decimal(spike["perHour"])
    end = min(now, until)
    if end > since:
        hours = Decimal((end - since).total_seconds()) / Decimal(3600)
        spend = (hours * rate).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        if spend > 0:
            spike["spentUntil"] = iso(since + timedelta(seconds=int(spend / rate * 3600)))
            _draw(account, spend)
    if now >= until:
        del account["spike"]


def _draw(account, amount: Decimal):
    """Take ``amount`` from plan credits, then prepaid, never below zero."""
    plan = Decimal(account["planCreditsRemaining"])
    from_plan = min(plan, amount)
    prepaid = Decimal(account["prepaidBalance"])
    account["planCreditsRemaining"] = str(plan - from_plan)
    account["prepaidBalance"] = str(max(Decimal(0), prepaid - (amount - from_plan)))


def _roll_period(account):
    """Start a new period (and reset plan credits) once the old one has ended."""
    end = datetime.fromisoformat(account["periodEnd"])
    if now_utc() < end:
        return
    while now_utc() >= end:
        end += PERIOD
    account["periodStart"] = iso(end - PERIOD)
    account["periodEnd"] = iso(end)
    plan = plan_by_id(account["plan"])
    if plan and not isinstance(plan["monthlyCredits"], str):
        account["planCreditsRemaining"] = str(plan["monthlyCredits"])
