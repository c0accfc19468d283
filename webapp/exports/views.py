"""The history's CSV exports, for finance and admins (the audit trail's rules)."""
from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, request
from sqlalchemy import select

from ..services import limits
from ..services.account import load_overview, plan_names
from ..downloads import csv_download, in_chunks
from ..errors import render_too_many, render_upstream_error
from ..giga import GigaError
from ..models import BalanceSnapshot
from ..services.history.readings import first_reading_at
from ..services.history.report import RANGES, chart
from ..services.planfit import custom, custom_words, plan_fit
from ..services.zone import display_zone
from ..security import permission_required

bp = Blueprint("exports", __name__, url_prefix="/billing")

SNAPSHOT_COLUMNS = ("first seen (UTC)", "last seen (UTC)", "plan", "plan name",
                    "plan credits left (USD)", "prepaid (USD)", "total (USD)",
                    "period start (UTC)", "period end (UTC)")
#: a reading's times in the team's zone too, after the columns above (which a script may
#: read by position); the UTC ones stay, exact through a DST change whatever the zone
SNAPSHOT_LOCAL_COLUMNS = ("first seen (local: {zone})", "last seen (local: {zone})")
#: "usage" is what the readings tell; "usage at most" bounds it (blank: no bound known);
#: the date is the team's zone's (named in the heading), the times after it UTC's
USAGE_COLUMNS = ("date", "part of the day", "usage (USD)", "usage at most (USD)",
                 "top-ups credited (USD)", "closing balance (USD)", "note")
USAGE_TIMES = ("start (UTC)", "end (UTC)", "hours")
CENT = Decimal("0.01")


def _stamp(when, zone=None) -> str:
    """``2026-12-02 16:15:03``, in UTC as kept, or in ``zone``."""
    return (when.astimezone(zone) if zone else when).strftime("%Y-%m-%d %H:%M:%S")


def _money(value) -> str:
    """A plain decimal with cents, as a spreadsheet reads it."""
    if value is None:
        return ""
    return format(value.quantize(CENT), "f")


def _too_many_exports():
    """A 429 page when this user has started too many downloads this minute (each
    reads the whole history), else None."""
    taken, wait = limits.take("exports")
    if taken:
        return None
    return render_too_many("Too many downloads", "You started several downloads in the last "
                           "minute. Wait a moment and try again.", wait)


@bp.get("/history.csv")
@permission_required("audit")
def history_csv():
    if (refused := _too_many_exports()) is not None:
        return refused

    names, zone = plan_names(), display_zone()

    def row(r):
        return (_stamp(r.first_seen_at), _stamp(r.last_seen_at), r.plan, names.get(r.plan, ""),
                _money(r.plan_credits_remaining), _money(r.prepaid_balance),
                _money(r.total_balance), _stamp(r.period_start), _stamp(r.period_end),
                _stamp(r.first_seen_at, zone), _stamp(r.last_seen_at, zone))

    def rows():
        yield SNAPSHOT_COLUMNS + tuple(c.format(zone=zone.key) for c in SNAPSHOT_LOCAL_COLUMNS)
        # oldest first, a batch at a time: no transaction open while the client reads
        yield from in_chunks(select(BalanceSnapshot),
                             (BalanceSnapshot.first_seen_at, BalanceSnapshot.id), row)
    return csv_download(rows(), "balance-history")


def _read_for_download():
    """``(overview, None)``: the figures a download is made from; or ``(None, page)``, the
    page that says why not (too many downloads, an upstream fault)."""
    if (refused := _too_many_exports()) is not None:
        return None, refused
    try:
        return load_overview(), None
    except GigaError as exc:
        return None, render_upstream_error(exc)


@bp.get("/usage.csv")
@permission_required("audit")
def usage_csv():
    overview, refused = _read_for_download()
    if refused is not None:
        return refused
    key = request.args.get("range", "90")
    # the same worked-out history as the page's chart, so a download costs no more
    report = chart(key if key in RANGES else "90", overview.billing, overview.now,
                   overview.known_plans, read_at=overview.fetched_at, zone=display_zone())
    # the file says which range it holds: usage-this-period-…, usage-last-30-days-…
    return csv_download(usage_rows(report), "usage-" + report.label.lower().replace(" ", "-"))


@bp.get("/plan-fit.csv")
@permission_required("audit")
def plan_fit_csv():
    overview, refused = _read_for_download()
    if refused is not None:
        return refused
    if overview.plans_error is not None:
        return render_upstream_error(overview.plans_error)
    fit = plan_fit(overview.billing, overview.plans, overview.now,
                   read_at=overview.fetched_at, zone=display_zone(), began=first_reading_at())
    return csv_download(plan_fit_rows(fit), "plan-fit")


PLAN_FIT_COLUMNS = ("plan", "plan name", "window", "start (UTC)", "end (UTC)", "usage (USD)",
                    "price (USD)", "monthly credits", "stretches", "plan price paid (USD)",
                    "prepaid (USD)", "cost (USD)", "note")


def plan_fit_rows(fit):
    """A row per plan and window: the figures the plan cards show."""
    yield PLAN_FIT_COLUMNS
    for plan in fit.plans:
        for w in fit.windows:
            head = (plan.id, plan.name, w.name, _stamp(w.start), _stamp(w.end),
                    _money(w.usage) if not w.missing_days else "",
                    str(plan.price), str(plan.monthly_credits), str(len(w.usages)))
            if custom(plan):
                yield head + ("", "", "", custom_words(plan))
            elif w.missing_days:
                yield head + ("", "", "", f"the history is {w.missing_days} days short")
            else:
                c = w.cost(plan)
                yield head + (_money(c.price), _money(c.prepaid), _money(c.total),
                              "part of the usage is unknown: a floor" if w.unknown else "")


def usage_rows(report):
    """The usage CSV of ``report``: a row a day of its zone (the year's too: a
    spreadsheet adds days up into weeks or months as it likes), then a row for each
    stretch without readings. Each row says the instants it covers in UTC and how many
    hours that is (23 or 25 on the day the clocks change)."""
    zone = report.zone
    yield (f"date ({zone.key})",) + USAGE_COLUMNS[1:] + USAGE_TIMES
    for d in report.days:
        times = (_stamp(d.start), _stamp(d.end), _hours(d.end - d.start))
        if not d.readings:
            yield (d.day.isoformat(), _part(d, zone), "", "", _money(d.top_ups), "",
                   "no readings", *times)
            continue
        yield (d.day.isoformat(), _part(d, zone), _money(d.usage), _money(d.at_most),
               _money(d.top_ups), _money(d.closing), "; ".join(d.notes), *times)
    for g in report.gaps:  # on no day, in the range's total: a row each
        start = g.start.astimezone(zone)
        yield (start.date().isoformat(), f"from {start:%H:%M} to {_stamp(g.end, zone)}",
               _money(g.usage), _money(g.usage), _money(g.top_up), "",
               ("before the first reading kept" if g.kind == "opening"
                else "a stretch without readings") + (f": {g.note}" if g.note else ""),
               _stamp(g.start), _stamp(g.end), _hours(g.end - g.start))


def _hours(length) -> str:
    """``24``, ``23``, ``25``, or ``9.5`` for a day a period cuts (to the second)."""
    hours = Decimal(int(length.total_seconds())) / 3600
    return format(hours.quantize(Decimal("0.01")).normalize(), "f")


def _part(day, zone) -> str:
    """Which part of the day a row holds when a period begins or ends during it."""
    if day.since:
        return f"from {day.since.astimezone(zone):%H:%M}"
    if day.until:
        return f"until {day.until.astimezone(zone):%H:%M}"
    return ""
