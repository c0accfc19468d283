"""``/api/v1``: the balance, its history, usage by day and by hour, checkouts and the audit
trail, as JSON (CSV on the lists), for a bearer token. GET only; no cookie and no CSRF
token is involved, and nothing here calls upstream: every figure comes from the shared
cache or the history tables, through the services the pages use."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from flask import current_app, g
from flask_smorest import Blueprint
from sqlalchemy import select

from ..clock import app_clock
from ..downloads import csv_download
from ..errors import json_error
from ..extensions import csrf
from ..models import AuditEntry, BalanceSnapshot
from ..services import account
from ..services.balance import known_balance
from ..services.checkouts.reconcile import checkout_status
from ..services.history.report import usage_between, usage_hours
from ..services.history.usage import local_day
from ..services.trail import PLAN_CHANGE, TOP_UP
from ..services.zone import display_zone
from . import guard
from . import schemas as doc
from .lists import (LARGEST_ID, BadParameter, day, decode_cursor, encode_cursor, instant,
                    listing, money, refuse, rfc3339, wants_csv, whole)

bp = Blueprint("api", __name__, url_prefix="/api/v1", description=(
    "Read-only: the balance, its history, usage by day and hour, checkouts and the audit "
    "trail, for a bearer token made in Settings › API tokens. Never calls WithGiga."))
csrf.exempt(bp)
bp.before_request(guard.authenticate)
bp.after_request(guard.rate_headers)
bp.register_error_handler(BadParameter, refuse)

#: the longest range one request may name: the history's own length
MAX_DAYS, MAX_HOURS = 400, 31 * 24
#: what every endpoint may answer besides its figures
REFUSALS = {401: "no token, or a bad, expired or revoked one",
            429: "past the token's or the address's limit"}


def documented(args, reply, *, scope: str | None = None, reads_history=False):
    """The view's parameters and reply in the OpenAPI document, its refusals beside
    them; with ``scope``, the view needs it (``guard.needs``), checked first."""
    refusals = dict(REFUSALS)
    if args is not None:
        refusals[422] = "a bad parameter (the message names it)"
    if scope is not None:
        refusals[403] = f"the token lacks {scope}, or its owner's role does now"
    if reads_history:
        refusals[503] = "no_reading: the dashboard has not read a balance yet"

    def decorate(view):
        if args is not None:  # the view is handed what the schema read, unused: ``lists``
            view = bp.arguments(args, location="query")(view)  # reads and names each one
        view = bp.response(200, reply)(view)
        for status, words in refusals.items():
            view = bp.alt_response(status, schema=doc.Refusal, description=words)(view)
        if scope is not None:
            view = guard.needs(scope)(view)
        return view
    return decorate


NO_READING = ("The dashboard has not read the balance yet. It will once someone opens it "
              "or the poller runs; the API itself never asks WithGiga.")


@bp.get("/tokens/self")
@documented(None, doc.TokenSelf)
def token_self():
    """The token's own name, scopes, rights now, and expiry."""
    grant = g.grant
    return {"name": grant.name, "token": grant.hint, "scopes": list(grant.scopes),
            "rights": sorted(grant.rights), "team": grant.team,
            "owner": None if grant.team else grant.owner_email,
            "owner_role": None if grant.team else grant.owner_role,
            "created_at": rfc3339(grant.created_at), "expires_at": rfc3339(grant.expires_at)}


@bp.get("/balance")
@documented(None, doc.Balance, scope="balance:read", reads_history=True)
def balance():
    """The balance as the dashboard last read it (pools, total, period, plan), when that
    was, and whether it is stale; 503 no_reading before any."""
    known = known_balance()
    if known is None:
        return json_error(503, "no_reading", NO_READING)
    b, now = known.billing, app_clock().now()
    age = max(0, int((now - known.read_at).total_seconds()))
    return {
        "plan": {"id": b.plan, "name": account.plan_names().get(b.plan)},
        "pools": {"plan_credits": money(b.plan_credits_remaining),
                  "prepaid": money(b.prepaid_balance)},
        "total": money(b.total_balance), "currency": "USD",
        "period": {"start": rfc3339(b.period_start), "end": rfc3339(b.period_end)},
        "read_at": rfc3339(known.read_at), "age_seconds": age,
        # the page's own rule: a figure kept because the last read failed, or older than
        # the longest the dashboard shows one
        "stale": known.fell_back or age > current_app.config["STALE_MAX_AGE"],
        "source": known.source}


SNAPSHOT_HEADER = ("first_seen_at", "last_seen_at", "plan", "plan_credits", "prepaid", "total",
                   "period_start", "period_end")


def _snapshot(r: BalanceSnapshot) -> dict:
    return dict(zip(SNAPSHOT_HEADER, _snapshot_row(r)))


