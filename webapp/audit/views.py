"""The audit trail page and its CSV: filter by date (days in the team's zone), action
and user; page through every entry; download every matching row."""
from datetime import datetime, time, timedelta, timezone
from math import ceil

from flask import Blueprint, render_template, request
from sqlalchemy import func, select

from ..services.account import plan_names
from ..clock import app_clock
from ..downloads import csv_download, in_chunks
from ..extensions import db
from ..services.checkouts.reconcile import checkout_status
from ..services.zone import display_zone
from ..models import AuditEntry
from ..security import permission_required
from .forms import AuditFilterForm

bp = Blueprint("audit", __name__, url_prefix="/audit")

PAGE_SIZE = 50
CSV_COLUMNS = ("time (UTC)", "email", "role", "action", "amount (USD)", "amount typed",
               "plan from", "plan from name", "plan to", "plan to name", "user changed",
               "role from", "role to", "outcome", "refused attempts folded in", "request id",
               "detail", "seen in balance", "seen at (UTC)")
#: the same two times in the team's zone, after every other column (a script that reads
#: the columns above by position reads them still); the UTC ones stay, being exact
#: through a DST change and the same whatever zone the page is set to
LOCAL_COLUMNS = ("time (local: {zone})", "seen at (local: {zone})")


def _filters():
    """The filter form read from the query string, and the query it selects (newest
    first). A filter with an error is left out; the form shows the error by the field."""
    form = AuditFilterForm(request.args)
    form.validate()
    query = select(AuditEntry)
    if form.start.data and not form.start.errors:
        query = query.where(AuditEntry.at >= _midnight(form.start.data))
    if form.end.data and not form.end.errors:
        query = query.where(AuditEntry.at < _midnight(form.end.data + timedelta(days=1)))
    if form.action.data and not form.action.errors:
        query = query.where(AuditEntry.action == form.action.data)
    if form.user.data and not form.user.errors:
        query = query.where(AuditEntry.user_email == form.user.data)
    return form, query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


def _midnight(day) -> datetime:
    """The instant ``day`` begins in the team's zone, in UTC (as the rows are kept)."""
    return datetime.combine(day, time.min, display_zone()).astimezone(timezone.utc)


def _links(form) -> dict:
    """The filters in use, as query parameters for the CSV and page links."""
    fields = {"from": form.start, "to": form.end, "action": form.action, "user": form.user}
    return {name: request.args[name].strip() for name, field in fields.items()
            if request.args.get(name, "").strip() and not field.errors}


@bp.get("")
@permission_required("audit")
def trail():
    form, query = _filters()
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, ceil(total / PAGE_SIZE))
    page = min(form.page.data or 1, pages) if not form.page.errors else 1
    rows = db.session.scalars(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return render_template("audit/trail.html", rows=rows, form=form, links=_links(form),
                           page=page, pages=pages, total=total,
                           plan_names=plan_names(),
                           status=checkout_status, now=app_clock().now())


def _stamp(when, zone=timezone.utc) -> str:
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if when else ""


def csv_row(entry: AuditEntry, now, zone) -> tuple:
    return (_stamp(entry.at), entry.user_email, entry.user_role, entry.action,
            format(entry.amount, "f") if entry.amount is not None else "",
            "(empty)" if entry.amount_typed == "" else entry.amount_typed,
            entry.plan_from, entry.plan_from_name, entry.plan_to, entry.plan_to_name,
            entry.subject, entry.role_from, entry.role_to, entry.outcome, entry.repeats,
            entry.request_id, entry.detail, checkout_status(entry, now), _stamp(entry.seen_at),
            _stamp(entry.at, zone), _stamp(entry.seen_at, zone))


@bp.get("/export.csv")
@permission_required("audit")
def export():
    """Every matching row, newest first, streamed a batch at a time: never cut short,
    never all in memory, no transaction open while the client reads."""
    _, query = _filters()
    now, zone = app_clock().now(), display_zone()

    def rows():
        yield CSV_COLUMNS + tuple(c.format(zone=zone.key) for c in LOCAL_COLUMNS)
        yield from in_chunks(query, (AuditEntry.at, AuditEntry.id),
                             lambda entry: csv_row(entry, now, zone), newest_first=True)
    return csv_download(rows(), "billing-audit")
