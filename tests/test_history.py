"""Usage over time: the rules, the recording, the poller, reconciliation, the chart, exports."""
import secrets
import csv
import io
import re
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from webapp.extensions import db
from webapp.services.arrivals import settle
from webapp.services.history.seed import seed
from webapp.services.history.usage import MAX_INTERVAL, Snapshot, daily, interval, recent_pace
from webapp.models import AuditEntry, BalanceSnapshot
from webapp.services.trail import SIGNED_IN

D = Decimal
T0 = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
P_START, P_END = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1,
                                                                      tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[1]


def snap(hours, plan_credits, prepaid, plan="starter-pro", start=P_START, end=P_END, to=None):
    first = T0 + timedelta(hours=hours)
    last = T0 + timedelta(hours=to) if to is not None else first
    return Snapshot(first, last, plan, D(plan_credits), D(prepaid), D(plan_credits) + D(prepaid),
                    start, end)


# -- the rules, one case each ---------------------------------------------------------

def test_plain_use_is_the_fall_in_plan_credits():
    span = interval(snap(0, "74.50", "50"), snap(2, "70.25", "50"), D(100))
    assert (span.kind, span.usage, span.top_up) == ("use", D("4.25"), 0)


def test_plain_use_draws_prepaid_once_plan_credits_are_gone():
    span = interval(snap(0, "1.00", "50"), snap(2, "0", "47.50"), D(100))
    assert span.usage == D("3.50")


def test_usage_says_what_it_drew_from_plan_credits_and_from_prepaid():
    """Usage draws plan credits first: the plan credits' fall is plan usage, and only what
    is drawn beyond them comes out of prepaid credit -- with a reset between, prepaid's
    fall is still exact; where the usage cannot be told, neither can its parts."""
    gone = interval(snap(0, "1.00", "50"), snap(2, "0", "47.50"), D(100))
    assert (gone.usage, gone.prepaid_used) == (D("3.50"), D("2.50"))  # $1.00 plan + $2.50
    plain = interval(snap(0, "74.50", "50"), snap(2, "70.25", "50"), D(100))
    assert plain.prepaid_used == 0
    topped = interval(snap(0, "0.50", "5"), snap(2, "0", "52"), D(100), known_top_up=D(50))
    assert (topped.usage, topped.prepaid_used) == (D("3.50"), D(3))
    reset = interval(snap(0, "0", "40"), snap(3, "97", "38", start=P_END,
                                              end=P_END + timedelta(days=30)), D(100))
    assert (reset.usage, reset.prepaid_used) == (D(5), D(2))
    assert interval(snap(0, "0.50", "5"), snap(2, "0", "52"), D(100)).prepaid_used is None
    a, b, c = snap(0, "1.00", "50"), snap(2, "0", "47.50"), snap(4, "0", "46")
    days = daily([a, b, c], [interval(a, b, D(100)), interval(b, c, D(100))],
                 T0.date(), c.first_seen.date())
    assert (sum(d.plan_usage for d in days), sum(d.prepaid_usage for d in days)) == \
        (D(1), D(4))


def test_top_up_during_use_is_not_usage():
    span = interval(snap(0, "74.50", "50"), snap(2, "72.00", "100"), D(100))
    assert (span.kind, span.usage, span.top_up) == ("top-up", D("2.50"), D(50))


def test_top_up_after_plan_credits_ran_out_is_unknown_unless_the_amount_is_known():
    a, b = snap(0, "0.50", "5"), snap(2, "0", "52")
    unknown = interval(a, b, D(100))
    assert unknown.usage is None and "cannot be told" in unknown.note
    known = interval(a, b, D(100), known_top_up=D(50))
    assert known.usage == D("3.50") and known.top_up == D(50)  # 0.50 plan + 3.00 prepaid


def test_period_reset_grants_the_monthly_credits():
    new_start = P_END
    span = interval(snap(0, "0", "40"), snap(3, "97", "40", start=new_start,
                                             end=new_start + timedelta(days=30)), D(100))
    assert (span.kind, span.usage, span.before_reset_up_to) == ("reset", D(3), 0)