def _snapshot_row(r: BalanceSnapshot) -> tuple:
    return (rfc3339(r.first_seen_at), rfc3339(r.last_seen_at), r.plan,
            money(r.plan_credits_remaining), money(r.prepaid_balance), money(r.total_balance),
            rfc3339(r.period_start), rfc3339(r.period_end))


@bp.get("/balance/history")
@documented(doc.HistoryArgs, doc.Readings, scope="balance:read")
def balance_history(_args):
    """The readings as recorded (each from first to last seen unchanged), oldest first;
    starting_at / ending_at keep those seen within."""
    query = select(BalanceSnapshot)
    if (start := instant("starting_at")) is not None:
        query = query.where(BalanceSnapshot.last_seen_at >= start)
    if (end := instant("ending_at")) is not None:
        query = query.where(BalanceSnapshot.first_seen_at < end)
    return listing("readings", query, (BalanceSnapshot.first_seen_at, BalanceSnapshot.id),
                   _snapshot, SNAPSHOT_HEADER, _snapshot_row, name="balance-history")


ENTRY_HEADER = ("id", "at", "user", "role", "action", "amount", "amount_typed", "plan_from",
                "plan_from_name", "plan_to", "plan_to_name", "subject", "role_from", "role_to",
                "outcome", "repeats", "detail", "request_id", "status", "seen_at")


def _entry_row(e: AuditEntry, now: datetime) -> tuple:
    return (e.id, rfc3339(e.at), e.user_email, e.user_role, e.action, money(e.amount),
            e.amount_typed, e.plan_from, e.plan_from_name, e.plan_to, e.plan_to_name,
            e.subject, e.role_from, e.role_to, e.outcome, e.repeats, e.detail, e.request_id,
            checkout_status(e, now), rfc3339(e.seen_at))


def _entries(kind: str, query, keys, *, name: str, newest_first: bool):
    now = app_clock().now()
    return listing(kind, query, keys, lambda e: dict(zip(ENTRY_HEADER, _entry_row(e, now))),
                   ENTRY_HEADER, lambda e: _entry_row(e, now), name=name,
                   newest_first=newest_first)


@bp.get("/checkouts")
@documented(doc.ListArgs, doc.Entries, scope="audit:read")
def checkouts(_args):
    """Top-ups and plan changes, newest first, each with what the readings have shown of
    it since (status: credited, plan changed, not yet seen, ...)."""
    query = select(AuditEntry).where(AuditEntry.action.in_((TOP_UP, PLAN_CHANGE)))
    return _entries("checkouts", query, (AuditEntry.at, AuditEntry.id), name="checkouts",
                    newest_first=True)


@bp.get("/audit")
@documented(doc.AuditArgs, doc.Entries, scope="audit:read")
def audit(_args):
    """The trail in the order it was written (by id), from after after (an id a
    script saw last; 0 or none: from the first)."""
    after = whole("after", 0, 0, LARGEST_ID)
    query = select(AuditEntry).where(AuditEntry.id > after)
    return _entries("audit", query, (AuditEntry.id,), name="audit-trail", newest_first=False)


# -- usage ---------------------------------------------------------------------------------

def _reading():
    """The balance the history is read with, or the 503 when there is none."""
    known = known_balance()
    if known is None:
        return None, json_error(503, "no_reading", NO_READING)
    return known, None


def _bucket(d, now: datetime, *, with_date: bool) -> dict:
    out = {"date": d.day.isoformat()} if with_date else {}
    out.update({"starts_at": rfc3339(d.start), "ends_at": rfc3339(d.end),
                "usage": money(d.usage), "usage_at_most": money(d.at_most),
                "plan_credits_used": money(d.plan_usage),
                "prepaid_used": money(None if d.usage is None else d.prepaid_usage),
                "top_ups": money(d.top_ups), "closing_balance": money(d.closing),
                "readings": d.readings, "unknown": d.unknown, "notes": list(d.notes),
                "incomplete": d.end > now})
    return out


def _gap(s) -> dict:
    return {"starts_at": rfc3339(s.start), "ends_at": rfc3339(s.end), "usage": money(s.usage),
            "top_ups": money(s.top_up), "unknown": s.usage is None,
            "kind": "opening" if s.kind == "opening" else "no readings", "note": s.note}


USAGE_HEADER = ("date", "starts_at", "ends_at", "usage", "usage_at_most", "plan_credits_used",
                "prepaid_used", "top_ups", "closing_balance", "readings", "unknown", "notes",
                "incomplete")


