from datetime import date, datetime, time, timedelta, timezone

from flask import render_template, request
from sqlalchemy import select

from ..auth.roles import permission_required
from ..extensions import db
from ..models import AuditEntry
from . import bp
from ..clock import app_clock as clock
from ..downloads import csv_download
from ..history.service import checkout_status
from .service import ACTIONS

MAX_ROWS = 5000
CSV_COLUMNS = ("time (UTC)", "email", "role", "action", "amount (USD)", "plan from", "plan to",
               "outcome", "request id", "detail", "seen in balance", "seen at (UTC)")


def _date(name):
    """A ``YYYY-MM-DD`` query parameter as a date, or ``None`` (with the error text)."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None, None
    try:
        return date.fromisoformat(raw), None
    except ValueError:
        return None, f"“{raw[:20]}” is not a date; use YYYY-MM-DD."


def _filtered():
    """The rows matching the page's filters, newest first, and any filter errors."""
    start, start_err = _date("from")
    end, end_err = _date("to")
    action = request.args.get("action") or ""
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if start:
        query = query.where(AuditEntry.at >= datetime.combine(start, time.min, timezone.utc))
    if end:
        query = query.where(AuditEntry.at < datetime.combine(end + timedelta(days=1), time.min,
                                                             timezone.utc))
    if action in ACTIONS:
        query = query.where(AuditEntry.action == action)
    rows = db.session.scalars(query.limit(MAX_ROWS)).all()
    errors = [e for e in (start_err, end_err) if e]
    filters = {"from": start.isoformat() if start else "", "to": end.isoformat() if end else "",
               "action": action if action in ACTIONS else ""}
    return rows, filters, errors


@bp.get("")
@permission_required("audit")
def trail():
    rows, filters, errors = _filtered()
    return render_template("audit/trail.html", rows=rows, filters=filters, errors=errors,
                           actions=ACTIONS, max_rows=MAX_ROWS, status=checkout_status,
                           now=clock().now())


def _stamp(when) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if when else ""


def csv_row(entry: AuditEntry, now) -> tuple:
    return (_stamp(entry.at), entry.user_email, entry.user_role, entry.action,
            format(entry.amount, "f") if entry.amount is not None else "",
            entry.plan_from, entry.plan_to, entry.outcome, entry.request_id, entry.detail,
            checkout_status(entry, now), _stamp(entry.seen_at))


@bp.get("/export.csv")
@permission_required("audit")
def export():
    rows, filters, _ = _filtered()
    now = clock().now()
    return csv_download([CSV_COLUMNS] + [csv_row(r, now) for r in rows], "billing-audit")