def test_reset_with_credits_left_says_how_much_is_unknown():
    new_start = P_END
    span = interval(snap(0, "12", "40"), snap(3, "97", "40", start=new_start,
                                              end=new_start + timedelta(days=30)), D(100))
    assert span.usage == D(3) and span.before_reset_up_to == D(12)
    assert "up to $12.00 more" in span.note  # money, in words


def test_upgrade_mid_period_is_unknown_not_negative():
    span = interval(snap(0, "74.50", "50"), snap(2, "500", "50", plan="pro"), D(500))
    assert (span.kind, span.usage) == ("plan change", None) and "pro" in span.note


def test_downgrade_mid_period_is_unknown_too():
    span = interval(snap(0, "74.50", "50", plan="pro"), snap(2, "10", "50", plan="free"), D(10))
    assert (span.kind, span.usage) == ("plan change", None)


def test_credits_added_mid_period_are_not_usage():
    span = interval(snap(0, "50", "50"), snap(2, "80", "50"), D(100))
    assert (span.kind, span.usage) == ("credits added", None)


def test_a_gap_in_polling_is_not_put_on_any_day():
    hours = MAX_INTERVAL.total_seconds() / 3600 + 48
    a, b = snap(0, "90", "50"), snap(hours, "60", "50")
    span = interval(a, b, D(100))
    assert span.gap and span.usage == D(30)
    days = daily([a, b], [span], T0.date(), b.first_seen.date())
    assert [d.usage for d in days] == [D(0), None, D(0)]  # the day between: no readings
    assert days[1].readings is False


def test_usage_counts_on_the_day_of_the_later_reading():
    a, b = snap(10, "90", "50"), snap(13, "85", "50")  # 22:00 -> 01:00 next day
    days = daily([a, b], [interval(a, b, D(100))], a.first_seen.date(), b.first_seen.date())
    assert [(d.day, d.usage, d.closing) for d in days] == [
        (a.first_seen.date(), D(0), D(140)), (b.first_seen.date(), D(5), D(135))]