def _usage_csv(buckets, gaps, now, name, *, with_date=True):
    def rows():
        yield USAGE_HEADER if with_date else USAGE_HEADER[1:]
        for d in buckets:
            b = _bucket(d, now, with_date=with_date)
            yield tuple("; ".join(v) if isinstance(v, list) else v for v in b.values())
        for s in gaps:  # on no bucket, in the range's total: a row each, as the page's CSV
            gap = _gap(s)
            yield ((("",) if with_date else ()) + (gap["starts_at"], gap["ends_at"],
                   gap["usage"], gap["usage"], "", "", gap["top_ups"], "", False,
                   gap["unknown"],
                   f"{gap['kind']}: {gap['note'] or ''}".rstrip(": "), False))
    return csv_download(rows(), name)


def _totals(buckets, gaps) -> dict:
    used = sum((d.usage for d in buckets if d.usage is not None), start=0) + \
        sum((s.usage for s in gaps if s.usage is not None), start=0)
    return {"usage": money(used), "unknown": any(d.unknown for d in buckets) or
            any(s.usage is None for s in gaps)}


@bp.get("/usage/daily")
@documented(doc.DailyArgs, doc.Usage, scope="usage:read", reads_history=True)
def usage_daily(_args):
    """A bucket a day of the account's zone, starting_at..ending_at (dates, both
    included; default the last 30 days), built as the page's chart is."""
    known, refusal = _reading()
    if refusal is not None:
        return refusal
    now, zone = app_clock().now(), display_zone()
    today = local_day(now, zone)
    last = day("ending_at") or today
    first = day("starting_at") or last - timedelta(days=29)
    if first > last:
        raise BadParameter("starting_at", "must not be after ending_at.")
    if (last - first).days >= MAX_DAYS:
        raise BadParameter("ending_at", f"a request covers at most {MAX_DAYS} days.")
    csv = wants_csv()
    limit = whole("limit", 31, 1, MAX_DAYS)
    resume = decode_cursor("days", (date,))
    page_first = resume[0] if resume else first
    if page_first > last:
        raise BadParameter("next_page", "this cursor is past the range asked for.")
    page_last = last if csv else min(last, page_first + timedelta(days=limit - 1))
    report = usage_between(page_first, page_last, known.billing, now, account.known_plans(),
                           read_at=known.read_at, zone=zone)
    if csv:
        return _usage_csv(report.days, report.gaps, now, "usage-daily")
    more = page_last < last
    return {"zone": zone.key, "zone_label": report.zone_name,
            "starting_at": first.isoformat(), "ending_at": last.isoformat(),
            "data": [_bucket(d, now, with_date=True) for d in report.days],
            "stretches_without_readings": [_gap(s) for s in report.gaps],
            "page_totals": _totals(report.days, report.gaps), "has_more": more,
            "next_page": encode_cursor("days", [page_last + timedelta(days=1)])
            if more else None}


@bp.get("/usage/hourly")
@documented(doc.HourlyArgs, doc.Usage, scope="usage:read", reads_history=True)
def usage_hourly(_args):
    """A bucket an hour (UTC), starting_at..ending_at (RFC 3339; default the last
    24 hours), built from the same quarter hours as the page's days."""
    known, refusal = _reading()
    if refusal is not None:
        return refusal
    now = app_clock().now()
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    end = _hour(instant("ending_at") or this_hour + timedelta(hours=1), up=True)
    start = _hour(instant("starting_at") or end - timedelta(hours=24))
    if start >= end:
        raise BadParameter("starting_at", "must be before ending_at.")
    if end - start > timedelta(hours=MAX_HOURS):
        raise BadParameter("ending_at", f"a request covers at most {MAX_HOURS} hours.")
    csv = wants_csv()
    limit = whole("limit", 168, 1, MAX_HOURS)
    resume = decode_cursor("hours", (datetime,))
    page_start = resume[0] if resume else start
    count = int((end - page_start).total_seconds()) // 3600
    count = count if csv else min(count, limit)
    if count <= 0:
        raise BadParameter("next_page", "this cursor is past the range asked for.")
    hours, gaps = usage_hours(page_start, count, known.billing, now, account.known_plans(),
                              read_at=known.read_at)
    if csv:
        return _usage_csv(hours, gaps, now, "usage-hourly", with_date=False)
    more = hours[-1].end < end
    zone = display_zone()
    return {"zone": "UTC", "account_zone": zone.key,
            "starting_at": rfc3339(start), "ending_at": rfc3339(end),
            "data": [_bucket(h, now, with_date=False) for h in hours],
            "stretches_without_readings": [_gap(s) for s in gaps],
            "page_totals": _totals(hours, gaps), "has_more": more,
            "next_page": encode_cursor("hours", [hours[-1].end]) if more else None}


def _hour(when: datetime, *, up=False) -> datetime:
    """``when`` on the hour (UTC): down, or ``up`` to the next one."""
    down = when.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return down + timedelta(hours=1) if up and down != when else down
