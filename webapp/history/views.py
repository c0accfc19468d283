"""The history's CSV exports, for finance and admins (the audit trail's rules)."""
from __future__ import annotations

from decimal import Decimal

from flask import request

from ..auth.roles import permission_required
from ..billing.overview import load_overview
from ..clock import app_clock as clock
from ..downloads import csv_download
from ..errors import render_upstream_error
from ..gateway import UpstreamFault
from . import bp, service
from .report import RANGES, usage_report

SNAPSHOT_COLUMNS = ("first seen (UTC)", "last seen (UTC)", "plan", "plan credits left (USD)",
                    "prepaid (USD)", "total (USD)", "period start (UTC)", "period end (UTC)")
USAGE_COLUMNS = ("date (UTC)", "usage (USD)", "top-ups credited (USD)",
                 "closing balance (USD)", "note")
CENT = Decimal("0.01")


def _stamp(when) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _money(value) -> str:
    """A plain decimal with cents, as a spreadsheet reads it."""
    if value is None:
        return ""
    return format(value.quantize(CENT), "f")


@bp.get("/history.csv")
@permission_required("audit")
def history_csv():
    def rows():
        yield SNAPSHOT_COLUMNS
        for r in service.all_snapshot_rows():
            yield (_stamp(r.first_seen_at), _stamp(r.last_seen_at), r.plan,
                   _money(r.plan_credits_remaining), _money(r.prepaid_balance),
                   _money(r.total_balance), _stamp(r.period_start), _stamp(r.period_end))
    return csv_download(rows(), "balance-history")


@bp.get("/usage.csv")
@permission_required("audit")
def usage_csv():
    try:
        overview = load_overview()
    except UpstreamFault as exc:
        return render_upstream_error(exc)
    key = request.args.get("range", "90")
    report = usage_report(key if key in RANGES else "90", overview.billing, clock().now(),
                          overview.monthly_credits_of)

    def rows():
        yield USAGE_COLUMNS
        for d in report.days:
            note = "no readings" if not d.readings else "; ".join(d.notes)
            yield (d.day.isoformat(), _money(d.usage) if d.readings else "",
                   _money(d.top_ups), _money(d.closing), note)
    return csv_download(rows(), "usage")