def test_recent_pace_needs_a_day_of_readings():
    readings = [snap(h, 90 - h // 2, "50") for h in range(0, 31, 6)]  # 3 every 6 hours
    spans = [interval(a, b, D(100)) for a, b in zip(readings, readings[1:])]
    since = readings[0].first_seen - timedelta(days=3)  # the readings begin after it
    assert recent_pace(spans[:3], readings[3].first_seen, since, "the last 7 days") is None
    pace = recent_pace(spans, readings[-1].first_seen, since, "the last 7 days")
    assert pace.per_day == D(12)  # 15 in 30 hours
    assert pace.basis == "the 1.2 days of readings so far ($15.00)"
    # readings from before the range's start: the range is the stretch, named, and what
    # its table counts (intervals ending in it) over the time from its start
    pace = recent_pace(spans, readings[-1].first_seen, readings[1].first_seen,
                       "the last 7 days")  # the first interval ends at its start: its first day's
    assert pace.per_day == D(15) and pace.basis.startswith("the last 7 days ($15.00 from ")


# -- recording --------------------------------------------------------------------

def _fresh_view(app, client):
    """A page view after the cached balance is dropped, so it is read upstream."""
    app.extensions["giga_gateway"].forget_billing()
    client.get("/billing")
    settle(app)  # its reading is recorded after the page


def _rows(app):
    with app.app_context():
        return db.session.query(BalanceSnapshot).order_by(BalanceSnapshot.id).all()


def test_a_page_view_records_a_snapshot_and_an_unchanged_one_only_moves_on(
        client, auth, app, sandbox):
    auth.login("viewer")
    client.get("/billing")
    settle(app)
    [first] = _rows(app)
    assert (first.total_balance, first.plan) == (D("124.50"), "starter-pro")
    _fresh_view(app, client)  # a fresh read, same figures
    [again] = _rows(app)
    assert again.last_seen_at > first.last_seen_at and again.first_seen_at == first.first_seen_at
    with sandbox.state.edit() as account:
        account["planCreditsRemaining"] = "70.00"
    _fresh_view(app, client)
    rows = _rows(app)
    assert [r.plan_credits_remaining for r in rows] == [D("74.50"), D("70.00")]


def test_history_keeps_only_history_days(tmp_path, sandbox):
    from .conftest import make_app
    from webapp.services.history.readings import record
    from webapp.giga.client import parse_billing

    app = make_app(tmp_path, SANDBOX=sandbox)
    billing = parse_billing({"billing": sandbox.state.billing()})
    with app.app_context():
        record(billing, datetime.now(timezone.utc) - timedelta(days=5), keep_days=2)
        record(billing.__class__(**{**billing.__dict__, "prepaid_balance": D(60)}),
               datetime.now(timezone.utc), keep_days=2)
        assert [r.prepaid_balance for r in db.session.query(BalanceSnapshot)] == [D(60)]


# -- the poller -------------------------------------------------------------------------

def test_poll_reads_once_through_the_gateway_and_records(runner, app, sandbox):
    result = runner.invoke(args=["billing", "poll"])
    assert result.exit_code == 0, result.output
    assert "total 124.50" in result.output and sandbox.api_calls("/api/billing") == 1
    assert len(_rows(app)) == 1
    runner.invoke(args=["billing", "poll"])  # within the cache TTL: no second upstream call
    assert sandbox.api_calls("/api/billing") == 1


def test_many_pollers_stay_within_the_budget(tmp_path, sandbox):
    from .conftest import make_app

    app = make_app(tmp_path, SANDBOX=sandbox, BILLING_CACHE_TTL="0",
                   UPSTREAM_BUDGET_PER_MINUTE="4", UPSTREAM_RESERVED_FOR_ACTIONS="1")
    runner = app.test_cli_runner()
    codes = [runner.invoke(args=["billing", "poll"]).exit_code for _ in range(6)]
    assert sandbox.api_calls("/api/billing") == 3 and codes[:3] == [0, 0, 0]
    # the budget held the rest back: the cached figures were recorded again, never an error
    assert all(code == 0 for code in codes)


def test_poll_every_runs_until_stopped(tmp_path, fault_server):
    env = {"GIGA_API_KEY": "giga_sk_poller", "GIGA_API_URL": fault_server.url,
           "SECRET_KEY": secrets.token_hex(32), "API_TOKEN_PEPPER": secrets.token_hex(32), "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "billing", "poll",
                             "--every", "10"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while fault_server.count("/api/billing") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Polling every 10 s" in out and "total 124.5" in out and "Stopped." in out


def test_poll_every_refuses_a_tiny_interval(runner):
    result = runner.invoke(args=["billing", "poll", "--every", "1"])
    assert result.exit_code != 0 and "--every" in result.output


# -- reconciliation -------------------------------------------------------------------

def _pay_latest(sandbox):
    with sandbox.state.edit() as account:
        checkout_id = list(account["checkouts"])[-1]
    sandbox.state.settle(checkout_id, pay=True)


def test_a_paid_top_up_turns_credited(client, auth, app, sandbox):
    auth.login("finance")
    client.get("/billing")
    assert client.post("/billing/topup", data={"amount": "50", "nonce": "r" * 24}
                       ).status_code == 303
    html = client.get("/billing").get_data(as_text=True)
    assert "$50.00 top-up started" in html and "not yet credited" in html
    _pay_latest(sandbox)
    client.get("/billing?checkout=success")
    with app.app_context():
        entry = AuditEntry.query.filter(AuditEntry.action != SIGNED_IN).one()
        assert (entry.seen, entry.seen_at is not None) == ("credited", True)
    assert "not yet credited" not in client.get("/billing").get_data(as_text=True)
    page = client.get("/audit").get_data(as_text=True)
    assert ">credited<" in page
    rows = list(csv.reader(io.StringIO(client.get("/audit/export.csv?action=top-up")
                                       .get_data(as_text=True))))
    seen, seen_at = rows[0].index("seen in balance"), rows[0].index("seen at (UTC)")
    assert rows[1][seen] == "credited" and rows[1][seen_at]


def test_an_abandoned_top_up_is_not_credited_by_another_ones_credit(client, auth, app, sandbox):
    auth.login("finance")
    client.get("/billing")
    client.post("/billing/topup", data={"amount": "80", "nonce": "a" * 24})
    client.post("/billing/topup", data={"amount": "20", "nonce": "b" * 24})
    _pay_latest(sandbox)  # only the $20 one is paid
    client.get("/billing?checkout=success")
    with app.app_context():
        seen = {str(e.amount): e.seen for e in AuditEntry.query.filter(
            AuditEntry.action != SIGNED_IN)}
    assert seen == {"80.00": None, "20.00": "credited"}


def test_a_paid_plan_change_turns_plan_changed(client, auth, app, sandbox):
    auth.login("admin")
    client.get("/billing")
    assert client.post("/billing/plans/pro", data={"nonce": "p" * 24}).status_code == 303
    _pay_latest(sandbox)
    client.get("/billing?checkout=success")
    with app.app_context():
        assert AuditEntry.query.filter(AuditEntry.action != SIGNED_IN).one().seen == "plan changed"


def test_a_checkout_unseen_for_48_hours_says_to_check(client, auth, app):
    with app.app_context():
        db.session.add(AuditEntry(at=datetime.now(timezone.utc) - timedelta(hours=49),
                                  user_email="finance@demo.test", user_role="finance",
                                  action="top-up", amount=D(25), outcome="sent to checkout"))
        db.session.commit()
    auth.login("finance")
    assert "not seen — check with WithGiga" in client.get("/audit").get_data(as_text=True)
    body = client.get("/audit/export.csv").get_data(as_text=True)
    assert "not seen — check with WithGiga" in body
    assert "top-up started" not in client.get("/billing").get_data(as_text=True)


# -- the chart and the exports ---------------------------------------------------------

def test_the_chart_has_a_name_and_a_table_with_the_same_figures(client, auth, seeded):
    auth.login("viewer")
    html = client.get("/billing?range=30").get_data(as_text=True)
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S).group(0)
    labelled = re.search(r'aria-labelledby="([^"]+)"', svg).group(1).split()
    assert 'role="img"' in svg and all(f'id="{i}"' in svg for i in labelled)
    assert "Estimated from balance readings" in html
    bars = re.findall(r'<rect class="bar[^"]*"[^>]*><title>([^<]+)</title>', svg)
    table = re.search(r"<details class=\"usage-table\">.*?</details>", html, re.S).group(0)
    assert len(bars) >= 28
    for label in bars:
        day, amount = label.split(": ")
        assert re.search(rf"<th scope=\"row\">{re.escape(day)}</th>\s*<td class=\"figure\">"
                         rf"{re.escape(amount.replace(' or more', ''))}", table), label
    assert "style=" not in svg  # nothing the CSP would block


def test_the_last_12_months_are_a_bar_a_week_and_the_csv_a_row_a_day(client, auth, app,
                                                                       sandbox):
    """A year of readings every six hours: "Last 12 months" draws a bar a week (a day's
    would be thinner than a pixel) and says so; its table has a row a week, its CSV a
    row a day, and both add up to the same total."""
    now = datetime.now(timezone.utc)
    length = timedelta(days=30)
    start = now - timedelta(days=12)
    with app.app_context():
        t, rows = now - timedelta(days=370), []
        while t < now - timedelta(hours=1):
            period = start - length * (-(-(start - t) // length)) if t < start else start
            into = (t - period) // timedelta(hours=6)
            left = max(D(0), D(100) - D(into) / 2)
            rows.append(BalanceSnapshot(first_seen_at=t, last_seen_at=t, plan="starter-pro",
                                        plan_credits_remaining=left, prepaid_balance=D(50),
                                        total_balance=left + 50, period_start=period,
                                        period_end=period + length))
            t += timedelta(hours=6)
        last = (rows[-1].plan_credits_remaining, rows[-1].period_start, rows[-1].period_end)
        db.session.add_all(rows)
        db.session.commit()
    with sandbox.state.edit() as account:
        account.update(planCreditsRemaining=str(last[0]), prepaidBalance="50.00",
                       periodStart=last[1].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                       periodEnd=last[2].strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    auth.login("finance")
    html = client.get("/billing?range=365").get_data(as_text=True)
    assert 'aria-current="true">Last 12 months' in html
    assert "A bar a week, Monday to Sunday (a day’s bar would be thinner than a pixel)" in html
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S).group(0)
    bars = re.findall(r'<rect class="bar[^"]*"[^>]*><title>([^<]+)</title>', svg)
    assert 52 <= len(bars) <= 54 and all(" to " in b for b in bars[1:-1])
    # every other month named under the bars, short enough not to run together on a phone
    labels = re.findall(r'text-anchor="middle">([^<]+)<', svg)
    assert 5 <= len(labels) <= 7 and all(re.fullmatch(r"[A-Z][a-z]{2}", t) for t in labels)
    table = re.search(r"<details class=\"usage-table\">.*?</details>", html, re.S).group(0)
    assert "<th scope=\"col\">Week</th>" in table
    assert len(re.findall(r'<th scope="row">\w{3} \d+ to ', table)) >= 51
    total = D(re.search(r'id="usage-total">\$([\d,.]+)', table).group(1).replace(",", ""))
    days = list(csv.DictReader(io.StringIO(
        client.get("/billing/usage.csv?range=365").get_data(as_text=True))))
    assert len([r for r in days if r["hours"] in ("23", "24", "25")]) == 365
    assert sum(D(r["usage (USD)"]) for r in days if r["usage (USD)"]) == total > 0


def test_days_without_readings_are_gaps_not_zeros(client, auth, seeded):
    auth.login("viewer")
    html = client.get("/billing?range=90").get_data(as_text=True)
    assert html.count('<rect class="gap"') >= 55  # 90 days, a month of history
    assert "no readings" in html


def test_the_range_selector_and_an_unknown_range(client, auth, seeded):
    auth.login("viewer")
    for key in ("period", "last-period", "7", "30", "90", "nonsense"):
        resp = client.get(f"/billing?range={key}")
        assert resp.status_code == 200
    assert 'aria-current="true">Last 7 days' in client.get("/billing?range=7").get_data(
        as_text=True)


def test_forecast_learns_from_the_last_seven_days(client, auth, seeded):
    auth.login("viewer")
    html = client.get("/billing").get_data(as_text=True)
    assert re.search(r"a day, from the last 7 days \(\$[\d.]+ from \w+ \d+ to now", html)


def test_forecast_after_an_upgrade_counts_what_was_used_before_it(client, auth, app, sandbox):
    from webapp.giga.client import parse_billing

    now = datetime.now(timezone.utc)
    with app.app_context():
        billing = parse_billing({"billing": sandbox.state.billing()})
        seed(billing, D(100), now - timedelta(hours=2))
    with sandbox.state.edit() as account:  # upgraded: pro's 500 credits granted
        account["plan"], account["planCreditsRemaining"] = "pro", "500"
    auth.login("viewer")
    html = client.get("/billing").get_data(as_text=True)
    assert "No credits used" not in html and "No plan credits used" not in html
    assert "$25.50 or more</strong> used this period" in html


@pytest.mark.parametrize("path", ["/billing/history.csv", "/billing/usage.csv"])
@pytest.mark.parametrize("role,allowed", [("viewer", False), ("finance", True), ("admin", True)])
def test_exports_follow_the_audit_role_rules(client, auth, seeded, path, role, allowed):
    auth.login(role)
    resp = client.get(path)
    assert resp.status_code == (200 if allowed else 403)
    if allowed:
        assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]


def test_usage_csv_has_a_row_a_day_and_history_csv_a_row_a_snapshot(client, auth, seeded, app):
    auth.login("finance")
    usage = list(csv.reader(io.StringIO(client.get("/billing/usage.csv?range=30")
                                        .get_data(as_text=True))))
    assert usage[0] == ["date (UTC)", "part of the day", "usage (USD)", "usage at most (USD)",
                        "top-ups credited (USD)", "closing balance (USD)", "note",
                        "start (UTC)", "end (UTC)", "hours"]
    assert len(usage) == 31 and date.fromisoformat(usage[-1][0]) == \
        datetime.now(timezone.utc).date()
    # each day says the instants it covers (UTC days here: midnight to midnight)
    assert usage[-1][7:] == [f"{usage[-1][0]} 00:00:00",
                             f"{date.fromisoformat(usage[-1][0]) + timedelta(days=1)} 00:00:00",
                             "24"]
    assert any(r[4] == "30.00" for r in usage[1:])  # the seeded top-up
    history = list(csv.reader(io.StringIO(client.get("/billing/history.csv")
                                          .get_data(as_text=True))))
    assert len(history) - 1 == len(_rows(app))
    assert history[0][2:4] == ["plan", "plan name"] and history[-1][2:4] == ["starter-pro",
                                                                      "Starter Pro"]
    assert history[-1][6] == "124.50"


def test_downloads_are_bounded_per_user(client, auth, seeded):
    auth.login("finance")
    codes = [client.get("/billing/history.csv").status_code for _ in range(10)]
    codes += [client.get("/billing/usage.csv").status_code for _ in range(3)]
    assert codes[:10] == [200] * 10 and codes[10:] == [429] * 3
    refused = client.get("/billing/usage.csv")
    assert "Too many downloads" in refused.get_data(as_text=True) and refused.headers["Retry-After"]


def test_a_cancelled_checkout_is_not_left_pending(client, auth, app, sandbox):
    auth.login("finance")
    client.get("/billing")
    client.post("/billing/topup", data={"amount": "20", "nonce": "k" * 24})
    html = client.get("/billing?checkout=cancel").get_data(as_text=True)
    assert "Checkout of your $20.00 top-up was cancelled" in html
    assert "top-up started" not in html
    assert "cancelled at checkout" in client.get("/audit").get_data(as_text=True)
    # the return link is the user's word; if the payment went through after all, the
    # balance says so and it is credited
    _pay_latest(sandbox)
    _fresh_view(app, client)
    with app.app_context():
        assert AuditEntry.query.filter(AuditEntry.action != SIGNED_IN).one().seen == "credited"


@pytest.mark.parametrize("start,end", [
    ("2024-03-01T00:00:00.000Z", "2024-04-01T00:00:00.000Z"),   # a period long past
    ("2020-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z"),   # an eighty-year period
    ("2099-01-01T00:00:00.000Z", "2099-02-01T00:00:00.000Z")])  # one not begun
def test_odd_periods_never_make_a_chart_of_hundreds_of_days(client, auth, sandbox, start, end):
    with sandbox.state.edit() as account:
        account["periodStart"], account["periodEnd"] = start, end
    auth.login("viewer")
    for key in ("period", "last-period"):
        html = client.get(f"/billing?range={key}").get_data(as_text=True)
        table = re.search(r"<details class=\"usage-table\">.*?</details>", html, re.S).group(0)
        stretches = table.count('<th scope="row">Before the first reading') + \
            table.count('<th scope="row">No readings')  # a row each, beside the days
        assert 1 <= table.count('<th scope="row">') - stretches <= 92


@pytest.mark.parametrize("hours", range(24))
def test_the_seed_spreads_usage_exactly_and_never_below_zero(hours):
    """A negative share would read as credits added (usage unknown) in the sandbox's
    made-up history; at some hours of the day the old rounding gave one."""
    from webapp.services.history.seed import _spread
    start = datetime(2026, 11, 19, hours, 7, tzinfo=timezone.utc)
    times = [start + timedelta(hours=2 * i) for i in range(150)]
    for total in (D("25.50"), D("0.01"), D("99.99")):
        parts = _spread(total, times)
        assert sum(parts) == total and min(parts) >= 0


@pytest.mark.parametrize("change", [
    ("first reading", None, 0),
    ("same figures, later", {}, 60),
    ("same figures, arriving late", {}, -60),
    ("changed figures, later", {"plan_credits_remaining": D("70.00")}, 60),
    ("changed figures, arriving late", {"plan_credits_remaining": D("70.00")}, -60),
])
def test_a_page_draws_the_history_as_recording_its_reading_will_leave_it(tmp_path, sandbox,
                                                                          change):
    """The page is answered before its reading is recorded: ``with_reading`` must make of
    the snapshots exactly what ``record`` then makes of the rows."""
    from .conftest import make_app
    from webapp.giga.client import parse_billing
    from webapp.services.history.readings import record, snapshots, with_reading

    _, edits, seconds = change
    app = make_app(tmp_path, SANDBOX=sandbox)
    billing = parse_billing({"billing": sandbox.state.billing()})
    far = (T0 - timedelta(days=30), T0 + timedelta(days=30))
    with app.app_context():
        db.session.query(BalanceSnapshot).delete()
        db.session.commit()
        if edits is not None:
            record(billing, T0, keep_days=400)
        reading = billing.__class__(**{**billing.__dict__, **(edits or {})})
        drawn = with_reading(snapshots(*far), reading, T0 + timedelta(seconds=seconds))
        record(reading, T0 + timedelta(seconds=seconds), keep_days=400)
        assert drawn == snapshots(*far)
